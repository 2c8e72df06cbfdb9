"""Logic of the shoutout app, testable without HTTP."""
