"""``benchmarks/overlay.py`` on a small simulation: it runs, writes its JSON and its
figure, and reads the JSON back (its own, and ``edgechain simulate --json``'s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))

import overlay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_small_run_reports_both_overlays_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "o.json", tmp_path / "o.png"
    argv = ["--nodes", "30", "--committee", "6", "--slots", "8", "--geo-regions", "3",
            "--json", str(out)]  # fmt: skip
    assert overlay.main(argv) == 0
    printed = capsys.readouterr().out
    assert "hash positions" in printed and "ratio" in printed
    summary = json.loads(out.read_text())
    assert summary["cluster_latency"]["regions"] == 3
    assert len(summary["cluster_latency"]["by_slot"]) == 8
    wrapped = tmp_path / "simulate.json"
    wrapped.write_text(json.dumps({"summary": summary}))
    assert overlay.main(["--from-json", str(wrapped), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
