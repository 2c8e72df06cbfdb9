"""Logic of the alias app, testable without HTTP."""
