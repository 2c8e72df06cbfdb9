"""Fixtures of the slack app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="slack", api_prefix="/api/slack")
database = services.database
service_key = services.service_key
