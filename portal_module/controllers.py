"""The portal's pages (``/portal/…``): dashboard, members, modules, string rules,
aliases, shoutouts, overlays and activity of one community.

Thin handlers: the :class:`~.common.CommunityAccess` fixture has already checked the
login, the first-login password change and the community grant; each handler builds
its py4web Form/Grid, calls a service and renders a template. Every POST must carry a
form's CSRF key (py4web ``_formkey``): a POST that no form accepted nor rejected with
field errors is answered 403. Forms that change something redirect afterwards (so a
reload does not post twice) with a Flash message.
"""

from __future__ import annotations

import shlex

from py4web.core import HTTP, URL, action, redirect, request
from py4web.utils.form import Form
from py4web.utils.grid import Column, Grid, GridClassStyle
from pydal import Field
from pydal.validators import (
    IS_IN_SET,
    IS_INT_IN_RANGE,
    IS_LENGTH,
    IS_MATCH,
    IS_NOT_EMPTY,
)
from yatl.helpers import CAT, SPAN

from waddlebot.router_tables import ROLES_VERSION_KEY

from .common import (
    HOME_PATH,
    community_access,
    database,
    db,
    flash,
    formstyle,
    remote,
    session,
    settings,
    store,
)
from .services import community as community_service
from .services import overlays
from .services.access import communities_of
from .services.remote import ModuleUnavailable, RemoteRejected

PAGE = "/portal/communities/<community_id:int>"
MATCH_TYPES = ("contains", "exact", "word", "regex", "*")
RULE_ACTIONS = ("warn", "block", "command", "webhook")
NAV = (
    ("dashboard", "Dashboard", ""),
    ("members", "Members", "/members"),
    ("modules", "Modules", "/modules"),
    ("rules", "String rules", "/rules"),
    ("aliases", "Aliases", "/aliases"),
    ("shoutouts", "Shoutouts", "/shoutouts"),
    ("overlays", "Overlays", "/overlays"),
    ("activity", "Activity", "/activity"),
)


# -- helpers ---------------------------------------------------------------------------------
def _form(fields: list, name: str, **kwargs) -> Form:
    """A py4web Form with CSRF protection tied to the login session."""
    return Form(fields, form_name=name, csrf_session=session, formstyle=formstyle, **kwargs)


def _reject_forged(*forms: Form) -> None:
    """403 for a POST none of the page's forms took (no valid ``_formkey``, or no form)."""
    if request.method == "POST" and not any(f.accepted or f.errors for f in forms):
        raise HTTP(
            403,
            "This form has expired or did not come from the portal; reload the page and try again.",
        )


def _home(community_id: int, suffix: str = "") -> str:
    return f"/portal/communities/{community_id}{suffix}"


def _entities(community_id: int) -> list[dict]:
    return database.read(lambda d: community_service.entities_of(d, community_id))


def _chosen_entity(entities: list[dict]) -> str | None:
    """The ``?entity=`` of the request when it is one of these, else the first."""
    wanted = request.query.get("entity")
    ids = [e["entity_id"] for e in entities]
    if wanted in ids:
        return wanted
    return ids[0] if ids else None


def _page(active: str, title: str, **values) -> dict:
    """What every portal template needs, plus the page's own values."""
    community_id = community_access.community_id
    user = community_access.user
    communities = communities_of(db, auth_user_id=user.id)
    community = next((c for c in communities if c["id"] == community_id), None)
    return dict(
        title=title,
        active=active,
        nav=[(key, label, _home(community_id, suffix)) for key, label, suffix in NAV],
        community=community,
        communities=communities,
        role=community_access.role,
        user_email=user.email,
        **values,
    )


