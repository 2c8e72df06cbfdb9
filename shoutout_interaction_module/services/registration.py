"""The shoutout module's registration with the router (DESIGN §5)."""

from __future__ import annotations

SO_PATH = "/api/shoutout/so"
AUTO_PATH = "/api/shoutout/auto"
AUTO_EVENTS = ["follow", "subscription", "raid"]


def _command(name: str) -> dict:
    return {
        "command": name,
        "prefix": "!",
        "type": "container",
        "location_url": SO_PATH,
        "description": f"Shout out a streamer: !{name} <user>",
        "method": "POST",
        "timeout": 20,
        "min_role": "moderator",
        "trigger_type": "command",
    }


def registration_payload(*, module_name: str, module_version: str, endpoint_url: str) -> dict:
    """``!so``, ``!shoutout`` (moderators) and the follow/subscription/raid trigger."""
    endpoint_url = endpoint_url.rstrip("/")
    return {
        "module_name": module_name,
        "module_version": module_version,
        "module_type": "interaction",
        "platform": None,
        "endpoint_url": endpoint_url,
        "health_check_url": f"{endpoint_url}/api/shoutout/health",
        "core": True,
        "commands": [
            _command("so"),
            _command("shoutout"),
            {
                "command": "auto-shoutout",
                "prefix": "!",
                "type": "container",
                "location_url": AUTO_PATH,
                "description": "Automatic shoutouts on follow, subscription and raid",
                "method": "POST",
                "timeout": 20,
                "min_role": "member",
                "trigger_type": "event",
                "event_types": AUTO_EVENTS,
            },
        ],
    }
