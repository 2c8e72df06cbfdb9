"""The portal's security: logins, CSRF, community isolation and overlay keys.

The router and the portal run as ``waddlebot up`` (embedded default). Two communities
each get a portal login from chat (the demo community through its owner alice, a
second one through its owner zoe); the two admins then try what they must not do.
"""

from __future__ import annotations

import base64
import email
import re
import time
from html.parser import HTMLParser

import pytest
import requests

from waddlebot.testkit import FleetProcess, StubServer, chat_event

pytestmark = pytest.mark.e2e

DEMO = "console:demo:demo"
OTHER = "console:other:other"
PASSWORD = "Emperor-Penguins-Huddle-77"


class _Forms(HTMLParser):
    """Every <form> of a page with what a browser would send by default."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "inputs": {}})
        elif not self.forms:
            return
        elif tag == "input" and attrs.get("name") and attrs.get("type") != "submit":
            if attrs.get("type") == "checkbox" and "checked" not in attrs:
                return
            self.forms[-1]["inputs"].setdefault(attrs["name"], attrs.get("value") or "")
        elif tag == "select":
            self._select = attrs.get("name")
        elif tag == "option" and self._select:
            inputs = self.forms[-1]["inputs"]
            if "selected" in attrs or self._select not in inputs:
                inputs[self._select] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def forms(html: str, name: str) -> list[dict]:
    """The inputs of each form named ``name`` (its ``_formname``) on a page."""
    parser = _Forms()
    parser.feed(html)
    return [f["inputs"] for f in parser.forms if f["inputs"].get("_formname") == name]


class Visitor:
    """A browser-like session (cookies, no automatic redirects unless asked)."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, data: dict, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.post(self.url + path, data=data, timeout=30, **kwargs)

    def submit(self, path: str, name: str, values: dict, *, index: int = 0) -> requests.Response:
        """Load ``path``, fill form ``name`` (with its CSRF key) and post it."""
        page = self.get(path, allow_redirects=True)
        assert page.status_code == 200, (path, page.status_code)
        found = forms(page.text, name)
        assert found, f"no form {name} on {path}"
        return self.post(path, {**found[index], **values})

    def log_in(self, email: str, password: str) -> None:
        """Log in; a temporary password is then changed to PASSWORD."""
        answer = self.submit(
            "/portal_module/auth/login", "no_table", {"email": email, "password": password}
        )
        assert answer.status_code == 303, answer.text[:500]
        if password == PASSWORD:
            return
        answer = self.submit(
            "/portal_module/auth/change_password",
            "no_table",
            {"old_password": password, "new_password": PASSWORD, "new_password_again": PASSWORD},
        )
        assert answer.status_code == 303, answer.text[:1000]