# -- home ------------------------------------------------------------------------------------
@action(HOME_PATH, method=["GET"])
@action.uses("portal_home.html", community_access, flash)
def portal_home():
    """The logged-in user's communities; straight to the dashboard when there is one."""
    communities = communities_of(db, auth_user_id=community_access.user.id)
    if len(communities) == 1:
        redirect(_home(communities[0]["id"]))
    return dict(
        title="Your communities",
        communities=communities,
        user_email=community_access.user.email,
        community=None,
        nav=[],
        active="",
    )


# -- dashboard -------------------------------------------------------------------------------
@action(PAGE, method=["GET"])
@action.uses("dashboard.html", community_access, flash)
def dashboard(community_id):
    """Community stats: members, activity, top commands, reputation leaders."""
    stats = database.read(lambda d: community_service.dashboard(d, community_id))
    return _page("dashboard", "Dashboard", stats=stats)


# -- members ---------------------------------------------------------------------------------
MEMBER_SORTS = ("users.id", "users.display_name", "community_memberships.reputation")


@action(f"{PAGE}/members", method=["GET", "POST"])
@action.uses("members.html", community_access, flash)
def members(community_id):
    """Members with ids, names, identities, roles and reputation; owners change roles."""
    if request.query.get("mode", "select") != "select" or request.query.get("id"):
        raise HTTP(400, "This grid only lists members.")
    if request.query.get("orderby", MEMBER_SORTS[0]).lstrip("~") not in MEMBER_SORTS:
        # py4web's Grid would sort by any column of any table it is given
        raise HTTP(400, "The members can be sorted by id, name or reputation.")
    is_owner = community_access.role == "owner"
    form = None
    if is_owner:
        choices = community_service.member_choices(db, community_id)
        form = _form(
            [
                Field("user_id", "integer", label="Member", requires=IS_IN_SET(choices)),
                Field(
                    "role",
                    label="Role",
                    default="moderator",
                    requires=IS_IN_SET(community_service.ASSIGNABLE_ROLES, zero=None),
                ),
            ],
            "member_role",
            submit_value="Set role",
        )
        if form.accepted:
            community_service.set_role(
                db,
                community_id=community_id,
                user_id=int(form.vars["user_id"]),
                role=form.vars["role"],
                assigned_by=f"portal:{community_access.user.email}",
            )
            db.commit()
            # every router process drops its cached role maps when this counter moves
            store.incr(ROLES_VERSION_KEY)
            flash.set(f"Member #{form.vars['user_id']} is now {form.vars['role']}.")
            redirect(URL())
    if request.method == "POST":
        if not is_owner:
            raise HTTP(403, "Only a community owner can change roles.")
        _reject_forged(form)
    memberships = db.community_memberships
    identities: dict[int, list[str]] = {}
    roles: dict[int, str] = {}
    grid = Grid(
        (memberships.community_id == community_id)
        & (memberships.is_active == True)  # noqa: E712
        & (db.users.id == memberships.user_id),
        columns=[
            Column(
                "User id",
                lambda row: f"#{row.users.id}",
                required_fields=[db.users.id],
                orderby=db.users.id,
            ),
            Column(
                "Display name",
                lambda row: row.users.display_name or "",
                required_fields=[db.users.display_name],
                orderby=db.users.display_name,
            ),
            Column(
                "Platform identities",
                lambda row: CAT(
                    *(SPAN(i, _class="identity") for i in identities.get(row.users.id, []))
                ),
                required_fields=[db.users.id],
            ),
            Column(
                "Role",
                lambda row: SPAN(
                    roles.get(row.users.id, "member"),
                    _class=f"role role-{roles.get(row.users.id, 'member')}",
                ),
                required_fields=[db.users.id],
            ),
            Column(
                "Reputation",
                lambda row: str(row.community_memberships.reputation or 0),
                required_fields=[memberships.reputation],
                orderby=memberships.reputation,
                col_type="integer",
            ),
        ],
        field_id=memberships.id,
        orderby=~memberships.reputation | db.users.id,
        search_queries=[["Name", lambda text: db.users.display_name.contains(text)]],
        create=False,
        details=False,
        editable=False,
        deletable=False,
        rows_per_page=25,
        formstyle=formstyle,
        grid_class_style=GridClassStyle,
    )
    user_ids = [row.users.id for row in grid.rows or []]
    identities.update(community_service.identities_of(db, user_ids))
    roles.update(community_service.roles_of(db, community_id, user_ids))
    return _page("members", "Members", grid=grid, form=form)


