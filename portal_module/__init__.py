"""Community portal web UI and OBS overlay pages."""

from . import controllers  # noqa: F401
