"""The words of a shoutout: target names, the default and custom messages, links.

A community can give a user a custom message (with ``{name}``, ``{login}``,
``{game}`` and ``{url}`` filled in) and links that follow it; otherwise the default
names the user, their channel and the game they last played. Pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: Twitch logins: letters, digits and underscores (4-25 for new accounts, older ones shorter)
TWITCH_LOGIN = re.compile(r"[A-Za-z0-9_]{1,25}")
#: per-user settings limits
MAX_CUSTOM_MESSAGE = 400
MAX_LINKS = 5
MAX_LINK = 300
MAX_NAME = 64
PLACEHOLDER = re.compile(r"\{(name|login|game|url)\}")
#: what an automatic shoutout says first, per event
GREETINGS = {
    "follow": "Thanks for the follow, {name}!",
    "subscription": "Thanks for subscribing, {name}!",
    "raid": "Thanks for the raid, {name}!",
}


def shorten(text: str, limit: int = 30) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for chat replies."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def target_name(raw: str | None) -> str:
    """``@Bob,`` → ``Bob``: the name a moderator typed, without the mention sign."""
    return (raw or "").strip().lstrip("@").rstrip(",.!?:;").strip()


def is_twitch_login(name: str) -> bool:
    """Whether ``name`` can be a Twitch login."""
    return bool(TWITCH_LOGIN.fullmatch(name or ""))


def settings_key(name: str) -> str:
    """The key per-user settings are stored under (case-insensitive)."""
    return target_name(name).lower()


def channel_url(login: str) -> str:
    """The Twitch channel of a login."""
    return f"https://twitch.tv/{login.lower()}"


def default_message(display_name: str, login: str | None, game: str | None) -> str:
    """``Go check out Bob at https://twitch.tv/bob — they were last playing Celeste!``."""
    where = f" at {channel_url(login)}" if login else ""
    if game:
        return f"Go check out {display_name}{where} — they were last playing {game}!"
    return f"Go check out {display_name}{where}!"


def render_custom(template: str, values: Mapping[str, str]) -> str:
    """A custom message with its ``{name}``/``{login}``/``{game}``/``{url}`` filled in."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or "", template).strip()


def shout_text(
    *,
    display_name: str,
    login: str | None,
    game: str | None,
    custom_message: str | None = None,
    links: Iterable[str] = (),
    greeting: str | None = None,
) -> str:
    """The whole chat line: greeting, custom or default message, then the links."""
    if custom_message:
        body = render_custom(
            custom_message,
            {
                "name": display_name,
                "login": login or display_name,
                "game": game or "",
                "url": channel_url(login) if login else "",
            },
        )
    else:
        body = default_message(display_name, login, game)
    parts = [greeting, body, " ".join(links)]
    return " ".join(p for p in parts if p)


def greeting(message_type: str, display_name: str, metadata: Mapping | None = None) -> str | None:
    """What an automatic shoutout says first (``Thanks for the raid, Bob (42 viewers)!``)."""
    text = GREETINGS.get(message_type)
    if text is None:
        return None
    viewers = (metadata or {}).get("viewers")
    if message_type == "raid" and isinstance(viewers, int) and not isinstance(viewers, bool):
        return f"Thanks for the raid, {display_name} ({viewers} viewers)!"
    return text.format(name=display_name)


def validate_links(links) -> list[str]:
    """Links of a per-user setting: at most 5 http(s) URLs; ValueError explains a bad one."""
    if links is None:
        return []
    if not isinstance(links, list) or len(links) > MAX_LINKS:
        raise ValueError(f"links must be a list of at most {MAX_LINKS} URLs")
    for link in links:
        if not isinstance(link, str) or not link.startswith(("http://", "https://")):
            raise ValueError("each link must be an http(s) URL")
        if len(link) > MAX_LINK or any(c.isspace() for c in link):
            raise ValueError(f"each link must be one URL of at most {MAX_LINK} characters")
    return list(links)
