"""The app registry's per-block transition: queue, placement, eviction, never losing an app."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from orchestrator_helpers import (
    app_id,
    app_spec,
    apply_test_block,
    build_registry,
    compute_submissions_with_ids,
    node_id,
)

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.errors import ValidationError
from edgechain.orchestrator import (
    EMPTY_REGISTRY,
    Registry,
    get_apps_on_node,
    get_placement,
    get_queued_records,
    get_record,
)
from edgechain.orchestrator.registry import put_record
from edgechain.types import AppId, NodeId, Slot

A, B, C = node_id(1), node_id(2), node_id(3)


def place(app: AppId, node: NodeId) -> PlanEntry:
    return PlanEntry(PlanAction.PLACE, app, b"", node)


def migrate(app: AppId, origin: NodeId, destination: NodeId) -> PlanEntry:
    return PlanEntry(PlanAction.MIGRATE, app, origin, destination)


def assert_invariants(registry: Registry) -> None:
    ids = [r.app for r in registry.records]
    assert ids == sorted(ids), "records sorted by app id"
    assert len(set(ids)) == len(ids), "unique app ids"
    queued = {r.app for r in registry.records if r.node is None}
    assert set(registry.queue) == queued, "queued exactly when unplaced"
    assert len(registry.queue) == len(queued), "no app twice in the queue"


def test_submissions_join_the_queue_in_block_order() -> None:
    specs = [app_spec(name) for name in ("web", "db", "cache")]
    pairs = compute_submissions_with_ids(specs)
    assert [app for app, _ in pairs] == [app_id(s) for s in specs]
    registry = apply_test_block(EMPTY_REGISTRY, Slot(1), pairs, (), ())
    assert registry.queue == tuple(app for app, _ in pairs)
    assert [r.spec for r in get_queued_records(registry)] == specs
    assert all(get_placement(registry, app) is None for app, _ in pairs)
    assert_invariants(registry)


def test_duplicate_submissions_are_ignored() -> None:
    spec = app_spec("web")
    pairs = compute_submissions_with_ids([spec, spec])
    registry = apply_test_block(EMPTY_REGISTRY, Slot(1), pairs, (), ())
    assert registry.queue == (app_id(spec),)
    again = apply_test_block(registry, Slot(2), pairs[:1], (), ())
    assert again == registry
    placed = apply_test_block(registry, Slot(2), (), (place(app_id(spec), A),), ())
    assert apply_test_block(placed, Slot(3), pairs, (), ()) == placed


def test_an_empty_block_returns_the_same_object() -> None:
    registry = build_registry([(app_spec("web"), A)])
    assert apply_test_block(registry, Slot(9), (), (), ()) is registry


def test_place_and_migrate_update_placement_and_last_move() -> None:
    web, db = app_spec("web"), app_spec("db")
    registry = build_registry([(web, A), (db, None)], placed_at=2)
    record = get_record(registry, app_id(web))
    assert record is not None
    assert (record.node, record.last_move_slot) == (A, Slot(2))
    assert registry.queue == (app_id(db),)

    registry = apply_test_block(
        registry, Slot(7), (), (migrate(app_id(web), A, B), place(app_id(db), C)), ()
    )
    assert get_placement(registry, app_id(web)) == B
    assert get_placement(registry, app_id(db)) == C
    assert registry.queue == ()
    assert [r.last_move_slot for r in registry.records] == [Slot(7), Slot(7)]
    assert get_apps_on_node(registry, B) == (get_record(registry, app_id(web)),)
    assert_invariants(registry)


def test_apps_of_departed_nodes_stay_placed_until_recovered() -> None:
    """A node that leaves (exit, exclusion) keeps its apps in the registry: it may only
    have been slow and still run them; the planner RECOVERs them once it is down
    (orchestrator/liveness.py). Its MOVE targets and replica roles go at once."""
    specs = [app_spec(f"app{i}") for i in range(5)]
    registry = build_registry(
        [(specs[0], A), (specs[1], B), (specs[2], A), (specs[3], None), (specs[4], C)],
        placed_at=2,
    )
    record = get_record(registry, app_id(specs[1]))
    assert record is not None
    registry = put_record(registry, replace(record, move_to=A, replica_node=C))
    new = app_spec("new")
    registry = apply_test_block(registry, Slot(3), compute_submissions_with_ids([new]), (), {A, C})
    assert registry.queue == (app_id(specs[3]), app_id(new))
    assert get_placement(registry, app_id(specs[0])) == A
    assert get_placement(registry, app_id(specs[4])) == C
    moved = get_record(registry, app_id(specs[1]))
    assert moved is not None and moved.node == B
    assert moved.move_to is None and moved.replica_node is None
    assert_invariants(registry)


def test_the_plan_is_applied_before_departures() -> None:
    """A plan computed on the parent may place an app on a node that leaves in this very
    block: the app stays there (recovered once that node is down), never queued twice."""
    web = app_spec("web")
    registry = build_registry([(web, None)])
    registry = apply_test_block(registry, Slot(3), (), (place(app_id(web), A),), {A})
    assert registry.queue == ()
    assert get_placement(registry, app_id(web)) == A


def test_skip_block_excludes_a_producer_its_apps_wait() -> None:
    web = app_spec("web")
    registry = build_registry([(web, B)])
    after = apply_test_block(registry, Slot(5), (), (), (B,))
    assert after.queue == ()
    assert get_placement(after, app_id(web)) == B


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (place(AppId(b"\x09" * 32), A), "plan_unknown_app"),
        (place(app_id(app_spec("placed")), B), "plan_place_not_queued"),
        (migrate(app_id(app_spec("queued")), A, B), "plan_wrong_origin"),
        (migrate(app_id(app_spec("placed")), B, C), "plan_wrong_origin"),
        (migrate(app_id(app_spec("placed")), A, A), "plan_migrate_in_place"),
    ],
)
def test_inconsistent_plan_entries_are_rejected(entry: PlanEntry, reason: str) -> None:
    registry = build_registry([(app_spec("placed"), A), (app_spec("queued"), None)])
    with pytest.raises(ValidationError) as info:
        apply_test_block(registry, Slot(9), (), (entry,), ())
    assert info.value.reason == reason


def test_an_app_twice_in_a_plan_is_rejected() -> None:
    spec = app_spec("placed")
    registry = build_registry([(spec, A)])
    plan = (migrate(app_id(spec), A, B), migrate(app_id(spec), B, C))
    with pytest.raises(ValidationError) as info:
        apply_test_block(registry, Slot(9), (), plan, ())
    assert info.value.reason == "plan_app_twice"


def test_records_stay_sorted_as_apps_arrive() -> None:
    registry = EMPTY_REGISTRY
    for i in range(20):
        pairs = compute_submissions_with_ids([app_spec(f"app{i}")])
        registry = apply_test_block(registry, Slot(i + 1), pairs, (), ())
        assert_invariants(registry)
    assert len(registry.records) == 20
    for record in registry.records:
        assert get_record(registry, record.app) == record
    assert get_record(registry, AppId(b"\xff" * 32)) is None


# --- property: no sequence of blocks ever loses an app ---------------------------------

NODES = [node_id(i) for i in range(1, 5)]


@st.composite
def block_sequences(draw: st.DrawFn) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
    """Blocks as (new app numbers, (app number, node index) moves, removed node indices).
    Moves are turned into valid PLACE/MIGRATE entries against the current registry."""
    blocks = []
    for _ in range(draw(st.integers(1, 12))):
        blocks.append(
            (
                draw(st.lists(st.integers(0, 15), max_size=4)),
                draw(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 3)), max_size=5)),
                draw(st.lists(st.integers(0, 3), max_size=2)),
            )
        )
    return blocks


@settings(max_examples=200, deadline=None)
@given(blocks=block_sequences())
def test_property_apps_are_never_lost(
    blocks: list[tuple[list[int], list[tuple[int, int]], list[int]]],
) -> None:
    specs = [app_spec(f"app{i}") for i in range(16)]
    registry = EMPTY_REGISTRY
    submitted: set[AppId] = set()
    for slot, (new, moves, removed) in enumerate(blocks, start=1):
        plan: list[PlanEntry] = []
        seen: set[AppId] = set()
        for number, node_index in moves:
            record = get_record(registry, app_id(specs[number]))
            destination = NODES[node_index]
            if record is None or record.app in seen or record.node == destination:
                continue
            seen.add(record.app)
            if record.node is None:
                plan.append(place(record.app, destination))
            else:
                plan.append(migrate(record.app, record.node, destination))
        removed_nodes = {NODES[i] for i in removed}
        registry = apply_test_block(
            registry,
            Slot(slot),
            compute_submissions_with_ids([specs[i] for i in new]),
            plan,
            removed_nodes,
        )
        submitted |= {app_id(specs[i]) for i in new}
        assert_invariants(registry)
        assert {r.app for r in registry.records} == submitted, "never lost, never invented"
