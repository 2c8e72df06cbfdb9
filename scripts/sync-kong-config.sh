#!/usr/bin/env bash
# Copy kong/kong.yml (the one place to edit Kong's configuration) to k8s/base/kong/kong.yml,
# the copy the kong-declarative ConfigMap is generated from: kustomize loads only files under
# its own folder, so the Kubernetes base cannot point at kong/ directly.
# tests/deploy fails while the two files differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cp "$root/kong/kong.yml" "$root/k8s/base/kong/kong.yml"
echo "k8s/base/kong/kong.yml updated from kong/kong.yml"
