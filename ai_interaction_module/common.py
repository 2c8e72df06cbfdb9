"""Fixtures of the ai_interaction app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="ai_interaction", api_prefix="/api/ai/v1")
database = services.database
service_key = services.service_key
