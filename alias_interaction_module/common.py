"""Fixtures of the alias app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="alias", api_prefix="/api/alias")
database = services.database
service_key = services.service_key
