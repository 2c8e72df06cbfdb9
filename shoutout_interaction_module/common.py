"""Fixtures of the shoutout app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="shoutout", api_prefix="/api/shoutout")
database = services.database
service_key = services.service_key
