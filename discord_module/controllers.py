"""HTTP surface of the discord app.

``/api/discord/health`` (open) and ``/api/discord/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
