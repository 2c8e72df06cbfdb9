"""HTTP surface of the ai_interaction app.

``/api/ai/v1/health`` (open) and ``/api/ai/v1/metrics`` (service key) are
registered by :class:`waddlebot.app.AppServices` in ``common.py``.
"""

from .common import services  # noqa: F401
