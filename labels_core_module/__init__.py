"""Labels on communities, users, modules and entity groups; identity verification."""

from . import controllers  # noqa: F401
