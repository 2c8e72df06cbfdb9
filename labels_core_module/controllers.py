"""HTTP surface of the labels_core app.

``/api/labels/health`` (open) and ``/api/labels/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
