"""Builders shared by the orchestrator tests: node ids, app specs, reports, registries."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence

from edgechain.chain.command_encoding import encode_app_spec
from edgechain.chain.model import (
    NO_REPORT_SIGNATURE,
    UNMEASURED_STATE_ROOM,
    AppPolicy,
    AppSpec,
    AppUsage,
    PlanAction,
    PlanEntry,
    ResourceReport,
    RuntimeKind,
)
from edgechain.orchestrator import (
    EMPTY_REGISTRY,
    AppRecord,
    Registry,
    apply_block_to_registry,
    get_record,
)
from edgechain.orchestrator.registry import put_record
from edgechain.types import AppId, NodeId, Slot


def node_id(i: int) -> NodeId:
    """Node ids whose byte order is their index order: node_id(1) < node_id(2)."""
    return NodeId(bytes([i]) * 32)


def app_spec(
    name: str, cpu_bp: int = 0, ram_bp: int = 0, policy: AppPolicy | None = None
) -> AppSpec:
    return AppSpec(
        name=name,
        runtime=RuntimeKind.PROCESS,
        command=("sleep", "infinity"),
        cpu_bp=cpu_bp,
        ram_bp=ram_bp,
        policy=policy or AppPolicy(),
    )


def app_id(spec: AppSpec) -> AppId:
    """A test id per distinct spec (on chain, ids come from the SUBMIT command). It is
    the id block format 1 derived from the spec (with an empty nonce), so the golden
    plans and the convergence runs of these tests keep their app ids: the spec's
    encoding without the policy's ``wait_for_state`` that format 18 appended (a bool),
    the ``replica_interval_slots`` that format 3 appended and the limits format 5
    appended (u32, u64, u64, bool: 21 bytes). Two specs that differ only there share
    an id: a test of that field gives one of them another name."""
    encoded = encode_app_spec(spec)[: -(1 + 4 + 21)]
    return AppId(hashlib.sha256(b"edgechain/app/v1" + encoded + bytes(4)).digest())


def compute_submissions_with_ids(
    specs: Sequence[AppSpec],
) -> tuple[tuple[AppId, AppSpec], ...]:
    return tuple((app_id(spec), spec) for spec in specs)


def apply_test_block(
    registry: Registry,
    slot: Slot,
    submissions: Sequence[tuple[AppId, AppSpec]],
    plan: Sequence[PlanEntry],
    removed: Collection[NodeId],
) -> Registry:
    """A block's plan and departures, then SUBMITs of ``submissions`` (what the block's
    commands do, without keys): a known id is ignored."""
    registry = apply_block_to_registry(registry, slot, plan, removed)
    for app, spec in submissions:
        if get_record(registry, app) is None:
            registry = put_record(registry, AppRecord(app=app, spec=spec, created_slot=slot))
    return registry


REPORT_SLOT = 9
"""The default report's slot: after ``build_registry``'s placements (slot 2), before the
plans the tests compute (slot 10 and later)."""


def report(
    node: NodeId,
    cpu_bp: int,
    ram_bp: int = 0,
    apps: Sequence[tuple[AppId, int, int]] = (),
    slot: int = REPORT_SLOT,
    *,
    pressure_bp: int = 0,
    state_bytes: Mapping[AppId, int] | None = None,
    state_room_bytes: int = UNMEASURED_STATE_ROOM,
) -> ResourceReport:
    """A report whose totals are given explicitly; ``apps`` are (app, cpu_bp, ram_bp);
    ``state_bytes`` gives some apps a state size, ``state_room_bytes`` the node's room
    for app state. By default of a slot after
    ``build_registry``'s placements, so the apps it lists count as confirmed."""
    sizes = state_bytes or {}
    return ResourceReport(
        node=node,
        slot=Slot(slot),
        timestamp_ms=1_000 * slot,
        cpu_bp=cpu_bp,
        ram_bp=ram_bp,
        disk_bp=0,
        rtt_us=0,
        apps=tuple(
            AppUsage(app, cpu, ram, 0, 0, 1_000 * slot, state_bytes=sizes.get(app, 0))
            for app, cpu, ram in apps
        ),
        signature=NO_REPORT_SIGNATURE,
        pressure_bp=pressure_bp,
        state_room_bytes=state_room_bytes,
    )


def build_registry(
    placements: Sequence[tuple[AppSpec, NodeId | None]], placed_at: int = 2
) -> Registry:
    """Submit every spec in a block of slot ``placed_at - 1``, then PLACE those with a
    node in a block of slot ``placed_at`` (so their last move is ``placed_at``)."""
    specs = [spec for spec, _ in placements]
    registry = apply_test_block(
        EMPTY_REGISTRY, Slot(placed_at - 1), compute_submissions_with_ids(specs), (), ()
    )
    plan = tuple(
        PlanEntry(PlanAction.PLACE, app_id(spec), b"", node)
        for spec, node in placements
        if node is not None
    )
    return apply_test_block(registry, Slot(placed_at), (), plan, ())


def migrations(plan: Sequence[PlanEntry]) -> list[tuple[AppId, bytes, NodeId]]:
    return [(e.app, e.origin, e.destination) for e in plan if e.action is PlanAction.MIGRATE]


def placements(plan: Sequence[PlanEntry]) -> list[tuple[AppId, NodeId]]:
    return [(e.app, e.destination) for e in plan if e.action is PlanAction.PLACE]
