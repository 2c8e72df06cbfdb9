"""Community portal web UI and OBS overlay pages."""

from . import api_controllers, controllers, overlay_controllers  # noqa: F401
