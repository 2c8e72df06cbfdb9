"""WaddleBot's one shared package: settings, db, store, http, auth, contracts, test kit."""

__version__ = "0.1.0"
