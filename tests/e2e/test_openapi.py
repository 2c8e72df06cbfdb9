"""Every API app serves an OpenAPI 3.1 document generated from its real routes, and
schemathesis, run against each app, finds no 5xx and no answer breaking the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from waddlebot.serve import API_PREFIXES
from waddlebot.testkit import FleetProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """All apps in one process on the embedded default."""
    # configured platforms, so their endpoints answer as in production instead of the
    # deliberate "not configured" 503; the platform APIs point at a closed local port
    twitch = {
        "TWITCH_APP_ID": "openapi-app",
        "TWITCH_APP_SECRET": "openapi-secret",
        "TWITCH_WEBHOOK_SECRET": "openapi-webhook-secret",
        "TWITCH_REDIRECT_URI": "http://127.0.0.1:9/webhooks/twitch/auth/callback",
        "TWITCH_API_BASE_URL": "http://127.0.0.1:9/helix",
        "TWITCH_AUTH_BASE_URL": "http://127.0.0.1:9/oauth2",
    }
    with FleetProcess(
        data_dir=tmp_path_factory.mktemp("openapi"), api_key="openapi-key", env=twitch
    ) as running:
        yield running


@pytest.mark.parametrize("app", sorted(API_PREFIXES))
def test_document_is_valid_and_lists_real_routes(fleet, app):
    """The document validates as OpenAPI 3.1 and names the app's health and metrics."""
    prefix = API_PREFIXES[app]
    answer = requests.get(f"{fleet.url}{prefix}/openapi.json", timeout=10)
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert f"{prefix}/health" in document["paths"]
    metrics = document["paths"][f"{prefix}/metrics"]["get"]
    assert metrics["security"] == [{"ServiceKey": []}]
    health = document["paths"][f"{prefix}/health"]["get"]
    assert "security" not in health


def test_router_document_covers_its_api(fleet):
    """The router's document is generated from its routes, not written by hand."""
    document = requests.get(f"{fleet.url}/api/router/openapi.json", timeout=10).json()
    for path in (
        "/api/router/events",
        "/api/router/events/batch",
        "/api/modules/register",
        "/api/router/string-rules/{rule_id}",
        "/api/router/coordination/claim",
        "/api/router/responses/{execution_id}",
    ):
        assert path in document["paths"], path
    assert "requestBody" in document["paths"]["/api/router/events"]["post"]


@pytest.mark.parametrize("app", sorted(API_PREFIXES))
def test_schemathesis_finds_no_server_error(fleet, app, tmp_path):
    """Fuzz every operation: no 5xx, every answer matches the documented schema."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    report = tmp_path / "report.txt"
    command = [
        str(schemathesis),
        "run",
        f"{fleet.url}{API_PREFIXES[app]}/openapi.json",
        "--header",
        f"X-API-Key: {fleet.api_key}",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        "8",
        "--no-color",
        "--seed",
        "1",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    report.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-4000:]
