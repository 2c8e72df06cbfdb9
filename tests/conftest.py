"""Suite-wide hooks: a failing test shows what the processes it used printed."""

from __future__ import annotations

import pytest

from waddlebot.testkit import FleetProcess

LOG_TAIL = 4000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of every fleet process the failing test used to its report.

    Fleets log to a file in their temporary data dir, which pytest deletes a few runs
    later; without this a failure that happens once (a cold machine, say) leaves nothing
    to read.
    """
    report = yield
    if report.failed and call.when in ("setup", "call"):
        seen = set()
        for value in getattr(item, "funcargs", {}).values():
            for fleet in _fleets(value):
                if id(fleet) not in seen:
                    seen.add(id(fleet))
                    tail = fleet.logs()[-LOG_TAIL:]
                    report.sections.append((f"fleet log {fleet.url} (last {LOG_TAIL})", tail))
    return report


def _fleets(value) -> list[FleetProcess]:
    """The fleet processes a fixture value is or holds (one level deep)."""
    if isinstance(value, FleetProcess):
        return [value]
    held = value.__dict__.values() if hasattr(value, "__dict__") else ()
    if isinstance(value, dict):
        held = value.values()
    elif isinstance(value, (list, tuple)):
        held = value
    return [v for v in held if isinstance(v, FleetProcess)]
