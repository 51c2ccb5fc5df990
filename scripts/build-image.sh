#!/bin/bash
# Build the edgechain node image (deploy/Containerfile) with podman, pulling from no
# container registry: the base is a Debian bookworm root file system made here with
# debootstrap from Debian's packages, imported once as localhost/edgechain-base:bookworm
# and cached as a tarball; the project and its dependencies go in as wheels.
#
# usage: scripts/build-image.sh [TAG]      (default localhost/edgechain-node:dev)
#   EDGECHAIN_IMAGE_CACHE  where the base tarball and wheels are kept (.cache/image)
#   DEBIAN_MIRROR          the Debian mirror (http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/edgechain-node:dev}
BASE=localhost/edgechain-base:bookworm
CACHE=${EDGECHAIN_IMAGE_CACHE:-.cache/image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$CACHE"

need() {
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
    else
        echo "build-image: $1 is missing (Debian package $2)" >&2
        exit 2
    fi
}
need podman podman

if ! podman image exists "$BASE"; then
    if [ ! -s "$CACHE/base-bookworm.tar" ]; then
        need debootstrap debootstrap
        if [ "$(id -u)" != 0 ]; then
            echo "build-image: debootstrap needs root to make the base once" >&2
            exit 2
        fi
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        echo "build-image: debootstrap bookworm (minbase + python3) from $MIRROR" >&2
        debootstrap --variant=minbase --include=python3,python3-venv \
            bookworm "$work/fs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
            tail -20 "$CACHE/debootstrap.log" >&2
            exit 1
        }
        chroot "$work/fs" apt-get clean
        rm -rf "$work/fs"/var/lib/apt/lists/* "$work/fs"/usr/share/doc/* \
            "$work/fs"/usr/share/man/* "$work/fs"/usr/share/locale/*
        tar --numeric-owner -C "$work/fs" -cf "$CACHE/base-bookworm.tar.partial" .
        mv "$CACHE/base-bookworm.tar.partial" "$CACHE/base-bookworm.tar"
    fi
    podman import --change 'CMD ["/bin/bash"]' "$CACHE/base-bookworm.tar" "$BASE" >/dev/null
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# The project's wheel and every dependency's (PyPI, through pip's cache).
rm -f "$CACHE"/wheels/edgechain-*.whl
"$PYTHON" -m pip wheel -q --wheel-dir "$CACHE/wheels" . >&2
cp -r "$CACHE/wheels" "$context/wheels"
cp deploy/node.toml "$context/"
podman build -q --pull=never --format docker -f deploy/Containerfile -t "$TAG" "$context" >/dev/null
echo "$TAG"
