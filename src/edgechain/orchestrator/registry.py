"""The chain's application registry: an immutable state and its per-block transition.

Paper §3.3: a block carries the migration plan computed from its parent; DESIGN.md,
"Migration plan": the plan is a deterministic function of the parent block's data and
the chain's app registry only. The registry is therefore consensus state, rebuilt by
every node by applying blocks in order, exactly like the validator set (§3.4):
``registry_after(block) = apply_block_to_registry(registry_after(parent), block...)``.

It records which apps exist (id -> spec), where each one is placed, the queue of
submitted-but-unplaced apps in submission order, and the slot of each app's last
placement or move (for ``AppPolicy.min_interval_slots``).

Representation: one tuple of :class:`AppRecord` sorted by app id bytes, plus the queue
tuple. Tuples share nothing mutable, so "copying" a registry is free; a block rebuilds
the records tuple once (O(n), and an untouched registry is returned as is), lookups are
binary searches. Everything is ordered by bytes, never by dict or set order.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from edgechain.chain.encoding import compute_app_id
from edgechain.chain.model import AppSpec, PlanAction, PlanEntry
from edgechain.errors import ValidationError
from edgechain.types import AppId, NodeId, Slot


@dataclass(frozen=True)
class AppRecord:
    """One application in the registry.

    ``node`` is where the chain has placed it (``None`` while queued). ``last_move_slot``
    is the slot of the block whose plan last placed or migrated it (``None`` if never).
    The registry is the chain's *intended* placement: a migration in flight or one that
    failed shows up in the next reports, not here.
    """

    app: AppId
    spec: AppSpec
    node: NodeId | None = None
    last_move_slot: Slot | None = None


@dataclass(frozen=True)
class Registry:
    """``records`` sorted by app id bytes (unique); ``queue`` holds the ids of the
    unplaced apps in the order they are to be placed (see :func:`apply_block_to_registry`).
    Invariant: an app is in ``queue`` exactly when its record's ``node`` is ``None``."""

    records: tuple[AppRecord, ...] = ()
    queue: tuple[AppId, ...] = ()


EMPTY_REGISTRY = Registry()
"""The registry at genesis: genesis carries no applications."""


def get_record(registry: Registry, app: AppId) -> AppRecord | None:
    """The record of ``app``, or None if the chain has never seen it (binary search)."""
    records = registry.records
    pos = bisect.bisect_left(records, app, key=_record_app)
    if pos < len(records) and records[pos].app == app:
        return records[pos]
    return None


def get_placement(registry: Registry, app: AppId) -> NodeId | None:
    """Where ``app`` is placed, or None if it is queued or unknown."""
    record = get_record(registry, app)
    return None if record is None else record.node


def get_apps_on_node(registry: Registry, node: NodeId) -> tuple[AppRecord, ...]:
    """The apps placed on ``node``, in app id order (what a node must be running)."""
    return tuple(r for r in registry.records if r.node == node)


def get_queued_records(registry: Registry) -> tuple[AppRecord, ...]:
    """The queued apps' records, in queue order."""
    records = []
    for app in registry.queue:
        record = get_record(registry, app)
        if record is None:  # pragma: no cover - the invariant makes this impossible
            raise AssertionError(f"queued app {app.hex()} has no record")
        records.append(record)
    return tuple(records)


def compute_submissions_with_ids(
    submissions: Sequence[AppSpec],
) -> tuple[tuple[AppId, AppSpec], ...]:
    """Pair each submitted spec with its app id (SHA-256 of the canonical encoding)."""
    return tuple((compute_app_id(spec), spec) for spec in submissions)


