"""Node liveness from chain data and what the planner does with it: recovery of a down
node's apps, no destinations on down or draining nodes, drains, replica nodes
(DESIGN.md, "Exactly once"; orchestrator/liveness.py, planner phases 0 and 3)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from orchestrator_helpers import app_id, app_spec, apply_test_block, build_registry, node_id, report

from edgechain.chain.model import AppPolicy, AppSpec, PlanAction, PlanEntry
from edgechain.chain.spec_checks import validate_app_spec
from edgechain.errors import ValidationError
from edgechain.orchestrator import NodeInfo, Registry, compute_plan, get_record
from edgechain.orchestrator.liveness import (
    FENCE_MARGIN_SLOTS,
    NO_STALL,
    QUIET_AFTER_SLOTS,
    STALL_MIN_SLOTS,
    NodeStatus,
    Stall,
    compute_down_nodes,
    compute_last_seen,
    compute_quiet_nodes,
    compute_stall,
    get_lease_end_slot,
    get_node_status,
    get_silence_start,
    is_down,
)
from edgechain.orchestrator.load import is_move_landed
from edgechain.orchestrator.registry import (
    AppState,
    apply_block_to_registry,
    apply_reports_to_registry,
    is_state_current,
    put_record,
)
from edgechain.types import AppId, NodeId, Slot

A, B, C, D, E = node_id(1), node_id(2), node_id(3), node_id(4), node_id(5)
NODES = [NodeInfo(A), NodeInfo(B), NodeInfo(C), NodeInfo(D)]
SLOT = Slot(40)
K = 12


def replicated(name: str, every: int = 5, policy: AppPolicy | None = None) -> AppSpec:
    spec = app_spec(name, cpu_bp=500, policy=policy)
    return replace(spec, stateful=True, replica_interval_slots=every)


# --- liveness --------------------------------------------------------------------------


def test_last_seen_rises_with_contributions_and_follows_the_validator_set() -> None:
    seen = compute_last_seen(
        {A: Slot(3), B: Slot(9)}, Slot(10), [(A, Slot(10)), (B, Slot(8))], [A, B, C], K
    )
    # B's older contribution does not lower it; C was just included: seen now.
    assert seen == {A: 10, B: 9, C: 10}
    # B leaves the set: it stays known (its apps wait for it to be down) until it is.
    assert compute_last_seen(seen, Slot(11), [], [A, C], K) == {A: 10, B: 9, C: 10}
    # It is forgotten once down, on a quorate chain (here A and C are recent) ...
    recent = {A: Slot(20), B: Slot(9), C: Slot(20)}
    assert compute_last_seen(recent, Slot(9 + K), [], [A, C], K) == {A: 20, C: 20}
    # ... never on a chain that is not (the minority side of a partition excludes the
    # silent majority: forgetting them would hand it the quorum) ...
    stale = {A: Slot(10), B: Slot(9), C: Slot(10)}
    assert B in compute_last_seen(stale, Slot(9 + K), [], [A, C], K)
    # ... unless the admin banned it.
    assert B not in compute_last_seen(stale, Slot(9 + K), [], [A, C], K, banned=[B])


def test_status_down_after_k_slots_down_wins_over_draining() -> None:
    seen = {A: Slot(10), B: Slot(20), C: Slot(21)}
    assert get_node_status(seen, A, 21, K, (), NO_STALL) is NodeStatus.ACTIVE
    assert get_node_status(seen, A, 22, K, (), NO_STALL) is NodeStatus.DOWN
    assert get_node_status(seen, B, 22, K, (B,), NO_STALL) is NodeStatus.DRAINING
    assert get_node_status(seen, A, 22, K, (A,), NO_STALL) is NodeStatus.DOWN
    assert get_node_status(seen, D, 22, K, (), NO_STALL) is NodeStatus.DOWN  # unknown: down
    assert compute_down_nodes(seen, 22, K, NO_STALL) == {A}
    # A node the chain forgot that still holds apps is down too.
    assert compute_down_nodes(seen, 22, K, NO_STALL, holders=[B, D]) == {A, D}
    # The lease ends F = K - margin slots after the node's own last contribution, so
    # before the first slot whose plan may take it for down.
    end = get_lease_end_slot(seen, A, K, _never_asked)
    assert end == 10 + K - FENCE_MARGIN_SLOTS
    assert end is not None and end < 10 + K
    assert get_lease_end_slot(seen, D, K, _never_asked) is None


def test_a_minority_chain_recovers_nothing_and_its_leases_run_out() -> None:
    """The minority side of a partition (2 of 5 here) still builds blocks, but it must
    neither recover the majority's apps nor keep running its own: the majority side
    recovers those K slots after it last heard of them."""
    minority = {A: Slot(30), B: Slot(30), C: Slot(10), D: Slot(10), E: Slot(10)}
    assert compute_down_nodes(minority, 30, K, NO_STALL, holders=[C, D]) == frozenset()
    # Its own nodes contribute every slot, but the quorum slot is the partition's start;
    # and what A contributed after it, on the minority's blocks, the majority never saw:
    # the lease runs from A's last contribution at or before the quorum slot.
    asked: list[int] = []

    def seen_by(slot: Slot) -> Slot:
        asked.append(slot)
        return Slot(6)

    assert get_lease_end_slot(minority, A, K, seen_by) == 6 + K - FENCE_MARGIN_SLOTS
    assert asked == [10]
    # The majority saw A last at 6 too, and takes it for down at 6 + K: after the lease.
    assert is_down({**minority, A: Slot(6)}, A, 6 + K, K, NO_STALL)
    assert get_lease_end_slot(minority, A, K, lambda slot: None) is None  # out of reach
    majority = {A: Slot(10), B: Slot(10), C: Slot(30), D: Slot(30), E: Slot(30)}
    assert compute_down_nodes(majority, 30, K, NO_STALL) == {A, B}
    assert get_lease_end_slot(majority, C, K, _never_asked) == 30 + K - FENCE_MARGIN_SLOTS


def _never_asked(slot: Slot) -> Slot | None:
    raise AssertionError(f"own contribution by {slot} asked, though not past the quorum")


# --- recovery ----------------------------------------------------------------------------


def test_apps_of_a_down_node_are_recovered_to_available_nodes() -> None:
    specs = [app_spec(f"a{i}", cpu_bp=1_000) for i in range(3)]
    registry = build_registry([(specs[0], A), (specs[1], A), (specs[2], B)])
    reports = [report(A, 2_000), report(B, 1_000), report(C, 0), report(D, 500)]
    plan = compute_plan(registry, reports, NODES, SLOT, 0, down=frozenset({A}))
    # Scores: the two apps of A 2000 each (their hints), B 2000, C 0, D 1000. In app id
    # order, the first goes to C (0 -> 2000), the second to D (1000), the least loaded.
    first, second = sorted([app_id(specs[0]), app_id(specs[1])])
    assert plan == (
        PlanEntry(PlanAction.RECOVER, first, A, C),
        PlanEntry(PlanAction.RECOVER, second, A, D),
    )
    after = apply_block_to_registry(registry, SLOT, plan, ())
    assert all(get_record(after, e.app).node == e.destination for e in plan)  # type: ignore[union-attr]


def test_recovery_prefers_the_replica_node_and_clears_it() -> None:
    spec = replicated("db")
    registry = build_registry([(spec, A)])
    app = app_id(spec)
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, A, D),), ()
    )
    assert get_record(registry, app).replica_node == D  # type: ignore[union-attr]
    reports = [report(B, 0), report(C, 0), report(D, 9_000)]  # D is the busiest
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({A}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, A, D),)
    record = get_record(apply_block_to_registry(registry, SLOT, plan, ()), app)
    assert record is not None and record.node == D and record.replica_node is None
    assert record.last_move_slot == SLOT


def _moved(spec: AppSpec, origin: NodeId, destination: NodeId, at: int) -> Registry:
    """The app placed on ``origin`` at slot 2, then MIGRATEd to ``destination`` at ``at``."""
    registry = build_registry([(spec, origin)])
    entry = PlanEntry(PlanAction.MIGRATE, app_id(spec), origin, destination)
    return apply_block_to_registry(registry, Slot(at), (entry,), ())


def test_a_move_that_never_landed_is_recovered_to_its_origin() -> None:
    """The destination died with the app on its way: the origin kept the state dir,
    where the least-loaded node would start the app from nothing."""
    spec = replicated("db")  # no replica node named yet
    app = app_id(spec)
    registry = _moved(spec, A, B, at=30)
    busy_origin = report(A, 9_000, slot=35)  # the least-loaded node is C
    unconfirmed = [busy_origin, report(B, 0, slot=30), report(C, 0), report(D, 100)]
    plan = compute_plan(registry, unconfirmed, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # Once B had reported running it, the least loaded, as ever.
    landed = report(B, 1_000, apps=[(app, 1_000, 0)], slot=31)
    confirmed = [busy_origin, landed, report(C, 0), report(D, 100)]
    plan = compute_plan(registry, confirmed, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)
    # An origin that may not take it (draining here) is passed over.
    plan = compute_plan(
        registry, unconfirmed, NODES, SLOT, 4, down=frozenset({B}), draining=frozenset({A})
    )
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)
    # Before a replica node, even one confirmed to hold the state: the origin ran the
    # app up to the handover, and on while it could not land.
    record = get_record(registry, app)
    assert record is not None and not record.move_landed
    with_replica = put_record(registry, replace(record, replica_node=D, state_node=D))
    plan = compute_plan(with_replica, unconfirmed, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # A move the chain saw land is not sent back, though no report is left to say so
    # (its node left the set): the origin discarded its copy K slots after.
    seen_landing = apply_reports_to_registry(with_replica, [landed])
    assert get_record(seen_landing, app).move_landed  # type: ignore[union-attr]
    gone = [busy_origin, report(C, 0), report(D, 100)]
    plan = compute_plan(seen_landing, gone, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)


def test_a_move_lands_on_the_record_once_its_node_reports_the_app_after_it() -> None:
    """``move_landed`` follows the reports a block carries, and stays when they age out."""
    spec = app_spec("x")
    app = app_id(spec)
    registry = _moved(spec, A, B, at=30)
    listing = [(app, 100, 0)]
    assert not get_record(registry, app).move_landed  # type: ignore[union-attr]
    for reports in (
        [report(B, 0, slot=31)],  # not listed
        [report(B, 0, apps=listing, slot=30)],  # made before the move
        [report(A, 0, apps=listing, slot=31)],  # the origin's
    ):
        assert apply_reports_to_registry(registry, reports) == registry
    registry = apply_reports_to_registry(registry, [report(B, 0, apps=listing, slot=31)])
    assert get_record(registry, app).move_landed  # type: ignore[union-attr]
    assert is_move_landed(get_record(registry, app), [])  # type: ignore[arg-type]
    moved_again = PlanEntry(PlanAction.MIGRATE, app, B, C)
    registry = apply_block_to_registry(registry, Slot(40), (moved_again,), ())
    assert not get_record(registry, app).move_landed  # type: ignore[union-attr]


def test_a_recovery_goes_where_the_state_is_not_to_a_replica_node_named_too_late() -> None:
    """A chaos run's history (session 53, app ``a6a72803``): the app ran on A with its
    replica node C; the planner moved it to B, which was cut off before the move landed;
    a new replica node D was named, which never received a replica; B went down. The
    RECOVER went to D, which started the app from 0, while A held its live state (429
    counts) and C a replica (378). Now: A; without A, D (A sends its replicas there
    while its move has not landed, and C hands its replica on), then C (confirmed from
    A's reports, before the move), then the least-loaded node."""
    spec = replicated("counter", every=3)
    app = app_id(spec)
    registry = build_registry([(spec, A)])
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, A, C),), ()
    )
    registry = apply_reports_to_registry(registry, [report(A, 0, apps=[(app, 500, 0)], slot=11)])
    record = get_record(registry, app)
    assert record is not None and (record.state_node, record.move_landed) == (C, True)
    moved = (PlanEntry(PlanAction.MIGRATE, app, A, B),)
    registry = apply_block_to_registry(registry, Slot(30), moved, ())
    registry = apply_block_to_registry(
        registry, Slot(32), (PlanEntry(PlanAction.REPLICA, app, B, D),), ()
    )
    record = get_record(registry, app)
    assert record is not None and (record.replica_node, record.state_node) == (D, C)
    reports = [report(A, 9_000, slot=35), report(B, 0, slot=29), report(C, 100), report(D, 0)]
    down = frozenset({B})
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=down)
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=down, draining=frozenset({A}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=down, draining=frozenset({A, D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)


def test_a_state_node_confirmed_before_a_landed_move_yields_to_the_replica_node() -> None:
    """A chaos run's history (session 54, app ``da4e9452``): the app ran on A with its
    replica node and state node C; it migrated to B, and the move landed, but a
    partition cut C off from B; the chain named A the replica node, and B sent its
    replicas there; B went silent before A was confirmed, then down. C's replica, A's,
    was stale, and C dropped it (no receiver takes a replica of a node the app left),
    so a recovery onto C started from 0 while A held B's replica. The recovery goes to
    the replica node, A, and C counts again once B's reports confirm it for B."""
    spec = replicated("counter", every=3)
    app = app_id(spec)
    registry = build_registry([(spec, A)])
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, A, C),), ()
    )
    registry = apply_reports_to_registry(registry, [report(A, 0, slot=11)])
    registry = apply_block_to_registry(
        registry, Slot(20), (PlanEntry(PlanAction.MIGRATE, app, A, B),), ()
    )
    record = get_record(registry, app)
    assert record is not None and (record.state_node, record.state_slot) == (C, 11)
    assert not is_state_current(record)
    registry = apply_reports_to_registry(registry, [report(B, 0, apps=[(app, 500, 0)], slot=21)])
    registry = apply_block_to_registry(
        registry, Slot(22), (PlanEntry(PlanAction.REPLICA, app, B, A),), ()
    )
    reports = [report(A, 0, slot=35), report(B, 0, slot=26), report(C, 0), report(D, 9_000)]
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({A, B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)  # all that is left
    # Had B reported two intervals after the move while C was still its replica node,
    # C would hold B's replicas: confirmed again, it goes first.
    renamed = apply_block_to_registry(
        registry, Slot(23), (PlanEntry(PlanAction.REPLICA, app, B, C),), ()
    )
    moved = apply_reports_to_registry(renamed, [report(B, 0, slot=28)])
    assert get_record(moved, app) == get_record(renamed, app)  # 28 < 23 + 6
    moved = apply_reports_to_registry(renamed, [report(B, 0, slot=29)])
    record = get_record(moved, app)
    assert record is not None and (record.state_node, record.state_slot) == (C, 29)
    assert is_state_current(record)


def test_a_recovery_goes_to_the_replica_node_before_a_pending_move() -> None:
    """An app whose node died before an operator's MOVE was carried out restarts where
    its latest state is, the replica node, not at the MOVE's target (which would start
    it from nothing); the MOVE stays on the record and is planned from there next."""
    spec = replicated("db")
    app = app_id(spec)
    registry = build_registry([(spec, B)])
    record = get_record(registry, app)
    assert record is not None
    registry = put_record(registry, replace(record, replica_node=D, move_to=C))
    reports = [report(A, 0), report(B, 0, slot=20), report(C, 0), report(D, 0)]
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)
    registry = apply_block_to_registry(registry, SLOT, plan, ())
    recovered = get_record(registry, app)
    assert recovered is not None and (recovered.node, recovered.move_to) == (D, C)
    later = Slot(SLOT + 40)
    reports = [report(A, 0, slot=later - 1), report(C, 0, slot=later - 1)]
    reports.append(report(D, 500, apps=[(app, 500, 0)], slot=later - 1))
    plan = compute_plan(registry, reports, NODES, later, 4, down=frozenset({B}))
    assert PlanEntry(PlanAction.MIGRATE, app, D, C) in plan
    # Without a usable replica node, the MOVE's target as before.
    registry = put_record(build_registry([(spec, B)]), replace(record, move_to=C))
    reports = [report(A, 0), report(B, 0, slot=20), report(C, 0), report(D, 0)]
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)


