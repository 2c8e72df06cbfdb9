"""HTTP surface of the shoutout app.

``/api/shoutout/health`` (open) and ``/api/shoutout/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
