"""kong/kong.yml: deck's offline validation plus the project's edge rules (DESIGN §3, §6)."""

from __future__ import annotations

from deploy_support import (
    BY_SERVICE,
    CONSUMER_GROUPS,
    FLEET,
    OPEN_PREFIXES,
    ROOT,
    compose_resolved,
    kong_file,
    rendered_overlays,
    run,
    tool,
)

#: plugin -> the config keys Kong 3.9 knows for it (rate-limiting: the 3.6+ `redis` record)
PLUGIN_KEYS = {
    "key-auth": {
        "key_names",
        "hide_credentials",
        "anonymous",
        "key_in_header",
        "key_in_query",
        "key_in_body",
        "run_on_preflight",
        "realm",
    },
    "acl": {"allow", "deny", "hide_groups_header", "include_consumer_groups"},
    "rate-limiting": {
        "second",
        "minute",
        "hour",
        "day",
        "month",
        "year",
        "limit_by",
        "header_name",
        "path",
        "policy",
        "fault_tolerant",
        "redis",
        "hide_client_headers",
        "error_code",
        "error_message",
        "sync_rate",
    },
    "cors": {
        "origins",
        "methods",
        "headers",
        "exposed_headers",
        "credentials",
        "max_age",
        "preflight_continue",
        "private_network",
        "allow_origin_absent",
    },
    "request-size-limiting": {"allowed_payload_size", "size_unit", "require_content_length"},
}
REDIS_KEYS = {
    "host",
    "port",
    "timeout",
    "username",
    "password",
    "database",
    "ssl",
    "ssl_verify",
    "server_name",
}
#: per-minute and per-hour limits the spec sets ("Rate Limiting", Kong integration)
SPEC_RATE_LIMITS = {
    "router": (1000, 10000),
    "marketplace": (500, 5000),
    "ai-interaction": (1000, 10000),
    "kong-admin-broker": (100, 1000),
    "twitch-collector": (200, 2000),
    "discord-collector": (200, 2000),
    "slack-collector": (200, 2000),
}


def _routes(kong_config):
    for service in kong_config["services"]:
        for route in service.get("routes", []):
            yield service, route


def _plugins(kong_config):
    """Every plugin with where it is attached: ('global'|service name|route name, plugin)."""
    for plugin in kong_config.get("plugins", []):
        yield "global", plugin
    for service in kong_config["services"]:
        for plugin in service.get("plugins", []):
            yield service["name"], plugin
        for route in service.get("routes", []):
            for plugin in route.get("plugins", []):
                yield route["name"], plugin


def _effective(service, route, name):
    """The plugin of that name that applies to a route: the route's own, else the service's."""
    for plugin in route.get("plugins", []):
        if plugin["name"] == name:
            return plugin
    for plugin in service.get("plugins", []):
        if plugin["name"] == name:
            return plugin
    return None


def _is_open_path(path: str) -> bool:
    if any(path == app.health for app in FLEET):
        return True
    return any(path == p or path.startswith(p + "/") for p in OPEN_PREFIXES)


