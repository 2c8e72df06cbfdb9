"""One migration step for the whole fleet (DESIGN §4): ``waddlebot migrate``.

The core tables of :mod:`waddlebot.db` plus every app's ``define_tables(db)`` from its
``models.py`` are created or altered on the primary, and their indexes created, in
one run. Serving processes then run with migrations off.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

from .db import Database, TableDefiner
from .serve import APPS, apps_folder
from .settings import load_common


def _load_models(app_name: str, path: Path):
    module_name = f"_waddlebot_models_{app_name}"
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def app_definers(folder: Path | None = None) -> list[TableDefiner]:
    """The ``define_tables`` of every app that has a ``models.py``, in fleet order."""
    folder = folder or apps_folder()
    definers = []
    for app_name in APPS:
        path = folder / app_name / "models.py"
        if not path.is_file():
            continue
        module = _load_models(app_name, path)
        define = getattr(module, "define_tables", None)
        if not callable(define):
            raise TypeError(f"{path} has no define_tables(db) function")
        definers.append(define)
    return definers


def migrated_database(environ: Mapping[str, str] | None = None) -> Database:
    """Open the primary with migrations on, every table defined and indexed; caller closes."""
    settings = load_common(environ, module_name="migrate")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(
        settings.database_url.reveal(),
        None,
        definers=app_definers(),
        pool_size=settings.db_pool_size,
        migrate=True,
        folder=str(settings.data_dir),
    )


def migrate_all(environ: Mapping[str, str] | None = None) -> list[str]:
    """Create or update every table and index of the fleet; return the table names."""
    database = migrated_database(environ)
    try:
        return sorted(database.primary.tables)
    finally:
        database.close()
