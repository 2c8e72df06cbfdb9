"""HTTP surface of the kong_admin_broker app.

``/api/broker/v1/health`` (open) and ``/api/broker/v1/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
