"""Logic of the slack app, testable without HTTP."""
