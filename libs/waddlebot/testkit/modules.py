"""Import one module of an app (its services) without running the app package."""

from __future__ import annotations

import importlib
import sys
import types
from types import ModuleType

from waddlebot.serve import apps_folder


def app_module(dotted: str) -> ModuleType:
    """``router_module.services.usage`` and the like, for tests of a service alone.

    An app's ``__init__`` builds its settings, database and routes; a test of one of
    its services needs none of that. The app package is registered as a bare namespace
    (unless already imported), so only the named module and what it imports run.
    """
    app = dotted.split(".", 1)[0]
    if app not in sys.modules:
        package = types.ModuleType(app)
        package.__path__ = [str(apps_folder() / app)]
        sys.modules[app] = package
    return importlib.import_module(dotted)
