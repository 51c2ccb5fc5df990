"""Room for app state (block format 17): the planner moves no app to a node whose
reported ``state_room_bytes`` twice its state fills (``TRANSFER_ROOM_FACTOR``: the
payload lands beside the state), starts none where the state once fills it
(``START_ROOM_FACTOR``), in every phase that picks a node, and moves no app off a node
without room to write its state out.

Session 47's trial: a 300 MB state planned onto a node with a 256 MiB disk; every retry
of the transfer filled that node's disk and failed. Scores as in ``test_balancing.py``;
apps are placed at slot 2, reports are of slot 9, plans of slot 10.
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

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.orchestrator import NodeInfo, compute_load_model, compute_plan
from edgechain.orchestrator.fleet import compute_app_view
from edgechain.orchestrator.plan_state import MIB
from edgechain.orchestrator.registry import AppState, get_record, put_record
from edgechain.types import AppId, Slot

A, B, C = node_id(1), node_id(2), node_id(3)
NODES = [NodeInfo(A), NodeInfo(B), NodeInfo(C)]
SLOT = Slot(10)
BIG = 300 * MIB


def _overloaded_a(
    names: tuple[str, ...], size: int = BIG
) -> tuple[list[tuple[AppId, int, int]], dict[AppId, int]]:
    """A's listing of apps of 1000 bp CPU each, every one with a state of ``size``."""
    specs = [app_spec(n) for n in names]
    return [(app_id(s), 1_000, 0) for s in specs], {app_id(s): size for s in specs}


def test_balancing_skips_a_lighter_node_without_room_for_the_state() -> None:
    big = app_spec("big")
    registry = build_registry([(big, A)])
    a = report(A, 8_000, apps=[(app_id(big), 3_000, 0)], state_bytes={app_id(big): BIG})
    # B is the lightest but has 500 MiB of room, less than twice the state; C, a little
    # heavier, has 1 GiB.
    b_tight, c_roomy = (
        report(B, 0, state_room_bytes=500 * MIB),
        report(C, 500, state_room_bytes=1 << 30),
    )
    assert migrations(compute_plan(registry, [a, b_tight, c_roomy], NODES, SLOT, 1)) == [
        (app_id(big), A, C)
    ]
    # With room on B the same plan takes B: the room alone made the difference.
    b_roomy = report(B, 0, state_room_bytes=1 << 30)
    assert migrations(compute_plan(registry, [a, b_roomy, c_roomy], NODES, SLOT, 1)) == [
        (app_id(big), A, B)
    ]
    # Without a node with room the app stays.
    assert migrations(compute_plan(registry, [a, b_tight], NODES[:2], SLOT, 4)) == []


def test_a_state_on_its_way_counts_against_the_room_until_its_node_lists_it() -> None:
    """B reported 700 MiB of room at slot 9, but a 300 MiB app moved to B at slot 9 is
    not in that figure (B has not listed it since): its transfer leaves 100 MiB, so a
    second 300 MiB app does not follow it."""
    first, second, third = (app_spec(n) for n in ("first", "second", "third"))
    registry = build_registry([(first, A), (second, A), (third, A)])
    registry = apply_test_block(
        registry, Slot(9), (), (PlanEntry(PlanAction.MIGRATE, app_id(first), A, B),), ()
    )
    usage, sizes = _overloaded_a(("first", "second", "third"))
    reports = [
        report(A, 8_000, apps=usage, state_bytes=sizes),
        report(B, 0, state_room_bytes=700 * MIB),
    ]
    model = compute_load_model(registry, reports, frozenset({A, B}), SLOT)
    assert model.state_room == {B: 100 * MIB}
    assert migrations(compute_plan(registry, reports, NODES[:2], SLOT, 4)) == []
    # Once B lists the first app (its state is in B's measure), the room is B's figure
    # and one more 300 MiB app fits it, twice over.
    after = report(
        B, 1_000, apps=[usage[0]], slot=10, state_bytes=sizes, state_room_bytes=700 * MIB
    )
    model = compute_load_model(registry, [reports[0], after], frozenset({A, B}), Slot(11))
    assert model.state_room == {B: 700 * MIB}
    moves = migrations(compute_plan(registry, [reports[0], after], NODES[:2], Slot(11), 4))
    assert len(moves) == 1


