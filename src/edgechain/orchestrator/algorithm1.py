"""The paper's Algorithm 1 as written: a baseline for the planner benchmark.

Paper §3.3, Algorithm 1 (the migration plan a block carries)::

    Max <- FindMaxLoadedNode(BlockData)
    Min <- FindMinLoadedNode(BlockData)
    if !AppQueue.isEmpty() then
        while !AppQueue.isEmpty():
            Min <- FindMinLoadedNode(BlockData)
            Min.addApp(AppQueue.dequeue())
    else
        AppToMigrate <- Max.MaxLoadApp
        DeltaScore <- Max.score - Min.score
        NextDeltaScore <- (Max.score - AppToMigrate.score) - (Min.score + AppToMigrate.score)
        if |DeltaScore| > |NextDeltaScore| then Migrate(AppToMigrate, Min)

So a plan either places the whole queue (each app on the node that is least loaded
*after* the previous placements) or, with an empty queue, migrates at most one app: the
highest-scoring app of the most-loaded node, to the least-loaded node, when that narrows
their gap (with g the gap and a the app's score, iff 0 < a < g).

What the paper leaves open is filled in exactly as in ``planner.py``, so that a
comparison of the two is about the algorithm and nothing else:

* Scores are those of our load model (``load.py``, :func:`compute_load_model`): an app
  charged to its registry node, a node's background from its report.
* Placement considers every validator (an unreported one with the median background,
  otherwise nothing could be placed before the first reports); a migration only takes
  place between nodes with a report in the block (the paper's ``BlockData``).
* Ties go to the smallest node id (most- and least-loaded node alike) and the smallest
  app id (the max-load app); stopped apps weigh nothing and never move.

Everything else of ``planner.py`` is deliberately absent: no recovery of down nodes, no
operator moves or drains, no placement policies, no minimum interval between two moves
of an app, no replica nodes. It is a pure deterministic function with integers only
(Rule 2), but it is not what the chain runs: the benchmark (``benchmarks/planner.py``)
uses it as the reference point.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from edgechain.chain.model import PlanAction, PlanEntry, ResourceReport
from edgechain.errors import LocalError
from edgechain.orchestrator.load import LoadModel, compute_load_model
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import AppState, Registry, get_queued_records
from edgechain.types import AppId, NodeId, Slot


def compute_algorithm1_plan(
    registry: Registry,
    reports: Sequence[ResourceReport],
    nodes: Sequence[NodeInfo],
    slot: Slot,
) -> tuple[PlanEntry, ...]:
    """Algorithm 1 of the paper (§3.3) on the registry and reports after the parent
    block: PLACE entries for the whole queue (queue order), else at most one MIGRATE.

    ``slot`` is the plan's, as for ``compute_plan``: the paper's algorithm has no notion
    of time (no minimum interval between moves); only the load model's rule on which
    report listings count uses it. The order
    of ``reports`` and ``nodes`` does not matter; two NodeInfo with the same id are a
    LocalError.
    """
    validators = get_validators(nodes)
    model = compute_load_model(registry, reports, validators, slot)
    if registry.queue:
        return compute_placements(registry, model)
    move = compute_migration(registry, model)
    return () if move is None else (move,)


def get_validators(nodes: Sequence[NodeInfo]) -> frozenset[NodeId]:
    """The validators' ids; a duplicate is the caller's bug."""
    seen: set[NodeId] = set()
    for info in nodes:
        if info.node in seen:
            raise LocalError(f"duplicate validator {info.node.hex()} given to Algorithm 1")
        seen.add(info.node)
    return frozenset(seen)


def compute_placements(registry: Registry, model: LoadModel) -> tuple[PlanEntry, ...]:
    """The ``while`` loop: each queued app to the least-loaded validator (ties: smallest
    node id), whose load grows by the app's score before the next app is placed."""
    heap = [(load, node) for node, load in model.node_load.items()]
    if not heap:
        return ()
    heapq.heapify(heap)
    entries: list[PlanEntry] = []
    for record in get_queued_records(registry):
        load, node = heap[0]
        heapq.heapreplace(heap, (load + model.app_score[record.app], node))
        entries.append(PlanEntry(PlanAction.PLACE, record.app, b"", node))
    return tuple(entries)


def compute_migration(registry: Registry, model: LoadModel) -> PlanEntry | None:
    """The ``else`` branch: the max-load app of the most-loaded reported node to the
    least-loaded reported node, if |DeltaScore| > |NextDeltaScore|."""
    if not model.reported:
        return None
    load = model.node_load
    heaviest = min(model.reported, key=lambda n: (-load[n], n))
    lightest = min(model.reported, key=lambda n: (load[n], n))
    app = get_max_load_app(registry, model, heaviest)
    if app is None:
        return None
    score = model.app_score[app]
    delta = load[heaviest] - load[lightest]
    next_delta = (load[heaviest] - score) - (load[lightest] + score)
    if abs(delta) <= abs(next_delta):
        return None
    return PlanEntry(PlanAction.MIGRATE, app, heaviest, lightest)


def get_max_load_app(registry: Registry, model: LoadModel, node: NodeId) -> AppId | None:
    """``Max.MaxLoadApp``: the running app on ``node`` with the highest score (ties:
    smallest app id), None if the node runs nothing."""
    best: tuple[int, AppId] | None = None
    for record in registry.records:  # app id order: only a strictly higher score wins
        if record.node != node or record.state is not AppState.RUNNING:
            continue
        score = model.app_score[record.app]
        if best is None or score > best[0]:
            best = (score, record.app)
    return None if best is None else best[1]
