"""Fixtures of the portal app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="portal", api_prefix="/api/portal")
database = services.database
service_key = services.service_key
