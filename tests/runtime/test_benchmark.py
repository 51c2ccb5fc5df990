"""``benchmarks/migration.py`` end to end with ``--runs 2`` at 15.2 MB (process with and
without pre-copy, podman, reference)."""

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
        [
            sys.executable,
            "benchmarks/migration.py",
            "--runs",
            "2",
            "--sizes",
            "15.2",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["counter_continuity_ok"] is True
    (size,) = report["sizes"]
    assert size["state_bytes"] == 15_200_000
    for section in ("process", "process_plain", "container", "reference_standard"):
        assert size[section]["runs"] == 2, size[section]
        assert size[section]["failures"] == []
        for segment in ("save_ms", "transmit_ms", "resume_ms", "total_ms", "downtime_ms"):
            figures = size[section][segment]
            assert 0 < figures["min"] <= figures["median"] <= figures["max"], (section, segment)
            assert figures["sd"] >= 0
    # Pre-copy ran for the process runtime (15.2 MB is over its 8 MiB threshold): the
    # rounds carried the pad while the app ran, the frozen round only what changed.
    assert size["process"]["precopy_rounds"]["min"] >= 1
    assert size["process"]["raw_bytes"]["max"] < 15_200_000 // 2
    assert size["process_plain"]["raw_bytes"]["min"] > 15_200_000
    assert size["process_plain"]["precopy_rounds"]["max"] == 0
    assert size["ratio"]["process_downtime_vs_reference_standard"] > 0
    assert "paper CRIU" in done.stdout
