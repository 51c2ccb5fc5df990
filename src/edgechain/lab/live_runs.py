"""What the live benchmarks (``benchmarks/*_live.py``, ``exactly_once.py``,
``fleet_claim.py``) share: where a run directory goes, and which code ran."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def make_run_base(prefix: str, parent: Path | None) -> Path:
    """A fresh directory others may traverse but not list (0711): the nodes' apps run
    as an unprivileged user, who must reach their state directories."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    base.chmod(0o711)
    return base


def get_source(checkout: Path) -> str | None:
    """The checkout's commit (``-dirty``: with local changes), for a result's JSON: the
    nodes run this tree, which others may be changing."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=checkout, capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()
