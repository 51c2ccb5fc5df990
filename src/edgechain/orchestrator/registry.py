"""The chain's application registry: an immutable state and its per-block transition.

Paper §3.3: a block carries the migration plan computed from its parent; DESIGN.md,
"Migration plan": the plan is a deterministic function of the parent block's data and
the chain's app registry only. The registry is therefore consensus state, rebuilt by
every node by applying blocks in order, exactly like the validator set (§3.4):
``registry_after(block) = apply_block_to_registry(registry_after(parent), block...)``.

It records which apps exist (id -> spec and its version), whether each one should run
(``AppState``), where each one is placed, the queue of running-but-unplaced apps in
submission order, the slot of each app's last placement or move (for
``AppPolicy.min_interval_slots``) and a pending operator MOVE. Signed commands
(``orchestrator/commands.py`` checks them) change it through the primitives below.

Representation: one tuple of :class:`AppRecord` sorted by app id bytes, plus the queue
tuple. Tuples share nothing mutable, so "copying" a registry is free; a block rebuilds
the records tuple once (O(n), and an untouched registry is returned as is), lookups are
binary searches. Everything is ordered by bytes, never by dict or set order.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from edgechain.chain.model import AppSpec, PlanAction, PlanEntry, ResourceReport
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import AppId, NodeId, Slot

GENESIS_SLOT = Slot(0)


class AppState(enum.Enum):
    """What the operator asked for: the app runs, or it is stopped where it is."""

    RUNNING = "running"
    STOPPED = "stopped"


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
    state: AppState = AppState.RUNNING
    version: int = 1
    """Spec version: 1 at SUBMIT, +1 per UPDATE. A node runs the record's version."""
    owner: bytes = b""
    """The key that submitted it."""
    created_slot: Slot = GENESIS_SLOT
    move_to: NodeId | None = None
    """An operator's MOVE not carried out yet: the planner migrates the app there."""
    replica_node: NodeId | None = None
    """Where the app's node streams its state replicas (``spec.replica_interval_slots``),
    named by a REPLICA plan entry; cleared when the app lands there or the node leaves."""
    previous_node: NodeId | None = None
    """The origin of the app's last MIGRATE or RECOVER (None after a PLACE): the planner
    does not balance an app straight back there (``orchestrator/balancing.py``)."""
    moved_by_operator: bool = False
    """Whether the app's last placement carried out an operator's MOVE (it landed on its
    ``move_to``): balancing leaves it there for a while (``balancing.OPERATOR_HOLD_SLOTS``)."""
    state_node: NodeId | None = None
    """The replica node the chain last confirmed to hold the app's state
    (:func:`apply_reports_to_registry`; block format 18 for ``policy.wait_for_state``
    apps, 19 for every replicated app), where the app is recovered
    (``placement._choose_recovery``); kept when that node leaves the set (it may come
    back), cleared when the app lands on it."""
    replica_slot: Slot | None = None
    """The slot the current replica node was named in."""
    state_slot: Slot | None = None
    """The slot of the app's node's report that confirmed ``state_node`` (block format
    19): after the app's last move, the state node holds its current node's replicas
    (:func:`is_state_current`); before it, only an earlier node's."""
    move_landed: bool = True
    """Whether the app's node has reported running it since its last placement or move
    (block format 19; True for an app never placed). Kept on the record because a
    report is not: a node that left the validator set has no report left to say the
    app landed there, and the planner hands the app of a down node back to the origin
    of a move that never landed (``placement.get_unlanded_origin``)."""


@dataclass(frozen=True)
class Registry:
    """``records`` sorted by app id bytes (unique); ``queue`` holds the ids of the
    unplaced running apps in the order they are to be placed (see
    :func:`apply_block_to_registry`). Invariant: an app is in ``queue`` exactly when its
    record's ``node`` is ``None`` and its state is RUNNING."""

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