def test_one_plan_does_not_send_two_states_into_room_for_one() -> None:
    """Two 100 MiB moves fit B's budget for one slot (two migrations, 256 MiB), not its
    350 MiB of room: their transfers run at once, 200 MiB each at their peak."""
    names = ("p", "q", "r", "s")
    usage, sizes = _overloaded_a(names, size=100 * MIB)
    registry = build_registry([(app_spec(n), A) for n in names])
    a = report(A, 8_000, apps=usage, state_bytes=sizes)
    reports = [a, report(B, 0, state_room_bytes=350 * MIB)]
    assert len(migrations(compute_plan(registry, reports, NODES[:2], SLOT, 8))) == 1
    roomy = [a, report(B, 0, state_room_bytes=1 << 30)]
    assert len(migrations(compute_plan(registry, roomy, NODES[:2], SLOT, 8))) == 2


def test_no_app_leaves_a_node_without_room_to_write_its_state_out() -> None:
    """The origin writes a migration's payload to its own disk before sending it: with
    less room than the state, the move would fail at every attempt while the chain
    placed the app elsewhere. It stays, and moves once the room is back."""
    spec = app_spec("stuck")
    registry = build_registry([(spec, A)])
    usage, sizes = [(app_id(spec), 1_000, 0)], {app_id(spec): BIG}
    roomy_b = report(B, 0, state_room_bytes=1 << 30)
    full_a = report(A, 8_000, apps=usage, state_bytes=sizes, state_room_bytes=100 * MIB)
    assert migrations(compute_plan(registry, [full_a, roomy_b], NODES[:2], SLOT, 4)) == []
    drained = compute_plan(registry, [full_a, roomy_b], NODES[:2], SLOT, 4, draining=frozenset({A}))
    assert migrations(drained) == []
    freed = replace(full_a, state_room_bytes=BIG)
    assert migrations(compute_plan(registry, [freed, roomy_b], NODES[:2], SLOT, 4)) == [
        (app_id(spec), A, B)
    ]


def test_no_new_app_goes_to_a_node_with_no_room_at_all() -> None:
    """A node whose disk is at its reserve reports 0: it takes no PLACE, even the
    least-loaded one and even an app with no state yet; the others do."""
    specs = [app_spec(f"new{i}", cpu_bp=500) for i in range(4)]
    registry = build_registry([(s, None) for s in specs])
    reports = [report(A, 0, state_room_bytes=0), report(B, 3_000), report(C, 3_000)]
    placed = placements(compute_plan(registry, reports, NODES, SLOT, 4))
    assert len(placed) == 4 and all(node != A for _, node in placed)
    # No node with room: every app stays queued.
    full = [report(n, 0, state_room_bytes=0) for n in (A, B, C)]
    assert placements(compute_plan(registry, full, NODES, SLOT, 4)) == []


def test_drains_recoveries_operator_moves_and_replicas_respect_the_room() -> None:
    spec = replace(app_spec("d"), stateful=True, replica_interval_slots=2)
    registry = build_registry([(spec, A)])
    a = report(A, 2_000, apps=[(app_id(spec), 2_000, 0)], state_bytes={app_id(spec): BIG})
    roomless_b = report(B, 0, state_room_bytes=10 * MIB)
    roomy_c = report(C, 4_000, state_room_bytes=1 << 30)
    # A drain takes the app to C, the heavier node with room.
    drain = compute_plan(
        registry, [a, roomless_b, roomy_c], NODES, SLOT, 4, draining=frozenset({A})
    )
    assert migrations(drain) == [(app_id(spec), A, C)]
    # Without room anywhere the drain waits.
    nowhere = compute_plan(registry, [a, roomless_b], NODES[:2], SLOT, 4, draining=frozenset({A}))
    assert migrations(nowhere) == []
    # The replica node is the one with room.
    replicas = [
        e
        for e in compute_plan(registry, [a, roomless_b, roomy_c], NODES, SLOT, 4)
        if e.action is PlanAction.REPLICA
    ]
    assert [(e.app, e.destination) for e in replicas] == [(app_id(spec), C)]
    # An operator's move to B waits (the command stays pending); to C it goes.
    record = get_record(registry, app_id(spec))
    assert record is not None and record.state is AppState.RUNNING
    to_b = put_record(registry, replace(record, move_to=B))
    assert migrations(compute_plan(to_b, [a, roomless_b, roomy_c], NODES, SLOT, 4)) == []
    to_c = put_record(registry, replace(record, move_to=C))
    assert migrations(compute_plan(to_c, [a, roomless_b, roomy_c], NODES, SLOT, 4)) == [
        (app_id(spec), A, C)
    ]
    # A down node's app is recovered onto the node with room, not the lighter one: its
    # size is the one its node's last report gave.
    recovered = compute_plan(
        registry, [a, roomless_b, roomy_c], NODES, SLOT, 4, down=frozenset({A})
    )
    assert [(e.app, e.destination) for e in recovered if e.action is PlanAction.RECOVER] == [
        (app_id(spec), C)
    ]


