#!/usr/bin/env bash
# Runs a private Podman API service in the foreground until Ctrl-C / SIGTERM:
# its own containers.conf, storage (vfs) and socket under DIR, with the sample apps'
# image imported. Prints DOCKER_HOST=unix://DIR/podman.sock for the docker SDK / CLI.
#
#   scripts/podman-service.sh [DIR]        (default /tmp/edgechain-podman)
#
# The tests and the benchmark do not need it: they start their own services
# (tests/runtime/conftest.py, benchmarks/migration.py).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/edgechain-podman}"
bash scripts/system-deps.sh
exec .venv/bin/python -m edgechain.runtime.podman serve --dir "$dir" --image
