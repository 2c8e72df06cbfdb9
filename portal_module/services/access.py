"""Portal logins and who may see which community.

A portal login is a py4web Auth ``auth_user``; ``portal_access`` grants it one
community with a portal role (owner or admin). Logins are created from chat
(``!community portal login add``) with a temporary password that must be changed at
first login. Functions take the database and keyword-only arguments; nothing here
commits, the caller's request does.
"""

from __future__ import annotations

import dataclasses
import secrets

from pydal.validators import CRYPT, IS_EMAIL

from waddlebot.db import utcnow

from ..models import PORTAL_ROLES

#: bytes of randomness in a temporary password (128 bits)
TEMPORARY_PASSWORD_BYTES = 16


@dataclasses.dataclass(frozen=True)
class Grant:
    """What granting portal access did.

    ``outcome`` is ``created`` (new login), ``reissued`` (the login never logged in:
    a new temporary password), ``granted`` (an existing login got this community) or
    ``unchanged`` (it already had it).
    """

    outcome: str
    email: str
    auth_user_id: int
    role: str
    temporary_password: str | None = None


def normalize_email(text: str) -> str | None:
    """The address lower-cased, or None when it is not a valid email address."""
    value, error = IS_EMAIL()(text.strip())
    return None if error else value.lower()


def temporary_password() -> str:
    """A fresh random temporary password."""
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


def _hash(password: str) -> str:
    return str(CRYPT()(password)[0])


def higher_portal_role(*roles: str | None) -> str | None:
    """The highest of several portal roles (None when none is a portal role)."""
    for role in PORTAL_ROLES:
        if role in roles:
            return role
    return None


def grant_access(
    db,
    *,
    email: str,
    community_id: int,
    role: str,
    granted_by: str,
    waddlebot_user_id: int | None = None,
) -> Grant:
    """Create or link the login of ``email`` and grant it ``community_id``."""
    if role not in PORTAL_ROLES:
        raise ValueError(f"role must be one of {', '.join(PORTAL_ROLES)}")
    users = db.auth_user
    user = db(users.email == email).select().first()
    password = None
    if user is None:
        password = temporary_password()
        user_id = users.insert(
            email=email,
            password=_hash(password),
            first_name=email.split("@", 1)[0],
            last_name="",
            waddlebot_user_id=waddlebot_user_id,
            must_change_password=True,
        )
        outcome = "created"
    else:
        user_id = user.id
        outcome = None
        if user.must_change_password:
            password = temporary_password()
            user.update_record(password=_hash(password))
            outcome = "reissued"
    access = db.portal_access
    row = (
        db((access.auth_user_id == user_id) & (access.community_id == community_id))
        .select()
        .first()
    )
    if row is None:
        access.insert(
            auth_user_id=user_id, community_id=community_id, role=role, granted_by=granted_by
        )
        outcome = outcome or "granted"
    else:
        best = higher_portal_role(row.role, role)
        if best != row.role:
            row.update_record(role=best, granted_by=granted_by, granted_at=utcnow())
            outcome = outcome or "granted"
        role = best
    return Grant(outcome or "unchanged", email, int(user_id), role, password)


def revoke_access(db, *, email: str, community_id: int, caller_role: str) -> str:
    """Remove the login's grant of ``community_id``: ``removed``, ``none`` or ``forbidden``.

    An admin cannot remove an owner's access; the login itself is kept (it may hold
    other communities, and chat can grant this one again).
    """
    user = db(db.auth_user.email == email).select(db.auth_user.id).first()
    if user is None:
        return "none"
    access = db.portal_access
    query = (access.auth_user_id == user.id) & (access.community_id == community_id)
    row = db(query).select().first()
    if row is None:
        return "none"
    if row.role == "owner" and caller_role != "owner":
        return "forbidden"
    db(query).delete()
    return "removed"


def access_role(db, *, auth_user_id: int, community_id: int) -> str | None:
    """The portal role of a login in a community, or None without access."""
    access = db.portal_access
    row = (
        db((access.auth_user_id == auth_user_id) & (access.community_id == community_id))
        .select(access.role)
        .first()
    )
    return row.role if row else None


def communities_of(db, *, auth_user_id: int) -> list[dict]:
    """The communities a login may manage, with its role, by name."""
    access = db.portal_access
    rows = db(
        (access.auth_user_id == auth_user_id) & (db.communities.id == access.community_id)
    ).select(
        db.communities.id,
        db.communities.name,
        db.communities.platform,
        access.role,
        orderby=db.communities.name | db.communities.id,
    )
    return [
        {
            "id": r.communities.id,
            "name": r.communities.name,
            "platform": r.communities.platform,
            "role": r.portal_access.role,
        }
        for r in rows
    ]


def login_mail(
    *, grant: Grant, community_name: str, portal_url: str, requested_by: str
) -> tuple[str, str]:
    """(subject, body) of the mail that tells someone about their portal access."""
    subject = f"Your WaddleBot portal login for {community_name}"
    lines = [
        "Hello,",
        "",
        f"{requested_by} gave you {grant.role} access to the WaddleBot portal "
        f'of "{community_name}".',
        "",
        f"Portal: {portal_url}",
        f"Login: {grant.email}",
    ]
    if grant.temporary_password:
        lines += [
            f"Temporary password: {grant.temporary_password}",
            "",
            "You will choose your own password when you first log in.",
        ]
    else:
        lines += ["", "Log in with the password you already use for the portal."]
    lines += ["", "If you did not expect this mail, you can ignore it.", "", "-- WaddleBot"]
    return subject, "\n".join(lines)