# -- modules ---------------------------------------------------------------------------------
@action(f"{PAGE}/modules", method=["GET", "POST"])
@action.uses("modules.html", community_access, flash)
def modules(community_id):
    """Installed modules (core vs marketplace) and their switch in each channel."""
    entities = _entities(community_id)
    entity_ids = [e["entity_id"] for e in entities]
    installed = community_service.modules_overview(db, entity_ids)
    form = _form(
        [
            Field("entity_id", requires=IS_IN_SET(entity_ids)),
            Field("module_name", requires=IS_IN_SET([m["module_name"] for m in installed])),
            Field("state", requires=IS_IN_SET(["on", "off"])),
        ],
        "module_switch",
    )
    if form.accepted:
        enabled = form.vars["state"] == "on"
        community_service.set_module_enabled(
            db,
            entity_id=form.vars["entity_id"],
            module_name=form.vars["module_name"],
            enabled=enabled,
        )
        db.commit()
        # every router process reloads its command catalogue when this counter changes
        store.incr(community_service.ROUTER_CATALOG_VERSION_KEY)
        flash.set(
            f"{form.vars['module_name']} {'enabled' if enabled else 'disabled'} in "
            f"{form.vars['entity_id']}."
        )
        redirect(URL())
    _reject_forged(form)
    return _page("modules", "Modules", modules=installed, entities=entities, form=form)


# -- string rules ----------------------------------------------------------------------------
def _rule_fields(entity_ids: list[str], rule: dict | None = None) -> list:
    rule = rule or {}
    parameters = " ".join(shlex.quote(p) for p in rule.get("command_parameters") or [])
    return [
        Field(
            "string",
            label="Text to match",
            default=rule.get("string"),
            requires=IS_LENGTH(1000),
            comment='What to look for; "*" with the * match type matches every message.',
        ),
        Field(
            "match_type",
            label="Match",
            default=rule.get("match_type", "contains"),
            requires=IS_IN_SET(MATCH_TYPES, zero=None),
        ),
        Field(
            "case_sensitive",
            "boolean",
            label="Case sensitive",
            default=bool(rule.get("case_sensitive")),
        ),
        Field(
            "action",
            label="Action",
            default=rule.get("action", "warn"),
            requires=IS_IN_SET(RULE_ACTIONS, zero=None),
        ),
        Field(
            "warning_message",
            label="Warning message (warn)",
            default=rule.get("warning_message"),
            requires=IS_LENGTH(500),
        ),
        Field(
            "block_message",
            label="Block message (block)",
            default=rule.get("block_message"),
            requires=IS_LENGTH(500),
        ),
        Field(
            "command_to_execute",
            label="Command to run (command), e.g. !so",
            default=rule.get("command_to_execute"),
            requires=IS_LENGTH(80),
        ),
        Field("command_parameters", label="Command arguments", default=parameters),
        Field(
            "webhook_url",
            label="Webhook URL (webhook)",
            default=rule.get("webhook_url"),
            requires=IS_LENGTH(1024),
        ),
        Field(
            "priority",
            "integer",
            label="Priority (lower runs first)",
            default=rule.get("priority", 100),
            requires=IS_INT_IN_RANGE(-1_000_000, 1_000_001),
        ),
        Field(
            "enabled_entity_ids",
            "list:string",
            label="Channels",
            default=rule.get("enabled_entity_ids") or list(entity_ids),
            requires=IS_IN_SET(entity_ids, multiple=True, zero=None),
        ),
    ]


