"""The balancing rules of issue 10 on hand-made cases: saturation, LPT placement, swaps,
the migration budget, transfer costs and the return guard.

Scores: CPU counts 2 per basis point, RAM 1 (``orchestrator/load.py``); "cpu 1500" is a
score of 3000. Apps are placed at slot 2 and plans computed at slot 10.
"""

from __future__ import annotations

from dataclasses import replace

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

from edgechain.chain.model import AppPolicy, PlanAction, PlanEntry
from edgechain.orchestrator import NodeInfo, compute_load_model, compute_plan
from edgechain.orchestrator.balancing import OPERATOR_HOLD_SLOTS, RETURN_GUARD_SLOTS
from edgechain.orchestrator.liveness import NO_STALL, QUIET_AFTER_SLOTS, compute_quiet_nodes
from edgechain.orchestrator.load import SATURATED_CPU_BP, SATURATED_PRESSURE_BP
from edgechain.orchestrator.plan_state import (
    MAX_BYTES_PER_NODE,
    MAX_IN_PER_NODE,
    MIB,
    compute_migration_budget,
)
from edgechain.orchestrator.registry import get_record, put_record
from edgechain.types import Slot

A, B, C, D = node_id(1), node_id(2), node_id(3), node_id(4)
NODES = [NodeInfo(A), NodeInfo(B), NodeInfo(C)]
SLOT = Slot(10)


# --- saturation ---------------------------------------------------------------------------


def test_a_saturated_node_counts_its_apps_at_their_declared_request() -> None:
    """Four apps declaring 40 % CPU each share one CPU: each shows 25 %."""
    specs = [app_spec(f"s{i}", cpu_bp=4_000) for i in range(4)]
    registry = build_registry([(s, A) for s in specs])
    usage = [(app_id(s), 2_500, 0) for s in specs]
    saturated = report(A, 10_000, apps=usage)
    model = compute_load_model(registry, [saturated], frozenset({A}), SLOT)
    assert model.saturated == {A}
    assert model.node_load[A] == 4 * 2 * 4_000  # the demand it could not show
    assert all(model.app_score[app_id(s)] == 8_000 for s in specs)
    # Below capacity and without pressure, the measured usage is the truth.
    calm = report(A, SATURATED_CPU_BP - 1, apps=[(a, 2_374, 0) for a, _, _ in usage])
    model = compute_load_model(registry, [calm], frozenset({A}), SLOT)
    assert model.saturated == frozenset()
    assert model.app_score[app_id(specs[0])] == 2 * 2_374
    # CPU pressure alone marks saturation (runnable tasks waited a quarter of the time).
    pressed = report(A, 6_000, apps=usage, pressure_bp=SATURATED_PRESSURE_BP)
    model = compute_load_model(registry, [pressed], frozenset({A}), SLOT)
    assert model.saturated == {A} and model.node_load[A] == 32_000


def test_a_request_below_the_measured_usage_never_lowers_the_score() -> None:
    spec = app_spec("greedy", cpu_bp=100)
    registry = build_registry([(spec, A)])
    model = compute_load_model(
        registry, [report(A, 10_000, apps=[(app_id(spec), 9_000, 0)])], frozenset({A}), SLOT
    )
    assert model.app_score[app_id(spec)] == 18_000


def test_saturated_apps_leave_at_their_demand_not_their_starved_share() -> None:
    """The issue's second case in small: with starved shares the apps looked tiny; at
    their requests the planner moves them out within the budget."""
    specs = [app_spec(f"s{i}", cpu_bp=3_000) for i in range(6)]
    registry = build_registry([(s, A) for s in specs])
    reports = [
        report(A, 10_000, apps=[(app_id(s), 1_666, 0) for s in specs]),
        report(B, 0),
        report(C, 0),
    ]
    moves = migrations(compute_plan(registry, reports, NODES, SLOT, 4))
    # 36000 on A: two apps to each of B and C (MAX_IN_PER_NODE), A keeps 12000.
    assert len(moves) == 2 * MAX_IN_PER_NODE
    assert sorted(dest for _, _, dest in moves) == [B, B, C, C]


