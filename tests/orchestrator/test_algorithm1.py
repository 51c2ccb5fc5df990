"""The paper's Algorithm 1 (§3.3) as the benchmark's baseline: placement loop, one move
at most and only with an empty queue, the |DeltaScore| > |NextDeltaScore| rule, ties,
determinism.

Scores: CPU counts 2 per basis point, RAM 1 (``orchestrator/load.py``), so "cpu 1500"
is a score of 3000.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from orchestrator_helpers import (
    app_id,
    app_spec,
    apply_test_block,
    build_registry,
    migrations,
    node_id,
    placements,
    report,
)

from edgechain.chain.model import AppSpec, PlanAction, PlanEntry, ResourceReport
from edgechain.errors import LocalError
from edgechain.orchestrator.algorithm1 import compute_algorithm1_plan
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import AppState, Registry, get_record, put_record
from edgechain.types import NodeId, Slot

A, B, C = node_id(1), node_id(2), node_id(3)
NODES = [NodeInfo(A), NodeInfo(B), NodeInfo(C)]
SLOT = Slot(10)


def placed(specs_cpu: dict[NodeId, list[int]]) -> tuple[Registry, dict[NodeId, list[AppSpec]]]:
    """A registry with apps of the given CPU hints placed on each node."""
    specs = {
        node: [app_spec(f"{node[0]}-{i}", cpu_bp=cpu) for i, cpu in enumerate(cpus)]
        for node, cpus in specs_cpu.items()
    }
    registry = build_registry([(s, node) for node, node_specs in specs.items() for s in node_specs])
    return registry, specs


def reports_for(registry: Registry, backgrounds: dict[NodeId, int]) -> list[ResourceReport]:
    """A report per node of ``backgrounds``: each running app there at its CPU hint, and
    the node's total (background + apps)."""
    reports = []
    for node, background in backgrounds.items():
        apps = [
            (r.app, r.spec.cpu_bp, 0)
            for r in registry.records
            if r.node == node and r.state is AppState.RUNNING
        ]
        reports.append(report(node, background + sum(cpu for _, cpu, _ in apps), apps=apps))
    return reports


def test_queued_apps_go_to_the_least_loaded_node_updating_loads() -> None:
    specs = [app_spec(f"app{i}", cpu_bp=1_000) for i in range(4)]  # score 2000 each
    registry = build_registry([(s, None) for s in specs])
    reports = [report(A, 500), report(B, 1_500), report(C, 2_500)]  # 1000, 3000, 5000
    plan = compute_algorithm1_plan(registry, reports, NODES, SLOT)
    # A: 1000 -> 3000; tie A/B at 3000 -> A (smaller id) -> 5000; then B -> 5000; then
    # all three at 5000 -> A.
    assert placements(plan) == [
        (app_id(specs[0]), A),
        (app_id(specs[1]), A),
        (app_id(specs[2]), B),
        (app_id(specs[3]), A),
    ]
    assert all(e.action is PlanAction.PLACE and e.origin == b"" for e in plan)


def test_without_reports_the_queue_is_spread_by_hints() -> None:
    specs = [app_spec(f"app{i}", cpu_bp=500) for i in range(6)]
    registry = build_registry([(s, None) for s in specs])
    plan = compute_algorithm1_plan(registry, [], NODES, SLOT)
    assert [node for _, node in placements(plan)] == [A, B, C, A, B, C]


def test_a_non_empty_queue_means_no_migration() -> None:
    registry, _ = placed({A: [3_000, 3_000]})  # A 12000, B and C 0
    waiting = app_spec("waiting", cpu_bp=100)
    registry = apply_test_block(registry, Slot(3), [(app_id(waiting), waiting)], (), ())
    reports = reports_for(registry, {A: 0, B: 0, C: 0})
    plan = compute_algorithm1_plan(registry, reports, NODES, SLOT)
    assert plan == (PlanEntry(PlanAction.PLACE, app_id(waiting), b"", B),)


