"""Logic of the twitch app, testable without HTTP."""