def test_an_app_whose_replica_node_is_quiet_waits_for_it() -> None:
    """A down node's app is not recovered elsewhere, from nothing, while its replica
    node is only quiet: it goes there once that node speaks again, and elsewhere only
    once it is down too."""
    spec = replicated("db")
    app = app_id(spec)
    registry = build_registry([(spec, B)])
    record = get_record(registry, app)
    assert record is not None
    registry = put_record(registry, replace(record, replica_node=D))
    reports = [report(A, 0), report(B, 0, slot=20), report(C, 0), report(D, 0, slot=30)]
    down = frozenset({B})
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=down, quiet=frozenset({D}))
    assert not [e for e in plan if e.app == app]
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=down)
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B, D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # A quiet replica node that could not take it anyway is not waited for.
    fenced = replicated("fenced", policy=AppPolicy(allowed_labels=("x",)))
    registry = build_registry([(fenced, B)])
    fenced_record = get_record(registry, app_id(fenced))
    assert fenced_record is not None
    registry = put_record(registry, replace(fenced_record, replica_node=D))
    labelled = [NodeInfo(A, ("x",)), NodeInfo(B, ("x",)), NodeInfo(C), NodeInfo(D)]
    plan = compute_plan(registry, reports, labelled, SLOT, 4, down=down, quiet=frozenset({D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app_id(fenced), B, A),)


def test_an_app_waits_while_its_state_node_is_out_of_the_set_but_not_down() -> None:
    """Chaos, session 61 (block format 21): a skip block excluded the app's confirmed
    state node during a short partition, its host went down two slots later, and the app
    was recovered onto the least-loaded node from nothing. Now it waits while that node
    is out of the set and not down (``departed``) or quiet; it goes there once the node
    is readmitted, and elsewhere once the node is down. The origin of a move that never
    landed is waited for the same way."""
    spec = replicated("db")
    app = app_id(spec)
    record = get_record(build_registry([(spec, B)]), app)
    assert record is not None
    held = replace(record, state_node=D, state_slot=Slot(30))
    assert is_state_current(held)
    registry = put_record(build_registry([(spec, B)]), held)
    without_d = [NodeInfo(A), NodeInfo(B), NodeInfo(C)]
    reports = [report(A, 0), report(B, 0, slot=20), report(C, 0)]
    down = frozenset({B})
    # D excluded, not down: the app waits (it went to A, from nothing, before).
    assert not compute_plan(
        registry, reports, without_d, SLOT, 4, down=down, departed=frozenset({D})
    )
    assert compute_plan(registry, reports, without_d, SLOT, 4, down=down) == (
        PlanEntry(PlanAction.RECOVER, app, B, A),
    )
    # Down as well: it goes elsewhere, as before; banned nodes are not passed as departed.
    plan = compute_plan(
        registry, reports, without_d, SLOT, 4, down=frozenset({B, D}), departed=frozenset({D})
    )
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # Readmitted (a validator again): there, state and all; a departed validator counts
    # as a validator.
    back = [*reports, report(D, 0)]
    plan = compute_plan(registry, back, NODES, SLOT, 4, down=down, departed=frozenset({D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)
    # A quiet state node (not the replica node) is waited for too.
    plan = compute_plan(registry, back, NODES, SLOT, 4, down=down, quiet=frozenset({D}))
    assert not [e for e in plan if e.app == app]
    # ... unless it could not take the app anyway (its policy's labels).
    labelled = replicated("db", policy=AppPolicy(allowed_labels=("x",)))
    fenced = put_record(registry, replace(held, spec=labelled))
    nodes = [NodeInfo(A, ("x",)), NodeInfo(B, ("x",)), NodeInfo(C), NodeInfo(D)]
    plan = compute_plan(fenced, back, nodes, SLOT, 4, down=down, quiet=frozenset({D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # A state node confirmed before the app's last move holds an older node's replica:
    # not waited for.
    moved = replace(held, last_move_slot=Slot(35), previous_node=C, move_landed=True)
    assert not is_state_current(moved)
    stale = put_record(registry, moved)
    plan = compute_plan(stale, reports, without_d, SLOT, 4, down=down, departed=frozenset({D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    # The origin of a move that never landed, excluded meanwhile: waited for.
    unlanded = replace(record, last_move_slot=Slot(35), previous_node=D, move_landed=False)
    registry = put_record(build_registry([(spec, B)]), unlanded)
    assert not compute_plan(
        registry, reports, without_d, SLOT, 4, down=down, departed=frozenset({D})
    )
    plan = compute_plan(registry, back, NODES, SLOT, 4, down=down, departed=frozenset({D}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)


def test_an_app_that_waits_for_its_state_is_never_started_from_nothing() -> None:
    """``policy.wait_for_state``: its node and the node holding its state both down, the
    app waits (by default it starts on the least-loaded node from an empty state); it
    goes to that node once it is back, and wherever an operator's MOVE sends it."""
    spec = replicated("db", policy=AppPolicy(wait_for_state=True))
    app = app_id(spec)
    record = get_record(build_registry([(spec, B)]), app)
    assert record is not None
    held = replace(record, replica_node=D, state_node=D)
    registry = put_record(build_registry([(spec, B)]), held)
    reports = [report(A, 0), report(B, 0, slot=20), report(C, 0), report(D, 0, slot=20)]
    both = frozenset({B, D})
    assert not compute_plan(registry, reports, NODES, SLOT, 4, down=both)
    default = put_record(registry, replace(held, spec=replicated("db")))
    plan = compute_plan(default, reports, NODES, SLOT, 4, down=both)
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)  # from nothing
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, D),)
    after = get_record(apply_block_to_registry(registry, SLOT, plan, ()), app)
    assert after is not None and after.state_node is None  # used up there
    # A replica node not confirmed to hold its state is no destination: it waits ...
    unconfirmed = put_record(registry, replace(record, replica_node=D))
    assert not compute_plan(unconfirmed, reports, NODES, SLOT, 4, down=frozenset({B}))
    # ... unless its operator moves it: the one way to give its state up.
    moved = put_record(registry, replace(held, move_to=C))
    plan = compute_plan(moved, reports, NODES, SLOT, 4, down=both)
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)


def test_a_replica_node_holds_the_state_once_its_host_was_seen_long_enough() -> None:
    """Its node and its replica node paused together: a skip block excludes the replica
    node first, while its node still looks alive, and the plan names a new replica node,
    which the silent node never sends a replica. Only a node seen two replica intervals
    after the naming makes that node the app's ``state_node``; so the app waits for the
    old one (kept when it left the set) and goes there once it is back."""
    spec = replicated("db", every=3, policy=AppPolicy(wait_for_state=True))
    app = app_id(spec)
    registry = build_registry([(spec, B)])
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, B, D),), ()
    )
    record = get_record(registry, app)
    assert record is not None and (record.replica_slot, record.state_node) == (5, None)
    assert apply_reports_to_registry(registry, [report(B, 0, slot=10)]) == registry  # 10 < 5 + 6
    registry = apply_reports_to_registry(registry, [report(B, 0, slot=11)])
    assert get_record(registry, app).state_node == D  # type: ignore[union-attr]
    # D excluded: the replica node is forgotten, the state node is not.
    registry = apply_block_to_registry(registry, Slot(20), (), {D})
    record = get_record(registry, app)
    assert record is not None and (record.replica_node, record.state_node) == (None, D)
    # A new replica node C, named while B is silent (its last report at slot 18).
    registry = apply_block_to_registry(
        registry, Slot(21), (PlanEntry(PlanAction.REPLICA, app, B, C),), ()
    )
    registry = apply_reports_to_registry(registry, [report(B, 0, slot=18)])
    record = get_record(registry, app)
    assert record is not None and (record.replica_node, record.state_node) == (C, D)
    without_d = [NodeInfo(A), NodeInfo(B), NodeInfo(C)]
    reports = [report(A, 0), report(B, 0, slot=18), report(C, 0)]
    later = Slot(SLOT + 1)
    plan = compute_plan(registry, reports, without_d, later, 4, down=frozenset({B}))
    assert app not in [e.app for e in plan]  # not to C, from nothing
    default = put_record(registry, replace(record, spec=replicated("db", every=3)))
    plan = compute_plan(default, reports, without_d, later, 4, down=frozenset({B}))
    assert PlanEntry(PlanAction.RECOVER, app, B, C) in plan  # by default: from nothing
    back = [*reports, report(D, 0)]
    plan = compute_plan(registry, back, NODES, later, 4, down=frozenset({B}))
    assert PlanEntry(PlanAction.RECOVER, app, B, D) in plan


def test_only_a_stateful_app_may_wait_for_its_state() -> None:
    stateless = app_spec("web", policy=AppPolicy(wait_for_state=True))
    with pytest.raises(ValidationError, match="no state"):
        validate_app_spec(stateless)
    validate_app_spec(replicated("db", policy=AppPolicy(wait_for_state=True)))


def test_a_move_has_landed_once_its_node_reports_the_app_after_it() -> None:
    """What keeps the origin's copy (``runtime/reconcile.py``, no DISCARD before)."""
    spec = app_spec("x")
    app = app_id(spec)
    record = get_record(_moved(spec, A, B, at=30), app)
    assert record is not None
    listing = [(app, 100, 0)]
    assert not is_move_landed(record, [report(B, 0, slot=31)])  # not listed
    assert not is_move_landed(record, [report(B, 0, apps=listing, slot=30)])  # before it
    assert not is_move_landed(record, [report(A, 0, apps=listing, slot=31)])  # the origin
    assert is_move_landed(record, [report(A, 0), report(B, 0, apps=listing, slot=31)])
    assert not is_move_landed(replace(record, node=None), [report(B, 0, apps=listing, slot=31)])


def test_an_origin_without_room_for_new_state_still_takes_its_own_back() -> None:
    """It holds the state dir already: some room is enough, not the state's size."""
    spec = app_spec("big", cpu_bp=500)
    app = app_id(spec)
    registry = _moved(spec, A, B, at=30)
    sizes = {app: 50 << 20}
    reports = [
        report(A, 0, slot=35, state_room_bytes=10 << 20),
        report(B, 0, apps=[(app, 500, 0)], slot=29, state_bytes=sizes),  # before the move
        report(C, 0, state_room_bytes=1 << 30),
        report(D, 0, state_room_bytes=1 << 30),
    ]
    plan = compute_plan(registry, reports, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, A),)
    full = [replace(reports[0], state_room_bytes=0), *reports[1:]]
    plan = compute_plan(registry, full, NODES, SLOT, 4, down=frozenset({B}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, B, C),)


def test_down_and_draining_nodes_receive_nothing() -> None:
    specs = [app_spec(f"q{i}", cpu_bp=1_000) for i in range(4)]
    registry = build_registry([(s, None) for s in specs])
    plan = compute_plan(registry, [], NODES, SLOT, 4, down=frozenset({A}), draining=frozenset({B}))
    assert {e.destination for e in plan} == {C, D}
    everyone_gone = compute_plan(registry, [], NODES[:2], SLOT, 4, down=frozenset({A, B}))
    assert everyone_gone == ()


def test_an_app_pinned_to_a_down_node_waits() -> None:
    spec = app_spec("pinned", policy=AppPolicy(pinned=True, pin_node=A))
    registry = build_registry([(spec, A)])
    assert compute_plan(registry, [], NODES, SLOT, 4, down=frozenset({A})) == ()


def test_stopped_apps_of_a_down_node_stay() -> None:
    spec = app_spec("stopped")
    registry = build_registry([(spec, A)])
    record = get_record(registry, app_id(spec))
    assert record is not None
    registry = put_record(registry, replace(record, state=AppState.STOPPED))
    assert compute_plan(registry, [], NODES, SLOT, 4, down=frozenset({A})) == ()


def test_recover_from_the_wrong_origin_is_invalid() -> None:
    spec = app_spec("x")
    registry = build_registry([(spec, A)])
    with pytest.raises(ValidationError):
        apply_block_to_registry(
            registry, SLOT, (PlanEntry(PlanAction.RECOVER, app_id(spec), B, C),), ()
        )


# --- drains ------------------------------------------------------------------------------


def test_draining_node_is_emptied_within_the_budget() -> None:
    specs = [app_spec(f"d{i}", cpu_bp=100) for i in range(3)]
    registry = build_registry([(s, A) for s in specs])
    listed = [(app_id(s), 100, 0) for s in specs]
    reports = [report(A, 300, apps=listed), report(B, 0), report(C, 0), report(D, 0)]
    plan = compute_plan(registry, reports, NODES, SLOT, 2, draining=frozenset({A}))
    assert [e.action for e in plan] == [PlanAction.MIGRATE] * 2
    assert all(e.origin == A and e.destination != A for e in plan)
    registry = apply_block_to_registry(registry, SLOT, plan, ())
    plan = compute_plan(registry, reports, NODES, Slot(SLOT + 5), 2, draining=frozenset({A}))
    assert len(plan) == 1 and plan[0].origin == A


# --- replicas ----------------------------------------------------------------------------


def place_replicated(node: NodeId | None = A) -> tuple[Registry, AppId]:
    spec = replicated("db")
    return build_registry([(spec, node)]), app_id(spec)


def test_replica_node_is_named_once_and_kept() -> None:
    registry, app = place_replicated()
    reports = [report(A, 0), report(B, 3_000), report(C, 1_000), report(D, 2_000)]
    plan = compute_plan(registry, reports, NODES, SLOT, 4)
    assert plan == (PlanEntry(PlanAction.REPLICA, app, A, C),)  # least loaded but A
    registry = apply_block_to_registry(registry, SLOT, plan, ())
    # C got busier: a valid replica node is kept (no churn).
    reports = [report(A, 0), report(B, 0), report(C, 9_000), report(D, 0)]
    assert compute_plan(registry, reports, NODES, Slot(SLOT + 1), 4) == ()
    # C is down: a new replica node.
    plan = compute_plan(registry, reports, NODES, Slot(SLOT + 1), 4, down=frozenset({C}))
    assert plan == (PlanEntry(PlanAction.REPLICA, app, A, B),)


def test_replica_node_respects_labels_and_leaves_with_its_node() -> None:
    spec = replicated("geo", policy=AppPolicy(allowed_labels=("eu",)))
    nodes = [NodeInfo(A, ("eu",)), NodeInfo(B, ("us",)), NodeInfo(C, ("eu",))]
    registry = build_registry([(spec, A)])
    plan = compute_plan(registry, [], nodes, SLOT, 4)
    assert plan == (PlanEntry(PlanAction.REPLICA, app_id(spec), A, C),)
    registry = apply_block_to_registry(registry, SLOT, plan, ())
    registry = apply_block_to_registry(registry, Slot(SLOT + 1), (), {C})
    assert get_record(registry, app_id(spec)).replica_node is None  # type: ignore[union-attr]


def test_apps_without_replicas_get_no_replica_node() -> None:
    plain = app_spec("plain")
    stateful_only = replace(app_spec("s"), stateful=True)
    registry = build_registry([(plain, A), (stateful_only, A)])
    assert compute_plan(registry, [], NODES, SLOT, 4) == ()


def test_replicas_of_stopped_or_queued_apps_wait() -> None:
    registry, _ = place_replicated(None)
    plan = compute_plan(registry, [], NODES, SLOT, 4)
    # Placed this plan: its replica node comes in the next one.
    assert [e.action for e in plan] == [PlanAction.PLACE]
    registry = apply_test_block(registry, SLOT, (), plan, ())
    plan = compute_plan(registry, [], NODES, Slot(SLOT + 1), 4)
    assert [e.action for e in plan] == [PlanAction.REPLICA]
    assert plan[0].destination != plan[0].origin


def test_an_app_of_an_excluded_node_waits_then_goes_to_its_replica_node() -> None:
    registry, app = place_replicated()
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, A, D),), ()
    )
    # A skip block excludes A: the app stays on A (it may still run there) ...
    registry = apply_block_to_registry(registry, Slot(6), (), {A})
    record = get_record(registry, app)
    assert record is not None and record.node == A and record.replica_node == D
    reports = [report(B, 0), report(C, 0), report(D, 9_000)]
    assert compute_plan(registry, reports, NODES[1:], SLOT, 4) == ()
    # ... until A is down: then it is recovered on its replica node.
    plan = compute_plan(registry, reports, NODES[1:], SLOT, 4, down=frozenset({A}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, A, D),)


