"""Fixtures and long-lived services of the alias app, built here and nowhere else."""

from waddlebot.app import AppServices

from . import models
from .services.aliases import AliasBook
from .services.chat import AliasChat
from .services.registration import AliasRegistrar
from .services.router_client import RouterClient
from .settings import settings

services = AppServices(
    settings, short_name="alias", api_prefix="/api/alias", definers=[models.define_tables]
)
database = services.database
service_key = services.service_key

router = RouterClient(
    base_url=settings.router_api_url,
    api_key=settings.api_keys[0].reveal(),
    event_timeout=settings.request_timeout,
)
book = AliasBook(database=database, router=router, module_name=settings.module_name)
registrar = AliasRegistrar(
    router=router,
    module_name=settings.module_name,
    module_version=settings.module_version,
    endpoint_url=settings.public_base_url,
    names=book.names,
)
book.registrar = registrar
alias_chat = AliasChat(book=book, router=router)

# the router may not listen yet (``waddlebot up`` loads every app first): register from
# a background thread that retries, then heartbeats
registrar.start(api_key=settings.api_keys[0].reveal(), router_url=settings.router_api_url)