# --- LPT placement ------------------------------------------------------------------------


def test_many_apps_are_placed_largest_first() -> None:
    """Arrival order would put 1000 and 1000 on A and B, then 3000 on C, then 3000 on A:
    loads 8000 / 2000 / 6000. Largest first: 3000 A, 3000 B, 1000 C, 1000 C: 6000 /
    6000 / 4000."""
    sizes = [500, 500, 1_500, 1_500]
    specs = [app_spec(f"lpt{i}", cpu_bp=cpu) for i, cpu in enumerate(sizes)]
    registry = build_registry([(s, None) for s in specs])
    plan = compute_plan(registry, [report(A, 0), report(B, 0), report(C, 0)], NODES, SLOT, 4)
    where = dict(placements(plan))
    assert {where[app_id(specs[2])], where[app_id(specs[3])]} == {A, B}
    assert where[app_id(specs[0])] == where[app_id(specs[1])] == C


def test_a_preferred_node_wins_over_lpt() -> None:
    """An app evicted with its node restarts on its replica node whatever the sizes."""
    stateful = replace(app_spec("kept", cpu_bp=2_000), stateful=True, replica_interval_slots=2)
    big = app_spec("big", cpu_bp=3_000)
    registry = build_registry([(stateful, A), (big, None)])
    registry = apply_test_block(
        registry, Slot(3), (), (PlanEntry(PlanAction.REPLICA, app_id(stateful), A, C),), ()
    )
    registry = apply_test_block(registry, Slot(4), (), (), {A})  # A left, kept stays on A
    reports = [report(B, 0), report(C, 0)]
    plan = compute_plan(registry, reports, NODES[1:], SLOT, 4, down=frozenset({A}))
    recovered = [(e.app, e.destination) for e in plan if e.action is PlanAction.RECOVER]
    assert recovered == [(app_id(stateful), C)]
    assert placements(plan) == [(app_id(big), B)]


# --- swaps --------------------------------------------------------------------------------


def test_a_swap_helps_where_no_single_move_can() -> None:
    """A: 5800 + 4200 = 10000, B: 4400 + 1000 = 5400 (mean 7700, A above the band at
    9240). Gap 4600 (m = 481): every app of A would overshoot it (4200 leaves g - a =
    400 < m, 5800 inverts it). Swaps: 5800 for 4400 (d = 1400) or 4200 for 1000 (d =
    3200) have the same potential drop 2 * d * (g - d); the first found, A's largest
    app, wins the tie."""
    a1, a2, b1, b2 = (app_spec(n) for n in ("a1", "a2", "b1", "b2"))
    registry = build_registry([(a1, A), (a2, A), (b1, B), (b2, B)])
    reports = [
        report(A, 5_000, apps=[(app_id(a1), 2_900, 0), (app_id(a2), 2_100, 0)]),
        report(B, 2_700, apps=[(app_id(b1), 2_200, 0), (app_id(b2), 500, 0)]),
    ]
    plan = compute_plan(registry, reports, NODES[:2], SLOT, 4)
    assert migrations(plan) == [(app_id(a1), A, B), (app_id(b1), B, A)]
    # Without budget for two moves, nothing.
    assert compute_plan(registry, reports, NODES[:2], SLOT, 1) == ()


def test_a_swap_respects_anti_affinity_counting_the_leaving_app() -> None:
    group = AppPolicy(anti_affinity="g")
    a1, a2 = app_spec("a1", policy=AppPolicy(pinned=True)), app_spec("a2", policy=group)
    b1, b2 = app_spec("b1"), app_spec("b2", policy=group)
    registry = build_registry([(a1, A), (a2, A), (b1, B), (b2, B)])
    reports = [
        report(A, 5_000, apps=[(app_id(a1), 2_900, 0), (app_id(a2), 2_100, 0)]),
        report(B, 2_700, apps=[(app_id(b1), 2_200, 0), (app_id(b2), 500, 0)]),
    ]
    # a1 is pinned, so the only swap is a2 for b2, which share group g: each may take
    # the other's place.
    plan = compute_plan(registry, reports, NODES[:2], SLOT, 4)
    assert migrations(plan) == [(app_id(a2), A, B), (app_id(b2), B, A)]


