"""HTTP surface of the alias app.

``/api/alias/health`` (open) and ``/api/alias/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
