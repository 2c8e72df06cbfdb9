"""Super-admin lifecycle on Kong: consumers, keys, ACL groups, audit."""

from . import controllers  # noqa: F401
