"""docker-compose.yml and .env.example: schema, interpolation, and the fleet's wiring."""

from __future__ import annotations

import re
import subprocess

from deploy_support import FLEET, ROOT, clean_env, compose_resolved, compose_source, run, tool

ONE_SHOTS = {"migrate", "kong-migrations", "kong-config"}
INFRA = {"postgres", "postgres-replica", "redis", "kong-database", "kong"}
#: the variable names every app reads, the same as the k8s ConfigMap/Secret keys
CORE_ENV = {
    "DATABASE_URL",
    "READ_REPLICA_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "WADDLEBOT_API_KEYS",
    "ROUTER_API_URL",
    "WADDLEBOT_MIGRATE",
    "WADDLEBOT_DATA_DIR",
}


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value
    return values


def _dockerfile_args(path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))


def test_compose_spec_schema():
    result = run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_accepts_env_example():
    compose_config = compose_resolved()
    # the fixture ran `docker-compose --env-file .env.example config` (what `config -q`
    # checks, plus the resolved file the other tests read) and failed on a non-zero exit
    assert compose_config["services"]


def test_docker_compose_refuses_to_start_without_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run(
        [tool("docker-compose"), "--env-file", str(empty), "config", "-q"], env=clean_env()
    )
    assert result.returncode != 0
    assert "in .env" in result.stderr, result.stderr


def test_env_example_lists_every_variable_with_placeholders():
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    listed = _env_example()
    assert used - set(listed) == set(), "variables missing from .env.example"
    assert set(listed) - used == set(), "variables in .env.example that compose never reads"
    required = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):\?", text))
    for name in required:
        assert listed[name].startswith("change-me"), f"{name} must be a change-me placeholder"
    secret_like = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|_KEYS)$")
    for name, value in listed.items():
        if secret_like.search(name):
            assert value == "" or "change-me" in value, f"{name} looks like a real secret"


def test_every_app_is_a_service_with_its_own_image():
    compose_config = compose_resolved()
    services = compose_config["services"]
    assert set(services) == {a.service for a in FLEET} | ONE_SHOTS | INFRA
    for app in FLEET:
        service = services[app.service]
        build = service["build"]
        dockerfile = ROOT / build["dockerfile"]
        assert build["dockerfile"] == f"{app.folder}/Dockerfile", app.service
        assert dockerfile.is_file(), dockerfile
        args = {**_dockerfile_args(dockerfile), **(build.get("args") or {})}
        assert args["APP"] == app.folder, app.service
        assert args["HEALTH_PATH"] == app.health, app.service
        assert (ROOT / app.folder / "wsgi.py").is_file()
        assert "command" not in service, "the image's CMD (gunicorn + wsgi) is the command"


def test_images_run_the_apps_wsgi_module():
    for app in FLEET:
        text = (ROOT / app.folder / "Dockerfile").read_text(encoding="utf-8")
        cmd = re.search(r"^CMD (.+)$", text, flags=re.M).group(1)
        resolved = cmd.replace("${WADDLEBOT_APP}", app.folder)
        assert "ENV WADDLEBOT_APP=${APP}" in text
        assert f"--pythonpath /srv/apps/{app.folder} " in resolved
        assert resolved.rstrip('"]').endswith("wsgi:application"), app.folder
        assert "--bind 0.0.0.0:8000" in resolved


def test_apps_wait_for_migrate_and_are_hardened():
    compose_config = compose_resolved()
    services = compose_config["services"]
    for app in FLEET:
        service = services[app.service]
        depends = service["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        for name in ("postgres", "redis"):
            assert depends[name] == {"condition": "service_healthy"}, app.service
        assert service["read_only"] is True
        assert service["user"] == "10001:10001"
        assert service["cap_drop"] == ["ALL"]
        assert "/tmp" in service["tmpfs"]
        assert "ports" not in service, f"{app.service}: only Kong is published"
        env = service["environment"]
        assert CORE_ENV <= set(env), f"{app.service}: missing {CORE_ENV - set(env)}"
        assert env["ROUTER_API_URL"] == "http://router:8000"
        assert env["WADDLEBOT_MIGRATE"] == "false"
        assert env["REDIS_HOST"] == "redis"
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert "@postgres-replica:5432/" in env["READ_REPLICA_URL"]


def test_every_long_running_service_has_a_healthcheck():
    compose_config = compose_resolved()
    for name, service in compose_config["services"].items():
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_migrate_runs_waddlebot_migrate_from_the_fleet_image():
    compose_config = compose_resolved()
    migrate = compose_config["services"]["migrate"]
    assert migrate["command"] == ["waddlebot", "migrate"]
    assert migrate["build"]["dockerfile"] == "docker/migrate.Dockerfile"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_postgres_primary_and_streaming_replica():
    compose_config = compose_resolved()
    compose_file = compose_source()
    services = compose_config["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "wal_level=replica" in services["postgres"]["command"]
    init = [v for v in compose_file["services"]["postgres"]["volumes"] if "initdb.d" in v]
    assert init and (ROOT / init[0].split(":")[0]).is_file()
    replica = services["postgres-replica"]
    assert replica["image"].startswith("postgres:16")
    script = compose_file["services"]["postgres-replica"]["command"][-1]
    assert "pg_basebackup" in script and "--write-recovery-conf" in script
    # compose turns $$ into $: check the script the container will run
    syntax = subprocess.run(
        ["bash", "-n"], input=script.replace("$$", "$"), capture_output=True, text=True
    )
    assert syntax.returncode == 0, syntax.stderr
    for path in ("k8s/base/postgres/init-replication.sh",):
        syntax = subprocess.run(["sh", "-n", str(ROOT / path)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr


def test_redis_requires_a_password():
    compose_file = compose_source()
    command = compose_file["services"]["redis"]["command"]
    assert "--requirepass" in command
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD")


def test_kong_database_mode_with_bootstrap_and_import():
    compose_config = compose_resolved()
    services = compose_config["services"]
    for name in ("kong", "kong-migrations", "kong-config"):
        assert services[name]["image"] == "kong:3.9", name
        env = services[name]["environment"]
        assert env["KONG_DATABASE"] == "postgres" and env["KONG_PG_HOST"] == "kong-database"
    assert "kong migrations bootstrap" in " ".join(services["kong-migrations"]["command"])
    assert services["kong-config"]["command"] == ["kong", "config", "db_import", "/kong/kong.yml"]
    mounts = [str(v) for v in services["kong-config"]["volumes"]]
    assert any("kong/kong.yml" in m and "/kong/kong.yml" in m for m in mounts)
    assert services["kong-config"]["depends_on"]["kong-migrations"] == {
        "condition": "service_completed_successfully"
    }
    assert services["kong"]["depends_on"]["kong-config"] == {
        "condition": "service_completed_successfully"
    }
    assert services["kong"]["environment"]["KONG_REDIS_PASSWORD"]
    admin = [str(p) for p in services["kong"]["ports"] if "8001" in str(p)]
    assert admin and all("127.0.0.1" in p for p in admin), "the Admin API is not public"