def _temporary_password(fleet: FleetProcess, address: str) -> str:
    for path in sorted((fleet.data_dir / "mail").glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == address:
            body = message.get_payload(decode=True).decode()
            return re.search(r"Temporary password: (\S+)", body).group(1)
    raise AssertionError(f"no mail to {address}")


def _wait(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = FleetProcess(
        ["router_module", "portal_module"], data_dir=tmp_path_factory.mktemp("portal-security")
    )
    collector = StubServer()
    collector.route("POST", r"/api/console/responses", {"ok": True})
    fleet.start()
    try:
        fleet.register("console-security", collector.url, collector_for="console")
        _wait(
            lambda: fleet.get("/api/router/commands", params={"module": "portal"}).json()["items"],
            what="the portal's !community command",
        )
        fleet.collector = collector
        yield fleet
    finally:
        fleet.stop()
        collector.close()


@pytest.fixture(scope="module")
def admins(fleet):
    """Two logged-in admins: ``a`` of the demo community, ``b`` of another community."""

    def grant(channel: str, owner: str, address: str) -> None:
        event = chat_event(
            f"!community portal login add {address}",
            channel=channel,
            user=owner,
            roles=["broadcaster"],
            owner=owner,
        )
        assert fleet.post("/api/router/events", event).status_code == 200
        _wait(
            lambda: any(
                address in (r.json or {}).get("chat_message", "")
                for r in fleet.collector.received("POST")
            ),
            what=f"the reply for {address}",
        )

    grant("demo", "alice", "a@example.org")
    grant("other", "zoe", "b@example.org")
    a, b = Visitor(fleet.url), Visitor(fleet.url)
    a.log_in("a@example.org", _temporary_password(fleet, "a@example.org"))
    b.log_in("b@example.org", _temporary_password(fleet, "b@example.org"))
    communities = {}
    for visitor in (a, b):
        home = visitor.get("/portal")
        assert home.status_code == 303
        communities[visitor] = int(
            re.search(r"/portal/communities/(\d+)", home.headers["Location"])[1]
        )
    a.community, b.community = communities[a], communities[b]
    assert a.community != b.community
    return a, b


PAGES = ("", "/members", "/modules", "/rules", "/aliases", "/shoutouts", "/overlays", "/activity")
#: pages with forms (the others answer only GET)
FORM_PAGES = ("/members", "/modules", "/rules", "/aliases", "/shoutouts", "/overlays")


# -- logins ----------------------------------------------------------------------------------
def test_portal_pages_need_a_login(fleet):
    visitor = Visitor(fleet.url)
    home = visitor.get("/portal")
    assert home.status_code == 303
    assert home.headers["Location"].startswith("/portal_module/auth/login?next=/portal")
    for page in PAGES:
        answers = [visitor.get(f"/portal/communities/1{page}")]
        if page in FORM_PAGES:
            answers.append(
                visitor.post(f"/portal/communities/1{page}", {"entity_id": DEMO, "state": "off"})
            )
        for answer in answers:
            assert answer.status_code == 303, (page, answer.status_code)
            assert answer.headers["Location"].startswith("/portal_module/auth/login?next=")
    assert visitor.get("/portal_module/auth/login").status_code == 200


def test_registration_is_closed_and_a_wrong_password_is_refused(fleet, admins):
    visitor = Visitor(fleet.url)
    assert visitor.get("/portal_module/auth/register").status_code == 404
    answer = visitor.submit(
        "/portal_module/auth/login", "no_table", {"email": "a@example.org", "password": "nope"}
    )
    assert answer.status_code == 200 and "Invalid Credentials" in answer.text
    assert visitor.get("/portal").status_code == 303


def test_a_temporary_password_must_be_changed_first(fleet):
    event = chat_event(
        "!community portal login add c@example.org", channel="demo", roles=["broadcaster"]
    )
    assert fleet.post("/api/router/events", event).status_code == 200
    password = _wait(
        lambda: (
            (fleet.data_dir / "mail").exists()
            and any("c@example.org" in p.read_text() for p in (fleet.data_dir / "mail").glob("*"))
            and _temporary_password(fleet, "c@example.org")
        ),
        what="the mail to c@example.org",
    )
    visitor = Visitor(fleet.url)
    answer = visitor.submit(
        "/portal_module/auth/login", "no_table", {"email": "c@example.org", "password": password}
    )
    assert answer.status_code == 303
    for page in ("/portal", "/portal/communities/1", "/portal/communities/1/rules"):
        answer = visitor.get(page)
        assert answer.status_code == 303, page
        assert answer.headers["Location"] == "/portal_module/auth/change_password", page


# -- CSRF ------------------------------------------------------------------------------------
def _rules(fleet) -> list[dict]:
    answer = fleet.get("/api/router/string-rules", params={"include_inactive": "true"})
    return answer.json()["items"]


def test_a_form_post_without_its_csrf_key_is_rejected(fleet, admins):
    a, _ = admins
    page = f"/portal/communities/{a.community}/rules"
    fields = {
        "string": "csrf-probe",
        "match_type": "contains",
        "action": "warn",
        "warning_message": "x",
        "priority": "100",
        "enabled_entity_ids": DEMO,
        "_formname": "rule_add",
    }
    for forged in ({}, {"_formkey": "not-a-key"}, {"_formkey": base64.b64encode(b"x").decode()}):
        answer = a.post(page, {**fields, **forged})
        assert answer.status_code == 403, (forged, answer.status_code)
    # another session's key is no good either
    other = Visitor(fleet.url)
    stolen = forms(other.get("/portal_module/auth/login").text, "no_table")[0]["_formkey"]
    assert a.post(page, {**fields, "_formkey": stolen}).status_code == 403
    assert not [r for r in _rules(fleet) if r["string"] == "csrf-probe"]
    # the same form with the key the page gave works
    answer = a.submit(page, "rule_add", {k: v for k, v in fields.items() if k != "_formname"})
    assert answer.status_code == 303
    assert [r for r in _rules(fleet) if r["string"] == "csrf-probe"]


def test_py4web_auth_forms_need_their_csrf_key_too(fleet, admins):
    a, _ = admins
    answer = a.post(
        "/portal_module/auth/change_password",
        {
            "old_password": PASSWORD,
            "new_password": "Changed-Without-A-Key-99",
            "new_password_again": "Changed-Without-A-Key-99",
            "_formname": "no_table",
        },
    )
    assert answer.status_code == 200  # the form is shown again, nothing changed
    Visitor(fleet.url).log_in("a@example.org", PASSWORD)


# -- isolation between communities -----------------------------------------------------------
def test_an_admin_cannot_open_another_communitys_pages(admins):
    a, b = admins
    for page in PAGES:
        assert a.get(f"/portal/communities/{b.community}{page}").status_code == 403, page
        assert b.get(f"/portal/communities/{a.community}{page}").status_code == 403, page
    for page in FORM_PAGES:
        answer = a.post(f"/portal/communities/{b.community}{page}", {"_formname": "x"})
        assert answer.status_code == 403, page
    assert a.get(f"/portal/communities/{a.community}").status_code == 200
    assert a.get("/portal/communities/999999").status_code == 403


def test_an_admin_cannot_change_another_communitys_data(fleet, admins):
    a, b = admins
    # b adds a rule for its own channel
    answer = b.submit(
        f"/portal/communities/{b.community}/rules",
        "rule_add",
        {"string": "b-only", "action": "warn", "enabled_entity_ids": OTHER},
    )
    assert answer.status_code == 303
    rule = next(r for r in _rules(fleet) if r["string"] == "b-only")
    assert rule["enabled_entity_ids"] == [OTHER]
    # a neither sees it nor can edit or deactivate it through its own community
    rules_page = a.get(f"/portal/communities/{a.community}/rules").text
    assert "b-only" not in rules_page
    assert a.get(f"/portal/communities/{a.community}/rules/{rule['id']}").status_code == 404
    answer = a.submit(
        f"/portal/communities/{a.community}/rules", "rule_deactivate", {"rule_id": rule["id"]}
    )
    assert answer.status_code == 404
    # a cannot put its rules on b's channel, switch b's modules or rotate b's overlay key
    answer = a.submit(
        f"/portal/communities/{a.community}/rules",
        "rule_add",
        {"string": "a-on-b", "action": "warn", "enabled_entity_ids": OTHER},
    )
    assert answer.status_code == 200 and not [r for r in _rules(fleet) if r["string"] == "a-on-b"]
    answer = a.submit(
        f"/portal/communities/{a.community}/modules",
        "module_switch",
        {"entity_id": OTHER, "module_name": "portal", "state": "off"},
    )
    assert answer.status_code == 200
    key = fleet.get("/api/portal/overlays", params={"entity_id": OTHER}).json()["overlay_key"]
    answer = a.submit(
        f"/portal/communities/{a.community}/overlays", "overlay_rotate", {"entity_id": OTHER}
    )
    assert answer.status_code == 200
    assert (
        fleet.get("/api/portal/overlays", params={"entity_id": OTHER}).json()["overlay_key"] == key
    )
    assert all(r["enabled_entity_ids"] == [OTHER] for r in _rules(fleet) if r["string"] == "b-only")
    modules = b.get(f"/portal/communities/{b.community}/modules").text
    assert 'value="off"' in modules  # b's portal module is still on (its switch offers "off")
    # and a's member list holds no member of b's community
    members = a.get(f"/portal/communities/{a.community}/members").text
    assert "zoe" not in members and "alice" in members


def test_an_owner_cannot_be_removed_by_an_admin_and_revoked_access_ends(fleet, admins):
    a, _ = admins
    event = chat_event(
        "!community portal login remove a@example.org", channel="demo", roles=["broadcaster"]
    )
    assert fleet.post("/api/router/events", event).status_code == 200
    _wait(
        lambda: any(
            "Portal access of a@example.org" in (r.json or {}).get("chat_message", "")
            for r in fleet.collector.received("POST")
        ),
        what="the removal reply",
    )
    assert a.get(f"/portal/communities/{a.community}").status_code == 403
    event = chat_event(
        "!community portal login add a@example.org", channel="demo", roles=["broadcaster"]
    )
    assert fleet.post("/api/router/events", event).status_code == 200
    _wait(
        lambda: a.get(f"/portal/communities/{a.community}").status_code == 200,
        what="access granted again",
    )


# -- overlay keys ----------------------------------------------------------------------------
def test_overlay_keys_are_long_random_and_one_per_entity(fleet, admins):
    first = fleet.get("/api/portal/overlays", params={"entity_id": DEMO}).json()
    again = fleet.get("/api/portal/overlays", params={"entity_id": DEMO}).json()
    other = fleet.get("/api/portal/overlays", params={"entity_id": OTHER}).json()
    assert first == again
    assert first["url"] == f"{fleet.url}/overlay/{first['overlay_key']}"
    for key in (first["overlay_key"], other["overlay_key"]):
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        assert len(raw) * 8 >= 128
    assert first["overlay_key"] != other["overlay_key"]
    assert (
        requests.get(fleet.url + "/api/portal/overlays", params={"entity_id": DEMO}).status_code
        == 401
    )
    assert (
        fleet.get("/api/portal/overlays", params={"entity_id": "console:nope:nope"}).status_code
        == 404
    )


def test_a_wrong_overlay_key_is_a_plain_404(fleet, admins):
    key = fleet.get("/api/portal/overlays", params={"entity_id": DEMO}).json()["overlay_key"]
    assert requests.get(f"{fleet.url}/overlay/{key}", timeout=10).status_code == 200
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    for wrong in (
        flipped,
        key[:-4],
        "x" * len(key),
        "nope",
        key.upper() if key != key.upper() else "q" * 32,
    ):
        for path in (f"/overlay/{wrong}", f"/overlay/{wrong}/events"):
            answer = requests.get(fleet.url + path, timeout=10)
            assert answer.status_code == 404, path
            assert answer.text == "Not found", answer.text
    rotated = fleet.post("/api/portal/overlays/rotate", {"entity_id": DEMO}).json()
    assert rotated["overlay_key"] != key
    assert requests.get(f"{fleet.url}/overlay/{key}", timeout=10).status_code == 404
    assert requests.get(rotated["url"], timeout=10).status_code == 200


def test_pages_of_modules_that_are_not_deployed_say_so(admins):
    # this fleet runs no alias or shoutout module: their pages explain, nothing breaks
    a, _ = admins
    for page, module in (("/aliases", "alias"), ("/shoutouts", "shoutout")):
        answer = a.get(f"/portal/communities/{a.community}{page}")
        assert answer.status_code == 200
        assert f"The {module} module is not available." in answer.text


def test_the_members_grid_only_lists_and_sorts_members(admins):
    a, _ = admins
    page = f"/portal/communities/{a.community}/members"
    assert a.get(f"{page}?orderby=~community_memberships.reputation").status_code == 200
    for query in (
        "orderby=auth_user.password",
        "orderby=~auth_user.email",
        "mode=edit&id=1",
        "mode=delete&id=1",
        "mode=details&id=1",
        "id=1",
    ):
        assert a.get(f"{page}?{query}").status_code == 400, query
