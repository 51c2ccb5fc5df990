"""The planner's worst-case model: an in-memory fleet driving the paper's Algorithm 1
(``orchestrator/algorithm1.py``) or our planner (``orchestrator/planner.py``) slot by
slot (paper §4.2: every app submitted to one node).

Shared by ``benchmarks/planner.py`` (the table of every combination) and ``edgechain
experiment paper`` (``lab/paper/worst_case.py``: the max/mean curve of both planners).

An in-memory fleet: ``nodes`` equal nodes (100 % CPU = 10 000 bp each, no background)
and ``apps`` apps whose CPU demand is drawn from ``random.Random(seed)`` uniformly in
110..790 bp (1.1-7.9 % CPU, mean ~4.4 %), RAM ~0 (1 bp). Each spec declares a CPU request
of its demand rounded to the nearest whole percent (at least 1 %), as an operator would.

* start ``one-node``: every app already runs on node 0 (the paper's worst case, §4.2);
  ``submitted``: every app is queued at once and the first plan places them.
* reports ``demand``: each node reports each app at its full demand and a total of
  min(10 000, sum); ``saturated``: a node whose apps demand more than 10 000 bp shares
  its CPU proportionally (each app reports demand * 10 000 // total, the node 10 000,
  and, when ``ResourceReport`` has the field, ``pressure_bp`` = 10 000 - 10 000 *
  10 000 // total); a node with room reports full demand.
* Reports lag one block, as on the chain: the plan of slot s reads the reports of its
  parent block s-1, which the nodes built on block s-2, so they describe where apps ran
  before the parent's plan (the first plan sees the starting placement). Every plan is
  fed back with ``apply_block_to_registry``.
* planner ``algorithm1``: ``orchestrator/algorithm1.py`` (one migration per slot, only
  with an empty queue); ``edgechain``: ``compute_plan`` with the chain's default
  ``max_migrations_per_slot`` and default parameters otherwise.

Per slot it records the imbalance of the TRUE demand: max / mean of the summed demand
of the apps the registry places on each node. ``slots_to_balance`` is the first slot
(the first plan is slot 1) whose ratio is at most 1.25. Figures only, nothing asserted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgechain.chain.model import (
    BASIS_POINTS,
    AppSpec,
    AppUsage,
    ChainParams,
    PlanAction,
    PlanEntry,
    ResourceReport,
    RuntimeKind,
)
from edgechain.orchestrator.algorithm1 import compute_algorithm1_plan
from edgechain.orchestrator.planner import compute_plan
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import (
    EMPTY_REGISTRY,
    AppRecord,
    Registry,
    apply_block_to_registry,
    put_record,
)
from edgechain.types import AppId, NodeId, Slot

PLANNERS = ("algorithm1", "edgechain")
STARTS = ("one-node", "submitted")
REPORT_MODES = ("demand", "saturated")
DEMAND_RANGE_BP = (110, 790)
APP_RAM_BP = 1
BALANCED_RATIO = 1.25
DUMMY_SIGNATURE: Any = bytes(64)
"""Untyped: the planner never checks it, and older trees (run for the comparison) typed
and sized a report's signature differently."""
REPORT_FIELDS = frozenset(f.name for f in dataclasses.fields(ResourceReport))
HAS_PRESSURE = "pressure_bp" in REPORT_FIELDS

Planner = Callable[
    [Registry, Sequence[ResourceReport], Sequence[NodeInfo], Slot], tuple[PlanEntry, ...]
]


@dataclass(frozen=True)
class Scenario:
    nodes: int
    apps: int
    start: str
    reports: str
    planner: str
    slots: int
    seed: int
    requests: str = "rounded"
    """``rounded``: each spec declares its demand to the whole percent; ``none``: no
    spec declares anything (the planner sees only measurements and its default)."""


@dataclass(frozen=True)
class Fleet:
    """The nodes (node 0 has the smallest id), each app's true CPU demand, and the
    registry before the first plan."""

    nodes: tuple[NodeInfo, ...]
    demand: Mapping[AppId, int]
    registry: Registry


@dataclass(frozen=True)
class ScenarioRun:
    """A run's summary (the JSON object) and what the tests check it against."""

    summary: dict[str, Any]
    plans: list[tuple[PlanEntry, ...]]
    fleet: Fleet
    final: Registry


# --- the fleet ----------------------------------------------------------------------------


def get_node_id(index: int) -> NodeId:
    """Node ids in index order: node 0 is the smallest id (every tie goes to it)."""
    return NodeId((index + 1).to_bytes(32, "big"))


