"""Twitch collector: EventSub webhooks, OAuth, Helix, replies to chat."""

from . import controllers  # noqa: F401
