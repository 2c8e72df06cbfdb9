"""HTTP surface of the twitch app.

``/api/twitch/health`` (open) and ``/api/twitch/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