def test_an_app_of_an_excluded_node_gets_a_new_replica_node_before_it_is_recovered() -> None:
    """The node and the replica node both excluded: a new replica node is named while
    the app waits (its old one passes its replica on there), and the recovery goes to
    it. Before, none was named until the node was down, and the app was recovered on
    the least loaded node, from nothing."""
    registry, app = place_replicated()
    registry = apply_block_to_registry(
        registry, Slot(5), (PlanEntry(PlanAction.REPLICA, app, A, D),), ()
    )
    registry = apply_block_to_registry(registry, Slot(6), (), {A, D})
    record = get_record(registry, app)
    assert record is not None and record.node == A and record.replica_node is None
    reports = [report(B, 9_000), report(C, 0)]
    plan = compute_plan(registry, reports, NODES[1:3], SLOT, 4)
    assert plan == (PlanEntry(PlanAction.REPLICA, app, A, C),)  # the least loaded
    registry = apply_block_to_registry(registry, SLOT, plan, ())
    reports = [report(B, 0), report(C, 9_000)]  # now the recovery's least loaded is B
    plan = compute_plan(registry, reports, NODES[1:3], Slot(SLOT + 1), 4, down=frozenset({A}))
    assert plan == (PlanEntry(PlanAction.RECOVER, app, A, C),)


