"""Module marketplace: catalogue, versions, reviews, installs per entity."""

from . import controllers  # noqa: F401
