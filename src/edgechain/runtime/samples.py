"""The sample applications in ``apps/`` as app specs, for both runtimes.

``counter`` is stateful (a persisted counter, optionally padded to the paper's median
CRIU state of 15.2 MB, §4.2) and ``cpu-load`` burns a set share of a core. Both are
POSIX shell scripts, so the same file runs under the host's ``sh`` (process runtime)
and under busybox ``sh`` in the python-free container image (``runtime/image.py``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.appuser import is_open_to_others

SAMPLE_IMAGE = "localhost/edgechain-apps:latest"
"""Reference of the container image ``runtime/image.py`` builds from ``apps/``."""

IMAGE_APPS_DIR = "/apps"
"""Where ``apps/`` sits inside that image."""

PAPER_STATE_BYTES = 15 * 1024 * 1024
"""Counter padding that mimics the paper's median CRIU state (15.2 MB, §4.2)."""


def get_apps_dir() -> Path:
    """The sample apps' directory (``EDGECHAIN_APPS_DIR`` overrides it).

    The repository's ``apps/``, unless this process is root and some directory on the
    way to it is closed to others (a checkout in a 0700 ``mktemp -d``, say): a root
    node runs apps as an unprivileged user, who could not read the scripts there. Then
    a root-owned, world-readable copy in the temporary directory serves instead, one
    per content, shared by every process that asks.
    """
    override = os.environ.get("EDGECHAIN_APPS_DIR")
    if override:
        return Path(override)
    source = Path(__file__).resolve().parents[3] / "apps"
    if os.geteuid() != 0 or is_open_to_others(source):
        return source
    return get_shared_copy(source)


def get_shared_copy(source: Path) -> Path:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    base = Path(tempfile.gettempdir())
    target = base / f"edgechain-apps-{digest.hexdigest()[:16]}"
    if is_trusted_copy(target):
        return target
    staging = Path(tempfile.mkdtemp(prefix="edgechain-apps-staging-", dir=base))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    for path in (staging, *staging.rglob("*")):
        path.chmod(0o755 if path.is_dir() or path.stat().st_mode & stat.S_IXUSR else 0o644)
    try:
        staging.rename(target)
    except OSError:  # another process made it first, or a stranger's path is in the way
        shutil.rmtree(staging, ignore_errors=True)
        if not is_trusted_copy(target):
            raise
    return target


def is_trusted_copy(path: Path) -> bool:
    """A directory (not a link) of ours that nobody else may write to."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


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
    rewrite_kib: int = 0,
) -> AppSpec:
    """The stateful ``counter`` app; ``tag`` makes its id (and argv) unique;
    ``rewrite_kib`` KiB of its pad are rewritten at every step."""
    argv: tuple[str, ...] = (
        "/bin/sh",
        _get_script(kind, "counter/counter.sh"),
        str(pad_bytes),
        f"{interval_s:g}",
        tag or "-",
    )
    if rewrite_kib:
        argv += (str(rewrite_kib),)
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
