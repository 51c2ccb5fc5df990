"""The read commands scripts poll (``apps list``, ``apps show``, ``nodes``, ``status``)
start without the signing side: a live test polls them every 0.3 s, and each used a
quarter of a second of CPU while chain.model, BLS and libsodium were imported for
nothing (``cli/apps.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SIGNING_SIDE = (
    "edgechain.chain.model",
    "edgechain.cli.commands",
    "edgechain.crypto.bls",
    "edgechain.orchestrator",
    "py_arkworks_bls12381",
    "nacl",
)

PROBE = """
import json, sys
from edgechain.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _get_modules(tmp_path: Path, *argv: str) -> set[str]:
    """The modules ``edgechain ARGV`` imported, run against a node that never answers."""
    client = tmp_path / "client.toml"
    client.write_text('nodes = ["http://127.0.0.1:9"]\n')  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--client", str(client), *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "no node answered" in done.stderr, done.stderr  # the command ran to its request
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "argv", [("apps", "list"), ("apps", "show", "ab12"), ("nodes",), ("status",)]
)
def test_a_read_command_imports_no_signing_side(tmp_path: Path, argv: tuple[str, ...]) -> None:
    modules = _get_modules(tmp_path, *argv)
    assert [m for m in SIGNING_SIDE if m in modules] == []


def test_a_command_that_signs_imports_it(tmp_path: Path) -> None:
    """What the check above would miss if the probe never ran a command at all."""
    modules = _get_modules(tmp_path, "apps", "stop", "ab12")
    assert "edgechain.chain.model" in modules
