"""The sample applications in ``apps/`` as app specs, for both runtimes.

``counter`` is stateful (a persisted counter, optionally padded to the paper's median
CRIU state of 15.2 MB, §4.2) and ``cpu-load`` burns a set share of a core. Both are
POSIX shell scripts, so the same file runs under the host's ``sh`` (process runtime)
and under busybox ``sh`` in the python-free container image (``runtime/image.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgechain.chain.model import AppSpec, RuntimeKind

SAMPLE_IMAGE = "localhost/edgechain-apps:latest"
"""Reference of the container image ``runtime/image.py`` builds from ``apps/``."""

IMAGE_APPS_DIR = "/apps"
"""Where ``apps/`` sits inside that image."""

PAPER_STATE_BYTES = 15 * 1024 * 1024
"""Counter padding that mimics the paper's median CRIU state (15.2 MB, §4.2)."""


def get_apps_dir() -> Path:
    """The repository's ``apps/`` (``EDGECHAIN_APPS_DIR`` overrides it)."""
    override = os.environ.get("EDGECHAIN_APPS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "apps"


def _get_script(kind: RuntimeKind, relative: str) -> str:
    if kind is RuntimeKind.CONTAINER:
        return f"{IMAGE_APPS_DIR}/{relative}"
    return str(get_apps_dir() / relative)


def get_counter_spec(
    kind: RuntimeKind,
    *,
    pad_bytes: int = 0,
    interval_s: float = 0.1,
    tag: str = "",
    image: str = SAMPLE_IMAGE,
) -> AppSpec:
    """The stateful ``counter`` app; ``tag`` makes its id (and argv) unique."""
    argv = (
        "/bin/sh",
        _get_script(kind, "counter/counter.sh"),
        str(pad_bytes),
        f"{interval_s:g}",
        tag or "-",
    )
    return AppSpec(
        name="counter",
        runtime=kind,
        image=image if kind is RuntimeKind.CONTAINER else "",
        command=argv,
        cpu_bp=10,
        ram_bp=10,
        stateful=True,
    )


def get_cpu_load_spec(
    kind: RuntimeKind,
    *,
    share_percent: int = 50,
    period_ms: int = 100,
    tag: str = "",
    image: str = SAMPLE_IMAGE,
) -> AppSpec:
    """The ``cpu-load`` app burning ``share_percent`` of one core."""
    argv = (
        "/bin/sh",
        _get_script(kind, "cpu-load/cpu-load.sh"),
        str(share_percent),
        str(period_ms),
    )
    return AppSpec(
        name="cpu-load",
        runtime=kind,
        image=image if kind is RuntimeKind.CONTAINER else "",
        command=argv,
        # A hint in basis points of the whole host (chain.model.BASIS_POINTS).
        cpu_bp=share_percent * 100 // max(1, os.cpu_count() or 1),
        ram_bp=1,
        stateful=False,
    )