def apply_block_to_registry(
    registry: Registry,
    slot: Slot,
    submissions_with_ids: Sequence[tuple[AppId, AppSpec]],
    plan: Sequence[PlanEntry],
    removed_nodes: Collection[NodeId],
) -> Registry:
    """The registry after a block of ``slot``; pure, ``registry`` is not modified.

    Order matters and is part of the protocol:

    1. The block's ``plan`` (computed from ``registry``, i.e. the parent's state): PLACE
       takes a queued app to its destination, MIGRATE moves a placed app from its origin;
       both set the app's ``last_move_slot`` to ``slot``. An entry that does not fit the
       registry (unknown app, PLACE of a placed app, MIGRATE from the wrong origin, an app
       twice) is a ValidationError: honest validators recompute the plan from this same
       registry, so such a plan can only come from a faulty producer.
    2. ``removed_nodes`` (the block's exits, or a skip block's excluded producer): every
       app placed on one of them goes back to the *front* of the queue, in app id order,
       so it is re-placed before new submissions. An app is never lost (DESIGN.md,
       "Migration execution"); its ``last_move_slot`` is kept.
    3. ``submissions_with_ids``, in block order, join the back of the queue. An id the
       registry already knows (a resubmission, or a duplicate in the block) is ignored,
       so a gossiped submission included twice cannot create a second app.

    App ids are taken as given; use :func:`compute_submissions_with_ids` to derive them.
    A skip block is ``apply_block_to_registry(r, slot, (), (), {excluded})``.
    """
    if not submissions_with_ids and not plan and not removed_nodes:
        return registry
    changed: dict[AppId, AppRecord] = {}
    queue = _apply_plan(registry, slot, plan, changed)
    queue = _evict_removed_nodes(registry, removed_nodes, changed) + queue
    added, queue = _enqueue_submissions(registry, submissions_with_ids, changed, queue)
    records = [changed.get(r.app, r) for r in registry.records]
    if added:
        records.extend(added)
        records.sort(key=_record_app)
    return Registry(records=tuple(records), queue=tuple(queue))


def _record_app(record: AppRecord) -> AppId:
    return record.app


def _get_current(
    registry: Registry, changed: dict[AppId, AppRecord], app: AppId
) -> AppRecord | None:
    return changed[app] if app in changed else get_record(registry, app)


def _apply_plan(
    registry: Registry,
    slot: Slot,
    plan: Sequence[PlanEntry],
    changed: dict[AppId, AppRecord],
) -> list[AppId]:
    """Step 1: place and move apps; returns the queue without the placed apps."""
    placed: set[AppId] = set()
    for entry in plan:
        if entry.app in changed:
            raise ValidationError("plan_app_twice", entry.app.hex())
        record = get_record(registry, entry.app)
        if record is None:
            raise ValidationError("plan_unknown_app", entry.app.hex())
        if entry.action is PlanAction.PLACE:
            if record.node is not None:
                raise ValidationError("plan_place_not_queued", entry.app.hex())
            placed.add(entry.app)
        elif record.node is None or record.node != entry.origin:
            raise ValidationError("plan_wrong_origin", entry.app.hex())
        elif entry.destination == entry.origin:
            raise ValidationError("plan_migrate_in_place", entry.app.hex())
        changed[entry.app] = replace(record, node=entry.destination, last_move_slot=slot)
    return [app for app in registry.queue if app not in placed]


def _evict_removed_nodes(
    registry: Registry, removed_nodes: Collection[NodeId], changed: dict[AppId, AppRecord]
) -> list[AppId]:
    """Step 2: unplace the apps of departed nodes; returns them in app id order."""
    if not removed_nodes:
        return []
    removed = set(removed_nodes)
    evicted: list[AppId] = []
    for original in registry.records:  # app id order
        record = changed.get(original.app, original)
        if record.node is not None and record.node in removed:
            changed[record.app] = replace(record, node=None)
            evicted.append(record.app)
    return evicted


def _enqueue_submissions(
    registry: Registry,
    submissions_with_ids: Sequence[tuple[AppId, AppSpec]],
    changed: dict[AppId, AppRecord],
    queue: list[AppId],
) -> tuple[list[AppRecord], list[AppId]]:
    """Step 3: new records (unsorted) and the queue with the new ids appended."""
    added: list[AppRecord] = []
    seen: set[AppId] = set()
    for app, spec in submissions_with_ids:
        if app in seen or _get_current(registry, changed, app) is not None:
            continue
        seen.add(app)
        added.append(AppRecord(app=app, spec=spec))
        queue.append(app)
    return added, queue
