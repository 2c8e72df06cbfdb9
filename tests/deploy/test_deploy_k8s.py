"""k8s/: both overlays render, validate strictly, and every workload is hardened alike."""

from __future__ import annotations

import subprocess

from deploy_support import (
    BY_SERVICE,
    FLEET,
    ROOT,
    compose_resolved,
    dump_yaml,
    load_yaml,
    parse_yaml_all,
    rendered_overlays,
    tool,
)

APP_KINDS = {
    "Deployment",
    "Service",
    "ServiceAccount",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ConfigMap",
}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
SECRETS = {
    "waddlebot-core",
    "waddlebot-postgres",
    "waddlebot-kong-database",
    "waddlebot-router",
    "waddlebot-broker",
    "waddlebot-twitch",
    "waddlebot-discord",
    "waddlebot-slack",
    "waddlebot-ai",
}


def _of(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind]
    if name is not None:
        found = [d for d in found if d["metadata"]["name"] == name]
    return found


def _one(docs, kind, name):
    found = _of(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc, doc["spec"]["template"]["spec"]


def _unhashed(name: str) -> str:
    """A generated name without kustomize's content-hash suffix."""
    head, _, tail = name.rpartition("-")
    return head if head and len(tail) == 10 and tail.isalnum() else name


def test_overlays_validate_strictly(tmp_path):
    rendered = rendered_overlays()
    validator = tool("kubernetes-validate")
    jobs = {}
    for overlay, docs in rendered.items():
        files = []
        for index, doc in enumerate(docs):
            path = tmp_path / f"{overlay}-{index:03d}-{doc['kind']}.yaml"
            path.write_text(dump_yaml(doc), encoding="utf-8")
            files.append(str(path))
        # one process per overlay, side by side: the validator reloads its schemas per file
        jobs[overlay] = subprocess.Popen(
            [validator, "--strict", "--quiet", *files],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for overlay, job in jobs.items():
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, f"{overlay}: {output}"


def test_base_lists_one_folder_per_app_with_its_six_objects():
    base = load_yaml(ROOT / "k8s" / "base" / "kustomization.yaml")
    for app in FLEET:
        assert app.service in base["resources"], f"k8s/base lacks {app.service}/"
        folder = ROOT / "k8s" / "base" / app.service
        kinds = set()
        for name in load_yaml(folder / "kustomization.yaml")["resources"]:
            kinds |= {d["kind"] for d in parse_yaml_all((folder / name).read_text())}
        assert kinds == APP_KINDS, f"{app.service}: {kinds ^ APP_KINDS}"


def test_every_app_has_its_objects_in_both_overlays():
    rendered = rendered_overlays()
    for overlay, docs in rendered.items():
        for app in FLEET:
            for kind in APP_KINDS - {"ConfigMap"}:
                _one(docs, kind, app.service)
            _one(docs, "ConfigMap", f"{app.service}-config")
            service = _one(docs, "Service", app.service)
            assert service["spec"]["ports"][0]["port"] == 8000
            assert service["spec"]["selector"] == {"app.kubernetes.io/name": app.service}
            hpa = _one(docs, "HorizontalPodAutoscaler", app.service)
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"]["name"] == app.service
            assert _one(docs, "PodDisruptionBudget", app.service)["apiVersion"] == "policy/v1"
            account = _one(docs, "ServiceAccount", app.service)
            assert account["automountServiceAccountToken"] is False, overlay


def test_every_deployment_is_hardened():
    rendered = rendered_overlays()
    for overlay, docs in rendered.items():
        for deployment in _of(docs, "Deployment"):
            name = deployment["metadata"]["name"]
            pod = deployment["spec"]["template"]["spec"]
            where = f"{overlay}/{name}"
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            for container in pod.get("initContainers", []) + pod["containers"]:
                ctx = {**pod["securityContext"], **container["securityContext"]}
                assert ctx["runAsNonRoot"] is True, where
                assert ctx["runAsUser"] > 0, where
                assert ctx["readOnlyRootFilesystem"] is True, where
                assert ctx["allowPrivilegeEscalation"] is False, where
                assert ctx["capabilities"] == {"drop": ["ALL"]}, where
                assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"]), where
                assert {"cpu", "memory"} <= set(resources["limits"]), where
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in tmp_volumes, f"{where}: /tmp emptyDir"
            main = pod["containers"][0]
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in main, f"{where}: no {probe}"
            if name in BY_SERVICE:
                app = BY_SERVICE[name]
                ctx = {**pod["securityContext"], **main["securityContext"]}
                assert ctx["runAsUser"] == 10001, where
                ports = {p["name"]: p["containerPort"] for p in main["ports"]}
                assert ports == {"http": 8000}, where
                for probe in ("readinessProbe", "livenessProbe"):
                    get = main[probe]["httpGet"]
                    assert get["path"] == app.health, f"{where}: {probe} path"
                    assert ports.get(get["port"], get["port"]) == 8000, f"{where}: {probe}"
                assert main["image"].startswith(f"waddlebot/{name}:"), where


def test_every_other_workload_is_hardened():
    rendered = rendered_overlays()
    for overlay, docs in rendered.items():
        for doc, pod in _pod_specs(docs):
            where = f"{overlay}/{doc['kind']}/{doc['metadata']['name']}"
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["serviceAccountName"], where
            # Service links would inject e.g. REDIS_PORT=tcp://...:6379 over the settings
            assert pod["enableServiceLinks"] is False, where
            for container in pod.get("initContainers", []) + pod["containers"]:
                ctx = {**pod["securityContext"], **container["securityContext"]}
                assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, where
                assert ctx["readOnlyRootFilesystem"] is True, where
                assert ctx["allowPrivilegeEscalation"] is False, where
                assert ctx["capabilities"] == {"drop": ["ALL"]}, where
                assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
                assert container.get("resources", {}).get("limits"), where


def test_jobs_migrate_and_bootstrap_kong():
    rendered = rendered_overlays()
    kong_yml = (ROOT / "kong" / "kong.yml").read_text(encoding="utf-8")
    for overlay, docs in rendered.items():
        migrate = _one(docs, "Job", "waddlebot-migrate")["spec"]["template"]["spec"]
        assert migrate["containers"][0]["command"] == ["waddlebot", "migrate"]
        assert migrate["containers"][0]["image"].startswith("waddlebot/migrate:")
        bootstrap = _one(docs, "Job", "kong-bootstrap")["spec"]["template"]["spec"]
        script = bootstrap["containers"][0]["command"][-1]
        assert "kong migrations bootstrap" in script
        assert "kong config db_import /kong/kong.yml" in script
        config_map = next(v["configMap"]["name"] for v in bootstrap["volumes"] if "configMap" in v)
        generated = _one(docs, "ConfigMap", config_map)
        assert _unhashed(config_map) == "kong-declarative"
        assert generated["data"]["kong.yml"] == kong_yml, overlay


def test_kong_runs_in_database_mode():
    rendered = rendered_overlays()
    for docs in rendered.values():
        kong = _one(docs, "Deployment", "kong")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in kong["env"]}
        assert kong["image"] == "kong:3.9"
        assert env["KONG_DATABASE"]["value"] == "postgres"
        assert env["KONG_PG_HOST"]["value"] == "kong-database"
        assert "secretKeyRef" in env["KONG_REDIS_PASSWORD"]["valueFrom"]
        _one(docs, "StatefulSet", "kong-database")
        _one(docs, "Service", "kong-proxy")
        _one(docs, "Service", "kong-admin")


def test_postgres_primary_replica_and_redis():
    rendered = rendered_overlays()
    for docs in rendered.values():
        for name in ("postgres", "postgres-replica"):
            _one(docs, "StatefulSet", name)
            _one(docs, "Service", name)
        replica = _one(docs, "StatefulSet", "postgres-replica")["spec"]["template"]["spec"]
        assert "pg_basebackup" in replica["initContainers"][0]["command"][-1]
        redis = _one(docs, "Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
        assert redis["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]


def test_default_deny_and_an_allow_for_every_caller():
    rendered = rendered_overlays()
    for overlay, docs in rendered.items():
        policies = {p["metadata"]["name"]: p["spec"] for p in _of(docs, "NetworkPolicy")}
        deny = policies["default-deny"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert deny.get("ingress", []) == [] and deny.get("egress", []) == []
        for name in (
            "allow-dns",
            "allow-kong-proxy",
            "allow-kong-to-apps-ingress",
            "allow-postgres-clients-ingress",
            "allow-redis-clients-ingress",
            "allow-router-clients-ingress",
            "allow-router-to-callees-ingress",
            "allow-broker-to-kong-admin-ingress",
            "allow-replica-to-primary-ingress",
            "allow-kong-database-clients-ingress",
        ):
            assert name in policies, f"{overlay}: no NetworkPolicy {name}"
        behind_kong = policies["allow-kong-to-apps-ingress"]["podSelector"]["matchLabels"]
        for app in FLEET:
            pod = _one(docs, "Deployment", app.service)["spec"]["template"]["metadata"]
            for key, value in behind_kong.items():
                assert pod["labels"].get(key) == value, f"{app.service} not reachable by Kong"


def test_overlays_differ_in_tags_replicas_and_resources():
    rendered = rendered_overlays()

    def facts(docs):
        router = _one(docs, "Deployment", "router")["spec"]["template"]["spec"]["containers"][0]
        hpa = _one(docs, "HorizontalPodAutoscaler", "router")["spec"]
        namespace = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
        return router["image"], hpa["minReplicas"], router["resources"], namespace

    dev, prod = facts(rendered["dev"]), facts(rendered["prod"])
    for index in range(3):
        assert dev[index] != prod[index]
    assert dev[3] == {"waddlebot-dev"} and prod[3] == {"waddlebot"}


def test_secrets_generated_for_dev_and_expected_from_outside_in_prod():
    rendered = rendered_overlays()
    dev_secrets = {_unhashed(s["metadata"]["name"]) for s in _of(rendered["dev"], "Secret")}
    assert dev_secrets == SECRETS
    assert _of(rendered["prod"], "Secret") == [], "prod Secrets are created outside git"
    docs = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")
    referenced = set()
    for _, pod in _pod_specs(rendered["prod"]):
        for container in pod.get("initContainers", []) + pod["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    referenced.add(source["secretRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
    assert referenced == SECRETS
    for name in SECRETS:
        assert name in docs, f"docs/production.md does not say how to create {name}"


def test_apps_read_the_same_variable_names_as_in_compose():
    rendered = rendered_overlays()
    compose_config = compose_resolved()
    docs = rendered["dev"]
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in _of(docs, "ConfigMap")}
    secrets = {_unhashed(d["metadata"]["name"]): d.get("data", {}) for d in _of(docs, "Secret")}
    for app in FLEET:
        container = _one(docs, "Deployment", app.service)["spec"]["template"]["spec"]
        container = container["containers"][0]
        names = {e["name"] for e in container.get("env", [])} - {"CONTAINER_ID"}
        for source in container["envFrom"]:
            if "configMapRef" in source:
                names |= set(maps[source["configMapRef"]["name"]])
            else:
                names |= set(secrets[_unhashed(source["secretRef"]["name"])])
        compose_env = set(compose_config["services"][app.service]["environment"])
        assert names - compose_env == set(), f"{app.service}: only in k8s: {names - compose_env}"
