"""HTTP surface of the marketplace app.

``/api/marketplace/health`` (open) and ``/api/marketplace/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
