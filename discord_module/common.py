"""Fixtures of the discord app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="discord", api_prefix="/api/discord")
database = services.database
service_key = services.service_key
