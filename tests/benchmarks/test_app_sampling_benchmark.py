"""``benchmarks/app_sampling.py`` on two apps: its figures' shape, and that it leaves no
app process behind. Nothing about the time is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))

import app_sampling


def test_the_benchmark_measures_rounds_and_stops_its_apps(tmp_path: Path) -> None:
    out = tmp_path / "sampling.json"
    assert app_sampling.main(["--apps", "2", "--rounds", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {
        "apps", "rounds", "cpu_ms_per_round", "wall_ms_per_round", "cpu_ms_per_app",
    }  # fmt: skip
    assert (result["apps"], result["rounds"]) == (2, 2)
    assert result["cpu_ms_per_round"] > 0 and result["wall_ms_per_round"] > 0
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any("sampling-" in part for part in p.info["cmdline"] or ())
        and "while :; do sleep 5; done" in (p.info["cmdline"] or ())
    ]
    assert left == []
