"""Shoutouts: ``!so`` in chat, automatic ones on follow/subscription/raid, and their data.

A shoutout answers with a chat line (custom per-user message and links, or the
default naming the user and their last game) and, where Twitch can be asked, a media
response for the OBS overlay: a random recent clip (featured first) or else the
user's profile card. On a live Twitch channel it also sends Twitch's own ``/shoutout``
within Twitch's cooldowns. On Discord and Slack, or without Twitch credentials, the
chat line alone goes out (and, without credentials, a note saying which variable is
missing). Every shoutout is recorded in ``shoutout_history``.
"""

from __future__ import annotations

import logging
import random

from waddlebot.db import Database, utcnow
from waddlebot.modules import CommandCall

from .cooldowns import Cooldowns
from .messages import (
    MAX_NAME,
    greeting,
    is_twitch_login,
    settings_key,
    shorten,
    shout_text,
    target_name,
)
from .twitch import Clip, TwitchError, TwitchGateway, TwitchUser, pick_clip

log = logging.getLogger("waddlebot.shoutout")

#: platforms whose users are looked up on Twitch (console is the local stand-in for Twitch)
TWITCH_PLATFORMS = ("twitch", "console")
AUTO_EVENTS = ("follow", "subscription", "raid")


def chat(text: str, **data) -> dict:
    """A chat response for the router."""
    answer = {"response_action": "chat", "chat_message": text}
    if data:
        answer["response_data"] = data
    return answer


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


