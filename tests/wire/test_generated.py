"""The committed generated code is exactly what scripts/gen-proto.sh produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "src" / "edgechain" / "wire"
GENERATED = ("edgechain_pb2.py", "edgechain_pb2.pyi")


def test_regenerating_gives_no_diff(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (WIRE / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen-proto.sh"
