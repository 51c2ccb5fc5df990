"""``benchmarks/migration.py`` end to end with ``--runs 2`` (process, podman, reference)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgechain.runtime.podman import get_unavailable_reason

from .helpers import REPO

pytestmark = [pytest.mark.podman, pytest.mark.xdist_group("podman")]


def test_benchmark_runs_and_writes_the_figures(tmp_path: Path) -> None:
    reason = get_unavailable_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "migration.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/migration.py", "--runs", "2", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["counter_continuity_ok"] is True
    for section in ("process", "container", "reference_standard"):
        assert report[section]["runs"] == 2, report[section]
        assert report[section]["failures"] == []
        for segment in ("save_ms", "transmit_ms", "resume_ms", "total_ms"):
            figures = report[section][segment]
            assert 0 < figures["min"] <= figures["median"] <= figures["max"]
    # 15 MiB of state went each way.
    assert report["process"]["raw_bytes"]["min"] > 15 * 2**20
    assert report["ratio"]["process_vs_reference_standard"] > 0
    assert "paper CRIU" in done.stdout
