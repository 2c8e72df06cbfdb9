"""Slack collector built on slack-sdk."""

from . import controllers  # noqa: F401
