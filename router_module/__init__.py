"""The router: events in, commands dispatched, replies delivered (the core of WaddleBot)."""

from . import controllers  # noqa: F401
