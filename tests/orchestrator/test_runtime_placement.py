"""A container app goes only to nodes that declared a container engine (issue: container
apps in the node): placement, moves, drains, balancing, recovery and replica nodes all
respect ``policy.has_runtime``; a root container also needs the operator's consent."""

from __future__ import annotations

from dataclasses import replace

from orchestrator_helpers import (
    app_id,
    build_registry,
    migrations,
    node_id,
    placements,
    report,
)

from edgechain.chain.model import AppSpec, PlanAction, RuntimeKind
from edgechain.orchestrator import NodeInfo, compute_plan
from edgechain.orchestrator.policy import (
    CONTAINER_ENGINE_LABEL,
    ROOT_CONTAINERS_LABEL,
    get_missing_runtime,
    has_runtime,
    is_constrained,
)
from edgechain.orchestrator.registry import get_record, put_record
from edgechain.types import Slot

A, B, C, D = (node_id(i) for i in range(1, 5))
ENGINE = (CONTAINER_ENGINE_LABEL,)
ROOT = (CONTAINER_ENGINE_LABEL, ROOT_CONTAINERS_LABEL)
# A and B have no engine (and are the least loaded), C has one, D allows root too.
NODES = (NodeInfo(A), NodeInfo(B), NodeInfo(C, ENGINE), NodeInfo(D, ROOT))
SLOT = Slot(100)


def boxed(name: str, *, cpu_bp: int = 100, root: bool = False) -> AppSpec:
    return AppSpec(
        name,
        RuntimeKind.CONTAINER,
        image="localhost/edgechain-apps:latest",
        command=("/bin/sh", "-c", "sleep 1000"),
        cpu_bp=cpu_bp,
        stateful=True,
        run_as_root=root,
    )


def test_the_runtime_rule() -> None:
    plain = replace(boxed("p"), runtime=RuntimeKind.PROCESS, image="")
    assert all(has_runtime(plain, n) for n in NODES)
    assert [n.node for n in NODES if has_runtime(boxed("c"), n)] == [C, D]
    assert [n.node for n in NODES if has_runtime(boxed("r", root=True), n)] == [D]
    assert get_missing_runtime(boxed("c"), NODES[0]) == "a container engine"
    assert get_missing_runtime(boxed("r", root=True), NODES[2]) == (
        "its operator's consent to root containers"
    )
    assert is_constrained(boxed("c")) and not is_constrained(plain)


def test_container_apps_are_placed_on_engine_nodes_only() -> None:
    specs = [boxed(f"c{i}") for i in range(6)] + [boxed("root", root=True)]
    registry = build_registry([(s, None) for s in specs])
    reports = [report(A, 0), report(B, 0), report(C, 5_000), report(D, 5_000)]
    plan = compute_plan(registry, reports, NODES, SLOT, 8)
    where = dict(placements(plan))
    assert set(where) == {app_id(s) for s in specs}
    assert {where[app_id(s)] for s in specs[:-1]} <= {C, D}
    assert where[app_id(specs[-1])] == D


def test_a_container_app_waits_when_no_node_has_an_engine() -> None:
    spec = boxed("lonely")
    registry = build_registry([(spec, None)])
    plain_nodes = (NodeInfo(A), NodeInfo(B))
    assert compute_plan(registry, [report(A, 0), report(B, 0)], plain_nodes, SLOT, 8) == ()
    assert registry.queue == (app_id(spec),)


def test_balancing_and_drains_keep_container_apps_on_engine_nodes() -> None:
    specs = [boxed(f"b{i}", cpu_bp=1_000) for i in range(4)]
    registry = build_registry([(s, C) for s in specs])
    usage = [(app_id(s), 1_000, 0) for s in specs]
    reports = [report(A, 0), report(B, 0), report(C, 8_000, apps=usage), report(D, 0)]
    moves = migrations(compute_plan(registry, reports, NODES, SLOT, 8))
    assert moves and {dest for _, _, dest in moves} == {D}
    drained = compute_plan(registry, reports, NODES, SLOT, 8, draining=frozenset({C}))
    assert {dest for _, _, dest in migrations(drained)} == {D}


def test_recovery_and_replica_nodes_need_an_engine() -> None:
    spec = replace(boxed("kept"), replica_interval_slots=4)
    registry = build_registry([(spec, C)])
    reports = [report(A, 0), report(B, 0), report(C, 100), report(D, 9_000)]
    plan = compute_plan(registry, reports, NODES, SLOT, 8)
    replicas = [e for e in plan if e.action is PlanAction.REPLICA]
    assert [(e.app, e.destination) for e in replicas] == [(app_id(spec), D)]
    # C goes down: the app is recovered on D, the only other engine node.
    down = compute_plan(registry, reports, NODES, SLOT, 8, down=frozenset({C}))
    recovered = [e for e in down if e.action is PlanAction.RECOVER]
    assert [(e.app, e.destination) for e in recovered] == [(app_id(spec), D)]


def test_an_operator_move_to_a_node_without_an_engine_is_never_planned() -> None:
    spec = boxed("moved")
    registry = build_registry([(spec, C)])
    record = get_record(registry, app_id(spec))
    assert record is not None
    # Commands refuse such a MOVE (test_commands); a record that names one anyway (the
    # node left and came back without its engine) is not carried out.
    registry = put_record(registry, replace(record, move_to=A))
    reports = [report(n, 0) for n in (A, B, C, D)]
    assert migrations(compute_plan(registry, reports, NODES, SLOT, 8)) == []
