"""Shoutouts (`!so`) with Twitch lookups and overlay media."""

from . import controllers  # noqa: F401
