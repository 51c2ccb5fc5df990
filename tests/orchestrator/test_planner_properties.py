"""Property tests of the planner on random chains (hypothesis).

For any registry, reports, validator set (with down, draining and quiet nodes) and
limits, the plan:

* lists RECOVERs, then PLACEs, then MIGRATEs (operator moves, drains, single balancing
  moves, swaps, in that order), then REPLICAs, and never names an app twice;
* only names available validators (not down, draining or quiet) as destinations, only
  places queued apps and moves running ones from where they are, never off a down or
  quiet node;
* keeps within the migration budget (``plan_state.compute_migration_budget``): the total
  for every MIGRATE, the per-node counts and bytes for drains and balancing;
* never breaks a policy: pin, labels, anti-affinity (a swap's leaving app counted as
  gone), minimum interval;
* balances only between reported nodes, from above the band (the mean load of the
  available reported nodes when balancing starts, plus max(MIN_MOVE_MARGIN, mean //
  BALANCE_BAND_DIVISOR)) to below the mean, with moves (and swaps' differences) that
  satisfy the relative move rule (``balancing.is_gain_enough``) on the model's loads as
  updated entry by entry and strictly lower the potential (sum of L^2 over the reported
  nodes), a swap's difference being at least an eighth of its two apps' sum, never an
  app back to its previous node within RETURN_GUARD_SLOTS, nor an app an operator moved
  within OPERATOR_HOLD_SLOTS, and an app with a usable replica node to that node only;
* drains each app to the least-loaded node that may take it, names the least-loaded
  valid replica node;
* leaves queued (or on a down node) only apps that no node can take;
* applies cleanly to the registry, and does not depend on input order.

``check_plan`` is shared with ``test_planner_multislot_properties.py`` and
``test_planner_convergence.py``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import event, given, settings
from hypothesis import strategies as st
from orchestrator_helpers import (
    app_id,
    app_spec,
    apply_test_block,
    compute_submissions_with_ids,
    node_id,
    report,
)

from edgechain.chain.model import AppPolicy, AppSpec, PlanAction, PlanEntry, ResourceReport
from edgechain.orchestrator import (
    EMPTY_REGISTRY,
    AppRecord,
    AppState,
    LoadModel,
    NodeInfo,
    Registry,
    compute_load_model,
    compute_plan,
    get_record,
    is_move_allowed,
    is_node_allowed,
)
from edgechain.orchestrator.balancing import (
    BALANCE_BAND_DIVISOR,
    MIN_MOVABLE_SCORE,
    MIN_MOVE_MARGIN,
    OPERATOR_HOLD_SLOTS,
    RETURN_GUARD_SLOTS,
    SWAP_MIN_DIFFERENCE_DIVISOR,
    compute_move_margin,
    is_gain_enough,
)
from edgechain.orchestrator.plan_state import MIB, MigrationBudget, compute_migration_budget
from edgechain.orchestrator.policy import is_replica_node_allowed
from edgechain.orchestrator.registry import is_state_current, put_record
from edgechain.orchestrator.replicas import MAX_REPLICA_ENTRIES
from edgechain.types import AppId, NodeId, Slot

LABELS = ("eu", "us", "gpu")
GROUPS = ("", "", "g1", "g2")
PLAN_SLOT_MIN = 10

# The order of a plan's parts; a plan never goes back to an earlier one.
RECOVERING, PLACING, OPERATOR, DRAINING, SINGLE, SWAPPING, REPLICAS = range(7)


@dataclass(frozen=True)
class Case:
    registry: Registry
    reports: list[ResourceReport]
    nodes: list[NodeInfo]
    slot: Slot
    max_migrations: int
    min_move_interval: int
    down: frozenset[NodeId] = frozenset()
    draining: frozenset[NodeId] = frozenset()
    quiet: frozenset[NodeId] = frozenset()


@st.composite
def policies(draw: st.DrawFn, node_count: int) -> AppPolicy:
    # Mostly free apps, so that migrations are exercised; sometimes pinned to a node,
    # possibly one that is not a validator (node_count + 1).
    pin = draw(st.integers(1, node_count + 1)) if draw(st.integers(0, 5)) == 0 else 0
    return AppPolicy(
        pinned=draw(st.integers(0, 7)) == 0,
        pin_node=node_id(pin) if pin else b"",
        allowed_labels=tuple(draw(st.lists(st.sampled_from(LABELS), max_size=2, unique=True)))
        if draw(st.booleans())
        else (),
        anti_affinity=draw(st.sampled_from(GROUPS)),
        min_interval_slots=draw(st.integers(0, 8)),
    )


def draw_node_set(draw: st.DrawFn, first: int, last: int) -> frozenset[NodeId]:
    """Usually no node, else one or two of node_id(first..last)."""
    if draw(st.integers(0, 3)) > 0:
        return frozenset()
    return frozenset(
        node_id(i) for i in draw(st.sets(st.integers(first, last), min_size=1, max_size=2))
    )


@st.composite
def cases(draw: st.DrawFn, busy: bool = False) -> Case:
    """Random planner inputs. ``busy`` draws the ones where migrations are likely (two or
    more nodes, all reported, intervals elapsed, a budget), so the migration rules get
    as many examples as the placement ones. Node ``node_count + 1`` is a former
    validator that may still hold apps (and be down)."""
    node_count = draw(st.integers(2, 12) if busy else st.integers(1, 8))
    departed = node_count + 1
    nodes = [
        NodeInfo(
            node_id(i), tuple(draw(st.lists(st.sampled_from(LABELS), max_size=3, unique=True)))
        )
        for i in range(1, node_count + 1)
    ]
    specs: list[AppSpec] = []
    for i in range(draw(st.integers(0, 12))):
        spec = app_spec(
            f"app{i}",
            cpu_bp=draw(st.integers(0, 3_000)),
            ram_bp=draw(st.integers(0, 3_000)),
            policy=draw(policies(node_count)),
        )
        if draw(st.integers(0, 5)) == 0:
            spec = dataclasses.replace(
                spec, stateful=True, replica_interval_slots=draw(st.integers(1, 10))
            )
        specs.append(spec)
    ids = [app_id(spec) for spec in specs]
    # Submitted at slot 1, placed (or not) on any node in blocks of slots 2..5, some then
    # migrated in blocks of slots 6..9 (which sets their previous node): arbitrary
    # states, including ones that break policies, as a legacy chain might hold.
    registry = apply_test_block(
        EMPTY_REGISTRY, Slot(1), compute_submissions_with_ids(specs), (), ()
    )
    where: list[int] = []
    for _ in specs:
        w = draw(st.integers(0, node_count))  # 0 = stays queued
        where.append(departed if w and draw(st.integers(0, 9)) == 0 else w)
    when = [draw(st.integers(2, 5)) for _ in specs]
    moved = [
        draw(st.integers(1, node_count)) if w and draw(st.integers(0, 2)) == 0 else 0 for w in where
    ]
    moved_when = [draw(st.integers(6, 9)) for _ in specs]
    for slot in range(2, 10):
        plan = tuple(
            PlanEntry(PlanAction.PLACE, app, b"", node_id(w))
            for app, w, t in zip(ids, where, when, strict=True)
            if w and t == slot
        ) + tuple(
            PlanEntry(PlanAction.MIGRATE, app, node_id(w), node_id(m))
            for app, w, m, t in zip(ids, where, moved, moved_when, strict=True)
            if m and m != w and t == slot
        )
        registry = apply_test_block(registry, Slot(slot), (), plan, ())
    # Pending operator moves, replica nodes and stopped apps, now and then.
    for app in ids:
        record = get_record(registry, app)
        assert record is not None
        if record.node is not None and draw(st.integers(0, 7)) == 0:
            record = dataclasses.replace(record, move_to=node_id(draw(st.integers(1, departed))))
        if record.last_move_slot is not None and draw(st.integers(0, 5)) == 0:
            record = dataclasses.replace(record, moved_by_operator=True)  # as a MOVE landed
        if draw(st.integers(0, 7)) == 0:
            record = dataclasses.replace(
                record, replica_node=node_id(draw(st.integers(1, departed)))
            )
        if draw(st.integers(0, 11)) == 0:
            record = dataclasses.replace(record, state=AppState.STOPPED)
        registry = put_record(registry, record)
    reports = []
    for info in nodes:
        if not busy and draw(st.integers(0, 3)) == 0:
            continue  # unreported
        hosted = [
            (record.app, draw(st.integers(0, 4_000)), draw(st.integers(0, 4_000)))
            for record in registry.records
            if record.node == info.node and draw(st.integers(0, 5)) > 0
        ]
        if ids and draw(st.integers(0, 3)) == 0:  # an app placed elsewhere (in flight)
            hosted.append((draw(st.sampled_from(ids)), draw(st.integers(0, 4_000)), 0))
        sizes = {app: draw(st.integers(0, 600)) * MIB for app, _, _ in hosted}
        reports.append(
            report(
                info.node,
                draw(st.integers(0, 10_000)),
                draw(st.integers(0, 10_000)),
                apps=hosted,
                slot=draw(st.integers(7, 9)),
                pressure_bp=draw(st.sampled_from([0, 0, 1_000, 2_500, 6_000])),
                state_bytes=sizes if draw(st.booleans()) else None,
            )
        )
    if draw(st.booleans()):
        reports.append(report(node_id(200), 0))  # not a validator
    recent = PLAN_SLOT_MIN + (10 if busy else 0)
    return Case(
        registry=registry,
        reports=reports,
        nodes=nodes,
        # Soon after the history (every previous node guarded), or long after it
        # (6..9 + 64 falls in 60..80: both sides of the return guard).
        slot=Slot(draw(st.integers(recent, recent + 6) | st.integers(60, 80))),
        max_migrations=draw(st.integers(1 if busy else 0, 5)),
        min_move_interval=draw(st.integers(0, 5)),
        down=draw_node_set(draw, 1, departed),
        draining=draw_node_set(draw, 1, node_count),
        quiet=draw_node_set(draw, 1, departed),
    )


SMALL_BP, LARGE_BP, ANY_BP, DRAINED_BP = (1_200, 1_800), (2_400, 3_000), (500, 3_000), (20, 300)


SMALL_BP, LARGE_BP, ANY_BP, DRAINED_BP = (1_200, 1_800), (2_400, 3_000), (500, 3_000), (20, 300)


@st.composite
def tight_cases(draw: st.DrawFn) -> Case:
    """A few nodes holding a few large apps each and reporting exactly their apps'
    usage (no background), where single moves overshoot and swaps are made. Layouts:
    apps of any size anywhere; apps of two sizes anywhere; two apps per node, large
    ones on the first half of the nodes and small ones on the others (only a swap
    narrows such gaps); node 1 draining small apps. Some apps have an anti-affinity
    group or need a label, and some came from another node (their previous node, within
    the return guard or not)."""
    node_count = draw(st.integers(2, 5))
    nodes = [
        NodeInfo(node_id(i), ("eu",) if draw(st.integers(0, 3)) else ())
        for i in range(1, node_count + 1)
    ]
    layout = draw(st.sampled_from(["any", "two sizes", "pairs", "drain"]))
    app_count = 2 * node_count if layout == "pairs" else draw(st.integers(2, 12))
    specs = [
        app_spec(
            f"app{i}",
            policy=AppPolicy(
                anti_affinity=draw(st.sampled_from(("", "", "", "g1", "g2"))),
                allowed_labels=("eu",) if draw(st.integers(0, 5)) == 0 else (),
            ),
        )
        for i in range(app_count)
    ]
    ids = [app_id(spec) for spec in specs]
    if layout == "pairs":
        homes = [i // 2 + 1 for i in range(app_count)]
        large = {app for app, home in zip(ids, homes, strict=True) if 2 * home <= node_count}
        sizes = {app: LARGE_BP if app in large else SMALL_BP for app in ids}
    else:  # half the apps on the draining node, when there is one
        homes = [
            1 if layout == "drain" and draw(st.booleans()) else draw(st.integers(1, node_count))
            for _ in ids
        ]
        sizes = {
            app: ANY_BP if layout == "any" else draw(st.sampled_from([SMALL_BP, LARGE_BP]))
            for app in ids
        }
    draining = frozenset({node_id(1)}) if layout == "drain" else frozenset()
    # Placed at slot 2 where they came from, migrated home at slot 3.
    came_from = [
        draw(st.integers(1, node_count)) if draw(st.integers(0, 2)) == 0 else home for home in homes
    ]
    registry = apply_test_block(
        EMPTY_REGISTRY, Slot(1), compute_submissions_with_ids(specs), (), ()
    )
    registry = apply_test_block(
        registry,
        Slot(2),
        (),
        [
            PlanEntry(PlanAction.PLACE, app, b"", node_id(origin))
            for app, origin in zip(ids, came_from, strict=True)
        ],
        (),
    )
    registry = apply_test_block(
        registry,
        Slot(3),
        (),
        [
            PlanEntry(PlanAction.MIGRATE, app, node_id(origin), node_id(home))
            for app, origin, home in zip(ids, came_from, homes, strict=True)
            if origin != home
        ],
        (),
    )
    reports = []
    for info in nodes:
        hosted = [
            (
                record.app,
                draw(st.integers(*(DRAINED_BP if info.node in draining else sizes[record.app]))),
                draw(st.integers(0, 500)),
            )
            for record in registry.records
            if record.node == info.node
        ]
        reports.append(
            report(
                info.node,
                sum(cpu for _, cpu, _ in hosted),
                sum(ram for _, _, ram in hosted),
                apps=hosted,
                slot=9,
                state_bytes={app: draw(st.integers(0, 300)) * MIB for app, _, _ in hosted}
                if draw(st.booleans())
                else None,
            )
        )
    return Case(
        registry=registry,
        reports=reports,
        nodes=nodes,
        slot=Slot(draw(st.integers(10, 80))),
        max_migrations=draw(st.integers(3 if draining else 1, 5)),
        min_move_interval=draw(st.integers(0, 5)),
        draining=draining,
    )


def plan_of(case: Case) -> tuple[PlanEntry, ...]:
    return compute_plan(
        case.registry,
        case.reports,
        case.nodes,
        case.slot,
        case.max_migrations,
        down=case.down,
        draining=case.draining,
        quiet=case.quiet,
        min_move_interval=case.min_move_interval,
    )


def groups_by_node(registry: Registry) -> dict[NodeId, Counter[str]]:
    """Each node's running apps per anti-affinity group."""
    groups: dict[NodeId, Counter[str]] = {}
    for record in registry.records:
        group = record.spec.policy.anti_affinity
        if record.node is not None and group and record.state is AppState.RUNNING:
            groups.setdefault(record.node, Counter())[group] += 1
    return groups