class ShoutoutService:
    """Gives shoutouts and keeps their settings and history."""

    def __init__(
        self,
        *,
        database: Database,
        cooldowns: Cooldowns,
        twitch: TwitchGateway | None,
        missing_credentials: str | None,
        auto_cooldown: float,
        rng: random.Random | None = None,
    ):
        self.database = database
        self.cooldowns = cooldowns
        self.twitch = twitch
        self.missing_credentials = missing_credentials
        self.auto_cooldown = auto_cooldown
        self.rng = rng or random.Random()

    @property
    def db(self):
        """The primary connection."""
        return self.database.primary

    # -- settings of an entity -------------------------------------------------------------
    def entity_exists(self, entity_id: str) -> bool:
        """Whether the router knows this entity."""
        return not self.db(self.db.entities.entity_id == entity_id).isempty()

    def entity_settings(self, entity_id: str) -> dict:
        """Automatic shoutouts of a channel: off by default, for every event when on."""
        row = self.db(self.db.shoutout_settings.entity_id == entity_id).select().first()
        return {
            "entity_id": entity_id,
            "auto_shoutout": bool(row.auto_shoutout) if row else False,
            "events": list(row.events if row and row.events is not None else AUTO_EVENTS),
            "updated_by": row.updated_by if row else None,
            "updated_at": _iso(row.updated_at) if row else None,
        }

    def save_entity_settings(
        self,
        entity_id: str,
        *,
        auto_shoutout: bool | None,
        events: list[str] | None,
        updated_by: str | None,
    ) -> dict:
        """Change what is given (None keeps the current value)."""
        table = self.db.shoutout_settings
        current = self.entity_settings(entity_id)
        values = {
            "auto_shoutout": current["auto_shoutout"] if auto_shoutout is None else auto_shoutout,
            "events": current["events"] if events is None else events,
            "updated_by": updated_by,
        }
        if not self.db(table.entity_id == entity_id).update(**values, updated_at=utcnow()):
            table.insert(entity_id=entity_id, **values)
        return self.entity_settings(entity_id)

    # -- settings per user -----------------------------------------------------------------
    @staticmethod
    def _user_view(row) -> dict:
        return {
            "entity_id": row.entity_id,
            "username": row.username,
            "custom_message": row.custom_message,
            "links": list(row.links or []),
            "auto_shoutout": bool(row.auto_shoutout),
            "updated_by": row.updated_by,
            "created_at": _iso(row.created_at),
            "updated_at": _iso(row.updated_at),
        }

    def _user_row(self, entity_id: str, name: str):
        table = self.db.shoutout_users
        query = (table.entity_id == entity_id) & (table.username == settings_key(name))
        return self.db(query).select().first()

    def user_settings(self, entity_id: str, name: str) -> dict | None:
        """A user's custom message, links and automatic-shoutout switch, if set."""
        row = self._user_row(entity_id, name)
        return self._user_view(row) if row else None

    def list_user_settings(self, entity_id: str, *, page: int, per_page: int) -> tuple[int, list]:
        """(total, one page) of the users with settings in a channel."""
        table = self.db.shoutout_users
        query = table.entity_id == entity_id
        rows = self.db(query).select(
            orderby=table.username, limitby=((page - 1) * per_page, page * per_page)
        )
        return self.db(query).count(), [self._user_view(r) for r in rows]

    def save_user_settings(self, entity_id: str, name: str, values: dict) -> tuple[dict, bool]:
        """Create or change a user's settings; returns (settings, created)."""
        row = self._user_row(entity_id, name)
        if row is None:
            self.db.shoutout_users.insert(
                entity_id=entity_id, username=settings_key(name), **values
            )
            return self.user_settings(entity_id, name), True
        row.update_record(**values, updated_at=utcnow())
        return self.user_settings(entity_id, name), False

    def delete_user_settings(self, entity_id: str, name: str) -> bool:
        """Forget a user's settings; False when there were none."""
        row = self._user_row(entity_id, name)
        if row is None:
            return False
        row.delete_record()
        return True

    # -- history -----------------------------------------------------------------------------
    def history(
        self, entity_id: str, *, page: int, per_page: int, target: str | None = None
    ) -> dict:
        """Shoutouts given in a channel, newest first, and how often each user got one."""
        table = self.db.shoutout_history
        query = table.entity_id == entity_id
        if target:
            query &= table.target_login == settings_key(target)
        rows = self.db(query).select(
            orderby=~table.id, limitby=((page - 1) * per_page, page * per_page)
        )
        items = [
            {
                "id": r.id,
                "target_login": r.target_login,
                "target_user_id": r.target_user_id,
                "target_display_name": r.target_display_name,
                "game_name": r.game_name,
                "trigger_type": r.trigger_type,
                "requested_by": r.requested_by,
                "platform": r.platform,
                "media_type": r.media_type,
                "media_url": r.media_url,
                "clip_id": r.clip_id,
                "twitch_shoutout": r.twitch_shoutout,
                "created_at": _iso(r.created_at),
            }
            for r in rows
        ]
        count = table.id.count()
        latest = table.created_at.max()
        grouped = self.db(table.entity_id == entity_id).select(
            table.target_login,
            count,
            latest,
            groupby=table.target_login,
            orderby=~count | table.target_login,
            limitby=(0, 50),
        )
        counts = [
            {
                "target_login": g.shoutout_history.target_login,
                "count": g[count],
                "last_at": _iso(g[latest]),
            }
            for g in grouped
        ]
        return {"total": self.db(query).count(), "items": items, "counts": counts}

    def _record(
        self,
        call: CommandCall,
        *,
        login,
        user: TwitchUser | None,
        game,
        trigger,
        requested_by,
        media: dict | None,
        clip: Clip | None,
        twitch_shoutout,
    ) -> None:
        self.db.shoutout_history.insert(
            entity_id=call.entity_id,
            community_id=call.community_id if isinstance(call.community_id, int) else None,
            platform=call.platform,
            target_login=settings_key(user.login if user else login)[:MAX_NAME],
            target_user_id=user.id if user else None,
            target_display_name=(user.display_name if user else login)[:255],
            game_name=(game or None) and game[:255],
            trigger_type=trigger,
            requested_by=requested_by,
            media_type=media["media_type"] if media else None,
            media_url=media["media_url"] if media else None,
            clip_id=clip.id if clip else None,
            twitch_shoutout=twitch_shoutout,
        )

    # -- chat --------------------------------------------------------------------------------
    def command(self, call: CommandCall) -> dict:
        """``!so <user>`` / ``!shoutout <user>`` typed by a moderator."""
        requester = call.user.name
        label = f"{call.prefix or '!'}{call.command or 'so'}"
        name = target_name(call.args[0]) if call.args else ""
        if not name:
            return chat(f"@{requester}, Usage: {label} <user>, for example {label} bob")
        if call.platform in TWITCH_PLATFORMS and not is_twitch_login(name):
            return chat(f"@{requester}, {shorten(name)!r} is not a Twitch username.")
        if len(name) > MAX_NAME:
            return chat(f"@{requester}, {shorten(name)!r} is too long for a username.")
        return self._shout(call, name=name, trigger="command", requested_by=requester)

    def auto(self, call: CommandCall) -> dict:
        """An automatic shoutout for whoever followed, subscribed or raided (if switched on)."""
        config = self.entity_settings(call.entity_id)
        if not config["auto_shoutout"] or call.message_type not in config["events"]:
            return {}
        name = target_name(call.user.name)
        if not name:
            return {}
        personal = self.user_settings(call.entity_id, name)
        if personal is not None and not personal["auto_shoutout"]:
            return {}
        user_id = call.user.platform_user_id if call.platform == "twitch" else None
        # on Twitch the account id, which survives a change of name
        if not self.cooldowns.claim_auto(call.entity_id, user_id or name, self.auto_cooldown):
            log.info("auto-shoutout for %s in %s skipped: cooldown", name, call.entity_id)
            return {}
        return self._shout(call, name=name, user_id=user_id, trigger=call.message_type)

    def _shout(
        self,
        call: CommandCall,
        *,
        name: str,
        trigger: str,
        user_id: str | None = None,
        requested_by: str | None = None,
    ) -> dict:
        words = self._words(call, name, name, trigger)
        login = name if is_twitch_login(name) else None
        if call.platform not in TWITCH_PLATFORMS or self.twitch is None:
            text = shout_text(display_name=name, login=login, game=None, **words)
            status = "not_twitch" if call.platform not in TWITCH_PLATFORMS else "no_credentials"
            if status == "no_credentials":
                # one line: two chat responses may reach the platform in either order
                text += (
                    f" (Shoutouts need Twitch credentials ({self.missing_credentials}) to show "
                    "the last game and a clip; ask the bot operator to set them.)"
                )
            self._record(
                call,
                login=name,
                user=None,
                game=None,
                trigger=trigger,
                requested_by=requested_by,
                media=None,
                clip=None,
                twitch_shoutout=status,
            )
            return chat(text, target=name, twitch_shoutout=status)
        try:
            user = self.twitch.user(login=None if user_id else name, user_id=user_id)
        except TwitchError as exc:
            log.warning("twitch lookup of %s failed: %s", name, exc)
            text = shout_text(display_name=name, login=login, game=None, **words)
            text += " (Twitch is not answering right now, so no clip this time.)"
            return chat(text, target=name, twitch_shoutout="failed")
        if user is None:
            if requested_by is None:
                return {}
            return chat(f"@{requested_by}, I can't find a Twitch user called {shorten(name)}.")
        game = self._safe(lambda: self.twitch.last_game(user.id), None)
        # settings are kept by login; an event may have named the user by display name
        words = self._words(call, user.login, user.display_name, trigger)
        text = shout_text(display_name=user.display_name, login=user.login, game=game, **words)
        clip, media = self._media(user)
        status = self._twitch_shoutout(call, user)
        self._record(
            call,
            login=user.login,
            user=user,
            game=game,
            trigger=trigger,
            requested_by=requested_by,
            media=media,
            clip=clip,
            twitch_shoutout=status,
        )
        responses = [chat(text, target=user.login, game=game, twitch_shoutout=status)]
        if media is not None:
            responses.append(media)
        return {"responses": responses}

    def _words(self, call: CommandCall, key: str, display_name: str, trigger: str) -> dict:
        """The per-user message and links of ``key`` and the event's greeting."""
        personal = self.user_settings(call.entity_id, key) or {}
        return {
            "custom_message": personal.get("custom_message"),
            "links": personal.get("links") or (),
            "greeting": greeting(trigger, display_name, call.metadata),
        }

    @staticmethod
    def _safe(fetch, default):
        try:
            return fetch()
        except TwitchError as exc:
            log.warning("twitch lookup failed: %s", exc)
            return default

    def _media(self, user: TwitchUser) -> tuple[Clip | None, dict | None]:
        """The overlay response: a recent clip, else the profile card, else nothing."""
        profile = {
            "id": user.id,
            "login": user.login,
            "display_name": user.display_name,
            "profile_image_url": user.profile_image_url,
            "description": user.description[:300],
        }
        clip = pick_clip(self._safe(lambda: self.twitch.clips(user.id), []), self.rng)
        if clip is not None:
            return clip, {
                "response_action": "media",
                "media_type": "clip",
                "media_url": clip.embed_url,
                "response_data": {
                    "user": profile,
                    "clip": {
                        "id": clip.id,
                        "url": clip.url,
                        "title": clip.title,
                        "thumbnail_url": clip.thumbnail_url,
                        "duration": clip.duration,
                        "view_count": clip.view_count,
                        "is_featured": clip.is_featured,
                    },
                },
            }
        image = user.profile_image_url or ""
        if not image.startswith(("http://", "https://")):
            return None, None
        return None, {
            "response_action": "media",
            "media_type": "image",
            "media_url": image,
            "response_data": {"user": profile, "card": "profile"},
        }

    def _twitch_shoutout(self, call: CommandCall, user: TwitchUser) -> str:
        """Twitch's own /shoutout on a live Twitch channel, within Twitch's cooldowns."""
        if call.platform != "twitch":
            return "not_twitch"
        if not self.twitch.can_send_shoutouts:
            return "no_moderator_token"
        broadcaster_id = call.channel_id
        if user.id == broadcaster_id:
            return "self"
        try:
            live = self.twitch.is_live(broadcaster_id)
        except TwitchError as exc:
            log.warning("twitch stream lookup of %s failed: %s", broadcaster_id, exc)
            return "failed"
        if not live:
            return "offline"
        slot = self.cooldowns.claim_helix(broadcaster_id, user.id)
        if not slot.allowed:
            return f"cooldown_{slot.blocked_by}"
        try:
            self.twitch.send_shoutout(broadcaster_id, user.id)
        except TwitchError as exc:
            if exc.status == 429:
                # Twitch counts a cooldown we did not know about: keep ours running too
                return "cooldown_twitch"
            self.cooldowns.release_helix(broadcaster_id, user.id)
            log.warning("twitch /shoutout in %s failed: %s", broadcaster_id, exc)
            return "failed"
        return "sent"
