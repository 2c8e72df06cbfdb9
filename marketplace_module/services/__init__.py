"""Logic of the marketplace app, testable without HTTP."""