def potential(load: dict[NodeId, int], reported: frozenset[NodeId]) -> int:
    return sum(load[node] ** 2 for node in reported)


@dataclass
class Balancing:
    """One balancing step of a plan: a single move or a swap (two entries), with the
    potential over the reported nodes before and after it."""

    entries: tuple[PlanEntry, ...]
    before: int
    after: int


@dataclass
class PlanCheck:
    """Replays a plan on the planner's load model, entry by entry, asserting every rule
    (module docstring). ``load`` ends as the model's loads after the plan."""

    case: Case
    plan: Sequence[PlanEntry]
    infos: dict[NodeId, NodeInfo] = field(init=False)
    model: LoadModel = field(init=False)
    budget: MigrationBudget = field(init=False)
    available: frozenset[NodeId] = field(init=False)
    draining: frozenset[NodeId] = field(init=False)
    quiet: frozenset[NodeId] = field(init=False)
    load: dict[NodeId, int] = field(init=False)
    groups: dict[NodeId, Counter[str]] = field(init=False)
    phase: int = RECOVERING
    seen: set[AppId] = field(default_factory=set)
    migrations: int = 0
    replicas: int = 0
    last_recover: bytes = b""
    last_operator: bytes = b""
    last_drain: tuple[bytes, bytes] = (b"", b"")
    last_replica: bytes = b""
    sent: Counter[NodeId] = field(default_factory=Counter)
    received: Counter[NodeId] = field(default_factory=Counter)
    sent_bytes: Counter[NodeId] = field(default_factory=Counter)
    received_bytes: Counter[NodeId] = field(default_factory=Counter)
    balancing: list[Balancing] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    mean: int | None = None
    """Balancing's mean load, set by its first move."""
    """Entries checked per kind (recover, place, operator, drain, single, swap, replica)."""

    def __post_init__(self) -> None:
        case = self.case
        self.infos = {info.node: info for info in case.nodes}
        self.model = compute_load_model(
            case.registry, case.reports, frozenset(self.infos), case.slot
        )
        self.budget = compute_migration_budget(case.max_migrations, len(self.infos))
        self.draining = (case.draining & frozenset(self.infos)) - case.down
        self.quiet = (case.quiet & frozenset(self.infos)) - case.down
        self.available = frozenset(self.infos) - case.down - self.draining - self.quiet
        self.load = dict.fromkeys(case.down, 0) | dict(self.model.node_load)
        self.replica_destinations: list[NodeId] = []
        """Replica nodes this plan named so far (``assign_replicas`` counts them)."""
        self.groups = groups_by_node(case.registry)

    # --- helpers ---------------------------------------------------------------------

    def record(self, app: AppId) -> AppRecord:
        record = get_record(self.case.registry, app)
        assert record is not None, "only known apps"
        return record

    def enter_phase(self, phase: int) -> None:
        assert phase >= self.phase, "RECOVER, PLACE, MIGRATE (operator, drain, single, swap)"
        self.phase = phase

    def may_enter(self, record: AppRecord, node: NodeId, leaving: AppRecord | None = None) -> bool:
        """Available, pin and labels, anti-affinity (``leaving`` counted as gone)."""
        if node not in self.available or not is_node_allowed(record.spec, self.infos[node]):
            return False
        group = record.spec.policy.anti_affinity
        if not group:
            return True
        present = self.groups.get(node, Counter())[group]
        if leaving is not None and leaving.spec.policy.anti_affinity == group:
            present -= 1
        return present == 0

    def size(self, app: AppId) -> int:
        return self.model.app_state_bytes.get(app, 0)

    def can_send(self, node: NodeId, app: AppId) -> bool:
        if self.sent[node] >= self.budget.out_per_node:
            return False
        return self.sent[node] == 0 or (
            self.sent_bytes[node] + self.size(app) <= self.budget.bytes_per_node
        )

    def can_receive(self, node: NodeId, app: AppId) -> bool:
        if self.received[node] >= self.budget.in_per_node:
            return False
        return self.received[node] == 0 or (
            self.received_bytes[node] + self.size(app) <= self.budget.bytes_per_node
        )

    def is_candidate(self, record: AppRecord) -> bool:
        """What balancing may move: no operator move pending, worth a transfer, policy
        and minimum interval allow it."""
        held = (
            record.moved_by_operator
            and record.last_move_slot is not None
            and self.case.slot - record.last_move_slot < OPERATOR_HOLD_SLOTS
        )
        return (
            record.move_to is None
            and not held
            and self.model.app_score[record.app] >= MIN_MOVABLE_SCORE
            and is_move_allowed(record, self.case.slot, self.case.min_move_interval)
        )

    def follows_replica(self, record: AppRecord, destination: NodeId) -> bool:
        """Balancing sends an app with a usable replica node there only."""
        replica = record.replica_node
        if replica is None or replica == record.node or replica not in self.available:
            return True
        return destination == replica

    def is_return(self, record: AppRecord, destination: NodeId) -> bool:
        return (
            record.previous_node == destination
            and record.last_move_slot is not None
            and self.case.slot - record.last_move_slot < RETURN_GUARD_SLOTS
        )

    def add(self, record: AppRecord, node: NodeId) -> None:
        self.load[node] = self.load.get(node, 0) + self.model.app_score[record.app]
        group = record.spec.policy.anti_affinity
        if group:
            self.groups.setdefault(node, Counter())[group] += 1

    def remove(self, record: AppRecord, node: NodeId) -> None:
        self.load[node] = self.load.get(node, 0) - self.model.app_score[record.app]
        group = record.spec.policy.anti_affinity
        if group:
            self.groups[node][group] -= 1

    def potential(self) -> int:
        return potential(self.load, self.model.reported)

    def check_band(self, origin: NodeId, destination: NodeId) -> None:
        """Balancing sends only from above the band over the mean load of the available
        reported nodes (fixed when balancing starts) and only to below the mean."""
        if self.mean is None:
            pool = [self.load[n] for n in self.model.reported & self.available]
            self.mean = sum(pool) // max(1, len(pool))
        ceiling = self.mean + max(MIN_MOVE_MARGIN, self.mean // BALANCE_BAND_DIVISOR)
        assert self.load[origin] > ceiling, "only from a node above the band"
        assert self.load[destination] < self.mean, "only to a node below the mean"

    # --- the plan --------------------------------------------------------------------

    def fork(self) -> PlanCheck:
        """A copy whose replay can go on without changing this one."""
        trial = copy.copy(self)
        trial.load = dict(self.load)
        trial.groups = {node: Counter(counts) for node, counts in self.groups.items()}
        trial.seen = set(self.seen)
        trial.sent, trial.received = Counter(self.sent), Counter(self.received)
        trial.sent_bytes = Counter(self.sent_bytes)
        trial.received_bytes = Counter(self.received_bytes)
        trial.balancing = list(self.balancing)
        trial.kinds = Counter(self.kinds)
        return trial

    def run(self) -> PlanCheck:
        self.check_from(0)
        assert self.migrations <= self.budget.total, "the total migration budget"
        assert self.replicas <= MAX_REPLICA_ENTRIES
        return self

    def check_from(self, index: int) -> None:
        """Replay ``plan[index:]``. Two consecutive MIGRATEs x: h -> c and y: c -> h are
        a swap, or two single moves (a single move may overshoot: after x, c can be the
        heavier of the two, and y a single move back the other way); each reading is
        tried (singles first), with the rest of the plan, and one must pass."""
        plan = self.plan
        while index < len(plan):
            entry = plan[index]
            following = plan[index + 1] if index + 1 < len(plan) else None
            if (
                following is not None
                and entry.action is PlanAction.MIGRATE
                and following.action is PlanAction.MIGRATE
                and following.origin == entry.destination
                and following.destination == entry.origin
                and self.record(entry.app).move_to != entry.destination
            ):
                self.check_either(index)
                return
            self.check_entry(entry)
            index += 1

    def check_either(self, index: int) -> None:
        errors = []
        for reading in ("single moves", "a swap"):
            if reading == "single moves" and self.phase > SINGLE:
                continue
            trial = self.fork()
            try:
                if reading == "a swap":
                    trial.check_swap(self.plan[index], self.plan[index + 1])
                    trial.check_from(index + 2)
                else:
                    trial.check_entry(self.plan[index])
                    trial.check_from(index + 1)
            except AssertionError as error:
                errors.append(f"read as {reading}: {error}")
                continue
            self.__dict__.update(trial.__dict__)
            return
        raise AssertionError(" / ".join(errors))

    def see(self, entry: PlanEntry) -> AppRecord:
        assert entry.app not in self.seen, "an app never appears twice in a plan"
        self.seen.add(entry.app)
        assert entry.destination in self.infos, "only validators are destinations"
        return self.record(entry.app)

    def check_entry(self, entry: PlanEntry) -> None:
        record = self.see(entry)
        if entry.action is PlanAction.RECOVER:
            self.check_recover(entry, record)
        elif entry.action is PlanAction.PLACE:
            self.check_place(entry, record)
        elif entry.action is PlanAction.REPLICA:
            self.check_replica(entry, record)
        else:
            assert entry.action is PlanAction.MIGRATE
            self.check_migrate(entry, record)

    def check_recover(self, entry: PlanEntry, record: AppRecord) -> None:
        self.enter_phase(RECOVERING)
        self.kinds["recover"] += 1
        origin = NodeId(entry.origin)
        assert origin in self.case.down, "only a down node's apps are recovered"
        assert record.node == origin and record.state is AppState.RUNNING
        assert self.may_enter(record, entry.destination), "recovered where the policy allows"
        assert entry.app > self.last_recover, "RECOVERs in app id order"
        self.last_recover = entry.app
        self.remove(record, origin)
        self.add(record, entry.destination)

    def check_place(self, entry: PlanEntry, record: AppRecord) -> None:
        self.enter_phase(PLACING)
        self.kinds["place"] += 1
        assert record.node is None and entry.origin == b"", "only queued apps are placed"
        assert entry.app in self.case.registry.queue
        assert self.may_enter(record, entry.destination), "placed where the policy allows"
        self.add(record, entry.destination)

    def check_replica(self, entry: PlanEntry, record: AppRecord) -> None:
        self.enter_phase(REPLICAS)
        self.kinds["replica"] += 1
        self.replicas += 1
        assert entry.app > self.last_replica, "REPLICAs in app id order"
        self.last_replica = entry.app
        node = record.node
        # Its node need not be a validator (an excluded one keeps its apps until down).
        assert node is not None and node not in self.case.down
        assert record.state is AppState.RUNNING
        assert record.spec.stateful and record.spec.replica_interval_slots > 0
        assert entry.origin == node, "a REPLICA names the app's own node as origin"
        held = Counter(
            r.replica_node for r in self.case.registry.records if r.replica_node is not None
        )
        held.update(self.replica_destinations)
        candidates = [
            (held[n], self.load[n], n)
            for n in self.available
            if n != node and is_replica_node_allowed(record.spec, self.infos[n])
        ]
        assert candidates, "a replica node the app's labels allow"
        dest = entry.destination
        assert (held[dest], self.load[dest], dest) == min(candidates), (
            "of the nodes the app's labels allow, not its own: the fewest replicas held "
            "(this plan's counted), then the least loaded"
        )
        self.replica_destinations.append(dest)
        old = record.replica_node
        assert (
            old is None
            or old == node
            or old not in self.available
            or not is_replica_node_allowed(record.spec, self.infos[old])
        ), "a valid replica node is kept"

    def check_moved(self, entry: PlanEntry, record: AppRecord) -> NodeId:
        """What every MIGRATE obeys; returns its origin."""
        origin = NodeId(entry.origin)
        assert record.node == origin != entry.destination, "moved from where it is"
        assert record.state is AppState.RUNNING
        assert origin in self.infos and origin not in self.case.down
        assert origin not in self.quiet, "nothing moves off a quiet node"
        policy = record.spec.policy
        assert not policy.pinned and not policy.pin_node
        assert is_move_allowed(record, self.case.slot, self.case.min_move_interval)
        interval = max(policy.min_interval_slots, self.case.min_move_interval)
        last = record.last_move_slot
        assert last is None or self.case.slot - last >= interval, "the minimum interval"
        self.migrations += 1
        return origin

    def charge(self, record: AppRecord, origin: NodeId, destination: NodeId) -> None:
        """A drain's or balancing move's per-node budget, then apply it."""
        app = record.app
        assert self.can_send(origin, app), "the origin's outgoing count and bytes"
        assert self.can_receive(destination, app), "the destination's incoming count and bytes"
        self.apply(record, origin, destination)

    def apply(self, record: AppRecord, origin: NodeId, destination: NodeId) -> None:
        self.remove(record, origin)
        self.add(record, destination)
        self.sent[origin] += 1
        self.received[destination] += 1
        self.sent_bytes[origin] += self.size(record.app)
        self.received_bytes[destination] += self.size(record.app)

    def check_migrate(self, entry: PlanEntry, record: AppRecord) -> None:
        origin = self.check_moved(entry, record)
        destination = entry.destination
        assert self.may_enter(record, destination), "pin, labels, anti-affinity, available"
        if self.phase <= OPERATOR and record.move_to == destination:
            self.enter_phase(OPERATOR)  # only the total applies
            self.kinds["operator"] += 1
            assert entry.app > self.last_operator, "operator moves in app id order"
            self.last_operator = entry.app
            self.apply(record, origin, destination)
        elif origin in self.draining:
            self.enter_phase(DRAINING)
            self.kinds["drain"] += 1
            assert (entry.origin, entry.app) > self.last_drain, "drains in (node, app) order"
            self.last_drain = (entry.origin, entry.app)
            candidates = [
                (self.load[n], n)
                for n in self.available
                if self.may_enter(record, n) and self.can_receive(n, record.app)
            ]
            assert candidates, "a drained app goes where it may"
            assert (self.load[destination], destination) == min(candidates), (
                "a drained app goes to the least-loaded node that may take it"
            )
            self.charge(record, origin, destination)
        else:
            self.enter_phase(SINGLE)
            self.kinds["single"] += 1
            reported = self.model.reported
            assert origin in reported and destination in reported, "reported nodes only"
            assert self.is_candidate(record)
            assert not self.is_return(record, destination), "not back to its previous node"
            assert self.follows_replica(record, destination), "to its replica node, if any"
            self.check_band(origin, destination)
            gap = self.load[origin] - self.load[destination]
            margin = compute_move_margin(self.load[origin], self.load[destination])
            score = self.model.app_score[entry.app]
            assert is_gain_enough(gap, score, margin), "the relative move rule"
            before = self.potential()
            self.charge(record, origin, destination)
            after = self.potential()
            assert after < before, "every balancing move lowers the potential"
            self.balancing.append(Balancing((entry,), before, after))

    def check_swap(self, first: PlanEntry, second: PlanEntry) -> None:
        """x: h -> c then y: c -> h, after every single move."""
        x, y = self.see(first), self.see(second)
        self.enter_phase(SWAPPING)
        self.kinds["swap"] += 1
        heavy = self.check_moved(first, x)
        light = self.check_moved(second, y)
        reported = self.model.reported
        for node in (heavy, light):
            assert node in reported and node in self.available, "swaps between reported nodes"
            assert self.sent[node] < self.budget.out_per_node
            assert self.received[node] < self.budget.in_per_node
        assert self.is_candidate(x) and self.is_candidate(y)
        assert not self.is_return(x, light) and not self.is_return(y, heavy)
        assert self.follows_replica(x, light) and self.follows_replica(y, heavy)
        assert self.may_enter(x, light, leaving=y), "x may take y's place"
        assert self.may_enter(y, heavy, leaving=x), "y may take x's place"
        self.check_band(heavy, light)
        gap = self.load[heavy] - self.load[light]
        margin = compute_move_margin(self.load[heavy], self.load[light])
        difference = self.model.app_score[x.app] - self.model.app_score[y.app]
        assert is_gain_enough(gap, difference, margin), "the move rule on the difference"
        size = self.model.app_score[x.app] + self.model.app_score[y.app]
        assert SWAP_MIN_DIFFERENCE_DIVISOR * difference >= size, (
            "two transfers: d is at least (x + y) / 8"
        )
        assert self.can_send(light, y.app) and self.can_receive(heavy, y.app)
        before = self.potential()
        self.charge(x, heavy, light)
        self.charge(y, light, heavy)
        after = self.potential()
        assert after < before, "every swap lowers the potential"
        self.balancing.append(Balancing((first, second), before, after))


def check_plan(case: Case, plan: Sequence[PlanEntry]) -> PlanCheck:
    """Assert every rule of the module docstring on ``plan``; the replay is returned."""
    checked = PlanCheck(case, plan).run()
    # The plan applies to the registry it was computed from (what validators do next).
    after_block = apply_test_block(case.registry, case.slot, (), plan, ())
    for entry in plan:
        record = get_record(after_block, entry.app)
        assert record is not None
        if entry.action is not PlanAction.REPLICA:
            assert record.node == entry.destination
    return checked


@settings(max_examples=200, deadline=None)
@given(case=st.one_of(cases(), cases(busy=True), tight_cases()))
def test_property_plan_is_valid_and_respects_every_policy(case: Case) -> None:
    checked = check_plan(case, plan_of(case))
    for kind in checked.kinds:
        event(kind)  # --hypothesis-show-statistics: how often each kind is exercised


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_property_apps_left_queued_have_no_possible_node(case: Case) -> None:
    """Queued apps not placed, and running apps of down nodes not recovered: with the
    plan's recoveries and placements applied (group counts only grow in those phases,
    so a node free when the app was skipped would still be free), no available node
    allows them, unless a down node's app waits for its quiet replica node
    (``placement.is_waiting_for_replica_node``) or for the quiet node known to hold its
    state: the origin of a move that never landed, or its state node confirmed since its
    last move (``placement.is_waiting_for_state_holder``, block format 21). No case here
    measures room, so a quiet node's room never stops the wait."""
    plan = plan_of(case)
    infos = {info.node: info for info in case.nodes}
    confirmed = compute_load_model(
        case.registry, case.reports, frozenset(infos), case.slot
    ).confirmed
    available = set(infos) - case.down - case.draining - case.quiet
    groups = groups_by_node(case.registry)
    handled: set[AppId] = set()
    for entry in plan:
        if entry.action in {PlanAction.RECOVER, PlanAction.PLACE}:
            handled.add(entry.app)
            record = get_record(case.registry, entry.app)
            assert record is not None
            group = record.spec.policy.anti_affinity
            if group:
                if record.node is not None:
                    groups[record.node][group] -= 1
                groups.setdefault(entry.destination, Counter())[group] += 1
    stranded = [
        record
        for record in case.registry.records
        if record.app not in handled
        and record.state is AppState.RUNNING
        and (record.node is None or record.node in case.down)
    ]
    for record in stranded:
        unlanded = not (record.move_landed or record.app in confirmed)
        current = is_state_current(record)
        awaited = [
            record.replica_node,
            record.previous_node if unlanded else None,
            record.state_node if current else None,
        ]
        if record.node in case.down and any(
            node in case.quiet and is_node_allowed(record.spec, infos[node])
            for node in awaited
            if node is not None and node in infos
        ):
            continue
        group = record.spec.policy.anti_affinity
        for node in available:
            assert not is_node_allowed(record.spec, infos[node]) or (
                group and groups.get(node, Counter())[group] > 0
            ), "an app was left out although a node could take it"


@settings(max_examples=100, deadline=None)
@given(case=st.one_of(cases(), cases(busy=True), tight_cases()), data=st.data())
def test_property_plan_does_not_depend_on_input_order(case: Case, data: st.DataObject) -> None:
    shuffled = dataclasses.replace(
        case,
        reports=data.draw(st.permutations(case.reports)),
        nodes=[
            NodeInfo(info.node, tuple(data.draw(st.permutations(info.labels))))
            for info in data.draw(st.permutations(case.nodes))
        ],
    )
    assert plan_of(shuffled) == plan_of(case)
