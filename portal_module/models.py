"""Portal tables: py4web Auth's ``auth_user`` with WaddleBot fields, access, overlay keys.

Pure definitions (no app imports) so ``waddlebot migrate`` can load them alone. The
``auth_user`` table is defined here, with exactly the columns py4web Auth expects,
because serving processes run with migrations off: Auth is then built on top of it
with ``define_tables=False``.

The portal also reads the router's tables (commands, per-entity switches, executions,
responses) and writes ``command_permissions`` when an admin switches a module; their
one definition is shared from :mod:`waddlebot.router_tables`.
"""

from pydal import Field
from pydal.validators import CRYPT, IS_EMAIL, IS_NOT_EMPTY, IS_NOT_IN_DB, IS_STRONG

from waddlebot.db import index, utcnow
from waddlebot.router_tables import define_router_tables

#: what a portal login may do in a community, highest first
PORTAL_ROLES = ("owner", "admin")
#: password strength py4web Auth enforces when a user chooses a password
PASSWORD_ENTROPY = 50


def _define_auth_user(db) -> None:
    db.define_table(
        "auth_user",
        Field(
            "email",
            requires=(IS_EMAIL(), IS_NOT_IN_DB(db, "auth_user.email")),
            unique=True,
            label="Email",
        ),
        Field(
            "password",
            "password",
            requires=[IS_STRONG(entropy=PASSWORD_ENTROPY), CRYPT()],
            readable=False,
            writable=False,
            label="Password",
        ),
        Field("first_name", requires=IS_NOT_EMPTY(), label="First Name"),
        Field("last_name", label="Last Name"),
        Field("sso_id", readable=False, writable=False),
        Field("action_token", readable=False, writable=False),
        Field("last_password_change", "datetime", default=None, readable=False, writable=False),
        Field("past_passwords_hash", "list:string", readable=False, writable=False),
        # WaddleBot: the chat user who asked for this login, and the first-login rule
        Field("waddlebot_user_id", "integer", readable=False, writable=False),
        Field("must_change_password", "boolean", default=True, readable=False, writable=False),
        Field("created_at", "datetime", default=utcnow, readable=False, writable=False),
        format=lambda user: user.email,
    )


def define_tables(db) -> None:
    """Define the portal's own tables on ``db``."""
    if "portal_access" in db.tables:
        return
    if "auth_user" not in db.tables:
        _define_auth_user(db)
    db.define_table(
        "portal_access",
        Field("auth_user_id", "reference auth_user", ondelete="CASCADE", notnull=True),
        Field("community_id", "reference communities", ondelete="CASCADE", notnull=True),
        Field("role", "string", length=16, notnull=True, default="admin"),
        Field("granted_by", "string", length=255),
        Field("granted_at", "datetime", default=utcnow),
    )
    index(db, "portal_access", "portal_access_pair", "auth_user_id", "community_id", unique=True)
    index(db, "portal_access", "portal_access_community", "community_id")
    define_router_tables(db)
    db.define_table(
        "portal_overlay_keys",
        Field("entity_id", "string", length=512, notnull=True, unique=True),
        Field("overlay_key", "string", length=64, notnull=True, unique=True),
        Field("created_at", "datetime", default=utcnow),
        Field("rotated_at", "datetime"),
    )