def get_app_id(seed: int, index: int) -> AppId:
    return AppId(hashlib.sha256(f"bench-planner/{seed}/{index}".encode()).digest())


def compute_demands(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(*DEMAND_RANGE_BP) for _ in range(count)]


def compute_request(demand_bp: int) -> int:
    """The declared ``cpu_bp``: demand to the nearest whole percent, at least 1 %."""
    return max(100, (demand_bp + 50) // 100 * 100)


def get_spec(index: int, demand_bp: int, requests: str = "rounded") -> AppSpec:
    return AppSpec(
        name=f"app{index}",
        runtime=RuntimeKind.PROCESS,
        command=("sleep", "infinity"),
        cpu_bp=compute_request(demand_bp) if requests == "rounded" else 0,
        ram_bp=APP_RAM_BP,
    )


def build_fleet(scenario: Scenario) -> Fleet:
    """``one-node``: records already on node 0 (placed long ago: no last move);
    ``submitted``: records queued in index order."""
    nodes = tuple(NodeInfo(get_node_id(i)) for i in range(scenario.nodes))
    home = nodes[0].node if scenario.start == "one-node" else None
    demand: dict[AppId, int] = {}
    registry = EMPTY_REGISTRY
    for index, app_demand in enumerate(compute_demands(scenario.apps, scenario.seed)):
        app = get_app_id(scenario.seed, index)
        demand[app] = app_demand
        spec = get_spec(index, app_demand, scenario.requests)
        record = AppRecord(app=app, spec=spec, node=home)
        registry = put_record(registry, record)
    if len(registry.records) != scenario.apps:
        raise RuntimeError("app ids collided")
    return Fleet(nodes=nodes, demand=demand, registry=registry)


# --- reports and the true loads --------------------------------------------------------


def get_apps_by_node(registry: Registry) -> dict[NodeId, list[AppId]]:
    by_node: dict[NodeId, list[AppId]] = {}
    for record in registry.records:
        if record.node is not None:
            by_node.setdefault(record.node, []).append(record.app)
    return by_node


def compute_reports(running: Registry, fleet: Fleet, mode: str, slot: int) -> list[ResourceReport]:
    """Every node's report of ``slot`` from where apps run (``running``)."""
    by_node = get_apps_by_node(running)
    return [
        compute_node_report(info.node, by_node.get(info.node, []), fleet.demand, mode, slot)
        for info in fleet.nodes
    ]


def compute_node_report(
    node: NodeId, apps: Sequence[AppId], demand: Mapping[AppId, int], mode: str, slot: int
) -> ResourceReport:
    total = sum(demand[app] for app in apps)
    saturated = mode == "saturated" and total > BASIS_POINTS
    usages = tuple(
        AppUsage(
            app=app,
            cpu_bp=demand[app] * BASIS_POINTS // total if saturated else demand[app],
            ram_bp=APP_RAM_BP,
            disk_bp=0,
            net_bps=0,
            timestamp_ms=slot * 1_000,
        )
        for app in apps
    )
    report = ResourceReport(
        node=node,
        slot=Slot(slot),
        timestamp_ms=slot * 1_000,
        cpu_bp=min(BASIS_POINTS, total),
        ram_bp=min(BASIS_POINTS, APP_RAM_BP * len(apps)),
        disk_bp=0,
        rtt_us=0,
        apps=usages,
        signature=DUMMY_SIGNATURE,
    )
    if saturated and HAS_PRESSURE:
        # Passed by name at run time: the field is new (the harness runs without it).
        changes: dict[str, Any] = {"pressure_bp": compute_pressure(total)}
        report = dataclasses.replace(report, **changes)
    return report


def compute_pressure(total_demand_bp: int) -> int:
    """The share of time runnable apps wait when ``total_demand_bp`` > capacity."""
    return BASIS_POINTS - BASIS_POINTS * BASIS_POINTS // total_demand_bp


def compute_true_loads(registry: Registry, fleet: Fleet) -> list[int]:
    """Each node's summed true demand (every node, placed apps only)."""
    loads = {info.node: 0 for info in fleet.nodes}
    for record in registry.records:
        if record.node is not None:
            loads[record.node] += fleet.demand[record.app]
    return list(loads.values())


def compute_ratio(loads: Sequence[int]) -> float | None:
    """max / mean of the loads; None when nothing is placed."""
    total = sum(loads)
    if not loads or total == 0:
        return None
    return round(max(loads) * len(loads) / total, 4)


# --- the run --------------------------------------------------------------------------------


def get_default_max_migrations() -> int:
    defaults = {f.name: f.default for f in dataclasses.fields(ChainParams)}
    value = defaults["max_migrations_per_slot"]
    if not isinstance(value, int):
        raise TypeError("ChainParams.max_migrations_per_slot has no integer default")
    return value


def get_planner(name: str) -> Planner:
    if name == "algorithm1":
        return compute_algorithm1_plan
    if name == "edgechain":
        max_migrations = get_default_max_migrations()

        def run_edgechain(
            registry: Registry,
            reports: Sequence[ResourceReport],
            nodes: Sequence[NodeInfo],
            slot: Slot,
        ) -> tuple[PlanEntry, ...]:
            return compute_plan(registry, reports, nodes, slot, max_migrations)

        return run_edgechain
    raise ValueError(f"unknown planner {name!r}")


@dataclass
class Tally:
    """Counters over a run's plans."""

    migrations: int = 0
    placements: int = 0
    back_and_forth: int = 0
    max_migrations_in_one_slot: int = 0
    visited: dict[AppId, set[bytes]] = dataclasses.field(default_factory=dict)

    def add_plan(self, plan: Sequence[PlanEntry]) -> None:
        moves = 0
        for entry in plan:
            seen = self.visited.setdefault(entry.app, set())
            if entry.action is PlanAction.PLACE:
                self.placements += 1
            elif entry.action is PlanAction.MIGRATE:
                moves += 1
                seen.add(entry.origin)
                if entry.destination in seen:
                    self.back_and_forth += 1
            seen.add(entry.destination)
        self.migrations += moves
        self.max_migrations_in_one_slot = max(self.max_migrations_in_one_slot, moves)


def run_scenario(scenario: Scenario) -> ScenarioRun:
    """Simulate ``scenario.slots`` plans (see the module docstring)."""
    fleet = build_fleet(scenario)
    planner = get_planner(scenario.planner)
    tally = Tally()
    for record in fleet.registry.records:
        if record.node is not None:
            tally.visited[record.app] = {record.node}
    previous, parent = fleet.registry, fleet.registry
    plans: list[tuple[PlanEntry, ...]] = []
    ratios: list[float | None] = []
    plan_ms: list[float] = []
    for slot in range(1, scenario.slots + 1):
        reports = compute_reports(previous, fleet, scenario.reports, slot - 1)
        started = time.perf_counter()
        plan = planner(parent, reports, fleet.nodes, Slot(slot))
        plan_ms.append((time.perf_counter() - started) * 1_000)
        tally.add_plan(plan)
        plans.append(plan)
        previous, parent = parent, apply_block_to_registry(parent, Slot(slot), plan, ())
        ratios.append(compute_ratio(compute_true_loads(parent, fleet)))
    summary = get_summary(scenario, fleet, tally, ratios, plan_ms)
    return ScenarioRun(summary=summary, plans=plans, fleet=fleet, final=parent)


def get_slots_to_balance(ratios: Sequence[float | None]) -> int | None:
    for slot, ratio in enumerate(ratios, start=1):
        if ratio is not None and ratio <= BALANCED_RATIO:
            return slot
    return None


def get_summary(
    scenario: Scenario,
    fleet: Fleet,
    tally: Tally,
    ratios: Sequence[float | None],
    plan_ms: Sequence[float],
) -> dict[str, Any]:
    after_placement = ratios[0] if scenario.start == "submitted" and ratios else None
    return {
        "nodes": scenario.nodes,
        "apps": scenario.apps,
        "start": scenario.start,
        "reports": scenario.reports,
        "planner": scenario.planner,
        "requests": scenario.requests,
        "slots_to_balance": get_slots_to_balance(ratios),
        "migrations": tally.migrations,
        "placements": tally.placements,
        "final_ratio": ratios[-1] if ratios else None,
        "initial_ratio": compute_ratio(compute_true_loads(fleet.registry, fleet)),
        "ratio_after_placement": after_placement,
        "back_and_forth": tally.back_and_forth,
        "max_migrations_in_one_slot": tally.max_migrations_in_one_slot,
        "plan_ms_p50": round(statistics.median(plan_ms), 3) if plan_ms else None,
        "plan_ms_max": round(max(plan_ms), 3) if plan_ms else None,
        "pressure_reported": HAS_PRESSURE and scenario.reports == "saturated",
        "seed": scenario.seed,
        "slots": scenario.slots,
        "ratio_by_slot": list(ratios),
    }


def get_default_slots(nodes: int) -> int:
    """Slots a run lasts by default: long enough for Algorithm 1's one move per slot to
    show its trend (it does not balance 100 nodes within 60)."""
    return 60 if nodes <= 100 else 80
