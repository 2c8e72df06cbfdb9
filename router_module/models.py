"""Router tables: commands, per-entity permissions, executions, module responses.

The definitions live in :mod:`waddlebot.router_tables` (the portal uses them too); no app
imports, so ``waddlebot migrate`` can load this module alone.
"""

from waddlebot.router_tables import define_router_tables

COMMAND_TYPES = ("container", "lambda", "openwhisk", "webhook")
BUILTIN_TYPE = "builtin"
TRIGGER_TYPES = ("command", "event", "both")
EXECUTION_MODES = ("sequential", "parallel")
PREFIXES = ("!", "#")


def define_tables(db) -> None:
    """Define the router's tables on ``db``."""
    define_router_tables(db)
