"""Property tests of the planner on random chains (hypothesis).

For any registry, reports, validator set and limits, the plan: only names validators,
only places queued apps and moves placed ones from where they are, never names an app
twice, never exceeds max_migrations, never breaks a policy, makes only moves that
shrink a gap by R and lower the potential, leaves queued only apps that no node can
take, applies cleanly to the registry, and does not depend on input order.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
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
    NodeInfo,
    Registry,
    compute_load_model,
    compute_plan,
    get_record,
    is_move_allowed,
    is_node_allowed,
)
from edgechain.types import NodeId, Slot

LABELS = ("eu", "us", "gpu")
GROUPS = ("", "", "g1", "g2")
PLAN_SLOT_MIN = 10


@dataclass(frozen=True)
class Case:
    registry: Registry
    reports: list[ResourceReport]
    nodes: list[NodeInfo]
    slot: Slot
    max_migrations: int
    min_gap_reduction: int
    min_move_interval: int


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


@st.composite
def cases(draw: st.DrawFn, busy: bool = False) -> Case:
    """Random planner inputs. ``busy`` draws the ones where migrations are likely (two or
    more nodes, all reported, intervals elapsed, a budget), so the migration rules get
    as many examples as the placement ones."""
    node_count = draw(st.integers(2 if busy else 1, 6))
    nodes = [
        NodeInfo(
            node_id(i), tuple(draw(st.lists(st.sampled_from(LABELS), max_size=3, unique=True)))
        )
        for i in range(1, node_count + 1)
    ]
    app_count = draw(st.integers(0, 12))
    specs: list[AppSpec] = [
        app_spec(
            f"app{i}",
            cpu_bp=draw(st.integers(0, 3_000)),
            ram_bp=draw(st.integers(0, 3_000)),
            policy=draw(policies(node_count)),
        )
        for i in range(app_count)
    ]
    # Submitted at slot 1, then placed (or not) on any node in blocks of slots 2..9:
    # arbitrary states, including ones that break policies, as a legacy chain might hold.
    registry = apply_test_block(
        EMPTY_REGISTRY, Slot(1), compute_submissions_with_ids(specs), (), ()
    )
    where = [draw(st.integers(0, node_count)) for _ in specs]  # 0 = stays queued
    when = [draw(st.integers(2, 9)) for _ in specs]
    for slot in range(2, 10):
        plan = tuple(
            PlanEntry(PlanAction.PLACE, app_id(spec), b"", node_id(w))
            for spec, w, t in zip(specs, where, when, strict=True)
            if w and t == slot
        )
        registry = apply_test_block(registry, Slot(slot), (), plan, ())
    reports = []
    for info in nodes:
        if not busy and draw(st.integers(0, 3)) == 0:
            continue  # unreported
        hosted = [
            (app_id(spec), draw(st.integers(0, 4_000)), draw(st.integers(0, 4_000)))
            for spec, w in zip(specs, where, strict=True)
            if w and node_id(w) == info.node and draw(st.integers(0, 5)) > 0
        ]
        reports.append(
            report(
                info.node,
                draw(st.integers(0, 10_000)),
                draw(st.integers(0, 10_000)),
                apps=hosted,
                slot=draw(st.integers(7, 9)),
            )
        )
    if draw(st.booleans()):
        reports.append(report(node_id(200), 0))  # not a validator
    return Case(
        registry=registry,
        reports=reports,
        nodes=nodes,
        slot=Slot(draw(st.integers(PLAN_SLOT_MIN, PLAN_SLOT_MIN + 6)) + (10 if busy else 0)),
        max_migrations=draw(st.integers(1 if busy else 0, 5)),
        min_gap_reduction=draw(st.sampled_from([1, 300, 1_000])),
        min_move_interval=draw(st.integers(0, 5)),
    )


def plan_of(case: Case) -> tuple[PlanEntry, ...]:
    return compute_plan(
        case.registry,
        case.reports,
        case.nodes,
        case.slot,
        case.max_migrations,
        min_gap_reduction=case.min_gap_reduction,
        min_move_interval=case.min_move_interval,
    )


def groups_by_node(registry: Registry) -> dict[NodeId, dict[str, int]]:
    groups: dict[NodeId, dict[str, int]] = {}
    for record in registry.records:
        group = record.spec.policy.anti_affinity
        if record.node is not None and group:
            counts = groups.setdefault(record.node, {})
            counts[group] = counts.get(group, 0) + 1
    return groups


@settings(max_examples=300, deadline=None)
@given(case=st.one_of(cases(), cases(busy=True)))
def test_property_plan_is_valid_and_respects_every_policy(case: Case) -> None:
    plan = plan_of(case)
    infos = {info.node: info for info in case.nodes}
    model = compute_load_model(case.registry, case.reports, frozenset(infos))
    load = dict(model.node_load)
    groups = groups_by_node(case.registry)
    seen: set[bytes] = set()
    migrated = 0
    in_migration_phase = False
    required = max(1, case.min_gap_reduction)
    for entry in plan:
        record = get_record(case.registry, entry.app)
        assert record is not None
        assert entry.app not in seen, "an app never appears twice in a plan"
        seen.add(entry.app)
        assert entry.destination in infos, "only validators are destinations"
        policy = record.spec.policy
        assert is_node_allowed(policy, infos[entry.destination]), "pin / labels respected"
        group = policy.anti_affinity
        assert not group or groups.get(entry.destination, {}).get(group, 0) == 0, (
            "anti-affinity respected"
        )
        score = model.app_score[entry.app]
        if entry.action is PlanAction.PLACE:
            assert not in_migration_phase, "placements come first"
            assert record.node is None and entry.origin == b""
        else:
            in_migration_phase = True
            migrated += 1
            assert record.node == entry.origin != entry.destination
            assert is_move_allowed(record, case.slot, case.min_move_interval)
            assert not policy.pinned and not policy.pin_node
            assert case.slot - (record.last_move_slot or 0) >= policy.min_interval_slots
            assert entry.origin in model.reported and entry.destination in model.reported
            gap = load[NodeId(entry.origin)] - load[entry.destination]
            assert min(2 * score, 2 * (gap - score)) >= required, "shrinks the gap by R"
            before = sum(v * v for n, v in load.items() if n in model.reported)
            origin = NodeId(entry.origin)
            load[origin] -= score
            if group:
                groups[origin][group] -= 1
        load[entry.destination] += score
        if group:
            counts = groups.setdefault(entry.destination, {})
            counts[group] = counts.get(group, 0) + 1
        if entry.action is PlanAction.MIGRATE:
            after = sum(v * v for n, v in load.items() if n in model.reported)
            assert after < before, "every migration lowers the potential"
    assert migrated <= case.max_migrations
    # The plan applies to the registry it was computed from (what validators do next).
    after_block = apply_test_block(case.registry, case.slot, (), plan, ())
    for record in after_block.records:
        assert record.node is None or record.node in infos


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_property_apps_left_queued_have_no_possible_node(case: Case) -> None:
    plan = plan_of(case)
    placed = {e.app: e.destination for e in plan if e.action is PlanAction.PLACE}
    groups = groups_by_node(case.registry)
    for app, node in placed.items():  # the state after the placement phase
        record = get_record(case.registry, app)
        assert record is not None
        group = record.spec.policy.anti_affinity
        if group:
            counts = groups.setdefault(node, {})
            counts[group] = counts.get(group, 0) + 1
    for app in case.registry.queue:
        if app in placed:
            continue
        record = get_record(case.registry, app)
        assert record is not None
        group = record.spec.policy.anti_affinity
        for info in case.nodes:
            assert not is_node_allowed(record.spec.policy, info) or (
                group and groups.get(info.node, {}).get(group, 0) > 0
            ), "a queued app was left out although a node could take it"


@settings(max_examples=200, deadline=None)
@given(case=cases(), data=st.data())
def test_property_plan_does_not_depend_on_input_order(case: Case, data: st.DataObject) -> None:
    shuffled = Case(
        registry=case.registry,
        reports=data.draw(st.permutations(case.reports)),
        nodes=[
            NodeInfo(info.node, tuple(data.draw(st.permutations(info.labels))))
            for info in data.draw(st.permutations(case.nodes))
        ],
        slot=case.slot,
        max_migrations=case.max_migrations,
        min_gap_reduction=case.min_gap_reduction,
        min_move_interval=case.min_move_interval,
    )
    assert plan_of(shuffled) == plan_of(case)
