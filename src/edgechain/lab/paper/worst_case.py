"""The paper's worst case (§4.2, Figs. 9 and 11): every app on one node, then slot by
slot the paper's Algorithm 1 and our planner spread them out.

Both planners run on the same in-memory fleet (``lab/planner_model.py``, the model of
``benchmarks/planner.py``): apps of mixed load (1.1-7.9 % CPU each), all running on
node 0, saturated reports (a node whose apps want more than its CPU shares it and
reports CPU pressure), reports one block late as on the chain. Per slot it keeps the
max/mean ratio of the nodes' true load, the most loaded node's load, and at a few
slots every node's apps (the Fig. 11 stacks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgechain.chain.model import BASIS_POINTS, PlanAction
from edgechain.lab.paper.stacks import STACK_MOMENTS, choose_bar_nodes, get_node_label
from edgechain.lab.planner_model import (
    BALANCED_RATIO,
    PLANNERS,
    Fleet,
    Scenario,
    ScenarioRun,
    build_fleet,
    compute_true_loads,
    get_default_slots,
    run_scenario,
)
from edgechain.orchestrator.registry import Registry, apply_block_to_registry
from edgechain.types import NodeId, Slot

START = "one-node"
REPORTS = "saturated"
"""Saturated reports: the node holding every app cannot report more than its CPU, as a
real node could not (``orchestrator/load.py``'s saturated case)."""

TIMING_KEYS = ("plan_ms_p50", "plan_ms_max")
"""Wall-clock figures: kept apart from the seeded results (``result.json``'s timing)."""


@dataclass(frozen=True)
class WorstCaseConfig:
    nodes: int
    apps: int
    slots: int
    seed: int


def get_default_apps(nodes: int) -> int:
    """Two apps per node, as the benchmark's sizes (100/200, 1000/2000): with fewer apps
    than nodes the most loaded node carries at least nodes/apps times the mean, so
    max/mean <= 1.25 would be out of reach whatever the planner."""
    return 2 * nodes


def make_config(nodes: int, apps: int | None, slots: int | None, seed: int) -> WorstCaseConfig:
    return WorstCaseConfig(
        nodes=nodes,
        apps=apps if apps is not None else get_default_apps(nodes),
        slots=slots if slots is not None else get_default_slots(nodes),
        seed=seed,
    )


def replay_registries(run: ScenarioRun) -> list[Registry]:
    """The registry before the first plan (index 0) and after each plan (index s)."""
    registries = [run.fleet.registry]
    for slot, plan in enumerate(run.plans, start=1):
        registries.append(apply_block_to_registry(registries[-1], Slot(slot), plan, ()))
    return registries


def pick_moments(slots: int, balanced: int | None) -> list[int]:
    """The Fig. 11 slots: the start, the balance slot, half-way to it and the end (or
    evenly spaced when our planner never balanced)."""
    if balanced is None or balanced >= slots:
        picked = {slots * i // (STACK_MOMENTS - 1) for i in range(STACK_MOMENTS)}
    else:
        picked = {0, math.ceil(balanced / 2), balanced, slots}
    return sorted(picked)


def get_stacks(
    registry: Registry, fleet: Fleet, labels: Mapping[NodeId, str]
) -> dict[str, list[float]]:
    """Each node's apps (true demand in % of one node's CPU), largest first."""
    stacks: dict[str, list[float]] = {}
    for record in registry.records:
        if record.node is not None:
            load = fleet.demand[record.app] * 100 / BASIS_POINTS
            stacks.setdefault(labels[record.node], []).append(round(load, 2))
    return {k: sorted(v, reverse=True) for k, v in stacks.items()}


def get_scenario(config: WorstCaseConfig, planner: str) -> Scenario:
    return Scenario(
        nodes=config.nodes,
        apps=config.apps,
        start=START,
        reports=REPORTS,
        planner=planner,
        slots=config.slots,
        seed=config.seed,
    )


def run_planner(config: WorstCaseConfig, planner: str) -> tuple[dict[str, Any], list[Registry]]:
    """One planner's run: the model's summary plus the most loaded node's load per slot
    (index 0: before the first plan) and the migrations of each slot's plan."""
    run = run_scenario(get_scenario(config, planner))
    registries = replay_registries(run)
    max_load_pct = [
        round(max(compute_true_loads(r, run.fleet)) * 100 / BASIS_POINTS, 2) for r in registries
    ]
    summary = dict(run.summary)
    summary["max_load_pct_by_slot"] = max_load_pct
    summary["mean_load_pct"] = round(
        sum(run.fleet.demand.values()) * 100 / BASIS_POINTS / config.nodes, 3
    )
    summary["migrations_by_slot"] = [
        sum(1 for entry in plan if entry.action is PlanAction.MIGRATE) for plan in run.plans
    ]
    return summary, registries


def run_worst_case(config: WorstCaseConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both planners on the same fleet; returns (the seeded result, the wall-clock
    timing of the plans, kept apart so that one seed gives one ``result.json``)."""
    results: dict[str, dict[str, Any]] = {}
    registries: dict[str, list[Registry]] = {}
    for planner in PLANNERS:
        results[planner], registries[planner] = run_planner(config, planner)
    timing = {p: {k: results[p].pop(k) for k in TIMING_KEYS} for p in PLANNERS}
    moments = pick_moments(config.slots, results["edgechain"]["slots_to_balance"])
    fleet = build_fleet(get_scenario(config, PLANNERS[0]))
    labels = {info.node: get_node_label(i) for i, info in enumerate(fleet.nodes)}
    stacks = {
        planner: {str(m): get_stacks(registries[planner][m], fleet, labels) for m in moments}
        for planner in PLANNERS
    }
    every_moment = [moment for by_moment in stacks.values() for moment in by_moment.values()]
    out = {
        "nodes": config.nodes,
        "apps": config.apps,
        "slots": config.slots,
        "seed": config.seed,
        "start": START,
        "reports": REPORTS,
        "balanced_ratio": BALANCED_RATIO,
        "planners": results,
        "moments": moments,
        "stacks": stacks,
        "shown_nodes": choose_bar_nodes(every_moment, config.nodes),
    }
    return out, timing