def apply_block_to_registry(
    registry: Registry,
    slot: Slot,
    plan: Sequence[PlanEntry],
    removed_nodes: Collection[NodeId],
) -> Registry:
    """The registry after a block's plan and departures; pure, ``registry`` is kept.

    Order matters and is part of the protocol; the block's signed commands follow these
    two steps (``orchestrator/commands.py``):

    1. The block's ``plan`` (computed from ``registry``, i.e. the parent's state): PLACE
       takes a queued app to its destination, MIGRATE and RECOVER move a placed app from
       its origin; all three set the app's ``last_move_slot`` to ``slot``, its
       ``previous_node`` to the origin (None for PLACE) and ``move_landed`` to False
       (:func:`apply_reports_to_registry` sets it again), a move to the
       app's ``move_to`` clears it and sets ``moved_by_operator`` (any other move
       clears that), and one onto its replica node clears
       ``replica_node`` (the replica is used up there) and ``state_node``. REPLICA
       names the app's replica node and sets ``replica_slot``. An entry that does not
       fit the registry (unknown app, PLACE of a placed app, a move or REPLICA from the
       wrong origin, an app twice) is a ValidationError: honest validators recompute the
       plan from this same registry, so such a plan can only come from a faulty producer.
    2. ``removed_nodes`` (the block's exits and exclusions, or a skip block's excluded
       producer): a ``move_to`` or ``replica_node`` naming one of them is dropped (not a
       ``state_node``: that node may come back). Their
       apps stay placed on them: a node excluded by a skip block may only have been slow
       and still runs them, so re-placing them at once would run them twice. The
       planner recovers them once the node is ``down`` (``orchestrator/liveness.py``),
       after its fencing lease has frozen them (DESIGN.md, "Exactly once"). An app is
       never lost, and never placed twice.

    A skip block is ``apply_block_to_registry(r, slot, (), {excluded})``.
    """
    if not plan and not removed_nodes:
        return registry
    changed: dict[AppId, AppRecord] = {}
    queue = _apply_plan(registry, slot, plan, changed)
    _forget_removed_nodes(registry, removed_nodes, changed)
    records = tuple(changed.get(r.app, r) for r in registry.records)
    return Registry(records=records, queue=tuple(queue))


def put_record(registry: Registry, record: AppRecord) -> Registry:
    """``registry`` with ``record`` added or replaced; the queue follows the invariant
    (a running unplaced app not yet queued joins its back; any other leaves it)."""
    records = list(registry.records)
    pos = bisect.bisect_left(records, record.app, key=_record_app)
    if pos < len(records) and records[pos].app == record.app:
        records[pos] = record
    else:
        records.insert(pos, record)
    queued = record.node is None and record.state is AppState.RUNNING
    queue = list(registry.queue)
    if queued and record.app not in queue:
        queue.append(record.app)
    elif not queued and record.app in queue:
        queue.remove(record.app)
    return Registry(records=tuple(records), queue=tuple(queue))


def delete_record(registry: Registry, app: AppId) -> Registry:
    """``registry`` without ``app`` (REMOVE)."""
    return Registry(
        records=tuple(r for r in registry.records if r.app != app),
        queue=tuple(a for a in registry.queue if a != app),
    )


def _record_app(record: AppRecord) -> AppId:
    return record.app


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
            raise ValidationError(RejectReason.PLAN_APP_TWICE, entry.app.hex())
        record = get_record(registry, entry.app)
        if record is None:
            raise ValidationError(RejectReason.PLAN_UNKNOWN_APP, entry.app.hex())
        if entry.action is PlanAction.PLACE:
            if record.node is not None:
                raise ValidationError(RejectReason.PLAN_PLACE_NOT_QUEUED, entry.app.hex())
            placed.add(entry.app)
        elif record.node is None or record.node != entry.origin:
            raise ValidationError(RejectReason.PLAN_WRONG_ORIGIN, entry.app.hex())
        elif entry.destination == entry.origin:
            raise ValidationError(RejectReason.PLAN_MIGRATE_IN_PLACE, entry.app.hex())
        if entry.action is PlanAction.REPLICA:
            changed[entry.app] = replace(record, replica_node=entry.destination, replica_slot=slot)
            continue
        move_to = None if record.move_to == entry.destination else record.move_to
        replica = None if record.replica_node == entry.destination else record.replica_node
        held_at_destination = record.state_node == entry.destination
        state_node = None if held_at_destination else record.state_node
        changed[entry.app] = replace(
            record,
            node=entry.destination,
            last_move_slot=slot,
            move_to=move_to,
            replica_node=replica,
            previous_node=None if entry.action is PlanAction.PLACE else record.node,
            moved_by_operator=record.move_to is not None and record.move_to == entry.destination,
            state_node=state_node,
            replica_slot=record.replica_slot if replica is not None else None,
            move_landed=False,
            state_slot=None if held_at_destination else record.state_slot,
        )
    return [app for app in registry.queue if app not in placed]


