"""Logic of the labels_core app, testable without HTTP."""
