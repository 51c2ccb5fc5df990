"""The abstract's claim, short form (issue 15): ``benchmarks/fleet_claim.py`` on 5
nodes running 8 apps at 1 s slots, through the command a user runs.

Checked from its exit code and JSON: every app ran exactly once where the chain placed
it, in every sample of the hold; no skip block after the join, one head; the apps spread
over several nodes; nothing left running. The full form (100 nodes, 200 apps) is in
``docs/results/fleet-claim.md``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli.live_testnet import VDF_FRACTION

pytestmark = pytest.mark.xdist_group("testnet")

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "fleet_claim.py"


def test_five_nodes_run_eight_apps_each_once(tmp_path: Path) -> None:
    out = tmp_path / "claim.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--nodes", "5", "--committee", "3", "--apps", "8",
         "--slot-duration", "1", "--hold-slots", "4", "--setup-timeout", "300",
         "--vdf-fraction", f"{VDF_FRACTION:g}",
         "--json", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    result = json.loads(out.read_text()) if out.exists() else None
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert result is not None and result["ok"] and result["violations"] == []
        assert result["copies"]["max_unfrozen_copies"] == 1
        assert result["hold"]["samples"] >= 3 and result["hold"]["samples_not_all_once"] == 0
        assert result["nodes_running_apps"] >= 3
        testnet = result["testnet"]
        assert testnet["skip_blocks_after_join"] == 0 and testnet["distinct_heads"] == 1
        assert testnet["leftover_process_groups"] == [] and result["leftover_processes"] == []
    finally:
        if result is not None:
            shutil.rmtree(Path(result["run_dir"]).parent, ignore_errors=True)
