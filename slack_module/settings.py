"""Settings of the slack app, read once from the environment at import."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from waddlebot.settings import CommonSettings, Env, common_fields


@dataclasses.dataclass(frozen=True)
class Settings(CommonSettings):
    """The shared settings; this app adds its own variables as it grows."""


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings; a bad variable raises SettingsError naming it."""
    return Settings(**common_fields(Env(environ), module_name="slack"))


settings = load()
