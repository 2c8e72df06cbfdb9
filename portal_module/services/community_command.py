"""The ``!community`` chat command: portal logins managed from chat.

``!community portal login add someone@example.org [owner|admin]`` creates (or links)
a portal login for the community of the channel and mails a temporary password;
``!community portal login remove someone@example.org`` revokes that community;
``!community portal`` answers with the portal's address. Every answer is one chat
line; bad input gets a line that says what to type instead.
"""

from __future__ import annotations

import dataclasses
import logging

from waddlebot.modules import CommandCall

from ..models import PORTAL_ROLES
from .access import grant_access, login_mail, normalize_email, revoke_access
from .mail import MailError

log = logging.getLogger("waddlebot.portal.community")

USAGE = "Usage: !community portal login add|remove <email>"
MANAGERS = ("owner", "admin")


class CommandProblem(Exception):
    """Input the command cannot act on; the message is the chat reply."""


@dataclasses.dataclass(frozen=True)
class LoginRequest:
    """A parsed ``!community portal login add|remove`` request."""

    action: str
    email: str
    role: str | None = None


@dataclasses.dataclass(frozen=True)
class PortalInfo:
    """``!community portal``: where the portal is."""


def parse(args: tuple[str, ...] | list[str]) -> LoginRequest | PortalInfo:
    """Understand the arguments of ``!community``; CommandProblem explains bad input."""
    words = [a for a in args if a.strip()]
    if not words:
        raise CommandProblem(f"{USAGE} (manage who can log in to this community's portal)")
    if words[0].lower() != "portal":
        raise CommandProblem(f"Unknown subcommand '{words[0]}'. {USAGE}")
    if len(words) == 1:
        return PortalInfo()
    if words[1].lower() != "login":
        raise CommandProblem(f"Unknown subcommand 'portal {words[1]}'. {USAGE}")
    if len(words) == 2:
        raise CommandProblem(USAGE)
    action = words[2].lower()
    if action not in ("add", "remove"):
        raise CommandProblem(f"Unknown subcommand 'portal login {words[2]}'. {USAGE}")
    if len(words) == 3:
        raise CommandProblem(
            f"Which email address? Usage: !community portal login {action} someone@example.org"
        )
    email = normalize_email(words[3])
    if email is None:
        raise CommandProblem(f"'{words[3][:80]}' is not a valid email address. {USAGE}")
    role = None
    extra = words[4:]
    if action == "add" and extra:
        role = extra[0].lower()
        if role not in PORTAL_ROLES:
            raise CommandProblem(
                f"The portal role must be {' or '.join(PORTAL_ROLES)}, not '{extra[0][:40]}'."
            )
        extra = extra[1:]
    if extra:
        raise CommandProblem(f"Too many arguments. {USAGE}")
    return LoginRequest(action, email, role)


def run(db, *, call: CommandCall, mailer, portal_url: str) -> str:
    """Carry out one ``!community`` call; returns the chat reply."""
    try:
        request = parse(call.args)
    except CommandProblem as problem:
        return str(problem)
    if isinstance(request, PortalInfo):
        return f"The community portal is at {portal_url} ({USAGE})."
    if call.user.role not in MANAGERS:
        return "Only the community's owner or an admin can manage portal logins."
    community = db.communities(call.community_id) if call.community_id else None
    if community is None:
        return "This channel belongs to no community yet; try again in a moment."
    caller = f"{call.user.name} ({call.platform})"
    if request.action == "remove":
        outcome = revoke_access(
            db, email=request.email, community_id=community.id, caller_role=call.user.role
        )
        return {
            "removed": f"Portal access of {request.email} to {community.name} removed.",
            "none": f"{request.email} has no portal access to {community.name}.",
            "forbidden": "Only an owner can remove an owner's portal access.",
        }[outcome]
    role = request.role or call.user.role
    if role == "owner" and call.user.role != "owner":
        return "Only an owner can grant owner access to the portal."
    grant = grant_access(
        db,
        email=request.email,
        community_id=community.id,
        role=role,
        granted_by=f"{call.platform}:{call.user.platform_user_id}",
        waddlebot_user_id=call.user.id,
    )
    if grant.outcome == "unchanged":
        return f"{request.email} already has portal access to {community.name}."
    subject, body = login_mail(
        grant=grant, community_name=community.name, portal_url=portal_url, requested_by=caller
    )
    try:
        mailer.send(request.email, subject=subject, body=body)
    except MailError as exc:
        db.rollback()
        log.warning("portal login mail to %s failed: %s", request.email, exc)
        return (
            f"Could not send the mail to {request.email}, so nothing was changed; "
            "try again later or ask the operator to check the mail settings."
        )
    return {
        "created": f"Portal login for {request.email} created; the temporary password was mailed.",
        "reissued": f"Portal login for {request.email} re-issued; a new temporary "
        "password was mailed.",
        "granted": f"{request.email} can now manage {community.name} in the portal; "
        "a notice was mailed.",
    }[grant.outcome]
