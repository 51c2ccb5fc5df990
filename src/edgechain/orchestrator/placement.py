"""Where apps start: recovery of a down node's apps (phase 0) and placement of queued
apps (phase 1), largest first onto the least loaded (LPT).

Paper §3.3, Algorithm 1's first branch puts each queued app, in queue order, on the
currently least-loaded node. Placing many apps at once in arrival order can stack two
large apps on one node while small ones spread thin (measured: 200 apps of 1.1-7.9 % CPU
on 100 nodes, max/mean 1.55 after placement). We place them largest first instead
(Graham's LPT rule): each app goes to the node that is least loaded after the larger
apps were placed, which bounds the makespan by 4/3 of the optimum and, with many apps
per node, by the mean plus the smallest app. Ties and equal scores: app id order.

Order of the phase, all in one plan:

1. Apps with a preferred node (their pending ``move_to``, else their replica node,
   which holds their latest state) go there when their policy allows, in queue order.
2. The others, by (score descending, app id): constrained apps (pin, labels,
   anti-affinity) to the least-loaded node they may use, others to the least-loaded
   node of all (a heap).

An app no node can take (pinned to an absent node, labels nobody has, anti-affinity
with every node, no room for its state anywhere: ``PlanState.has_room``) stays queued
and does not block the others. PLACE and RECOVER entries start apps, they move
nothing, so they are not counted against the migration budget.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.orchestrator.load import KEPT_ROOM_FACTOR, START_ROOM_FACTOR, is_room_enough
from edgechain.orchestrator.plan_state import PlanState
from edgechain.orchestrator.policy import is_constrained, is_node_allowed
from edgechain.orchestrator.registry import (
    AppRecord,
    Registry,
    get_queued_records,
    is_state_current,
)
from edgechain.types import NodeId


def recover_apps(state: PlanState) -> list[PlanEntry]:
    """Phase 0 (DESIGN.md, "Exactly once"): RECOVER each running app of a down node to
    where its state is (:func:`_choose_recovery`), largest apps first; the entries are
    listed in app id order. An app no node may take (pinned to the down node) waits
    there, and so do one whose replica node is quiet (:func:`is_waiting_for_replica_node`)
    and one whose policy is ``wait_for_state`` when no node holding its state may take
    it, and one whose state holder is briefly away (:func:`is_waiting_for_state_holder`)."""
    entries: list[PlanEntry] = []
    stranded = [(origin, app) for origin in sorted(state.down) for app in state.apps_on[origin]]
    stranded.sort(key=lambda item: (-state.app_score[item[1]], item[1]))
    for origin, app in stranded:
        record = state.records[app]
        chosen = _choose_recovery(state, record)
        if chosen is None:
            continue
        destination, factor = chosen
        state.remove_app(record, origin)
        state.add_app(record, destination, factor)
        entries.append(PlanEntry(PlanAction.RECOVER, app, origin, destination))
    entries.sort(key=lambda e: e.app)
    return entries


def is_waiting_for_replica_node(state: PlanState, record: AppRecord) -> bool:
    """Whether a down node's app waits for its replica node, which is quiet (silent a
    while, not down: ``liveness.compute_quiet_nodes``) and could take it otherwise.

    A quiet node is no destination, so the RECOVER went to another node, which started
    the app from nothing while the replica node, back a slot or two later, held its
    state (chaos, session 49: a host and its replica node cut off together by a
    partition; the host went down while the replica node was still quiet, and the
    app restarted from 0 with 326 counts on the replica node). Waiting costs at most
    ``down_after_slots - QUIET_AFTER_SLOTS`` slots: by then the replica node has
    spoken again (the RECOVER goes there) or is down (the app goes elsewhere, as
    before)."""
    node = record.replica_node
    return node is not None and _is_quiet_and_fit(state, record, node, START_ROOM_FACTOR)


def _is_quiet_and_fit(state: PlanState, record: AppRecord, node: NodeId, factor: int) -> bool:
    """``node`` is quiet and could take the app now (room, labels) but for that."""
    return (
        node in state.quiet
        and state.has_room(node, record.app, factor)
        and is_node_allowed(record.spec, state.infos[node])
    )


def is_waiting_for_state_holder(state: PlanState, record: AppRecord) -> bool:
    """Whether a down node's app waits for the node known to hold its latest state
    (:func:`get_state_holder`'s two: the origin of a move that never landed, else its
    state node confirmed since its last move), which cannot take it now only because it
    is briefly away: quiet, or out of the validator set but not down
    (``PlanState.departed``).

    Why. In a chaos run (session 61, ``edgechain chaos --nodes 8 --duration 600 --seed
    6161``) a 3-slot ring partition left the app's state node silent long enough for a
    skip block to exclude it (slot 285); two slots later its host, killed earlier, was
    down, and the app was recovered onto the least-loaded node, which started it from 0
    while the state node, readmitted three slots later, held its replica at 1043
    counts. Waiting costs at most K slots after the holder's last contribution: by then
    it is back (the RECOVER goes there) or down (the app goes elsewhere, as before)."""
    holders = (
        (record.previous_node if _is_unlanded(state, record) else None, KEPT_ROOM_FACTOR),
        (record.state_node if is_state_current(record) else None, START_ROOM_FACTOR),
    )
    return any(
        node is not None and _may_take_when_back(state, record, node, factor)
        for node, factor in holders
    )


def _may_take_when_back(state: PlanState, record: AppRecord, node: NodeId, factor: int) -> bool:
    """Whether ``node``, briefly away, may take the app once back: a quiet validator only
    if it could now (as :func:`is_waiting_for_replica_node` asks); a departed node
    always, since its labels and room left the state with it."""
    return node in state.departed or _is_quiet_and_fit(state, record, node, factor)


def _choose_recovery(state: PlanState, record: AppRecord) -> tuple[NodeId, int] | None:
    """(destination, its room factor) for a down node's app, or None: it waits.

    Where its current state is known to be, first (:func:`get_state_holder`): the
    origin of a move that never landed, else the state node confirmed since the last
    move. Else it waits while that node is briefly away
    (:func:`is_waiting_for_state_holder`), or for a quiet replica node
    (:func:`is_waiting_for_replica_node`).
    Else, by default: its replica node (the app's node sent it its replicas since the
    naming, and a former one hands its replica on: ``runtime/replication.py``), a state
    node confirmed before the last move (an earlier node's replica, if it still keeps
    it), its pending ``move_to``, the least-loaded node, in that order, each of which
    starts the app from nothing if it holds no replica. The replica node before the
    MOVE's target: the MOVE stays on the record and is planned from the replica node
    next, state and all. An app whose policy is ``wait_for_state`` takes only its state
    node, whenever confirmed, or an operator's MOVE target (the one way to give its
    state up), and otherwise waits, and resumes on its own node or where its state is,
    whichever comes back first."""
    holder = get_state_holder(state, record)
    if holder is not None:
        return holder
    if is_waiting_for_state_holder(state, record) or is_waiting_for_replica_node(state, record):
        return None
    if record.spec.policy.wait_for_state:
        waited = _get_first_allowed(state, record, (record.state_node, record.move_to))
        return None if waited is None else (waited, START_ROOM_FACTOR)
    candidates = (record.replica_node, record.state_node, record.move_to)
    preferred = _get_first_allowed(state, record, candidates)
    if preferred is not None:
        return preferred, START_ROOM_FACTOR
    least = find_least_loaded_allowed(state, record, factor=START_ROOM_FACTOR)
    return None if least is None else (least, START_ROOM_FACTOR)


def get_state_holder(state: PlanState, record: AppRecord) -> tuple[NodeId, int] | None:
    """The node known to hold a down node's app's latest state that may take the app,
    with its room factor, or None:

    1. the origin of its last move, if that move never landed (:func:`get_unlanded_origin`):
       it ran the app up to the handover, and runs it on while the handover cannot land
       (``runtime/replication.is_sender``), so its copy is newer than any replica;
    2. its ``state_node`` if confirmed since that move (``registry.is_state_current``):
       the replica node the chain confirmed from the app's node's reports
       (``registry.apply_reports_to_registry``). Not the replica node as such: one named
       after its host fell silent never received a replica.

    Why. By default a recovery went to the replica node first. In a chaos run (session
    53, ``--nodes 10 --seed 5353 --fault-slots 14``) an app moved to a node that was cut
    off before the move landed; the chain then named a new replica node, which never
    received a replica, and the app restarted there from 0, while the move's origin
    held its live state (429 counts) and the former replica node a replica (378). A
    second app lost its state the same way after a partition."""
    origin = get_unlanded_origin(state, record)
    if origin is not None:
        return origin, KEPT_ROOM_FACTOR
    if not is_state_current(record):
        return None
    held = _get_if_allowed(state, record, record.state_node, START_ROOM_FACTOR)
    return None if held is None else (held, START_ROOM_FACTOR)


def place_queued_apps(registry: Registry, state: PlanState) -> list[PlanEntry]:
    """Phase 1: PLACE entries for the queued apps (module docstring), in the order they
    were decided.

    Unconstrained apps pop the least-loaded node from a heap of (load, node id) with
    lazy deletion: an entry is current iff its load equals the node's load now. Loads
    only grow in this phase and every change pushes a fresh entry, so the first current
    entry is exactly min over the available validators of (load, node id).
    """
    entries: list[PlanEntry] = []
    rest: list[AppRecord] = []
    for record in get_queued_records(registry):
        preferred = get_preferred_node(state, record)
        if preferred is None:
            rest.append(record)
        else:
            state.add_app(record, preferred, START_ROOM_FACTOR)
            entries.append(PlanEntry(PlanAction.PLACE, record.app, b"", preferred))
    rest.sort(key=lambda r: (-state.app_score[r.app], r.app))
    heap = [(load, node) for node, load in state.load.items() if node in state.available]
    heapq.heapify(heap)
    for record in rest:
        destination = None
        if not is_constrained(record.spec):
            destination = _peek_least_loaded(heap, state)
        if destination is None or not state.has_room(destination, record.app, START_ROOM_FACTOR):
            destination = find_least_loaded_allowed(state, record, factor=START_ROOM_FACTOR)
        if destination is None:
            continue  # waits in the queue; later apps may still fit
        state.add_app(record, destination, START_ROOM_FACTOR)
        heapq.heappush(heap, (state.load[destination], destination))
        entries.append(PlanEntry(PlanAction.PLACE, record.app, b"", destination))
    return entries


def get_preferred_node(state: PlanState, record: AppRecord) -> NodeId | None:
    """Where the app should go whatever the loads say, if it may: the operator's MOVE
    target, else its replica node (which holds its latest state: an app evicted with
    its node restarts from there, DESIGN.md "Exactly once")."""
    return _get_first_allowed(state, record, (record.move_to, record.replica_node))


def get_unlanded_origin(state: PlanState, record: AppRecord) -> NodeId | None:
    """The origin of the app's last MIGRATE or RECOVER (``previous_node``) when the node
    it went to has not reported running it since, if the origin may take it back.

    Not reported: neither on the chain's record (``AppRecord.move_landed``, set by the
    reports of every block since the move) nor in the latest reports (``confirmed``).
    The origin keeps its copy's state dir until the move has landed and is K slots deep
    (``runtime/reconcile.py``, DISCARD), so its state is the app's latest, where any
    other node would start the app from nothing. The record, not the latest reports
    alone: a down node out of the validator set has no report left to say the move
    landed, and an origin whose move landed long ago holds nothing (a live test saw an
    app go back to such an origin from its paused node)."""
    if not _is_unlanded(state, record):
        return None
    return _get_if_allowed(state, record, record.previous_node, KEPT_ROOM_FACTOR)


def _is_unlanded(state: PlanState, record: AppRecord) -> bool:
    """The app's node has not reported running it since its last move, on the chain's
    record nor in the latest reports (:func:`get_unlanded_origin`)."""
    return not (record.move_landed or record.app in state.confirmed)


def _get_first_allowed(
    state: PlanState, record: AppRecord, nodes: tuple[NodeId | None, ...]
) -> NodeId | None:
    """The first of ``nodes`` that may start the app (``START_ROOM_FACTOR``), in order."""
    for node in nodes:
        if (allowed := _get_if_allowed(state, record, node, START_ROOM_FACTOR)) is not None:
            return allowed
    return None


def _get_if_allowed(
    state: PlanState, record: AppRecord, node: NodeId | None, factor: int
) -> NodeId | None:
    if node is not None and state.is_destination_allowed(record, node, factor=factor):
        return node
    return None


def find_least_loaded_allowed(
    state: PlanState,
    record: AppRecord,
    accept: Callable[[NodeId], bool] | None = None,
    *,
    factor: int,
) -> NodeId | None:
    """The available node with the smallest (load, id) that the app may use, with room
    for ``factor`` times its state (``PlanState.has_room``), and that ``accept``
    accepts (e.g. has migration budget left), or None."""
    best: tuple[int, NodeId] | None = None
    for node, node_load in state.load.items():
        if (
            (best is None or (node_load, node) < best)
            and state.is_destination_allowed(record, node, factor=factor)
            and (accept is None or accept(node))
        ):
            best = (node_load, node)
    return None if best is None else best[1]


def _peek_least_loaded(heap: list[tuple[int, NodeId]], state: PlanState) -> NodeId | None:
    """The least-loaded node with some room for app state: a node with none leaves the
    heap for good (room only shrinks in this phase)."""
    while heap:
        node_load, node = heap[0]
        if state.load[node] == node_load and is_room_enough(
            state.room.get(node), 0, START_ROOM_FACTOR
        ):
            return node
        heapq.heappop(heap)
    return None
