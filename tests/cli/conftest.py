from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A live testnet's run directory (``edgechain testnet --run-dir``).

    Not pytest's tmp_path: a root node runs apps as an unprivileged user, who must be
    able to reach its state directory, and pytest's base directory is 0700.
    """
    base = Path(tempfile.mkdtemp(prefix="edgechain-cli-live-"))
    base.chmod(0o711)
    try:
        yield base / "run"
    finally:
        # EDGECHAIN_KEEP_RUN=1 keeps the nodes' logs of a failed run for a look.
        if not os.environ.get("EDGECHAIN_KEEP_RUN"):
            shutil.rmtree(base, ignore_errors=True)
