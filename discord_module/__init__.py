"""Discord collector built on py-cord."""

from . import controllers  # noqa: F401