def test_a_pinned_app_gets_a_replica_node_within_its_labels() -> None:
    """The pin says where the app runs, not where its state may be kept; the labels
    (geo-fencing) say both."""
    policy = AppPolicy(pinned=True, pin_node=A, allowed_labels=("eu",))
    spec = replicated("pinned", policy=policy)
    nodes = [NodeInfo(A, ("eu",)), NodeInfo(B, ("us",)), NodeInfo(C, ("eu",))]
    registry = build_registry([(spec, A)])
    assert compute_plan(registry, [], nodes, SLOT, 4) == (
        PlanEntry(PlanAction.REPLICA, app_id(spec), A, C),
    )


def test_a_stall_is_a_run_of_slots_without_a_block() -> None:
    quiet = Stall(Slot(3), Slot(3 + STALL_MIN_SLOTS + 1))
    # STALL_MIN_SLOTS empty slots make a stall; fewer keep the parent's.
    assert compute_stall(NO_STALL, Slot(8), Slot(9 + STALL_MIN_SLOTS)) == Stall(
        Slot(8), Slot(9 + STALL_MIN_SLOTS)
    )
    assert compute_stall(quiet, Slot(20), Slot(20 + STALL_MIN_SLOTS)) == quiet
    assert compute_stall(quiet, Slot(20), Slot(21)) == quiet


