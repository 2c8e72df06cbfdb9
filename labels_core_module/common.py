"""Fixtures of the labels_core app, built here and nowhere else."""

from waddlebot.app import AppServices

from .settings import settings

services = AppServices(settings, short_name="labels_core", api_prefix="/api/labels")
database = services.database
service_key = services.service_key