def _forget_removed_nodes(
    registry: Registry, removed_nodes: Collection[NodeId], changed: dict[AppId, AppRecord]
) -> None:
    """Step 2: no MOVE to, and no replicas on, a node that left."""
    if not removed_nodes:
        return
    removed = set(removed_nodes)
    for original in registry.records:  # app id order
        record = changed.get(original.app, original)
        move_to = None if record.move_to in removed else record.move_to
        replica = None if record.replica_node in removed else record.replica_node
        if move_to != record.move_to or replica != record.replica_node:
            changed[record.app] = replace(record, move_to=move_to, replica_node=replica)


STATE_CONFIRM_INTERVALS = 2
"""Replica intervals a node must be seen running the app after its replica node was
named (or after it got the app) before that replica node counts as holding its state."""


def apply_reports_to_registry(registry: Registry, reports: Sequence[ResourceReport]) -> Registry:
    """The registry after a block's ``reports`` (block format 19; pure):

    - a move lands (``move_landed``) once a report of the app's node made after the
      move lists the app (the rule of ``load.is_move_landed``);
    - a replicated app's replica node becomes its ``state_node`` (``state_slot``: the
      report's slot) once the app's node reported at least ``STATE_CONFIRM_INTERVALS``
      replica intervals after the later of the naming and the app's last move; a state
      node confirmed before the last move is confirmed again so, for the app's new node
      (:func:`is_state_current`). A host seen that long after sends its
      replica node a snapshot every interval (``runtime/replication.py``); a replica
      node named while its host was already silent (a host and its replica node lost
      together, the first excluded for its silence sooner) never is, and the app is
      recovered where its state is, not on that node from nothing
      (``placement._choose_recovery``).
    """
    # Every block of every validator comes through here: the reports are read only for
    # the apps that wait for a landing or a confirmation, a few at any time (or none).
    waiting = []
    for r in registry.records:
        if r.node is not None:
            confirming = is_state_node_awaited(r)
            if confirming or not r.move_landed:
                waiting.append((r, r.node, confirming))
    if not waiting or not reports:
        return registry
    latest: dict[bytes, int] = {}
    listed: dict[tuple[bytes, bytes], int] = {}
    for report in reports:
        latest[report.node] = max(latest.get(report.node, 0), report.slot)
        for usage in report.apps:
            key = (report.node, usage.app)
            listed[key] = max(listed.get(key, 0), report.slot)
    for record, node, confirming in waiting:
        # A report of slot s is built on the block of s - 1: s > the move's slot means
        # its node knew of the move (``load.is_reported_after_move``).
        moved = record.last_move_slot or 0
        landed = record.move_landed or listed.get((node, record.app), -1) > moved
        state_node, state_slot = record.state_node, record.state_slot
        if confirming:
            since = max(record.replica_slot or 0, moved)
            wait = STATE_CONFIRM_INTERVALS * record.spec.replica_interval_slots
            seen = latest.get(node, -1)
            if seen >= since + wait:
                state_node, state_slot = record.replica_node, Slot(seen)
        if (landed, state_node, state_slot) != (
            record.move_landed,
            record.state_node,
            record.state_slot,
        ):
            registry = put_record(
                registry,
                replace(record, move_landed=landed, state_node=state_node, state_slot=state_slot),
            )
    return registry


def is_state_node_awaited(record: AppRecord) -> bool:
    """Whether the app's replica node is still to be confirmed as its current state
    node (:func:`apply_reports_to_registry`)."""
    return record.replica_node is not None and (
        record.replica_node != record.state_node or not is_state_current(record)
    )


def is_state_current(record: AppRecord) -> bool:
    """Whether the app's ``state_node`` was confirmed by a report of its node made after
    its last move: it holds that node's replicas, not an earlier node's. Why the
    difference matters: in a chaos run (session 54, seed 5353) a state node confirmed
    for one node kept the name after the app migrated, while a partition cut it off
    from the new node, which sent its replicas to the next replica node instead; the
    old state node, whose replica no receiver would take, dropped it, and a recovery
    there started the app from nothing (``placement.get_state_holder``)."""
    return (
        record.state_node is not None
        and record.state_slot is not None
        and record.state_slot > (record.last_move_slot or 0)
    )
