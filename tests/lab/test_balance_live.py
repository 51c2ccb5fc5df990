"""The planner balances, on a real testnet (issue 10, "Must show", short form).

One run of ``lab/balance.py``: 4 nodes of 0.5 declared cores, 1 s slots; every node but
``node-000`` drained with ``edgechain admin drain``, 12 cpu-load apps (3 % of a core
each) submitted with ``edgechain apps submit`` (all land on ``node-000``), then the
others undrained. The run ends once the chain places at most twice the fair share of
apps on every node for three samples in a row (or after 40 slots). About a minute.

Checked: every app ran on ``node-000`` before the undrain (process table and chain);
afterwards no node holds more than twice its fair share, on the chain and in the process
table; never two unfrozen copies of an app in any sample (scanned every second), and
every app running exactly once where the chain places it at the end; every report's
``cpu_bp`` a share (0..10 000), every node reporting; nothing of the testnet left
running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cli.live_testnet import VDF_FRACTION

from edgechain.lab.balance import HOST, BalanceConfig, run_balance
from edgechain.lab.balance_report import format_report

pytestmark = pytest.mark.xdist_group("testnet-light")

NODES = 4
APPS = 12
MOST = 2 * APPS // NODES
"""Twice the fair share."""
HOLD = 3


def is_spread(samples: Sequence[dict[str, Any]]) -> bool:
    """The last HOLD samples: every node holds at most MOST apps, on the chain and on
    the host."""
    last = samples[-HOLD:]
    return len(last) == HOLD and all(
        max(e["apps_chain"].values()) <= MOST and max(e["apps_host"].values()) <= MOST for e in last
    )


def test_apps_submitted_to_one_node_spread_over_the_testnet() -> None:
    # Not pytest's tmp_path: the nodes run their apps as an unprivileged user, who must
    # reach their state directories, and pytest's base directory is 0700.
    base = Path(tempfile.mkdtemp(prefix="edgechain-balance-"))
    base.chmod(0o711)
    config = BalanceConfig(
        run_dir=base / "run",
        nodes=NODES,
        apps=APPS,
        cpu_capacity=0.5,
        share_percent=3,
        slot_s=1.0,
        slots=40,
        pre_slots=2,
        stop_when=is_spread,
        vdf_fraction=VDF_FRACTION,
    )
    result = run_balance(config)
    print(format_report(result))  # shown on failure, or with -rA
    _check(result)
    # Kept when a check failed, and with EDGECHAIN_KEEP_RUN=1, for the nodes' logs.
    if not os.environ.get("EDGECHAIN_KEEP_RUN"):
        shutil.rmtree(base, ignore_errors=True)


def _check(result: dict[str, Any]) -> None:
    assert result["error"] is None, result["error"]
    series = result["series"]
    before = [e for e in series if e["slot"] < 0]
    after = [e for e in series if e["slot"] > 0]
    failed: dict[str, Any] = {}
    everything_on_host = {HOST: APPS} | {f"node-{i:03d}": 0 for i in range(1, NODES)}
    if not before or before[0]["apps_chain"] != everything_on_host:
        failed["every app on node-000 before the undrain (chain)"] = before[:1]
    if not before or before[0]["apps_host"] != everything_on_host:
        failed["every app on node-000 before the undrain (process table)"] = before[:1]
    if not is_spread(after):
        failed[f"at most {MOST} apps on any node at the end"] = [
            (e["slot"], e["apps_chain"], e["apps_host"]) for e in after[-HOLD:]
        ]
    copies = result["copies"]
    if result["max_copies"] != 1 or copies["samples"] < 20:
        failed["never two unfrozen copies of an app"] = copies
    if result["final_problems"]:
        failed["every app once, where the chain places it, at the end"] = result["final_problems"]
    reported = [bp for e in series for bp in e["reported_cpu_bp"].values()]
    if any(bp is not None and not 0 <= bp <= 10_000 for bp in reported):
        failed["every reported cpu_bp a share"] = sorted({bp for bp in reported if bp})
    if any(bp is None for bp in series[-1]["reported_cpu_bp"].values()):
        failed["every node reporting"] = series[-1]["reported_cpu_bp"]
    if result["leftover_processes"]:
        failed["nothing of the testnet left running"] = result["leftover_processes"]
    assert failed == {}
