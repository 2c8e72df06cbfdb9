"""Fixtures of the twitch app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="twitch", api_prefix="/api/twitch")
database = services.database
service_key = services.service_key
