"""HTTP surface of the portal app.

``/api/portal/health`` (open) and ``/api/portal/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
