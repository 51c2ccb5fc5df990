"""``benchmarks/planner.py`` on a small fleet: the JSON's shape, and the invariants that
hold whatever the planner (every app placed once, counts that match the plans, one
ratio per slot, Algorithm 1's one move per slot). Nothing about balance is asserted."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))

import planner

from edgechain.chain.model import BASIS_POINTS, PlanAction
from edgechain.orchestrator.registry import apply_block_to_registry
from edgechain.types import Slot

NODES, APPS, SLOTS = 10, 20, 12
SUMMARY_KEYS = {
    "nodes",
    "apps",
    "start",
    "reports",
    "planner",
    "requests",
    "slots_to_balance",
    "migrations",
    "placements",
    "final_ratio",
    "initial_ratio",
    "ratio_after_placement",
    "back_and_forth",
    "max_migrations_in_one_slot",
    "plan_ms_p50",
    "plan_ms_max",
    "pressure_reported",
    "seed",
    "slots",
    "ratio_by_slot",
}
COMBINATIONS = [
    (name, start, mode)
    for name in planner.PLANNERS
    for start in planner.STARTS
    for mode in planner.REPORT_MODES
]


def test_the_command_line_writes_every_combination_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "planner.json"
    args = ["--nodes", str(NODES), "--apps", str(APPS), "--slots", "5", "--json", str(out)]
    assert planner.main(args) == 0
    assert "algorithm1" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report) == {"scenarios", "machine"}
    assert {"python", "cpu_count"} <= set(report["machine"])
    scenarios = report["scenarios"]
    assert len(scenarios) == len(COMBINATIONS)
    assert {(s["planner"], s["start"], s["reports"]) for s in scenarios} == set(COMBINATIONS)
    for summary in scenarios:
        assert set(summary) == SUMMARY_KEYS
        assert (summary["nodes"], summary["apps"], summary["slots"]) == (NODES, APPS, 5)
        assert len(summary["ratio_by_slot"]) == 5


@pytest.mark.parametrize(("name", "start", "mode"), COMBINATIONS)
def test_invariants_whatever_the_planner(name: str, start: str, mode: str) -> None:
    scenario = planner.Scenario(NODES, APPS, start, mode, name, SLOTS, seed=7)
    run = planner.run_scenario(scenario)
    summary = run.summary
    entries = [entry for plan in run.plans for entry in plan]
    actions = Counter(entry.action for entry in entries)
    # Every app placed exactly once: by the first plan, or before it for one-node.
    placed = Counter(e.app for e in entries if e.action is PlanAction.PLACE)
    assert placed == (
        Counter(dict.fromkeys(run.fleet.demand, 1)) if start == "submitted" else Counter()
    )
    assert not run.final.queue
    assert len(run.final.records) == APPS
    assert all(record.node is not None for record in run.final.records)
    # The counts are those of the plans, and replaying the plans gives the same registry.
    assert summary["migrations"] == actions[PlanAction.MIGRATE]
    assert summary["placements"] == actions[PlanAction.PLACE]
    assert set(actions) <= {PlanAction.PLACE, PlanAction.MIGRATE}
    registry = run.fleet.registry
    for slot, plan in enumerate(run.plans, start=1):
        registry = apply_block_to_registry(registry, Slot(slot), plan, ())
    assert registry == run.final
    # One ratio per slot, each at least 1 (max >= mean), the last one is final_ratio.
    ratios = summary["ratio_by_slot"]
    assert len(ratios) == len(run.plans) == SLOTS
    assert all(ratio >= 1 for ratio in ratios)
    assert summary["final_ratio"] == ratios[-1]
    first = summary["slots_to_balance"]
    assert first is None or ratios[first - 1] <= planner.BALANCED_RATIO
    assert all(r > planner.BALANCED_RATIO for r in ratios[: (first or SLOTS + 1) - 1])
    moves_per_slot = [sum(e.action is PlanAction.MIGRATE for e in plan) for plan in run.plans]
    assert summary["max_migrations_in_one_slot"] == max(moves_per_slot)
    if name == "algorithm1":
        assert max(moves_per_slot) <= 1
        assert all(
            not (moves and any(e.action is PlanAction.PLACE for e in plan))
            for moves, plan in zip(moves_per_slot, run.plans, strict=True)
        )
    else:
        assert max(moves_per_slot) <= planner.get_default_max_migrations()


def test_back_and_forth_counts_returns_to_a_node_visited_before() -> None:
    scenario = planner.Scenario(NODES, APPS, "one-node", "demand", "edgechain", SLOTS, seed=7)
    run = planner.run_scenario(scenario)
    visited = {r.app: {r.node} for r in run.fleet.registry.records}
    returns = 0
    for plan in run.plans:
        for entry in plan:
            if entry.action is PlanAction.MIGRATE:
                returns += entry.destination in visited[entry.app]
                visited[entry.app].add(entry.destination)
    assert run.summary["back_and_forth"] == returns


def test_reports_share_a_saturated_cpu_and_declare_whole_percents() -> None:
    fleet = planner.build_fleet(planner.Scenario(2, 40, "one-node", "saturated", "edgechain", 1, 3))
    home = fleet.nodes[0].node
    apps = list(fleet.demand)
    total = sum(fleet.demand.values())
    assert total > BASIS_POINTS
    shared = planner.compute_node_report(home, apps, fleet.demand, "saturated", 4)
    assert shared.cpu_bp == BASIS_POINTS
    assert sum(u.cpu_bp for u in shared.apps) <= BASIS_POINTS
    assert [u.cpu_bp for u in shared.apps] == [
        fleet.demand[a] * BASIS_POINTS // total for a in apps
    ]
    if planner.HAS_PRESSURE:
        assert vars(shared)["pressure_bp"] == planner.compute_pressure(total) > 0
    full = planner.compute_node_report(home, apps, fleet.demand, "demand", 4)
    assert full.cpu_bp == BASIS_POINTS
    assert [u.cpu_bp for u in full.apps] == [fleet.demand[a] for a in apps]
    small = planner.compute_node_report(home, apps[:3], fleet.demand, "saturated", 4)
    assert small.cpu_bp == sum(fleet.demand[a] for a in apps[:3])
    assert [u.cpu_bp for u in small.apps] == [fleet.demand[a] for a in apps[:3]]
    assert all(110 <= d <= 790 for d in fleet.demand.values())
    assert [planner.compute_request(d) for d in (110, 149, 150, 751, 790)] == [
        100,
        100,
        200,
        800,
        800,
    ]


def test_a_run_is_deterministic() -> None:
    scenario = planner.Scenario(NODES, APPS, "one-node", "saturated", "algorithm1", SLOTS, 5)
    first, second = planner.run_scenario(scenario), planner.run_scenario(scenario)
    assert first.plans == second.plans
    timing = {"plan_ms_p50", "plan_ms_max"}
    assert {k: v for k, v in first.summary.items() if k not in timing} == {
        k: v for k, v in second.summary.items() if k not in timing
    }
