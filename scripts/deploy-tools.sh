#!/usr/bin/env bash
# Install the offline validators that tests/deploy runs; idempotent, and quick when they are
# already there (no network then):
#   deck            Debian package deck (decK 1.4): `deck validate` of kong/kong.yml
#   docker-compose  Debian package docker-compose (1.29): `docker-compose config -q`
#   kubernetes-validate, check-jsonschema   pinned below, into the project venv
#   kubectl         must already be on the machine (`kubectl kustomize`); not installed here
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
pip="$root/.venv/bin/pip"
python="$root/.venv/bin/python"

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0

fail() {
    echo "deploy-tools: $*" >&2
    exit 1
}

# -- Debian packages --------------------------------------------------------------------------
missing=()
command -v deck >/dev/null 2>&1 || missing+=(deck)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || fail "need root (or sudo) to apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "deploy-tools: installing ${missing[*]} with apt-get"
    # The package lists may be missing or stale on a fresh machine: update once, then retry.
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# -- Python tools in the project venv -----------------------------------------------------------
[ -x "$python" ] || fail "no project venv at $root/.venv (run make .venv first)"
installed_version() {
    "$python" - "$1" <<'PY'
import importlib.metadata as metadata
import sys

try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    print("")
PY
}
wanted=()
[ "$(installed_version kubernetes-validate)" = "$KUBERNETES_VALIDATE_VERSION" ] \
    || wanted+=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
[ "$(installed_version check-jsonschema)" = "$CHECK_JSONSCHEMA_VERSION" ] \
    || wanted+=("check-jsonschema==$CHECK_JSONSCHEMA_VERSION")
if ((${#wanted[@]})); then
    echo "deploy-tools: pip installing ${wanted[*]}"
    constraints=()
    [ -f "$root/constraints.txt" ] && constraints=(-c "$root/constraints.txt")
    "$pip" install -q "${constraints[@]}" "${wanted[@]}"
fi

# -- kubectl (preinstalled; brings kustomize) --------------------------------------------------
command -v kubectl >/dev/null 2>&1 \
    || fail "kubectl not found: install kubectl >= 1.27 (it renders k8s/ with 'kubectl kustomize')"

for tool in deck docker-compose kubectl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is still missing"
done
[ -x "$root/.venv/bin/kubernetes-validate" ] || fail "kubernetes-validate missing from the venv"
[ -x "$root/.venv/bin/check-jsonschema" ] || fail "check-jsonschema missing from the venv"
