"""``edgechain experiment paper`` without ``--sim`` (``lab/paper/live_run.py``), run as a
user runs it: the CLI as a subprocess, a testnet of 5 real node processes at 1 s slots
running 6 apps the planner places (the default form; ``--start-on-one-node`` adds a
drain and an undrain through the CLI, 20-40 s more on this shared host, and is run by
hand: see the module's report).

Checked: the exit code and the run directory (report.md, result.json, every PNG);
result.json against what the testnet's launcher collected on its own from the same
nodes (``collected.json``: the canonical chain, the migrations) and against itself
(roles per slot, votes within the committee, reports, Fig. 11's apps, Table 3 from the
run's migrations when the planner made any); report.md's numbers are result.json's;
nothing of the testnet is left running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgechain.lab.faults_live import find_leftovers
from edgechain.lab.paper import live_data
from edgechain.lab.paper.run import FIGURE_FILES

pytestmark = pytest.mark.xdist_group("testnet-light")

NODES, COMMITTEE, APPS, SLOTS = 5, 3, 6, 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIVE_FIGURES = set(FIGURE_FILES) - {"overlay", "fig10"}
"""Every figure but the simulator's overlay one; Fig. 10 only when the run migrated."""


def get_table_row(report: str, first_cell: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in report.md")


def get_tags(out: Path) -> set[str]:
    """The apps' tags (the last word of each spec's command)."""
    return {json.loads(p.read_text())["command"][-1] for p in (out / "specs").glob("*.json")}


def check_against_the_launcher(result: dict[str, Any]) -> None:
    """The slots and migrations match what the testnet launcher asked the same nodes
    for when it stopped them (a later moment: it may hold more)."""
    live, config = result["live"], result["config"]
    collected = json.loads((Path(config["testnet_dir"]) / "collected.json").read_text())
    chain = collected[live["reference_node"]]["chain"]
    by_slot = {e["slot"]: ("skip" if e["skip"] else "block") for e in chain}
    slots = range(1, config["slots_run"] + 1)
    assert live["slots"]["kind"] == [by_slot.get(s, "none") for s in slots]
    theirs = [
        (m["slot"], m["name"], m["outcome"], m["save_ms"])
        for answer in collected.values()
        for m in answer["migrations"] or ()
    ]
    ours = [(m["slot"], m["app"], m["outcome"], m["save_ms"]) for m in live["migrations"]]
    assert set(ours) <= set(theirs)


def check_consistency(result: dict[str, Any]) -> None:
    live, config = result["live"], result["config"]
    slots_run = config["slots_run"]
    assert slots_run >= config["first_slot"] + SLOTS
    summary, series = live["summary"], live["slots"]
    assert summary["violations"] == []
    assert summary["blocks"] + summary["skip_blocks"] + summary["empty_slots"] == slots_run
    # Fig. 7: one producer a slot, a committee of at most COMMITTEE; every full block
    # made by its elected producer.
    counts = live["roles"]["counts"]
    assert sum(counts["producer"]) == slots_run
    assert slots_run <= sum(counts["committee"]) <= slots_run * COMMITTEE
    assert sum(counts["representative"]) >= slots_run
    assert live["roles"]["producers_checked"] == summary["blocks"]
    assert live["roles"]["producers_not_elected"] == 0
    # Fig. 8: votes within the committee, a majority in every block.
    votes = [v for v, k in zip(series["votes"], series["kind"], strict=True) if k == "block"]
    assert all(COMMITTEE // 2 + 1 <= v <= COMMITTEE for v in votes)
    # Fig. 12: the samples are the summary's.
    reports = live["reports"]
    assert summary["report_to_producer_ms"]["samples"] == len(reports["to_producer_ms"]) > 0
    assert sum(reports["block_due"]) == summary["reports_due"]
    assert all(i <= d for i, d in zip(reports["block_included"], reports["block_due"], strict=True))
    # Fig. 11: from slot 0 (the apps on chain) to the end, where every app is placed.
    stacks = live["app_stacks"]
    assert stacks["moments"][0] == config["first_slot"] and len(stacks["moments"]) == 4
    last = stacks["stacks"][str(stacks["moments"][-1])]
    assert sum(len(v) for v in last.values()) == APPS and len(last) > 1
    # Fig. 10 / Table 3: this run's completed migrations, if the planner made any.
    completed = [m for m in live["migrations"] if m["outcome"] == "completed"]
    assert ("fig10" in result["figures"]) == bool(completed)
    if completed:
        rows = [r for r in result["migration"]["rows"] if r["source"] == "live testnet"]
        assert {r["segment"] for r in rows} == {"save", "transmit", "resume"}
        assert all(r["stats"]["runs"] == len(completed) for r in rows)
    checks = result["checks"]
    assert checks["copies"]["max_unfrozen_copies"] == 1
    assert checks["not_once_at_end"] == [] and checks["leftover_processes"] == []


def test_the_live_form_draws_the_figures_from_a_real_testnet(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "experiment", "paper", "--nodes", str(NODES),
         "--committee", str(COMMITTEE), "--slot-duration", "1", "--slots", str(SLOTS),
         "--apps", str(APPS), "--setup-timeout", "60",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    result = (
        json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
    )
    testnet_dir = Path(result["config"]["testnet_dir"]) if result else None
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert result is not None and testnet_dir is not None
        assert f"of {SLOTS} (chain slot" in done.stderr and "violations      none" in done.stdout
        assert set(result["figures"]) - {"fig10"} == LIVE_FIGURES
        for name in result["figures"].values():
            assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
        check_consistency(result)
        check_against_the_launcher(result)
        report = (out / "report.md").read_text()
        summary = result["live"]["summary"]
        row = get_table_row(report, "blocks / skip blocks / empty slots")
        assert (
            row[1] == f"{summary['blocks']} / {summary['skip_blocks']} / {summary['empty_slots']}"
        )
        for name in result["figures"].values():
            assert f"]({name})" in report
        assert find_leftovers(testnet_dir, get_tags(out)) == []
    finally:
        if testnet_dir is not None and testnet_dir.parent != out:
            shutil.rmtree(testnet_dir.parent, ignore_errors=True)


# --- the pure parts, on hand-made answers -------------------------------------------


NAMES = {"aa" * 32: "node-000", "bb" * 32: "node-001"}


def test_fig11_takes_each_app_s_reported_share_or_its_request() -> None:
    snapshot = {
        "slot": 7,
        "head_slot": 6,
        "apps": [
            {"id": "11" * 8, "name": "a", "node": "aa" * 8},
            {"id": "22" * 8, "name": "b", "node": "aa" * 8},
            {"id": "33" * 8, "name": "c", "node": "bb" * 8},
            {"id": "44" * 8, "name": "d", "node": None},
        ],
        "nodes": [
            {"id": "aa" * 8, "apps": [{"id": "11" * 8, "cpu_bp": 250}]},
            # A report listing an app the chain places elsewhere does not count for it.
            {"id": "bb" * 8, "apps": [{"id": "22" * 8, "cpu_bp": 900}]},
        ],
    }
    requests = {"a": 8.0, "b": 6.0, "c": 3.0, "d": 2.0}
    stacks = live_data.get_app_stacks([snapshot], live_data.get_labels(NAMES), requests)
    assert stacks["stacks"]["7"] == {"n0": [6.0, 2.5], "n1": [3.0]}
    assert stacks["queued"]["7"] == 1
    assert stacks["load_sources"] == {"reported": 1, "request": 2}
    assert stacks["shown_nodes"] == ["n0", "n1"]


def test_table3_rows_come_from_the_completed_migrations() -> None:
    answers = {
        "node-000": [
            {"slot": 5, "name": "a", "to": "bb" * 8, "outcome": "completed", "save_ms": 4.0,
             "transmit_ms": 1.0, "resume_ms": 9.0, "raw_bytes": 2_000_000},
            {"slot": 6, "name": "b", "to": "bb" * 8, "outcome": "refused", "save_ms": 0.0,
             "transmit_ms": 0.0, "resume_ms": 0.0, "raw_bytes": 0},
        ],
        "node-001": [
            {"slot": 3, "name": "c", "to": "aa" * 8, "outcome": "completed", "save_ms": 2.0,
             "transmit_ms": 3.0, "resume_ms": 5.0, "raw_bytes": 4_000_000},
        ],
        "node-002": None,
    }  # fmt: skip
    attempts = live_data.get_migration_list(answers, NAMES)
    assert [(m["slot"], m["from"], m["to"]) for m in attempts] == [
        (3, "node-001", "node-000"), (5, "node-000", "node-001"), (6, "node-000", "node-001"),
    ]  # fmt: skip
    rows = live_data.get_live_migration_rows(attempts, "process")
    assert [r["segment"] for r in rows] == ["save", "transmit", "resume"]
    save = rows[0]["stats"]
    assert (save["min_ms"], save["max_ms"], save["median_ms"], save["runs"]) == (2.0, 4.0, 3.0, 2)
    assert rows[0]["state_mb"] == 3.0
    merged = live_data.merge_migration(rows, None, "process")
    assert merged is not None and merged["files"] == ["live testnet"]
    assert live_data.merge_migration([], None, "process") is None


def test_the_headline_counts_slots_and_reports() -> None:
    series = {
        "slot": [1, 2, 3, 4],
        "kind": ["block", "skip", "block", "none"],
        "votes": [3, 2, 2, 0],
        "block_time_ms": [300, 900, 500, None],
    }
    summary = live_data.summarize_slots(series)
    assert (summary["blocks"], summary["skip_blocks"], summary["empty_slots"]) == (2, 1, 1)
    assert summary["votes_per_block"] == {"min": 2, "max": 3, "mean": 2.5}
    reports = {"to_producer_ms": [0, 40, 60], "block_due": [2, 2], "block_included": [2, 1]}
    counted = live_data.summarize_reports(reports)
    assert counted["reports_due"] == 4 and counted["report_inclusion"] == 0.75
    assert counted["report_to_producer_ms"]["samples"] == 3
