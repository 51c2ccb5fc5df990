"""The deterministic migration plan (paper §3.3, Algorithm 1; DESIGN.md "Migration plan").

``compute_plan`` is a pure function of the parent block's data: the registry after the
parent, the parent's resource reports, the validator set after the parent (with labels)
and the slot being built. The producer puts its result in the block; committee members
and validators recompute it and vote only if the two are equal (no separate validity
check exists). Hence Rule 2: integers only (load scores in ``load.py``), every choice
ordered by (integer, id bytes), never by dict or set iteration order or input order.

Algorithm 1 of the paper, which this generalises (``algorithm1.py`` has it as written):

    if the queue is not empty: put each queued app on the currently least-loaded node
    else: move the max-load app of the most-loaded node to the least-loaded node if
          that narrows their gap

A plan is built in phases, each on the loads left by the ones before
(``plan_state.PlanState``):

0. **Recovery** (``placement.recover_apps``): every running app of a ``down`` node
   (``liveness.py``) is RECOVERed where its latest state is known to be (the origin of
   a move that never landed, else its confirmed state node), else its replica node,
   its pending ``move_to``, the least-loaded available node its policy allows; it
   waits while the node known to hold its state is only briefly away (quiet, or
   excluded by a skip block and not down). Not counted against the budget: the app
   runs nowhere the chain trusts.
1. **Placement** (``placement.place_queued_apps``): queued apps, largest first onto the
   least loaded (LPT). PLACEs start apps, they move nothing: not counted either.
2. **Migrations**, within the plan's budget (``plan_state.compute_migration_budget``:
   in total, out of and into each node, by count and state bytes, scaled with the
   fleet): first operator moves (a MOVE command left ``move_to`` on the record: the app
   migrates there whatever the loads say, within the total), then drains (each app of a
   ``draining`` node to the least-loaded available node it may use), then balancing
   (``balancing_moves.balance_loads``: single moves under a relative move rule, then swaps;
   the potential argument that it cannot cycle is there).
3. **Replicas** (``replicas.assign_replicas``): a replica node for each opted-in app
   without a valid one.

Down, draining and quiet nodes (silent for a few slots, ``liveness.QUIET_AFTER_SLOTS``)
are never destinations, of anything, and nothing is moved off a quiet node: it may have
just died, and its apps are safer where they are until it speaks again or is down.
Stopped apps are neither placed nor moved, and weigh nothing on their node. Within a
plan an app has at most one entry. Phase 2 moves only apps whose node has reported
running them since their last move (``load.compute_confirmed_apps``): the chain does
not see a transfer end, and a move from a node that never received the app would wait
forever on a handover nobody can make.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from edgechain.chain.model import PlanAction, PlanEntry, ResourceReport
from edgechain.errors import LocalError
from edgechain.orchestrator.balancing_moves import balance_loads
from edgechain.orchestrator.load import TRANSFER_ROOM_FACTOR, compute_load_model
from edgechain.orchestrator.placement import (
    find_least_loaded_allowed,
    place_queued_apps,
    recover_apps,
)
from edgechain.orchestrator.plan_state import PlanState, compute_migration_budget
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import AppState, Registry
from edgechain.orchestrator.replicas import assign_replicas
from edgechain.types import NodeId, Slot

DEFAULT_MIN_MOVE_INTERVAL_SLOTS = 4
"""Protocol-wide minimum number of slots between two moves of an app (its placement
counts as a move). A standard migration takes ~25 s on average and up to ~100 s (paper
Table 3: save + transmit + resume), i.e. several slots; moving an app again before it
has landed would chain transfers. Apps may ask for more with ``min_interval_slots``."""


def compute_plan(
    registry: Registry,
    reports: Sequence[ResourceReport],
    nodes: Sequence[NodeInfo],
    slot: Slot,
    max_migrations: int,
    *,
    down: frozenset[NodeId] = frozenset(),
    draining: frozenset[NodeId] = frozenset(),
    quiet: frozenset[NodeId] = frozenset(),
    departed: frozenset[NodeId] = frozenset(),
    min_move_interval: int = DEFAULT_MIN_MOVE_INTERVAL_SLOTS,
) -> tuple[PlanEntry, ...]:
    """The plan of the block of ``slot``: RECOVER entries (app id order), PLACE entries
    (in the order decided), MIGRATE entries (in the order chosen), then REPLICA entries.
    See the module docstring.

    ``registry``, ``reports`` and ``nodes`` are the state after the parent block; the
    order of ``reports`` and ``nodes`` and of each node's labels does not matter. Two
    NodeInfo with the same id are a LocalError (the caller's validator set is wrong).
    ``down``, ``draining`` and ``quiet`` come from ``orchestrator/liveness.py``;
    ``departed``: the nodes ``last_seen`` keeps that are neither validators nor banned
    (``PlanState.departed``; validators and down nodes in it are ignored).
    ``max_migrations`` (``ChainParams.max_migrations_per_slot``) and
    ``min_move_interval`` are protocol constants: every node must use the same ones.
    """
    infos = _index_nodes(nodes)
    model = compute_load_model(registry, reports, frozenset(infos), slot)
    budget = compute_migration_budget(max_migrations, len(infos))
    state = PlanState.start(registry, model, infos, down, draining, quiet, budget, departed)
    entries = recover_apps(state)
    entries.extend(place_queued_apps(registry, state))
    entries.extend(_plan_operator_moves(state, slot, min_move_interval))
    entries.extend(_plan_drains(state, slot, min_move_interval))
    entries.extend(balance_loads(state, slot, min_move_interval))
    entries.extend(assign_replicas(state))
    return tuple(entries)


def _index_nodes(nodes: Sequence[NodeInfo]) -> dict[NodeId, NodeInfo]:
    infos: dict[NodeId, NodeInfo] = {}
    for info in nodes:
        if info.node in infos:
            raise LocalError(f"duplicate validator {info.node.hex()} given to the planner")
        infos[info.node] = info
    return infos


def _plan_operator_moves(state: PlanState, slot: Slot, min_move_interval: int) -> list[PlanEntry]:
    """MOVE commands not carried out yet, in app id order, as far as the total budget
    goes (an operator's explicit move is not held back by per-node limits)."""
    entries: list[PlanEntry] = []
    for app in sorted(state.records):
        if not state.has_budget():
            break
        record = state.records[app]
        origin, target = record.node, record.move_to
        if (
            target is None
            or origin is None
            or origin not in state.infos
            or origin in state.down
            or origin in state.quiet
            or target not in state.infos
            or target == origin
            or app in state.planned
            or record.state is not AppState.RUNNING
            or not state.may_move(record, slot, min_move_interval)
            or not state.is_destination_allowed(record, target)
        ):
            continue
        state.migrate(record, origin, target)
        entries.append(PlanEntry(PlanAction.MIGRATE, app, origin, target))
    return entries


def _plan_drains(state: PlanState, slot: Slot, min_move_interval: int) -> list[PlanEntry]:
    """Move the apps off draining nodes (node id, then app id order) within the budget:
    the total, the draining node's outgoing limit and each destination's incoming one."""
    entries: list[PlanEntry] = []
    for origin in sorted(state.draining - state.quiet):
        for app in list(state.apps_on[origin]):
            if not state.has_budget():
                return entries
            record = state.records[app]
            if (
                app in state.planned
                or not state.can_send(origin, app)
                or not state.may_move(record, slot, min_move_interval)
            ):
                continue
            destination = find_least_loaded_allowed(
                state,
                record,
                accept=functools.partial(state.can_receive, app=app),
                factor=TRANSFER_ROOM_FACTOR,
            )
            if destination is None:
                continue
            state.migrate(record, origin, destination)
            entries.append(PlanEntry(PlanAction.MIGRATE, app, origin, destination))
    return entries
