"""``edgechain simulate`` as a user runs it: the printed summary, the JSON, the exit code,
and ``--max-wall``, which stops a large run in time and says how far it got."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def _simulate(
    tmp_path: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "run.json"
    args = ["--nodes", "8", "--committee", "3", "--slots", "12", "--quiet", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "simulate", *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


def test_full_run_reports_every_slot_and_its_peak_rss(tmp_path: Path) -> None:
    done, data = _simulate(tmp_path)
    summary = data["summary"]
    assert summary["slots_run"] == summary["slots"] == 12
    assert len(data["slots"]) == 12
    assert summary["peak_rss_mb"] > 10
    assert "peak RSS" in done.stdout
    assert "stopped" not in done.stdout


def test_max_wall_stops_the_run_in_time_and_says_how_far_it_got(tmp_path: Path) -> None:
    # A limit of 0 s has passed at the first check (50 virtual ms into slot 1),
    # whatever the machine's speed.
    done, data = _simulate(tmp_path, "--max-wall", "0")
    summary = data["summary"]
    assert summary["slots_run"] == 0
    assert data["slots"] == []
    assert "stopped         by --max-wall after 0 of 12 slots" in done.stdout
    assert summary["violations"] == []
