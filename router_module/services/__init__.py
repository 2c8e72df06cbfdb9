"""Router logic, testable without HTTP: processing, registry, identities, engines."""