def test_a_stall_is_nobodys_silence_but_a_node_down_before_it_stays_down() -> None:
    """The chain stalled from slot 20 to 45 (a fleet-wide outage): a node seen at 15
    counts as seen at 45 and is down only at 45 + K; one seen at 8, already down when
    the stall began (20 - 8 >= K), stays down; one seen after the stall is unaffected;
    and without a stall nothing changes."""
    stall = Stall(Slot(20), Slot(45))
    seen = {A: Slot(15), B: Slot(8), C: Slot(46), D: Slot(47), E: Slot(48)}
    assert get_silence_start(Slot(15), stall, K) == 45
    assert get_silence_start(Slot(8), stall, K) == 8
    assert get_silence_start(Slot(46), stall, K) == 46
    assert get_silence_start(Slot(15), NO_STALL, K) == 15
    assert not is_down(seen, A, 45 + K - 1, K, stall)
    assert is_down(seen, A, 45 + K, K, stall)
    assert is_down(seen, A, 46, K, NO_STALL)
    assert is_down(seen, B, 46, K, stall)
    assert get_node_status(seen, A, 50, K, (), stall) is NodeStatus.ACTIVE
    assert compute_down_nodes(seen, 50, K, stall, holders=[A, B]) == {B}
    assert compute_quiet_nodes(seen, 45 + QUIET_AFTER_SLOTS, K, stall) == {A}
    assert not compute_quiet_nodes(seen, 45 + QUIET_AFTER_SLOTS - 1, K, stall)
    # A node that left the set is forgotten only once down, stall not counted.
    later = {**seen, C: Slot(55), D: Slot(55), E: Slot(55)}  # a quorum seen lately
    assert A in compute_last_seen(later, Slot(45 + K - 1), [], [C, D, E], K, stall=stall)
    assert A not in compute_last_seen(later, Slot(45 + K), [], [C, D, E], K, stall=stall)


def test_the_lease_ignores_a_stall() -> None:
    """A stall makes the chain recover later, never a node run longer: the lease still
    ends F slots after the node's real last contribution (the minority side of a
    partition has gaps too, and must not keep its apps running on them)."""
    seen = {A: Slot(15), B: Slot(15), C: Slot(15)}
    assert get_lease_end_slot(seen, A, K, _never_asked) == 15 + K - FENCE_MARGIN_SLOTS