def _rule_values(form: Form) -> dict:
    """The router's string-rule body from an accepted rule form."""
    values = {
        name: (form.vars.get(name) or None)
        for name in (
            "string",
            "match_type",
            "action",
            "warning_message",
            "block_message",
            "command_to_execute",
            "webhook_url",
        )
    }
    if values["match_type"] == "*" and not values["string"]:
        values["string"] = "*"
    values["case_sensitive"] = bool(form.vars.get("case_sensitive"))
    values["priority"] = int(form.vars.get("priority") or 100)
    try:
        values["command_parameters"] = shlex.split(form.vars.get("command_parameters") or "")
    except ValueError:
        values["command_parameters"] = (form.vars.get("command_parameters") or "").split()
    chosen = form.vars.get("enabled_entity_ids") or []
    values["enabled_entity_ids"] = [chosen] if isinstance(chosen, str) else list(chosen)
    return values


def _router_refused(form: Form, exc: RemoteRejected) -> None:
    """Show the router's validation message next to its field (or above the form)."""
    field = exc.field if exc.field in form.table.fields else None
    if field:
        form.errors[field] = exc.message
    else:
        flash.set(f"The router refused the rule: {exc.message}")
        form.errors["_router"] = exc.message
    form.accepted = False


@action(f"{PAGE}/rules", method=["GET", "POST"])
@action.uses("rules.html", community_access, flash)
def rules(community_id):
    """The community's string rules: list, add, deactivate."""
    entities = _entities(community_id)
    entity_ids = [e["entity_id"] for e in entities]
    add = _form(_rule_fields(entity_ids), "rule_add", submit_value="Add rule", keep_values=True)
    deactivate = _form([Field("rule_id", "integer", requires=IS_NOT_EMPTY())], "rule_deactivate")
    unavailable = None
    if add.accepted:
        try:
            created = remote.create_string_rule(_rule_values(add))
        except RemoteRejected as exc:
            _router_refused(add, exc)
        except ModuleUnavailable as exc:
            add.errors["_router"] = str(exc)
            flash.set("The router is not available right now; the rule was not saved.")
        else:
            flash.set(f"String rule #{created.get('id')} added.")
            redirect(URL())
    if deactivate.accepted:
        rule_id = int(deactivate.vars["rule_id"])
        try:
            if remote.string_rule(rule_id, set(entity_ids)) is None:
                raise HTTP(404, "No such string rule in this community.")
            remote.deactivate_string_rule(rule_id)
        except (ModuleUnavailable, RemoteRejected) as exc:
            flash.set(f"String rule #{rule_id} was not deactivated: {exc}")
        else:
            flash.set(f"String rule #{rule_id} deactivated.")
        redirect(URL())
    _reject_forged(add, deactivate)
    try:
        listed = remote.string_rules(set(entity_ids))
    except ModuleUnavailable as exc:
        listed, unavailable = [], str(exc)
    return _page(
        "rules",
        "String rules",
        rules=listed,
        form=add,
        deactivate=deactivate,
        unavailable=unavailable,
        entities=entities,
    )


@action(f"{PAGE}/rules/<rule_id:int>", method=["GET", "POST"])
@action.uses("rule_edit.html", community_access, flash)
def rule_edit(community_id, rule_id):
    """Edit one of the community's string rules (or switch it back on)."""
    entity_ids = [e["entity_id"] for e in _entities(community_id)]
    try:
        rule = remote.string_rule(rule_id, set(entity_ids))
    except ModuleUnavailable:
        rule = None
    if rule is None:
        raise HTTP(404, "No such string rule in this community.")
    fields = _rule_fields(entity_ids, rule)
    fields.append(Field("is_active", "boolean", label="Active", default=bool(rule["is_active"])))
    form = _form(fields, "rule_edit", submit_value="Save rule", keep_values=True)
    if form.accepted:
        values = _rule_values(form)
        values["is_active"] = bool(form.vars.get("is_active"))
        try:
            remote.update_string_rule(rule_id, values)
        except RemoteRejected as exc:
            _router_refused(form, exc)
        except ModuleUnavailable:
            flash.set("The router is not available right now; the rule was not saved.")
            form.errors["_router"] = "router not available"
        else:
            flash.set(f"String rule #{rule_id} saved.")
            redirect(_home(community_id, "/rules"))
    _reject_forged(form)
    return _page("rules", f"String rule #{rule_id}", rule=rule, form=form)


