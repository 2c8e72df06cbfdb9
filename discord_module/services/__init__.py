"""Logic of the discord app, testable without HTTP."""