def test_an_unmeasured_room_is_no_limit() -> None:
    """The simulator's nodes, and any node that does not measure its disk."""
    spec = app_spec("u")
    registry = build_registry([(spec, A)])
    a = report(A, 8_000, apps=[(app_id(spec), 1_000, 0)], state_bytes={app_id(spec): BIG})
    reports = [a, report(B, 0)]
    assert compute_load_model(registry, reports, frozenset({A, B}), SLOT).state_room == {}
    assert migrations(compute_plan(registry, reports, NODES[:2], SLOT, 4)) == [(app_id(spec), A, B)]


def test_an_app_view_gives_the_state_size_its_node_reported() -> None:
    """What ``edgechain apps show`` explains a waiting move with: the size the app's own
    node reported, else the largest another node that lists it reported."""
    spec = app_spec("sized")
    registry = build_registry([(spec, A)])
    record = get_record(registry, app_id(spec))
    assert record is not None
    own = report(A, 0, apps=[(app_id(spec), 10, 0)], state_bytes={app_id(spec): 5 * MIB})
    other = report(B, 0, apps=[(app_id(spec), 10, 0)], state_bytes={app_id(spec): 9 * MIB})
    assert compute_app_view(record, [own, other]).state_bytes == 5 * MIB
    assert compute_app_view(record, [other]).state_bytes == 9 * MIB
    assert compute_app_view(record, []).state_bytes is None


def test_an_app_view_runs_on_only_what_reports_after_its_move_saw() -> None:
    """``RUNS ON`` after a move: the node the app left drops out when the move lands
    (its report from before the move says where the app was), and stays listed while a
    report made after the move still lists it (the origin hands the app over)."""
    spec = app_spec("moved")
    registry = build_registry([(spec, A)], placed_at=10)
    record = get_record(registry, app_id(spec))
    assert record is not None and record.last_move_slot == 10
    listed = [(app_id(spec), 10, 0)]
    before = report(B, 0, apps=listed, slot=9)
    after = report(B, 0, apps=listed, slot=11)
    own = report(A, 0, apps=listed, slot=11)
    assert compute_app_view(record, [before]).reported_on == ()
    assert compute_app_view(record, [before, own]).reported_on == (A,)
    assert compute_app_view(record, [after, own]).reported_on == (A, B)
    assert compute_app_view(record, [before]).state_bytes == 0


def test_a_start_needs_room_for_the_state_once_a_transfer_twice() -> None:
    """A RECOVER starts the app from nothing or from the replica its node holds: the
    state lands once. A MIGRATE lands its payload beside the state: twice."""
    spec = app_spec("once")
    registry = build_registry([(spec, A)])
    a = report(A, 2_000, apps=[(app_id(spec), 1_000, 0)], state_bytes={app_id(spec): BIG})
    b = report(B, 0, state_room_bytes=400 * MIB)
    drain = compute_plan(registry, [a, b], NODES[:2], SLOT, 4, draining=frozenset({A}))
    assert migrations(drain) == []
    recovered = compute_plan(registry, [a, b], NODES[:2], SLOT, 4, down=frozenset({A}))
    assert [(e.app, e.destination) for e in recovered if e.action is PlanAction.RECOVER] == [
        (app_id(spec), B)
    ]
    tight = replace(b, state_room_bytes=BIG)  # not more than the state: no start either
    recovered = compute_plan(registry, [a, tight], NODES[:2], SLOT, 4, down=frozenset({A}))
    assert [e for e in recovered if e.action is PlanAction.RECOVER] == []
