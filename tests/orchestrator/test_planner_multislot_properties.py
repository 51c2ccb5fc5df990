"""Property tests of the planner over many slots (hypothesis): random fleets, demands and
policies, every plan fed back into the registry and the next reports.

A fleet is 2-12 nodes with labels and 0-30 apps, each with a true (constant) CPU and RAM
demand and a random policy (pin, pin_node, labels, anti-affinity, min_interval_slots).
Apps declare their demand as their request (``spec.cpu_bp``/``ram_bp``) exactly, or a
random request. They start all on one node (the paper's worst case, §4.2), on random
nodes (policies possibly broken, as a legacy chain might hold) or all queued. Each slot's
plan reads reports built from where the apps ran one block earlier (a migration in flight
still shows at its origin), as ``benchmarks/planner.py`` does: each node reports its apps
at their demand (``demand``), or, in ``saturated`` mode, a node whose apps demand more
than 100 % CPU reports each at its proportional share (demand * 10 000 // total), a CPU of
100 % and the matching pressure. Then, at every slot:

* the plan obeys every rule of ``test_planner_properties.check_plan`` (budget, policies,
  the relative move rule, swaps, the potential falling with each balancing move, ...);
* the plan is the same whatever the order of the reports, the nodes and their labels;
* no app moves before max(min_interval_slots, min_move_interval) slots since it was last
  placed or moved (counted here, not read from the registry);
* no app goes straight back to the node it left (A -> B -> A), and with constant
  measurements (below) to no node it left during the run (A -> B -> C -> A either):
  when an app's figures change after a move, the potential argument does not hold and
  only the return guard on ``previous_node`` does;
* with constant measurements (demand reports, requests equal to demands), the model's
  loads are the true loads of the registry's placement, and the potential (sum of the
  squared loads) strictly falls with every balancing move across the whole run: each
  one starts from the potential the previous one left (only a PLACE raises it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from orchestrator_helpers import app_id, app_spec, node_id, report
from test_planner_properties import LABELS, Case, check_plan, plan_of, potential

from edgechain.chain.model import BASIS_POINTS, AppPolicy, PlanAction, PlanEntry, ResourceReport
from edgechain.orchestrator import (
    DEFAULT_MIN_MOVE_INTERVAL_SLOTS,
    EMPTY_REGISTRY,
    AppRecord,
    NodeInfo,
    Registry,
    apply_block_to_registry,
    compute_load_model,
    compute_load_score,
)
from edgechain.orchestrator.registry import put_record
from edgechain.types import AppId, NodeId, Slot

GROUPS = ("", "", "", "g1", "g2")
STARTS = ("one-node", "random", "queued")


@dataclass(frozen=True)
class App:
    """An app and its true demand (constant over the run)."""

    app: AppId
    cpu: int
    ram: int


@dataclass(frozen=True)
class Fleet:
    nodes: tuple[NodeInfo, ...]
    apps: tuple[App, ...]
    start: Registry
    start_kind: str
    exact_requests: bool
    saturating: bool
    slots: int
    max_migrations: int
    min_move_interval: int

    @property
    def constant_model(self) -> bool:
        """Whether the model must see the true demands at every slot."""
        return self.exact_requests and not self.saturating


@st.composite
def app_policies(draw: st.DrawFn, node_count: int) -> AppPolicy:
    pin = draw(st.integers(1, node_count + 1)) if draw(st.integers(0, 11)) == 0 else 0
    return AppPolicy(
        pinned=draw(st.integers(0, 9)) == 0,
        pin_node=node_id(pin) if pin else b"",
        allowed_labels=tuple(draw(st.lists(st.sampled_from(LABELS), max_size=2, unique=True)))
        if draw(st.integers(0, 3)) == 0
        else (),
        anti_affinity=draw(st.sampled_from(GROUPS)),
        min_interval_slots=draw(st.integers(0, 8)),
    )


@st.composite
def fleets(draw: st.DrawFn, exact: bool | None = None, saturating: bool | None = None) -> Fleet:
    """A random fleet; ``exact`` and ``saturating`` fix those choices if given."""
    node_count = draw(st.integers(2, 12))
    nodes = tuple(
        NodeInfo(
            node_id(i), tuple(draw(st.lists(st.sampled_from(LABELS), max_size=3, unique=True)))
        )
        for i in range(1, node_count + 1)
    )
    exact = draw(st.booleans()) if exact is None else exact
    start_kind = draw(st.sampled_from(STARTS))
    apps: list[App] = []
    registry = EMPTY_REGISTRY
    for i in range(draw(st.integers(0, 30))):
        # Every app uses some CPU: a request of 0 would count as DEFAULT_CPU_REQUEST_BP.
        cpu, ram = draw(st.integers(1, 2_500)), draw(st.integers(0, 1_500))
        request_cpu = cpu if exact else draw(st.integers(0, 2_500))
        request_ram = ram if exact else draw(st.integers(0, 1_500))
        spec = app_spec(f"app{i}", request_cpu, request_ram, draw(app_policies(node_count)))
        app = app_id(spec)
        apps.append(App(app, cpu, ram))
        if start_kind == "one-node":
            home: NodeId | None = node_id(1)
        elif start_kind == "random":
            where = draw(st.integers(0, node_count))
            home = node_id(where) if where else None
        else:
            home = None
        # Placed long ago (no last move), as in benchmarks/planner.py.
        registry = put_record(registry, AppRecord(app=app, spec=spec, node=home))
    return Fleet(
        nodes=nodes,
        apps=tuple(apps),
        start=registry,
        start_kind=start_kind,
        exact_requests=exact,
        saturating=draw(st.booleans()) if saturating is None else saturating,
        slots=draw(st.integers(20, 40)),
        max_migrations=draw(st.integers(1, 4)),
        min_move_interval=draw(st.integers(0, 5)),
    )


def make_reports(running: Registry, fleet: Fleet, slot: int) -> list[ResourceReport]:
    """Every node's report from where apps run in ``running`` (module docstring)."""
    demand = {app.app: app for app in fleet.apps}
    reports = []
    for info in fleet.nodes:
        hosted = [demand[r.app] for r in running.records if r.node == info.node]
        total = sum(app.cpu for app in hosted)
        saturated = fleet.saturating and total > BASIS_POINTS
        usages = [
            (app.app, app.cpu * BASIS_POINTS // total if saturated else app.cpu, app.ram)
            for app in hosted
        ]
        pressure = BASIS_POINTS - BASIS_POINTS * BASIS_POINTS // total if saturated else 0
        reports.append(
            report(
                info.node,
                min(BASIS_POINTS, total),
                min(BASIS_POINTS, sum(app.ram for app in hosted)),
                apps=usages,
                slot=slot,
                pressure_bp=pressure,
            )
        )
    return reports


def true_loads(registry: Registry, fleet: Fleet) -> dict[NodeId, int]:
    loads = {info.node: 0 for info in fleet.nodes}
    demand = {app.app: app for app in fleet.apps}
    for record in registry.records:
        if record.node is not None:
            app = demand[record.app]
            loads[record.node] += compute_load_score(app.cpu, app.ram)
    return loads


def permute(case: Case, slot: int) -> Case:
    """The same inputs in another order: reports reversed, nodes rotated, labels
    reversed."""
    turn = slot % len(case.nodes)
    nodes = case.nodes[turn:] + case.nodes[:turn]
    return dataclasses.replace(
        case,
        reports=case.reports[::-1],
        nodes=[NodeInfo(info.node, info.labels[::-1]) for info in nodes],
    )


@dataclass
class Run:
    """What the run has seen so far, for the checks that span slots."""

    last_move: dict[AppId, int] = dataclasses.field(default_factory=dict)
    left: dict[AppId, list[bytes]] = dataclasses.field(default_factory=dict)
    """The nodes each app left, in order."""
    last_potential: int | None = None
    moves: int = 0
    swaps: int = 0


def check_slot(run: Run, fleet: Fleet, case: Case, plan: Sequence[PlanEntry]) -> None:
    checked = check_plan(case, plan)
    assert plan_of(permute(case, case.slot)) == plan, "the same plan on every node"
    run.swaps += checked.kinds["swap"]
    policies = {record.app: record.spec.policy for record in case.registry.records}
    names = {record.app: record.spec.name for record in case.registry.records}
    for entry in plan:
        if entry.action is PlanAction.MIGRATE:
            policy = policies[entry.app]
            interval = max(policy.min_interval_slots, case.min_move_interval)
            last = run.last_move.get(entry.app)
            assert last is None or case.slot - last >= interval, "the minimum interval"
            # With constant measurements the potential argument forbids any return;
            # when they change (requests unlike demands, saturation), only the guard
            # on the node it just left holds (ARCHITECTURE.md, "Why it cannot cycle").
            # An app placed on 8 and moved 8 -> 5 -> 3 -> 8, its reported figures
            # replacing its request after each move, was drawn once (session 29).
            left = (
                run.left.get(entry.app, [])
                if fleet.constant_model
                else run.left.get(entry.app, [])[-1:]
            )
            went_back = entry.destination in left
            assert not went_back, (
                f"{names[entry.app]} went back to node {entry.destination[0]}, which it "
                f"left before (slot {case.slot}, from node {entry.origin[0]})"
            )
            run.left.setdefault(entry.app, []).append(entry.origin)
            run.moves += 1
        run.last_move[entry.app] = case.slot
    if not fleet.constant_model:
        return
    nodes = frozenset(i.node for i in fleet.nodes)
    model = compute_load_model(case.registry, case.reports, nodes, case.slot)
    assert dict(model.node_load) == true_loads(case.registry, fleet), (
        "the model charges each app's true demand to its registry node"
    )
    if any(entry.action is PlanAction.PLACE for entry in plan):
        run.last_potential = None  # a placement adds load: the potential may rise
    for step in checked.balancing:
        if run.last_potential is not None:
            assert step.before == run.last_potential, "nothing else changed the potential"
        assert step.after < step.before
        run.last_potential = step.after
    # The potential the next plan starts from is the one this plan left.
    if run.last_potential is not None:
        assert potential(checked.load, model.reported) == run.last_potential


def simulate(fleet: Fleet) -> Run:
    """Run ``fleet.slots`` plans from its start, checking every slot (``check_slot``)."""
    run = Run()
    previous = parent = fleet.start
    for slot in range(1, fleet.slots + 1):
        case = Case(
            registry=parent,
            reports=make_reports(previous, fleet, slot - 1),  # one block of lag
            nodes=list(fleet.nodes),
            slot=Slot(slot),
            max_migrations=fleet.max_migrations,
            min_move_interval=fleet.min_move_interval,
        )
        plan = plan_of(case)
        check_slot(run, fleet, case, plan)
        previous, parent = parent, apply_block_to_registry(parent, Slot(slot), plan, ())
    return run


# No shrink phase: an example runs up to 40 plans, and shrinking one takes the five
# minutes hypothesis allows; the failure shows the fleet as drawn (the explicit test
# below holds one reduced by hand).
@settings(
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
@given(fleet=st.one_of(fleets(), fleets(exact=True, saturating=False)))
def test_property_many_slots_respect_every_rule_and_never_move_an_app_back(fleet: Fleet) -> None:
    run = simulate(fleet)
    event(f"start {fleet.start_kind}")
    event("moved" if run.moves else "no move")
    if run.swaps:
        event("swapped")


def build_fleet(node_count: int, apps: Sequence[tuple[str, int, int, int]], slots: int) -> Fleet:
    """Unlabelled nodes; apps (name, cpu, ram, home node or 0 for queued) without a
    policy, each requesting its demand; demand reports; the chain's defaults."""
    registry = EMPTY_REGISTRY
    fleet_apps = []
    for name, cpu, ram, home in apps:
        spec = app_spec(name, cpu, ram)
        fleet_apps.append(App(app_id(spec), cpu, ram))
        node = node_id(home) if home else None
        registry = put_record(registry, AppRecord(app=app_id(spec), spec=spec, node=node))
    return Fleet(
        nodes=tuple(NodeInfo(node_id(i)) for i in range(1, node_count + 1)),
        apps=tuple(fleet_apps),
        start=registry,
        start_kind="given",
        exact_requests=True,
        saturating=False,
        slots=slots,
        max_migrations=4,
        min_move_interval=DEFAULT_MIN_MOVE_INTERVAL_SLOTS,
    )


def test_a_swap_does_not_bring_an_app_back_to_a_node_it_left() -> None:
    """A fleet hypothesis found (then reduced by hand) where an app came back to a node
    it left, with constant demands and the protocol's defaults (max_migrations 4,
    minimum interval 4), no policy and no label. Loads (score units) of nodes 1..5:

    * slot 1: 5 apps on node 1, 5 queued: PLACEs, and three single moves off node 1,
      among them app8 (2200) 1 -> 3.
    * slot 5, loads 4622 5000 5000 4800 7150: app12 5 -> 1 and app4 1 -> 4 (single
      moves), then the swap app13 (2600) 4 -> 3 / app8 (2200) 3 -> 4.
    * slot 9, loads 5372 5000 5400 5800 5000: the planner without the band swapped
      app8 (2200) 4 -> 1 / app12 (2150) 1 -> 4 (difference 50, gap 428, margin 349):
      app8 was back on node 1. The return guard only covers the previous node (3),
      and the potential argument only rules out whole configurations coming back.
      With the band, node 1 (above the mean, 5314) receives nothing.
    """
    fleet = build_fleet(
        5,
        [
            ("app4", 700, 0, 1),
            ("app7", 1, 1_500, 1),
            ("app8", 1_100, 0, 1),
            ("app9", 1_400, 0, 0),
            ("app11", 2_500, 0, 0),
            ("app12", 400, 1_350, 0),
            ("app13", 1_300, 0, 0),
            ("app14", 1_100, 0, 1),
            ("app15", 560, 600, 1),
            ("app22", 2_500, 0, 1),
        ],
        slots=12,
    )
    simulate(fleet)
