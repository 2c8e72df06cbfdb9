"""The portal and its OBS overlay in a real browser, from chat to the stream.

A community owner creates a portal login from chat, the new admin reads the mailed
temporary password, logs in, is made to choose a password, sees the members with
their reputation, adds a string rule that then warns in chat, and watches the
channel's overlay show a media alert and a ticker live, also after the portal
restarts. Screenshots at desktop and phone width are saved in ``test-artifacts/``.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

DEMO_ENTITY = "console:demo:demo"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
OBS = {"width": 1920, "height": 1080}

ADMIN = "admin@example.org"
NEW_PASSWORD = "Penguins-Waddle-2026!"


def _shoot(page, artifacts, name: str) -> None:
    """Screenshots of the current page at desktop and phone width."""
    for label, size in (("1280", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(artifacts / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


@pytest.fixture(scope="module")
def first_login(portal, browser, artifacts):
    """The chat → mail → login → forced password change flow; returns what it saw."""
    seen = {}
    portal.chat(f"!community portal login add {ADMIN}", roles=["broadcaster"])
    seen["reply"] = portal.wait_reply(lambda line: ADMIN in line)
    seen["password"] = portal.temporary_password(ADMIN)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(portal.url + "/portal")
    seen["login_url"] = page.url
    _shoot(page, artifacts, "portal-login")
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", seen["password"])
    page.click("input[type=submit]")
    page.wait_for_load_state()
    seen["after_login_url"] = page.url
    # the portal itself keeps sending a temporary password back to the change page
    page.goto(portal.url + "/portal/communities/1/members")
    seen["forced_url"] = page.url
    _shoot(page, artifacts, "portal-change-password")
    page.fill("input[name=old_password]", seen["password"])
    page.fill("input[name=new_password]", NEW_PASSWORD)
    page.fill("input[name=new_password_again]", NEW_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    seen["after_change_url"] = page.url
    yield page, seen
    context.close()


def test_login_from_chat_forces_a_password_change(first_login):
    page, seen = first_login
    assert seen["reply"] == (
        f"Portal login for {ADMIN} created; the temporary password was mailed."
    )
    assert len(seen["password"]) >= 20
    assert "/portal_module/auth/login" in seen["login_url"]
    assert "/portal_module/auth/change_password" in seen["after_login_url"]
    assert "/portal_module/auth/change_password" in seen["forced_url"]
    # back where the change was asked for: the members page
    assert seen["after_change_url"].endswith("/portal/communities/1/members")


def test_members_grid_shows_identities_roles_and_reputation(portal, first_login, artifacts):
    page, _ = first_login
    answer = portal.fleet.post(
        "/api/reputation",
        {"entity_id": DEMO_ENTITY, "user_id": "bob", "activity_type": "raid"},
    )
    assert answer.status_code == 200, answer.text
    page.goto(portal.url + "/portal/communities/1/members")
    rows = page.locator("table.grid-table tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    bob = next(t for t in texts if "bob" in t)
    alice = next(t for t in texts if "alice" in t)
    assert "console:bob" in bob and "member" in bob and "30" in bob
    assert "console:alice" in alice and "twitch:alice" in alice and "owner" in alice
    _shoot(page, artifacts, "portal-members")
    page.goto(portal.url + "/portal/communities/1")
    assert page.locator("#stat-members").inner_text() == "2"
    assert "bob" in page.locator("#leaders").inner_text()
    _shoot(page, artifacts, "portal-dashboard")


def test_string_rule_added_in_the_portal_warns_in_chat(portal, first_login, artifacts):
    page, _ = first_login
    page.goto(portal.url + "/portal/communities/1/rules")
    form = page.locator("#add-rule form")
    form.locator("input[name=string]").fill("grumpy penguin")
    form.locator("select[name=match_type]").select_option("contains")
    form.locator("select[name=action]").select_option("warn")
    form.locator("input[name=warning_message]").fill("Please keep the chat friendly!")
    form.locator("input[type=submit]").click()
    page.wait_for_load_state()
    assert "added" in page.locator(".flash").inner_text()
    assert "grumpy penguin" in page.locator("#rules").inner_text()
    _shoot(page, artifacts, "portal-rules")

    answer = portal.chat("what a GRUMPY PENGUIN today", user="carol")
    assert answer["matched"]["string_rule"]["action"] == "warn", answer
    assert portal.wait_reply(lambda line: line == "Please keep the chat friendly!")


def test_overlays_page_gives_a_copyable_url(portal, first_login, artifacts):
    page, _ = first_login
    page.goto(portal.url + "/portal/communities/1/overlays")
    section = page.locator(f"section.overlay[data-entity='{DEMO_ENTITY}']")
    url = section.locator("input.overlay-url").input_value()
    api = portal.fleet.get("/api/portal/overlays", params={"entity_id": DEMO_ENTITY}).json()
    assert url == api["url"] and url.startswith(portal.url + "/overlay/")
    _shoot(page, artifacts, "portal-overlays")


def _overlay_page(portal, browser):
    url = portal.fleet.get("/api/portal/overlays", params={"entity_id": DEMO_ENTITY}).json()["url"]
    context = browser.new_context(viewport=OBS)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-connected=true]", timeout=5000)
    return context, page


def test_overlay_shows_media_and_ticker_live_and_after_a_restart(portal, browser, artifacts):
    context, page = _overlay_page(portal, browser)
    try:
        started = time.monotonic()
        portal.chat("!clip", user="dave")
        page.wait_for_selector("#media .media-item img", timeout=1000)
        assert time.monotonic() - started < 1.0
        assert "Check out the clip!" in page.locator("#media .media-caption").inner_text()
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=str(artifacts / "overlay-media-1280.png"))
        page.set_viewport_size(OBS)
        page.wait_for_selector("#media .media-item", state="detached", timeout=4000)

        portal.chat("!news", user="dave")
        ticker = page.wait_for_selector("#ticker .ticker-item", timeout=1000)
        shown_at = time.monotonic()
        assert "penguins waddle" in ticker.inner_text()
        first = page.evaluate("getComputedStyle(document.querySelector('.ticker-text')).transform")
        time.sleep(0.4)
        later = page.evaluate("getComputedStyle(document.querySelector('.ticker-text')).transform")
        assert first != later, "the ticker text does not scroll"
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(artifacts / "overlay-ticker-phone.png"))
        page.set_viewport_size(OBS)
        page.wait_for_selector("#ticker .ticker-item", state="detached", timeout=4000)
        assert 1.5 < time.monotonic() - shown_at < 3.5

        portal.chat("!poll", user="dave")
        form = page.wait_for_selector("#form-layer form.overlay-form", timeout=1000)
        assert "Pick the next game" in form.inner_text()
        kinds = {
            "text": "input[name=nick][type=text][required]",
            "textarea": "textarea[name=story]",
            "select": "select[name=game]:not([multiple])",
            "multiselect": "select[name=extras][multiple]",
            "radio": "input[name=team][type=radio]",
            "checkbox": "input[name=agree][type=checkbox]",
            "number": "input[name=hours][type=number]",
            "email": "input[name=mail][type=email]",
            "url": "input[name=site][type=url]",
            "date": "input[name=day][type=date]",
            "time": "input[name=at][type=time]",
        }
        for kind, selector in kinds.items():
            assert form.query_selector(selector), f"no {kind} field"
        assert len(form.query_selector_all("input[name=team]")) == 3
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=str(artifacts / "overlay-form-1280.png"))
        page.set_viewport_size(OBS)
        form.query_selector("button.secondary").click()
        page.wait_for_selector("#form-layer form", state="detached", timeout=2000)

        page.evaluate("window.__notReloaded = true")
        portal.fleet.restart()
        page.wait_for_selector("body[data-connected=true]", timeout=10000)
        portal.chat("!clip", user="erin")
        page.wait_for_selector("#media .media-item img", timeout=3000)
        assert page.evaluate("window.__notReloaded === true")
    finally:
        context.close()


PAGES = ("", "/members", "/modules", "/rules", "/aliases", "/shoutouts", "/overlays", "/activity")


def test_every_page_fits_a_phone_screen(portal, first_login, artifacts):
    page, _ = first_login
    for path in PAGES:
        page.goto(f"{portal.url}/portal/communities/1{path}")
        name = "portal-" + (path.strip("/") or "dashboard")
        _shoot(page, artifacts, name)
        page.set_viewport_size(PHONE)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        page.set_viewport_size(DESKTOP)
        assert overflow <= 0, f"{path or '/'} is {overflow}px wider than a phone screen"
