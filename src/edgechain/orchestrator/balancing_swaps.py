"""Phase 2's swaps (``balancing.py``, "Swaps"): when no single move qualifies, an app
of a heavy node and an app of a light node trade places if their difference satisfies
the move rule and is not noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from edgechain.orchestrator.balancing import (
    MIN_MOVABLE_SCORE,
    SWAP_APPS,
    SWAP_HEAVY_NODES,
    SWAP_LIGHT_NODES,
    SWAP_MIN_DIFFERENCE_DIVISOR,
    Move,
    Ranking,
    compute_move_cost,
    compute_move_margin,
    follows_replica,
    is_better,
    is_candidate,
    is_gain_enough,
    is_return,
)
from edgechain.orchestrator.plan_state import PlanState
from edgechain.orchestrator.registry import AppRecord
from edgechain.types import AppId, NodeId, Slot


def find_best_swap(
    state: PlanState, ranking: Ranking, slot: Slot, min_move_interval: int
) -> tuple[Move, Move] | None:
    """The best swap between one of the SWAP_HEAVY_NODES most loaded nodes and one of
    the SWAP_LIGHT_NODES least loaded, each available with budget left both ways
    (module docstring)."""
    load = state.load
    budget = state.budget

    def has_room(node: NodeId) -> bool:
        return (
            node in state.available
            and state.sent[node] < budget.out_per_node
            and state.received[node] < budget.in_per_node
        )

    candidates: dict[NodeId, list[AppId]] = {}

    def get_candidates(node: NodeId) -> list[AppId]:
        if node not in candidates:
            candidates[node] = _get_swap_candidates(state, node, slot, min_move_interval)
        return candidates[node]

    # Nodes whose apps all moved lately have nothing to trade: skip them, or the most
    # loaded few would hide every other heavy node from the search.
    heavy = list(
        itertools.islice(
            (
                n
                for _, n in ranking.origins
                if load[n] > ranking.ceiling and has_room(n) and get_candidates(n)
            ),
            SWAP_HEAVY_NODES,
        )
    )
    light = list(
        itertools.islice(
            (
                n
                for _, n in ranking.destinations
                if load[n] < ranking.mean and has_room(n) and get_candidates(n)
            ),
            SWAP_LIGHT_NODES,
        )
    )
    best: tuple[Move, Move] | None = None
    best_drop, best_cost = 0, 1
    for heavy_node in heavy:
        for light_node in light:
            gap = load[heavy_node] - load[light_node]
            margin = compute_move_margin(load[heavy_node], load[light_node])
            if gap - MIN_MOVABLE_SCORE < margin:
                break  # lighter nodes come first: the gaps only shrink
            found = _find_best_swap_between(
                state, heavy_node, light_node, get_candidates, slot=slot
            )
            if found is not None and found[0].drop * best_cost > best_drop * found[0].cost:
                best = found
                best_drop, best_cost = found[0].drop, found[0].cost
    return best


def _get_swap_candidates(
    state: PlanState, node: NodeId, slot: Slot, min_move_interval: int
) -> list[AppId]:
    apps = [
        app
        for app in state.apps_on[node]
        if is_candidate(state, app, slot, min_move_interval) and state.can_send(node, app)
    ]
    apps.sort(key=lambda app: (-state.app_score[app], app))
    return apps[:SWAP_APPS]


def _find_best_swap_between(
    state: PlanState,
    heavy: NodeId,
    light: NodeId,
    get_candidates: Callable[[NodeId], list[AppId]],
    *,
    slot: Slot,
) -> tuple[Move, Move] | None:
    """The best (x of ``heavy``, y of ``light``) trade; both moves carry the swap's drop
    d * (g - d) and total cost in ``drop``/``cost`` of the first."""
    gap = state.load[heavy] - state.load[light]
    margin = compute_move_margin(state.load[heavy], state.load[light])
    best: tuple[Move, Move] | None = None
    light_apps = get_candidates(light)
    for x in get_candidates(heavy):
        x_record = state.records[x]
        if not state.can_receive(light, x) or is_return(x_record, light, slot):
            continue
        for y in light_apps:
            y_record = state.records[y]
            difference = state.app_score[x] - state.app_score[y]
            if (
                SWAP_MIN_DIFFERENCE_DIVISOR * difference < state.app_score[x] + state.app_score[y]
                or not is_gain_enough(gap, difference, margin)
                or not state.can_receive(heavy, y)
                or is_return(y_record, heavy, slot)
                or not _is_swap_allowed(state, x_record, heavy, y_record, light)
            ):
                continue
            drop = difference * (gap - difference)
            cost = compute_move_cost(state.app_bytes.get(x, 0)) + compute_move_cost(
                state.app_bytes.get(y, 0)
            )
            if best is None or is_better(drop, cost, best[0]):
                best = (
                    Move(x_record, heavy, light, drop, cost),
                    Move(y_record, light, heavy, drop, cost),
                )
    return best


def _is_swap_allowed(
    state: PlanState, x: AppRecord, heavy: NodeId, y: AppRecord, light: NodeId
) -> bool:
    """Labels, pin and anti-affinity of both apps, each counting the other as gone, and
    each going to its replica node if it has one (``follows_replica``)."""
    return (
        state.is_destination_allowed(x, light, leaving=y)
        and state.is_destination_allowed(y, heavy, leaving=x)
        and follows_replica(state, x, light)
        and follows_replica(state, y, heavy)
    )
