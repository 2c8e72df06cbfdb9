"""Logic of the kong_admin_broker app, testable without HTTP."""