def test_deck_validates_the_file():
    result = run([tool("deck"), "validate", "--state", str(ROOT / "kong" / "kong.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_format_version_is_3():
    kong_config = kong_file()
    assert kong_config["_format_version"] == "3.0"


def test_no_consumers_credentials_or_literal_secrets():
    kong_config = kong_file()
    forbidden = {"consumers", "consumer_groups", "keyauth_credentials", "acls", "vaults"}
    assert not forbidden & set(kong_config), "consumers and keys are created by the broker"
    for where, plugin in _plugins(kong_config):
        redis = plugin.get("config", {}).get("redis") or {}
        if "password" in redis:
            assert redis["password"] == "{vault://env/kong-redis-password}", where


def test_names_are_unique():
    kong_config = kong_file()
    services = [s["name"] for s in kong_config["services"]]
    routes = [r["name"] for _, r in _routes(kong_config)]
    assert len(services) == len(set(services))
    assert len(routes) == len(set(routes))


def test_one_named_service_per_app_on_its_compose_and_k8s_name():
    kong_config = kong_file()
    by_name = {s["name"]: s for s in kong_config["services"]}
    assert set(by_name) == {app.kong_service for app in FLEET}
    for app in FLEET:
        service = by_name[app.kong_service]
        assert (service["host"], service["port"], service["protocol"]) == (
            app.service,
            8000,
            "http",
        )
        assert "url" not in service and "path" not in service


def test_service_hosts_exist_in_compose_and_kubernetes():
    kong_config = kong_file()
    compose_config = compose_resolved()
    rendered = rendered_overlays()
    compose_services = compose_config["services"]
    for service in kong_config["services"]:
        host, port = service["host"], service["port"]
        assert host in compose_services, f"{service['name']}: no compose service {host}"
        assert str(port) in [str(p) for p in compose_services[host].get("expose", [])]
        for overlay, docs in rendered.items():
            k8s = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == host]
            assert k8s, f"{service['name']}: no Kubernetes Service {host} in {overlay}"
            assert port in [p["port"] for p in k8s[0]["spec"]["ports"]], (overlay, host)


def test_routes_keep_the_path():
    kong_config = kong_file()
    for _, route in _routes(kong_config):
        assert route["strip_path"] is False, route["name"]
        assert route.get("paths"), route["name"]
        assert all(not p.startswith("~") for p in route["paths"]), "prefix routes only"


def test_every_route_prefix_is_served_by_the_app_behind_it():
    kong_config = kong_file()
    for service, route in _routes(kong_config):
        app = BY_SERVICE[service["host"]]
        for path in route["paths"]:
            assert any(path == p or path.startswith(p + "/") for p in app.prefixes), (
                f"{route['name']}: {path} is not served by {app.folder}"
            )


def test_every_app_prefix_and_health_path_is_routed():
    kong_config = kong_file()
    routed = {(s["host"], p) for s, r in _routes(kong_config) for p in r["paths"]}
    for app in FLEET:
        for prefix in (*app.prefixes, app.health):
            assert (app.service, prefix) in routed, f"{prefix} of {app.folder} has no route"


def test_health_routes_are_their_own_open_routes():
    kong_config = kong_file()
    for app in FLEET:
        service = next(s for s in kong_config["services"] if s["host"] == app.service)
        health = [r for r in service["routes"] if app.health in r["paths"]]
        assert len(health) == 1 and health[0]["paths"] == [app.health], app.folder
        route = health[0]
        assert _effective(service, route, "key-auth") is None, route["name"]
        assert _effective(service, route, "acl") is None, route["name"]
        # Kong matches the longest prefix first: the health path must be longer than the
        # protected prefix it falls under, so it wins over it.
        covering = [p for p in app.prefixes if app.health.startswith(p + "/")]
        assert covering and all(len(app.health) > len(p) for p in covering)


def test_open_routes_have_no_key_and_all_others_need_one():
    kong_config = kong_file()
    for service, route in _routes(kong_config):
        key_auth = _effective(service, route, "key-auth")
        acl = _effective(service, route, "acl")
        open_paths = [p for p in route["paths"] if _is_open_path(p)]
        if open_paths:
            assert open_paths == route["paths"], f"{route['name']} mixes open and keyed paths"
            assert key_auth is None and acl is None, route["name"]
            continue
        assert key_auth is not None, f"{route['name']} has no key-auth"
        config = key_auth["config"]
        assert config["key_in_query"] is False, route["name"]
        assert config["hide_credentials"] is False, route["name"]
        expected = "X-Broker-Key" if service["host"] == "kong-admin-broker" else "X-API-Key"
        assert config["key_names"] == [expected], route["name"]
        assert acl is not None, f"{route['name']} has key-auth but no acl"
        assert acl["config"]["hide_groups_header"] is False, route["name"]
        assert set(acl["config"]["allow"]) <= CONSUMER_GROUPS, route["name"]


def test_acl_groups_per_service():
    kong_config = kong_file()
    allowed = {
        s["host"]: set(_effective(s, r, "acl")["config"]["allow"])
        for s, r in _routes(kong_config)
        if _effective(s, r, "acl")
    }
    assert allowed["router"] == {"collectors", "services", "admins", "super-admins"}
    assert allowed["kong-admin-broker"] == {"super-admins"}
    for host, groups in allowed.items():
        assert "super-admins" in groups, host


def test_plugins_are_known_with_known_config_keys():
    kong_config = kong_file()
    for where, plugin in _plugins(kong_config):
        name = plugin["name"]
        assert name in PLUGIN_KEYS, f"{where}: plugin {name} is not on the allow-list"
        unknown = set(plugin.get("config", {})) - PLUGIN_KEYS[name]
        assert not unknown, f"{where}: {name} has unknown config keys {unknown}"
        assert plugin.get("tags"), f"{where}: {name} has no tags"
        redis = plugin.get("config", {}).get("redis")
        if redis is not None:
            unknown = set(redis) - REDIS_KEYS
            assert not unknown, f"{where}: unknown redis keys {unknown}"


def test_rate_limits():
    kong_config = kong_file()
    for service in kong_config["services"]:
        limits = [p for p in service.get("plugins", []) if p["name"] == "rate-limiting"]
        assert len(limits) == 1, service["name"]
        config = limits[0]["config"]
        if service["host"] in SPEC_RATE_LIMITS:
            assert (config["minute"], config["hour"]) == SPEC_RATE_LIMITS[service["host"]]
        assert config["policy"] == "redis"
        assert config["redis"]["host"] == "redis"
        assert config["redis"]["port"] == 6379
        assert config["redis"]["password"] == "{vault://env/kong-redis-password}"
        assert not any(key.startswith("redis_") for key in config), "legacy redis_* keys"


def test_cors_lists_explicit_origins():
    kong_config = kong_file()
    cors = [p for _, p in _plugins(kong_config) if p["name"] == "cors"]
    assert cors
    for plugin in cors:
        origins = plugin["config"]["origins"]
        assert origins and all(o.startswith("https://") and "*" not in o for o in origins)


def test_request_size_is_limited_everywhere():
    kong_config = kong_file()
    limits = [p for p in kong_config.get("plugins", []) if p["name"] == "request-size-limiting"]
    assert len(limits) == 1, "one global limit covers every route, webhooks included"
    config = limits[0]["config"]
    assert config["size_unit"] == "megabytes" and config["allowed_payload_size"] <= 1


def test_everything_is_tagged_with_its_owner_app():
    kong_config = kong_file()
    for service in kong_config["services"]:
        owner = BY_SERVICE[service["host"]].folder
        assert owner in service["tags"], service["name"]
        for route in service["routes"]:
            assert owner in route["tags"], route["name"]
            for plugin in route.get("plugins", []):
                assert owner in plugin["tags"], route["name"]
        for plugin in service.get("plugins", []):
            assert owner in plugin["tags"], service["name"]


def test_kubernetes_copy_is_identical():
    source = (ROOT / "kong" / "kong.yml").read_bytes()
    copy = (ROOT / "k8s" / "base" / "kong" / "kong.yml").read_bytes()
    assert copy == source, "run scripts/sync-kong-config.sh after editing kong/kong.yml"