# -- aliases ---------------------------------------------------------------------------------
@action(f"{PAGE}/aliases", method=["GET", "POST"])
@action.uses("aliases.html", community_access, flash)
def aliases(community_id):
    """The community's command aliases, through the alias module's API."""
    add = _form(
        [
            Field(
                "name",
                label="Alias",
                requires=IS_MATCH(r"^!?[A-Za-z0-9_-]{1,64}$", error_message="letters, digits, _ -"),
                comment="e.g. hi, used as !hi",
            ),
            Field(
                "command",
                label="Runs",
                requires=[IS_NOT_EMPTY(), IS_LENGTH(500)],
                comment="e.g. !so {user}",
            ),
        ],
        "alias_add",
        submit_value="Save alias",
        keep_values=True,
    )
    remove = _form([Field("alias_id", "integer", requires=IS_NOT_EMPTY())], "alias_remove")
    _reject_forged(add, remove)
    try:
        listed = remote.aliases(community_id)
        if add.accepted:
            try:
                saved = remote.add_alias(
                    community_id,
                    add.vars["name"],
                    add.vars["command"],
                    created_by=f"portal:{community_access.user.email}",
                )
            except RemoteRejected as exc:
                add.errors["command" if exc.field == "command" else "name"] = exc.message
                add.accepted = False
            else:
                flash.set(f"Alias {saved.get('label') or add.vars['name']} saved.")
                redirect(URL())
        if remove.accepted:
            alias_id = int(remove.vars["alias_id"])
            if alias_id not in {a.get("id") for a in listed}:
                raise HTTP(404, "No such alias in this community.")
            remote.delete_alias(alias_id)
            flash.set("Alias removed.")
            redirect(URL())
        unavailable = None
    except ModuleUnavailable:
        listed, unavailable = [], "The alias module is not available."
        if request.method == "POST":
            flash.set(f"{unavailable} Nothing was changed.")
    return _page(
        "aliases", "Aliases", aliases=listed, form=add, remove=remove, unavailable=unavailable
    )


# -- shoutouts -------------------------------------------------------------------------------
#: events that can trigger an automatic shoutout (the shoutout module's choices)
SHOUTOUT_EVENTS = ("follow", "subscription", "raid")


def _shoutout_form(current: dict) -> Form:
    events = list(dict.fromkeys([*SHOUTOUT_EVENTS, *(current.get("events") or [])]))
    return _form(
        [
            Field(
                "auto_shoutout",
                "boolean",
                label="Give automatic shoutouts",
                default=bool(current.get("auto_shoutout")),
            ),
            Field(
                "events",
                "list:string",
                label="On these events",
                default=list(current.get("events") or []),
                requires=IS_IN_SET(events, multiple=True, zero=None),
            ),
        ],
        "shoutout_settings",
        submit_value="Save settings",
    )


