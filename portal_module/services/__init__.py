"""Logic of the portal app, testable without HTTP."""
