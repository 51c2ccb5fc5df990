"""The deterministic migration plan (paper §3.3, Algorithm 1; DESIGN.md "Migration plan").

``compute_plan`` is a pure function of the parent block's data: the registry after the
parent, the parent's resource reports, the validator set after the parent (with labels)
and the slot being built. The producer puts its result in the block; committee members
and validators recompute it and vote only if the two are equal (no separate validity
check exists). Hence Rule 2: integers only (load scores in ``load.py``), every choice
ordered by (integer, id bytes), never by dict or set iteration order or input order.

Algorithm 1 of the paper, which this generalises:

    if the queue is not empty: put each queued app on the currently least-loaded node
    else: move the max-load app of the most-loaded node to the least-loaded node if
          that narrows their gap

Phase 0, recovery (DESIGN.md, "Exactly once"): every running app on a ``down`` node
(``orchestrator/liveness.py``; a node that left the validator set keeps its apps until
it is down) gets a RECOVER entry, in app id order, to the first of
these its policy allows: its pending ``move_to``, its replica node (which holds its
latest state), the least-loaded available node. Not counted against
``max_migrations``: the app is not running anywhere the chain trusts. An app no node
may take (pinned to the down node) waits there. Down and draining nodes are never
destinations, of anything.

Phase 1, placement (every plan): queued apps, in queue order, each go to their pending
``move_to`` or their replica node when the policy allows (an app evicted with its node
restarts where its latest state is), else to the least-loaded node its policy allows
(ties: smallest node id), and that node's load grows
by the app's score before the next app is placed, exactly as Algorithm 1's loop. An app
no node can take (pinned to an absent node, labels nobody has, anti-affinity with every
node) stays queued and does not block the apps behind it. PLACE entries are not counted
against ``max_migrations``: they start apps, nothing stops.

Operator moves (a MOVE command left ``move_to`` on the app's record) come first in
phase 2: each such running app whose policy and minimum interval allow it migrates to
the named node, counted against ``max_migrations``, whatever the loads say. A queued
app with a ``move_to`` is placed there when the node may take it. Stopped apps are
neither placed nor moved, and weigh nothing on their node.

Then drains: each running app on a ``draining`` node whose policy allows a move goes to
the least-loaded available node, counted against ``max_migrations`` (after operator
moves).

Phase 2, migrations (every plan, after placement, so a busy queue cannot starve
rebalancing): up to ``max_migrations`` moves, each chosen greedily on the loads updated
by the previous entries. A move takes a movable app (policy allows it, not already in
this plan, no pin, its minimum interval elapsed) from the most-loaded reported node h to
the least-loaded reported node c its policy allows, and must shrink the gap between h
and c by at least R = max(1, min_gap_reduction): with g = L(h) - L(c) and a the app's
score, the pair's gap goes from g to |g - 2a|, a reduction of min(2a, 2(g - a)). Among
the apps of h, the one whose move lowers the potential (below) the most is chosen, ties
to the smallest app id; that is Algorithm 1's max-load app whenever that app is at most
half the gap, and, unlike Algorithm 1, a smaller app still moves when the largest one
would invert the gap. If no app of h can move, the next most-loaded node is tried.

Why plans cannot oscillate (the non-cycling argument):

* Within a plan, an app gets at most one entry (PLACE or MIGRATE).
* Potential: Phi = sum over reported nodes of L(n)^2. Moving a from h to c changes Phi
  by (L(h) - a)^2 + (L(c) + a)^2 - L(h)^2 - L(c)^2 = -2a(g - a). The rule above demands
  a >= R/2 and g - a >= R/2, so every migration lowers Phi by at least R^2 / 2.
* Loads are charged to the registry's placement (``load.py``), so if the measured
  usages stay the same, the next slot's model starts exactly where this plan left it:
  Phi keeps falling across slots. Phi is a non-negative integer, so after at most
  Phi_0 / (R^2 / 2) migrations no move qualifies and plans are empty: the system
  converges, it cannot cycle. (PLACEs add load, but only once per submission or
  eviction.)
* No app hops straight back: after a moves h -> c, c exceeds h by 2a - g, and moving
  it back would need (2a - g) - a = a - g >= R/2, while a - g <= -R/2. With noisy
  measurements: if every measured figure (node total, app usage) is within +-eps of
  the truth, the two conditions add up to needing 8 * eps >= R (the pair's difference
  at both slots, the app's score at both slots, and the in-flight app's reading, which
  the model counts at both ends). With R = 1000 that is CPU readings off by >= 0.6 %;
  reports should therefore carry smoothed usage (the monitor's moving averages), and
  R trades balance precision for noise immunity.
* In addition an app moves at most once every max(min_interval_slots,
  min_move_interval) slots, which covers transfers still in flight (tens of seconds,
  paper Table 3) and bounds the churn even when usage really changes.

Phase 3, replicas: each running app that opted in to replicas
(``spec.replica_interval_slots``) and has no entry in this plan gets a REPLICA entry
when it has no valid replica node (none yet, down, draining, no longer a validator,
the app's own node, or outside its allowed labels): the least-loaded available node
other than its own that its labels allow. At most ``MAX_REPLICA_ENTRIES`` per plan, in
app id order. A valid replica node is kept, so replica nodes do not churn with load.

Cost: placement is O(Q log N) for unconstrained apps (a heap) and O(N) per constrained
app; each migration sorts the reported nodes and scans the apps of the loaded nodes.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from edgechain.chain.model import PlanAction, PlanEntry, ResourceReport
from edgechain.errors import LocalError
from edgechain.orchestrator.load import LoadModel, compute_load_model
from edgechain.orchestrator.policy import (
    NodeInfo,
    has_allowed_label,
    is_constrained,
    is_move_allowed,
    is_node_allowed,
)
from edgechain.orchestrator.registry import (
    AppRecord,
    AppState,
    Registry,
    get_queued_records,
)
from edgechain.types import AppId, NodeId, Slot

DEFAULT_MIN_GAP_REDUCTION = 1_000
"""R: a migration must shrink the gap between its two nodes by at least this many
score units (CPU counts 2 per basis point, so 1000 = 5 % CPU). It keeps apps below
R/2 from moving for negligible gains, and measurement noise below R/8 from ever sending
an app straight back (module docstring)."""

DEFAULT_MIN_MOVE_INTERVAL_SLOTS = 4
"""Protocol-wide minimum number of slots between two moves of an app (its placement
counts as a move). A standard migration takes ~25 s on average and up to ~100 s (paper
Table 3: save + transmit + resume), i.e. several slots; moving an app again before it
has landed would chain transfers. Apps may ask for more with ``min_interval_slots``."""


MAX_REPLICA_ENTRIES = 64
"""REPLICA entries per plan: bounds a block after many stateful apps arrive at once."""


def compute_plan(
    registry: Registry,
    reports: Sequence[ResourceReport],
    nodes: Sequence[NodeInfo],
    slot: Slot,
    max_migrations: int,
    *,
    down: frozenset[NodeId] = frozenset(),
    draining: frozenset[NodeId] = frozenset(),
    min_gap_reduction: int = DEFAULT_MIN_GAP_REDUCTION,
    min_move_interval: int = DEFAULT_MIN_MOVE_INTERVAL_SLOTS,
) -> tuple[PlanEntry, ...]:
    """The plan of the block of ``slot``: RECOVER entries (app id order), PLACE entries
    (queue order), then at most ``max_migrations`` MIGRATE entries (in the order
    chosen), then REPLICA entries. See the module docstring.

    ``registry``, ``reports`` and ``nodes`` are the state after the parent block; the
    order of ``reports`` and ``nodes`` and of each node's labels does not matter. Two
    NodeInfo with the same id are a LocalError (the caller's validator set is wrong).
    ``down`` and ``draining`` are the node statuses of ``orchestrator/liveness.py``.
    The other keyword parameters are protocol constants: every node must use the same
    ones.
    """
    infos = _index_nodes(nodes)
    model = compute_load_model(registry, reports, frozenset(infos))
    state = _PlanState.start(registry, model, infos, down, draining)
    entries = _recover_apps(state)
    entries.extend(_place_queued_apps(registry, state))
    moves = _plan_operator_moves(state, slot, max_migrations, min_move_interval)
    moves.extend(_plan_drains(state, slot, max_migrations - len(moves), min_move_interval))
    entries.extend(moves)
    entries.extend(
        _plan_migrations(
            state,
            slot,
            max_migrations - len(moves),
            required_reduction=max(1, min_gap_reduction),
            min_move_interval=min_move_interval,
        )
    )
    entries.extend(_assign_replicas(state))
    return tuple(entries)


def _index_nodes(nodes: Sequence[NodeInfo]) -> dict[NodeId, NodeInfo]:
    infos: dict[NodeId, NodeInfo] = {}
    for info in nodes:
        if info.node in infos:
            raise LocalError(f"duplicate validator {info.node.hex()} given to the planner")
        infos[info.node] = info
    return infos


@dataclass
class _PlanState:
    """The planner's scratch state while it builds one plan (never escapes the call).

    ``load`` covers every validator; ``reported`` are those with a report (the only
    ones migrations touch); ``available`` are the validators neither down nor draining
    (the only destinations); ``down`` and ``draining`` are the others; ``apps_on``
    lists each validator's apps in app id order; ``groups_on`` counts each validator's
    apps per anti-affinity group; ``planned`` are the apps that already have an entry
    in this plan.
    """

    infos: dict[NodeId, NodeInfo]
    available: frozenset[NodeId]
    down: frozenset[NodeId]
    draining: frozenset[NodeId]
    load: dict[NodeId, int]
    app_score: dict[AppId, int]
    records: dict[AppId, AppRecord]
    reported: frozenset[NodeId]
    apps_on: dict[NodeId, list[AppId]]
    groups_on: dict[NodeId, dict[str, int]]
    planned: set[AppId]

    @classmethod
    def start(
        cls,
        registry: Registry,
        model: LoadModel,
        infos: dict[NodeId, NodeInfo],
        down: frozenset[NodeId],
        draining: frozenset[NodeId],
    ) -> _PlanState:
        # ``down`` may name nodes that left the validator set with apps still on them
        # (they stay placed there until the node is down, registry.py): their apps are
        # recovered, nothing else is done with them.
        draining = (draining & frozenset(infos)) - down
        state = cls(
            infos=infos,
            available=frozenset(infos) - down - draining,
            down=down,
            draining=draining,
            load=dict.fromkeys(down, 0) | dict(model.node_load),
            app_score=dict(model.app_score),
            records={r.app: r for r in registry.records},
            reported=model.reported,
            apps_on={node: [] for node in (*infos, *down)},
            groups_on={node: {} for node in (*infos, *down)},
            planned=set(),
        )
        for record in registry.records:  # app id order, so every list stays sorted
            if (
                record.node is not None
                and record.node in state.apps_on
                and record.state is AppState.RUNNING
            ):
                state.apps_on[record.node].append(record.app)
                state.count_group(record, record.node, 1)
        return state

    def count_group(self, record: AppRecord, node: NodeId, delta: int) -> None:
        group = record.spec.policy.anti_affinity
        if group:
            groups = self.groups_on[node]
            groups[group] = groups.get(group, 0) + delta

    def is_destination_allowed(self, record: AppRecord, node: NodeId) -> bool:
        """Available, labels, pin and anti-affinity (with the plan's earlier entries
        applied)."""
        if node not in self.available or not is_node_allowed(record.spec.policy, self.infos[node]):
            return False
        group = record.spec.policy.anti_affinity
        return not group or self.groups_on[node].get(group, 0) == 0

    def add_app(self, record: AppRecord, node: NodeId) -> None:
        self.load[node] += self.app_score[record.app]
        bisect.insort(self.apps_on[node], record.app)
        self.count_group(record, node, 1)
        self.planned.add(record.app)

    def remove_app(self, record: AppRecord, node: NodeId) -> None:
        self.load[node] -= self.app_score[record.app]
        self.apps_on[node].remove(record.app)
        self.count_group(record, node, -1)


# --- phase 1: placement ----------------------------------------------------------------


def _place_queued_apps(registry: Registry, state: _PlanState) -> list[PlanEntry]:
    """Algorithm 1's first branch, with policies: each queued app to the least-loaded
    node it may use, loads updated as we go.

    Unconstrained apps pop the least-loaded node from a heap of (load, node id) with
    lazy deletion: an entry is current iff its load equals the node's load now. Loads
    only grow in this phase and every change pushes a fresh entry, so the first current
    entry is exactly min over all validators of (load, node id).
    """
    heap = [(load, node) for node, load in state.load.items() if node in state.available]
    heapq.heapify(heap)
    entries: list[PlanEntry] = []
    for record in get_queued_records(registry):
        preferred = _get_preferred_node(state, record)
        if preferred is not None:
            destination: NodeId | None = preferred
        elif is_constrained(record.spec.policy):
            destination = _find_least_loaded_allowed(state, record)
        else:
            destination = _peek_least_loaded(heap, state.load)
        if destination is None:
            continue  # waits in the queue; later apps may still fit
        state.add_app(record, destination)
        heapq.heappush(heap, (state.load[destination], destination))
        entries.append(PlanEntry(PlanAction.PLACE, record.app, b"", destination))
    return entries


def _get_preferred_node(state: _PlanState, record: AppRecord) -> NodeId | None:
    """Where the app should go whatever the loads say, if it may: the operator's MOVE
    target, else its replica node (which holds its latest state: an app evicted with
    its node restarts from there, DESIGN.md "Exactly once")."""
    for node in (record.move_to, record.replica_node):
        if node is not None and state.is_destination_allowed(record, node):
            return node
    return None


def _peek_least_loaded(heap: list[tuple[int, NodeId]], load: dict[NodeId, int]) -> NodeId | None:
    while heap:
        node_load, node = heap[0]
        if load[node] == node_load:
            return node
        heapq.heappop(heap)
    return None


def _find_least_loaded_allowed(state: _PlanState, record: AppRecord) -> NodeId | None:
    best: tuple[int, NodeId] | None = None
    for node, node_load in state.load.items():
        if (best is None or (node_load, node) < best) and state.is_destination_allowed(
            record, node
        ):
            best = (node_load, node)
    return None if best is None else best[1]


# --- phase 0: recovery -----------------------------------------------------------------


def _recover_apps(state: _PlanState) -> list[PlanEntry]:
    """RECOVER each running app of a down node (module docstring, phase 0)."""
    entries: list[PlanEntry] = []
    for origin in sorted(state.down):
        for app in list(state.apps_on[origin]):
            record = state.records[app]
            destination = _get_preferred_node(state, record) or _find_least_loaded_allowed(
                state, record
            )
            if destination is None:
                continue  # pinned to its node, or nowhere allowed: it waits
            state.remove_app(record, origin)
            state.add_app(record, destination)
            entries.append(PlanEntry(PlanAction.RECOVER, app, origin, destination))
    entries.sort(key=lambda e: e.app)
    return entries


# --- phase 2: migrations ---------------------------------------------------------------


def _plan_operator_moves(
    state: _PlanState, slot: Slot, max_migrations: int, min_move_interval: int
) -> list[PlanEntry]:
    """MOVE commands not carried out yet, in app id order, as far as the budget goes."""
    entries: list[PlanEntry] = []
    for app in sorted(state.records):
        if len(entries) >= max_migrations:
            break
        record = state.records[app]
        origin, target = record.node, record.move_to
        if (
            target is None
            or origin is None
            or origin not in state.infos
            or origin in state.down
            or target not in state.infos
            or target == origin
            or app in state.planned
            or record.state is not AppState.RUNNING
            or not is_move_allowed(record, slot, min_move_interval)
            or not state.is_destination_allowed(record, target)
        ):
            continue
        state.remove_app(record, origin)
        state.add_app(record, target)
        entries.append(PlanEntry(PlanAction.MIGRATE, app, origin, target))
    return entries


def _plan_drains(
    state: _PlanState, slot: Slot, budget: int, min_move_interval: int
) -> list[PlanEntry]:
    """Move the apps off draining nodes (node id, then app id order) within ``budget``."""
    entries: list[PlanEntry] = []
    for origin in sorted(state.draining):
        for app in list(state.apps_on[origin]):
            if len(entries) >= budget:
                return entries
            record = state.records[app]
            if app in state.planned or not is_move_allowed(record, slot, min_move_interval):
                continue
            destination = _find_least_loaded_allowed(state, record)
            if destination is None:
                continue
            state.remove_app(record, origin)
            state.add_app(record, destination)
            entries.append(PlanEntry(PlanAction.MIGRATE, app, origin, destination))
    return entries


@dataclass(frozen=True)
class _Move:
    record: AppRecord
    origin: NodeId
    destination: NodeId


def _plan_migrations(
    state: _PlanState,
    slot: Slot,
    max_migrations: int,
    *,
    required_reduction: int,
    min_move_interval: int,
) -> list[PlanEntry]:
    """Algorithm 1's second branch, repeated: each move strictly lowers the potential
    (module docstring), each app moves at most once, at most ``max_migrations`` moves."""
    entries: list[PlanEntry] = []
    while len(entries) < max_migrations:
        move = _find_best_move(state, slot, required_reduction, min_move_interval)
        if move is None:
            break
        state.remove_app(move.record, move.origin)
        state.add_app(move.record, move.destination)
        entries.append(
            PlanEntry(PlanAction.MIGRATE, move.record.app, move.origin, move.destination)
        )
    return entries


def _find_best_move(
    state: _PlanState, slot: Slot, required_reduction: int, min_move_interval: int
) -> _Move | None:
    """The move from the most-loaded reported node that can make one (see module doc)."""
    load = state.load
    ascending = sorted(state.reported & state.available, key=lambda n: (load[n], n))
    if not ascending:
        return None
    lightest = load[ascending[0]]
    for origin in sorted(state.reported - state.down, key=lambda n: (-load[n], n)):
        # A move shrinks its pair's gap g by min(2a, 2(g - a)) <= g. When even the gap
        # to the lightest node is below R, no app of this node qualifies, nor of any
        # lighter node (they come later in this order).
        if load[origin] - lightest < required_reduction:
            return None
        move = _find_best_move_from(
            state,
            origin,
            ascending,
            slot=slot,
            required_reduction=required_reduction,
            min_move_interval=min_move_interval,
        )
        if move is not None:
            return move
    return None


def _find_best_move_from(
    state: _PlanState,
    origin: NodeId,
    ascending: list[NodeId],
    *,
    slot: Slot,
    required_reduction: int,
    min_move_interval: int,
) -> _Move | None:
    """Among ``origin``'s movable apps, the move with the largest potential drop
    a * (g - a) (ties: smallest app id, as apps_on is in id order and only a strictly
    larger drop replaces the best). Each app's destination is the least-loaded allowed
    reported node, which maximises its drop."""
    load = state.load
    origin_load = load[origin]
    best: _Move | None = None
    best_drop = 0
    for app in state.apps_on[origin]:
        record = state.records[app]
        score = state.app_score[app]
        if (
            app in state.planned
            or record.move_to is not None
            or 2 * score < required_reduction
            or not is_move_allowed(record, slot, min_move_interval)
        ):
            continue
        for destination in ascending:
            gap = origin_load - load[destination]
            if 2 * (gap - score) < required_reduction:
                break  # later nodes are at least as loaded: smaller gaps
            if destination != origin and state.is_destination_allowed(record, destination):
                drop = score * (gap - score)
                if drop > best_drop:
                    best, best_drop = _Move(record, origin, destination), drop
                break
    return best


# --- phase 3: replicas -------------------------------------------------------------------


def _assign_replicas(state: _PlanState) -> list[PlanEntry]:
    """Name a replica node for each replicated app without a valid one (module docstring)."""
    entries: list[PlanEntry] = []
    for app in sorted(state.records):
        if len(entries) >= MAX_REPLICA_ENTRIES:
            break
        record = state.records[app]
        node = record.node
        if (
            node is None
            or app in state.planned
            or record.state is not AppState.RUNNING
            or not record.spec.stateful
            or record.spec.replica_interval_slots <= 0
            or node not in state.infos
            or node in state.down
            or _is_replica_node_valid(state, record, record.replica_node)
        ):
            continue
        best: tuple[int, NodeId] | None = None
        for candidate in state.available:
            if _is_replica_node_valid(state, record, candidate):
                key = (state.load[candidate], candidate)
                best = key if best is None or key < best else best
        if best is not None:
            entries.append(PlanEntry(PlanAction.REPLICA, app, node, best[1]))
    return entries


def _is_replica_node_valid(state: _PlanState, record: AppRecord, replica: NodeId | None) -> bool:
    """A replica node must be available, not the app's own node, and within the app's
    labels (geo-fencing covers its state too); the pin does not apply to replicas."""
    if replica is None or replica == record.node or replica not in state.available:
        return False
    return has_allowed_label(record.spec.policy, state.infos[replica])
