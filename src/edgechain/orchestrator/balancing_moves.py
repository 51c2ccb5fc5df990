"""Phase 2 of the plan, balancing migrations (``balancing.py``): :func:`balance_loads`
makes single moves while the budget lasts and one qualifies, the best drop per cost
from the most loaded origin that can make one, then swaps (``balancing_swaps.py``).
"""

from __future__ import annotations

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.orchestrator.balancing import (
    MAX_SWAPS_PER_PLAN,
    MIN_MOVABLE_SCORE,
    MIN_MOVE_MARGIN,
    MovableApps,
    Move,
    Ranking,
    compute_move_cost,
    compute_move_margin,
    follows_replica,
    is_better,
    is_gain_enough,
    is_return,
)
from edgechain.orchestrator.balancing_swaps import find_best_swap
from edgechain.orchestrator.plan_state import PlanState
from edgechain.types import AppId, NodeId, Slot


def balance_loads(state: PlanState, slot: Slot, min_move_interval: int) -> list[PlanEntry]:
    """Single moves while the budget lasts and one qualifies, then swaps."""
    entries: list[PlanEntry] = []
    movable = MovableApps(state, slot, min_move_interval)
    ranking = Ranking(state)
    if not ranking.destinations:
        return entries
    while state.has_budget():
        move = _find_best_move(state, movable, ranking)
        if move is None:
            break
        _apply(state, move, entries, ranking)
        movable.discard(move.origin, move.record.app)
    for _ in range(MAX_SWAPS_PER_PLAN):
        if not state.has_budget(2):
            break
        swap = find_best_swap(state, ranking, slot, min_move_interval)
        if swap is None:
            break
        for move in swap:
            _apply(state, move, entries, ranking)
    return entries


def _apply(state: PlanState, move: Move, entries: list[PlanEntry], ranking: Ranking) -> None:
    load = state.load
    origin_load, destination_load = load[move.origin], load[move.destination]
    state.migrate(move.record, move.origin, move.destination)
    ranking.rerank(move.origin, origin_load, load[move.origin])
    ranking.rerank(move.destination, destination_load, load[move.destination])
    if state.received[move.destination] >= state.budget.in_per_node:
        ranking.drop_destination(move.destination, load[move.destination])
    entries.append(PlanEntry(PlanAction.MIGRATE, move.record.app, move.origin, move.destination))


def _find_best_move(state: PlanState, movable: MovableApps, ranking: Ranking) -> Move | None:
    """The best single move from the most-loaded node that can make one."""
    load = state.load
    ascending = ranking.destinations
    if not ascending:
        return None
    lightest = ascending[0][0]
    out_limit = state.budget.out_per_node
    for _, origin in ranking.origins:
        # The gap to the lightest node bounds every gap of this origin and of the
        # lighter origins after it: below the smallest margin plus the smallest app,
        # nothing qualifies any more.
        if (
            load[origin] - lightest < MIN_MOVE_MARGIN + MIN_MOVABLE_SCORE
            or load[origin] <= ranking.ceiling
        ):
            return None
        if state.sent[origin] >= out_limit:
            continue
        window = movable.get_window(origin, load[origin] - lightest)
        move = _find_best_move_from(
            state, origin, window, ascending, movable.slot, below=ranking.mean
        )
        if move is not None:
            return move
    return None


def _find_best_move_from(
    state: PlanState,
    origin: NodeId,
    window: list[tuple[int, AppId]],
    ascending: list[tuple[int, NodeId]],
    slot: Slot,
    *,
    below: int,
) -> Move | None:
    """Among ``window``'s apps, each to its least-loaded allowed destination (loaded
    below ``below``), the move with the best drop per cost."""
    load = state.load
    origin_load = load[origin]
    best: Move | None = None
    for score, app in window:
        if not state.can_send(origin, app):
            continue
        record = state.records[app]
        for destination_load, destination in ascending:
            if destination_load >= below:
                break
            gap = origin_load - destination_load
            # Heavier destinations have smaller gaps and larger margins: none qualifies.
            if not is_gain_enough(gap, score, compute_move_margin(origin_load, destination_load)):
                break
            if (
                state.can_receive(destination, app)
                and not is_return(record, destination, slot)
                and state.is_destination_allowed(record, destination)
                and follows_replica(state, record, destination)
            ):
                drop = score * (gap - score)
                cost = compute_move_cost(state.app_bytes.get(app, 0))
                if is_better(drop, cost, best):
                    best = Move(record, origin, destination, drop, cost)
                break
    return best
