"""HTTP surface of the slack app.

``/api/slack/health`` (open) and ``/api/slack/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