# --- budget -------------------------------------------------------------------------------


def test_the_budget_scales_with_the_fleet() -> None:
    assert compute_migration_budget(4, 3).total == 4
    small = compute_migration_budget(4, 100)
    assert (small.total, small.out_per_node, small.in_per_node) == (25, 13, MAX_IN_PER_NODE)
    large = compute_migration_budget(4, 1000)
    assert (large.total, large.out_per_node) == (250, 125)
    assert compute_migration_budget(0, 1000).total == 0


def test_no_node_receives_more_than_its_incoming_limit() -> None:
    specs = [app_spec(f"m{i}") for i in range(8)]
    registry = build_registry([(s, A) for s in specs])
    reports = [report(A, 10_000, apps=[(app_id(s), 1_000, 0) for s in specs]), report(B, 0)]
    moves = migrations(compute_plan(registry, reports, NODES[:2], SLOT, 8))
    assert len(moves) == MAX_IN_PER_NODE


def test_large_state_counts_against_the_bytes_per_node() -> None:
    specs = [app_spec(f"big{i}") for i in range(3)]
    registry = build_registry([(s, A) for s in specs])
    sizes = {app_id(s): MAX_BYTES_PER_NODE // 2 + MIB for s in specs}
    usage = [(app_id(s), 2_000, 0) for s in specs]
    reports = [report(A, 10_000, apps=usage, state_bytes=sizes), report(B, 0), report(C, 0)]
    moves = migrations(compute_plan(registry, reports, NODES, SLOT, 8))
    # A sends its first large state whatever its size, then a second would exceed the
    # bytes A may send in one slot.
    assert len(moves) == 1


def test_cheaper_moves_first_when_the_gain_is_equal() -> None:
    heavy, light = app_spec("heavy-state"), app_spec("light-state")
    registry = build_registry([(heavy, A), (light, A)])
    usage = [(app_id(heavy), 2_000, 0), (app_id(light), 2_000, 0)]
    sizes = {app_id(heavy): 200 * MIB, app_id(light): 1 * MIB}
    reports = [report(A, 5_000, apps=usage, state_bytes=sizes), report(B, 0)]
    moves = migrations(compute_plan(registry, reports, NODES[:2], SLOT, 1))
    assert moves == [(app_id(light), A, B)]


# --- no return ----------------------------------------------------------------------------


def test_balancing_does_not_send_an_app_back_to_the_node_it_left() -> None:
    x, y = app_spec("x"), app_spec("y")
    registry = build_registry([(x, A), (y, A)])
    registry = apply_test_block(
        registry, Slot(3), (), (PlanEntry(PlanAction.MIGRATE, app_id(x), A, B),), ()
    )
    # Later B is the loaded one and A the free one: x may not go back yet, y may not
    # move (it is on A), so nothing moves to A.
    reports = [
        report(A, 0, apps=[(app_id(y), 0, 0)]),
        report(B, 8_000, apps=[(app_id(x), 3_000, 0)]),
        report(C, 7_000),
    ]
    nodes = NODES
    slot = Slot(3 + RETURN_GUARD_SLOTS - 1)
    assert compute_plan(registry, reports, nodes, slot, 4) == ()
    # Once the guard has passed, it may.
    later = Slot(3 + RETURN_GUARD_SLOTS)
    assert migrations(compute_plan(registry, reports, nodes, later, 4)) == [(app_id(x), B, A)]


def test_registry_keeps_the_origin_of_the_last_move() -> None:
    x = app_spec("x")
    registry = build_registry([(x, A)])
    assert registry.records[0].previous_node is None
    moved = apply_test_block(
        registry, Slot(3), (), (PlanEntry(PlanAction.MIGRATE, app_id(x), A, C),), ()
    )
    assert moved.records[0].previous_node == A and moved.records[0].node == C
    assert D not in {r.node for r in moved.records}


def test_balancing_leaves_an_app_where_an_operator_moved_it() -> None:
    """An operator's MOVE is not undone by the next plan: the app stays on the node it
    was sent to for OPERATOR_HOLD_SLOTS, however loaded that node is."""
    x, y = app_spec("x"), app_spec("y")
    registry = build_registry([(x, A), (y, B)])
    record = get_record(registry, app_id(x))
    assert record is not None
    registry = put_record(registry, replace(record, move_to=C))
    registry = apply_test_block(
        registry, Slot(3), (), (PlanEntry(PlanAction.MIGRATE, app_id(x), A, C),), ()
    )
    record = get_record(registry, app_id(x))
    assert (
        record is not None
        and record.moved_by_operator
        and record.node == C
        and record.move_to is None
    )
    reports = [
        report(A, 0),
        report(B, 0, apps=[(app_id(y), 0, 0)]),
        report(C, 8_000, apps=[(app_id(x), 3_000, 0)]),
    ]
    assert compute_plan(registry, reports, NODES, Slot(3 + OPERATOR_HOLD_SLOTS - 1), 4) == ()
    later = Slot(3 + OPERATOR_HOLD_SLOTS)
    assert [(a, o) for a, o, _ in migrations(compute_plan(registry, reports, NODES, later, 4))] == [
        (app_id(x), C)
    ]
    # A balancing move clears the mark: only the operator's own moves hold.
    rebalanced = apply_test_block(
        registry, later, (), (PlanEntry(PlanAction.MIGRATE, app_id(x), C, A),), ()
    )
    assert not [r for r in rebalanced.records if r.moved_by_operator]


# --- quiet nodes --------------------------------------------------------------------------


def test_a_quiet_node_neither_sends_nor_receives() -> None:
    """A node one report late may have just died: a migration off it could only finish
    once it is down, without its state; and nothing new should land on it."""
    specs = [app_spec(f"q{i}") for i in range(4)]
    registry = build_registry([(s, A) for s in specs] + [(app_spec("new", cpu_bp=10), None)])
    reports = [
        report(A, 8_000, apps=[(app_id(s), 2_000, 0) for s in specs]),
        report(B, 0),
        report(C, 100),
    ]
    moving = compute_plan(registry, reports, NODES, SLOT, 4)
    assert {o for _, o, _ in migrations(moving)} == {A}
    quiet_origin = compute_plan(registry, reports, NODES, SLOT, 4, quiet=frozenset({A}))
    assert migrations(quiet_origin) == []
    quiet_target = compute_plan(registry, reports, NODES, SLOT, 4, quiet=frozenset({B}))
    assert B not in {d for _, _, d in migrations(quiet_target)}
    assert B not in {d for _, d in placements(quiet_target)}


def test_quiet_nodes_from_last_seen() -> None:
    last_seen = {A: Slot(10), B: Slot(10 - QUIET_AFTER_SLOTS), C: Slot(10 - 12)}
    assert compute_quiet_nodes(last_seen, 10, 12, NO_STALL) == {B}


def test_an_app_with_a_replica_node_is_balanced_to_it_only() -> None:
    """If the origin dies while the migration is in flight, the destination restarts the
    app from the replica it holds: any other destination would start it from nothing."""
    kept = replace(app_spec("kept", cpu_bp=2_000), replica_interval_slots=3)
    plain = app_spec("plain", cpu_bp=2_000)
    registry = build_registry([(kept, A), (plain, A)])
    record = get_record(registry, app_id(kept))
    assert record is not None
    registry = put_record(registry, replace(record, replica_node=C))
    usage = [(app_id(kept), 2_000, 0), (app_id(plain), 2_000, 0)]
    # B is the lightest node, C (the replica node) a little heavier.
    reports = [report(A, 8_000, apps=usage), report(B, 0), report(C, 500)]
    moves = migrations(compute_plan(registry, reports, NODES[:3], SLOT, 8))
    assert (app_id(kept), A, C) in moves
    assert all(dest == C for app, _, dest in moves if app == app_id(kept))
    # A replica node that is not available (down) does not hold the app back.
    down = compute_plan(registry, reports, NODES[:3], SLOT, 8, down=frozenset({C}))
    assert (app_id(kept), A, B) in migrations(down)
