"""Linux-style command aliases (`!alias`)."""

from . import controllers  # noqa: F401
