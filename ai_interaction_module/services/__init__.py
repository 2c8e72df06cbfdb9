"""Logic of the ai_interaction app, testable without HTTP."""