@action(f"{PAGE}/shoutouts", method=["GET", "POST"])
@action.uses("shoutouts.html", community_access, flash)
def shoutouts(community_id):
    """Automatic shoutouts of a channel, through the shoutout module's API."""
    entities = _entities(community_id)
    entity_id = _chosen_entity(entities)
    form = None
    if request.method == "POST":
        form = _shoutout_form({})
        _reject_forged(form)
    current: dict = {}
    unavailable = None
    try:
        if form is not None and form.accepted and entity_id:
            chosen = form.vars.get("events") or []
            try:
                remote.save_shoutout_settings(
                    entity_id,
                    {
                        "auto_shoutout": bool(form.vars.get("auto_shoutout")),
                        "events": [chosen] if isinstance(chosen, str) else list(chosen),
                        "updated_by": f"portal:{community_access.user.email}",
                    },
                )
            except RemoteRejected as exc:
                form.errors["events" if exc.field == "events" else "auto_shoutout"] = exc.message
                form.accepted = False
            else:
                flash.set(f"Shoutout settings of {entity_id} saved.")
                redirect(URL(vars={"entity": entity_id}))
        current = remote.shoutout_settings(entity_id) if entity_id else {}
        if form is None or not form.errors:
            form = _shoutout_form(current)
    except ModuleUnavailable:
        unavailable, form = "The shoutout module is not available.", None
        if request.method == "POST":
            flash.set(f"{unavailable} Nothing was changed.")
    return _page(
        "shoutouts",
        "Shoutouts",
        entities=entities,
        entity_id=entity_id,
        form=form,
        settings_values=current,
        unavailable=unavailable,
    )


# -- overlays --------------------------------------------------------------------------------
@action(f"{PAGE}/overlays", method=["GET", "POST"])
@action.uses("overlays.html", community_access, flash)
def overlays_page(community_id):
    """Each channel's OBS overlay URL, key rotation and a test alert."""
    entities = _entities(community_id)
    entity_ids = [e["entity_id"] for e in entities]
    rotate = _form([Field("entity_id", requires=IS_IN_SET(entity_ids))], "overlay_rotate")
    test = _form(
        [
            Field("entity_id", requires=IS_IN_SET(entity_ids)),
            Field("kind", requires=IS_IN_SET(["media", "ticker"])),
        ],
        "overlay_test",
    )
    if rotate.accepted:
        old, _ = overlays.rotate_key(db, rotate.vars["entity_id"])
        db.commit()
        overlays.announce_rotation(store, rotate.vars["entity_id"], old)
        flash.set(
            f"New overlay URL for {rotate.vars['entity_id']}: update the OBS browser source; "
            "the old URL no longer works."
        )
        redirect(URL())
    if test.accepted:
        event = overlays.test_event(
            test.vars["kind"],
            entity_id=test.vars["entity_id"],
            image_url=f"{settings.public_base_url}/portal_module/static/test-alert.svg",
        )
        receivers = overlays.publish_test_event(store, event)
        flash.set(
            f"Test {test.vars['kind']} alert sent to {receivers} open overlay"
            f"{'' if receivers == 1 else 's'} of {test.vars['entity_id']}."
        )
        redirect(URL())
    _reject_forged(rotate, test)
    listed = []
    for entity in entities:
        key = overlays.key_for_entity(db, entity["entity_id"])
        url = overlays.overlay_url(settings.public_base_url, key)
        listed.append({**entity, "url": url})
    return _page("overlays", "Overlays", overlays=listed, rotate=rotate, test=test)


# -- activity --------------------------------------------------------------------------------
@action(f"{PAGE}/activity", method=["GET"])
@action.uses("activity.html", community_access, flash)
def activity(community_id):
    """Recent module responses (router) and command executions of a channel."""
    entities = _entities(community_id)
    entity_id = _chosen_entity(entities)
    unavailable = None
    try:
        responses = remote.recent_responses(entity_id, per_page=50) if entity_id else []
    except ModuleUnavailable:
        responses, unavailable = [], "The router is not available right now."
    executions = database.read(
        lambda d: community_service.recent_executions(d, [entity_id] if entity_id else [])
    )
    return _page(
        "activity",
        "Activity",
        entities=entities,
        entity_id=entity_id,
        responses=responses,
        executions=executions,
        unavailable=unavailable,
    )
