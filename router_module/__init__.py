"""The router: events in, commands dispatched, replies delivered (the core of WaddleBot)."""

from . import (  # noqa: F401
    controllers,
    coordination_controllers,
    responses_controllers,
    string_rules_controllers,
)
