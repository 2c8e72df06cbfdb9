"""Fixtures of the marketplace app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="marketplace", api_prefix="/api/marketplace")
database = services.database
service_key = services.service_key
