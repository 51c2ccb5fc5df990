from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.fixture
def block_port() -> Iterator[list[int]]:
    """Ports whose TCP connections are REJECTed while the test runs (append to it after
    inserting :func:`get_reject_rule`; the rules left are deleted at the end)."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("blocking one node's transfer port needs root and iptables")
    blocked: list[int] = []
    yield blocked
    for port in blocked:
        subprocess.run(["iptables", *get_reject_rule("-D", port)], check=False, capture_output=True)


def get_reject_rule(op: str, port: int) -> list[str]:
    """The iptables arguments that insert (``-I``) or delete (``-D``) the rule
    REJECTing TCP connections to ``port``."""
    return [op, "INPUT", "-p", "tcp", "--dport", str(port), "-j", "REJECT",
            "--reject-with", "tcp-reset"]  # fmt: skip