def test_at_most_one_move_the_max_app_of_the_max_node_to_the_min_node() -> None:
    registry, specs = placed({A: [1_000, 2_000, 1_500, 500], B: [500]})
    reports = reports_for(registry, {A: 0, B: 0, C: 200})  # 10000, 1000, 400
    plan = compute_algorithm1_plan(registry, reports, NODES, SLOT)
    # Delta 9600, the max app scores 4000: next delta 6000 - 4400 = 1600.
    assert plan == (PlanEntry(PlanAction.MIGRATE, app_id(specs[A][1]), A, C),)


def test_no_move_when_it_would_not_narrow_the_gap() -> None:
    # Gap 6000 - 0 = 6000, the only app scores 6000: |6000| > |-6000| is false.
    registry, _ = placed({A: [3_000]})
    assert (
        compute_algorithm1_plan(registry, reports_for(registry, {A: 0, B: 0, C: 0}), NODES, SLOT)
        == ()
    )
    # An app larger than the gap would invert it and widen it: no move either.
    registry, _ = placed({A: [3_000], B: [1_000]})
    reports = reports_for(registry, {A: 0, B: 0, C: 1_000})  # 6000, 2000, 2000
    assert compute_algorithm1_plan(registry, reports, NODES, SLOT) == ()
    # Slightly smaller than the gap: it moves (Algorithm 1 has no minimum gain).
    registry, specs = placed({A: [3_000], B: [1_000]})
    reports = reports_for(registry, {A: 1, B: 0, C: 0})  # 6002, 2000, 0
    assert migrations(compute_algorithm1_plan(registry, reports, NODES, SLOT)) == [
        (app_id(specs[A][0]), A, C)
    ]


def test_only_the_max_app_is_considered() -> None:
    """Unlike our planner, a smaller app does not move when the largest would overshoot."""
    registry, _ = placed({A: [4_000, 500]})
    reports = reports_for(registry, {A: 0, B: 1_000, C: 1_000})
    # Gap 9000 - 2000 = 7000, the max app scores 8000: next gap -9000, no move.
    assert compute_algorithm1_plan(registry, reports, NODES, SLOT) == ()


def test_ties_go_to_the_smallest_ids() -> None:
    # A and B both at 8000: the most-loaded is A; C and D both empty: the least-loaded
    # is C; A's two apps score the same: the smaller app id moves.
    registry, specs = placed({A: [2_000, 2_000], B: [4_000]})
    reports = reports_for(registry, {A: 0, B: 0, C: 0, node_id(4): 0})
    nodes = [*NODES, NodeInfo(node_id(4))]
    plan = compute_algorithm1_plan(registry, reports, nodes, SLOT)
    first = min(app_id(specs[A][0]), app_id(specs[A][1]))
    assert migrations(plan) == [(first, A, C)]


def test_moves_only_between_reported_nodes_and_never_stopped_apps() -> None:
    registry, specs = placed({A: [3_000, 1_000, 500]})
    # C has no report: never a destination (its load is only an estimate, 0 here).
    plan = compute_algorithm1_plan(registry, reports_for(registry, {A: 0, B: 0}), NODES, SLOT)
    assert migrations(plan) == [(app_id(specs[A][0]), A, B)]
    # The big app stopped: it weighs nothing, the 1000 one is the max-load app.
    big = get_record(registry, app_id(specs[A][0]))
    assert big is not None
    stopped = put_record(registry, replace(big, state=AppState.STOPPED))
    plan = compute_algorithm1_plan(stopped, reports_for(stopped, {A: 0, B: 0}), NODES, SLOT)
    assert migrations(plan) == [(app_id(specs[A][1]), A, B)]


def test_deterministic_whatever_the_input_order() -> None:
    registry, _ = placed({A: [900, 1_700, 300], B: [2_200], C: [100]})
    reports = reports_for(registry, {A: 0, B: 100, C: 50})
    expected = compute_algorithm1_plan(registry, reports, NODES, SLOT)
    assert len(migrations(expected)) == 1
    for order in itertools.permutations(range(3)):
        shuffled_reports = [reports[i] for i in order]
        shuffled_nodes = [NODES[i] for i in reversed(order)]
        plan = compute_algorithm1_plan(registry, shuffled_reports, shuffled_nodes, SLOT)
        assert plan == expected


def test_duplicate_validator_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        compute_algorithm1_plan(build_registry([]), [], [NodeInfo(A), NodeInfo(A)], SLOT)
