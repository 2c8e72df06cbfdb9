"""Fixtures of the kong_admin_broker app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="kong_admin_broker", api_prefix="/api/broker/v1")
database = services.database
service_key = services.service_key
