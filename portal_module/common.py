"""Fixtures of the portal app, built here and nowhere else.

py4web's own Auth (on the shared primary database), Session, Flash and Mailer, the
service-key fixture, the :class:`CommunityAccess` fixture that guards every portal
page, the client of the neighbouring APIs, and the background registration of the
``!community`` command with the router.
"""

from __future__ import annotations

from urllib.parse import quote

from py4web.core import HTTP, Fixture, Session, redirect, request
from py4web.utils.auth import Auth, prevent_open_redirect
from py4web.utils.form import FormStyleDefault

from waddlebot.app import AppServices
from waddlebot.modules import ModuleRegistration

from . import models
from .services.access import access_role
from .services.mail import AuthMailer, PortalMailer
from .services.remote import RemoteApi
from .settings import settings

services = AppServices(
    settings, short_name="portal", api_prefix="/api/portal", definers=[models.define_tables]
)
database = services.database
db = services.db
store = services.store
service_key = services.service_key

LOGIN_PATH = "/portal_module/auth/login"
CHANGE_PASSWORD_PATH = "/portal_module/auth/change_password"
HOME_PATH = "/portal"

# -- mail ------------------------------------------------------------------------------------
_mail_options = dict(
    transport=settings.mail_transport,
    sender=settings.from_email,
    smtp_host=settings.smtp_host,
    smtp_port=settings.smtp_port,
    smtp_username=settings.smtp_username,
    smtp_password=settings.smtp_password.reveal(),
    smtp_tls=settings.smtp_tls,
    mail_dir=settings.mail_dir,
    sendmail_path=settings.sendmail_path,
)
mailer = PortalMailer(**_mail_options)

# -- login session and py4web Auth -----------------------------------------------------------
session = Session(
    secret=settings.session_secret.reveal(), same_site="Lax", name="waddlebot_portal_session"
)
auth = Auth(
    session,
    db,
    define_tables=False,
    use_username=False,
    registration_requires_confirmation=False,
    allowed_actions=[
        "login",
        "logout",
        "change_password",
        "request_reset_password",
        "reset_password",
        "profile",
    ],
    login_expiration_time=settings.login_expiration,
    password_complexity={"entropy": models.PASSWORD_ENTROPY},
    block_previous_password_num=3,
    sender=AuthMailer(**_mail_options),
)
#: py4web's default form markup with the portal's CSS classes
formstyle = FormStyleDefault.clone()
formstyle.classes.update({"outer": "field", "info": "help"})
auth.param.formstyle = formstyle
# Auth's prerequisites name the raw primary DAL; the shared Database fixture owns that
# connection (and the replica's), so it stands in for it.
auth.__prerequisites__ = [session, database, auth.flash]
flash = auth.flash


def _after_login(form, user):
    """After login: where the visitor was going, else the portal home."""
    redirect(prevent_open_redirect(session.get("_next_login")) or HOME_PATH)


def _after_password_change(form, user):
    """The first-login rule is satisfied once the user chose their own password."""
    db(db.auth_user.id == user["id"]).update(must_change_password=False)
    redirect(prevent_open_redirect(session.get("_next_change_password")) or HOME_PATH)


def _after_password_reset(form, user):
    """A reset link works once; the password chosen with it is the user's own."""
    db(db.auth_user.id == user["id"]).update(action_token=None, must_change_password=False)
    redirect(LOGIN_PATH)


def _to(path: str):
    def go(form, user):
        redirect(path)

    return go


auth.on_accept["login"] = _after_login
auth.on_accept["change_password"] = _after_password_change
auth.on_accept["reset_password"] = _after_password_reset
auth.on_accept["request_reset_password"] = _to(LOGIN_PATH)
auth.on_accept["logout"] = _to(LOGIN_PATH)
auth.on_accept["profile"] = _to(HOME_PATH)
auth.enable(uses=(database,), env=dict(portal_title="WaddleBot portal"), allow_api_routes=False)


class CommunityAccess(Fixture):
    """Portal pages: a logged-in user who chose a password and may manage this community.

    Not logged in ⇒ the login page (then back here); a temporary password ⇒ the change
    password page until it is changed; a ``community_id`` in the route that the user was
    not granted ⇒ 403. The grant's portal role is then available as ``role``.
    """

    def __init__(self):
        self.__prerequisites__ = [auth]

    def on_request(self, context):
        """Check the login, the first-login rule and the community grant."""
        Fixture.local_initialize(self)
        self.local.user = None
        self.local.role = None
        self.local.community_id = None
        next_path = request.fullpath + (f"?{request.query_string}" if request.query_string else "")
        user_id = auth.user_id
        user = db.auth_user(user_id) if user_id else None
        if user is None:
            if user_id:
                session.clear()
            flash.set("Please log in to the portal.")
            redirect(f"{LOGIN_PATH}?next={quote(next_path, safe='/')}")
        if user.must_change_password:
            session["_next_change_password"] = next_path
            flash.set("Choose your own password before using the portal.")
            redirect(CHANGE_PASSWORD_PATH)
        self.local.user = user
        community_id = (request.url_args or {}).get("community_id")
        if community_id is not None:
            role = access_role(db, auth_user_id=user.id, community_id=int(community_id))
            if role is None:
                raise HTTP(403, _forbidden_page())
            self.local.role = role
            self.local.community_id = int(community_id)

    @property
    def user(self):
        """The logged-in ``auth_user`` row."""
        return self.local.user

    @property
    def role(self) -> str | None:
        """The user's portal role in the community of this request."""
        return self.local.role

    @property
    def community_id(self) -> int | None:
        """The community of this request (from the route)."""
        return self.local.community_id


def _forbidden_page() -> str:
    return (
        "<!doctype html><title>Forbidden</title>"
        "<p>You have no portal access to this community. "
        f'<a href="{HOME_PATH}">Back to your communities</a></p>'
    )


community_access = CommunityAccess()

# -- neighbouring APIs and the !community command --------------------------------------------
remote = RemoteApi(
    router_url=settings.router_api_url,
    alias_url=settings.alias_api_url,
    shoutout_url=settings.shoutout_api_url,
    api_key=settings.api_keys[0].reveal(),
    timeout=min(10.0, settings.request_timeout),
)

COMMUNITY_COMMAND = {
    "command": "community",
    "prefix": "!",
    "type": "container",
    "location_url": "/api/portal/commands/community",
    "description": "Portal logins: !community portal login add|remove <email>",
    "method": "POST",
    "timeout": 20,
    "min_role": "admin",
    "trigger_type": "command",
    "priority": 100,
    "execution_mode": "sequential",
}

registration = ModuleRegistration(
    router_url=settings.router_api_url,
    api_key=settings.api_keys[0].reveal(),
    payload={
        "module_name": "portal",
        "module_version": settings.module_version,
        "module_type": "interaction",
        "platform": None,
        "endpoint_url": settings.endpoint_url,
        "health_check_url": f"{settings.endpoint_url}/api/portal/health",
        "core": True,
        "commands": [COMMUNITY_COMMAND],
    },
).start()
