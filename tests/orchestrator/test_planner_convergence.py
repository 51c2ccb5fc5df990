"""Non-cycling over many slots: feed each plan back into the registry and the next
reports, and check that the potential falls, plans run dry, and no app ping-pongs.

The paper's worst case (§4.2): every application submitted to one node. Reports lag the
registry by one block (a migration in flight still shows at its origin), which is what
the planner's "charge an app to its registry node" rule is for.
"""

from __future__ import annotations

import hashlib
import itertools

from orchestrator_helpers import app_id, app_spec, apply_test_block, build_registry, node_id

from edgechain.chain.model import AppSpec, AppUsage, PlanAction, PlanEntry, ResourceReport
from edgechain.orchestrator import (
    DEFAULT_MIN_MOVE_INTERVAL_SLOTS,
    NodeInfo,
    Registry,
    compute_load_model,
    compute_load_score,
    compute_plan,
)
from edgechain.types import AppId, NodeId, Signature, Slot

NODE_COUNT = 8
APP_COUNT = 24
NODES = [NodeInfo(node_id(i)) for i in range(1, NODE_COUNT + 1)]
BACKGROUND_CPU = {node_id(i): 100 * i for i in range(1, NODE_COUNT + 1)}
SPECS = [app_spec(f"app{i}") for i in range(APP_COUNT)]
# Every app on one node still fits in 100 % CPU and RAM (reports are clamped there).
USAGE_CPU = {app_id(s): 150 + (97 * i) % 400 for i, s in enumerate(SPECS)}
USAGE_RAM = {app_id(s): 50 + (53 * i) % 300 for i, s in enumerate(SPECS)}


def jitter(slot: int, key: bytes, amplitude: int) -> int:
    """Deterministic noise in [-amplitude, amplitude] (no Python random in the test)."""
    if amplitude == 0:
        return 0
    digest = hashlib.sha256(slot.to_bytes(8, "big") + key).digest()
    return int.from_bytes(digest[:4], "big") % (2 * amplitude + 1) - amplitude


def make_reports(running: Registry, slot: int, noise: int) -> list[ResourceReport]:
    """Reports of ``slot`` from where apps actually run (``running``): each app's usage
    and the node total (background + apps). With ``noise``, every measured CPU figure
    (each app's and each node's total) is independently off by up to ``noise`` bp."""
    reports = []
    for info in NODES:
        apps = []
        total_cpu = BACKGROUND_CPU[info.node] + jitter(slot, info.node, noise)
        total_ram = 0
        for record in running.records:
            if record.node == info.node:
                cpu = USAGE_CPU[record.app] + jitter(slot, record.app, noise)
                apps.append((record.app, cpu, USAGE_RAM[record.app]))
                total_cpu += USAGE_CPU[record.app]
                total_ram += USAGE_RAM[record.app]
        reports.append(
            ResourceReport(
                node=info.node,
                slot=Slot(slot),
                timestamp_ms=slot * 1_000,
                cpu_bp=total_cpu,
                ram_bp=total_ram,
                disk_bp=0,
                rtt_us=0,
                apps=tuple(AppUsage(app, cpu, ram, 0, 0, slot * 1_000) for app, cpu, ram in apps),
                signature=Signature(b"\x00" * 96),
            )
        )
    return reports


def potential(loads: dict[NodeId, int]) -> int:
    return sum(load * load for load in loads.values())


def true_loads(registry: Registry) -> dict[NodeId, int]:
    loads = {info.node: compute_load_score(BACKGROUND_CPU[info.node], 0) for info in NODES}
    for record in registry.records:
        assert record.node is not None
        loads[record.node] += compute_load_score(USAGE_CPU[record.app], USAGE_RAM[record.app])
    return loads


def simulate(
    slots: int, noise: int = 0, max_migrations: int = 4
) -> tuple[list[Registry], list[tuple[PlanEntry, ...]]]:
    """Every app starts on node 1 (placed at slot 2); plans from slot 3 on."""
    specs: list[tuple[AppSpec, NodeId | None]] = [(s, node_id(1)) for s in SPECS]
    history = [build_registry(specs, placed_at=2)]
    plans = []
    for slot in range(3, 3 + slots):
        parent = history[-1]
        running = history[-2] if len(history) > 1 else parent  # one block of lag
        reports = make_reports(running, slot - 1, noise)
        plan = compute_plan(parent, reports, NODES, Slot(slot), max_migrations)
        plans.append(plan)
        history.append(apply_test_block(parent, Slot(slot), (), plan, ()))
    return history, plans


def test_without_noise_the_potential_falls_every_slot_and_plans_run_dry() -> None:
    history, plans = simulate(120)
    phis = [potential(true_loads(registry)) for registry in history]
    assert all(after <= before for before, after in itertools.pairwise(phis))
    for plan, before, after in zip(plans, phis[:-1], phis[1:], strict=True):
        if plan:
            assert after < before, "every non-empty plan strictly lowers the potential"
    last_move = max(i for i, plan in enumerate(plans) if plan)
    assert last_move < 80, "converged well before the end"
    assert all(not plan for plan in plans[last_move + 1 :])
    start, end = true_loads(history[0]), true_loads(history[-1])
    assert max(end.values()) - min(end.values()) < (max(start.values()) - min(start.values())) // 10
    # At rest for good: even with no minimum interval, no move qualifies any more.
    final = history[-1]
    reports = make_reports(final, 1_000, 0)
    assert compute_plan(final, reports, NODES, Slot(1_001), 10, min_move_interval=0) == ()
    assert potential(end) < potential(start) // 4


def test_the_model_sees_moves_in_flight_at_their_destination() -> None:
    """With one block of report lag, the planner's model of slot s+1 must equal the
    loads the plan of slot s left behind, not the stale picture in the reports."""
    history, _ = simulate(30)
    for slot_index in range(1, 30):
        parent = history[slot_index]
        reports = make_reports(history[slot_index - 1], slot_index + 2, 0)
        model = compute_load_model(parent, reports, frozenset(i.node for i in NODES))
        assert dict(model.node_load) == true_loads(parent)


def test_no_app_moves_back_and_forth_under_small_noise() -> None:
    """planner.py's argument: if every measured figure is within +-eps score units of
    the truth, sending an app straight back needs 8 * eps >= R. A CPU jitter of n bp is
    eps = 2n, so with R = 1000 any n < 62 can never cause ping-pong."""
    for noise in (0, 25, 60):
        _, plans = simulate(200, noise=noise)
        last_origin: dict[AppId, bytes] = {}
        for plan in plans:
            for entry in plan:
                assert entry.action is PlanAction.MIGRATE
                assert last_origin.get(entry.app) != entry.destination, (
                    f"app went straight back to the node it left (noise {noise})"
                )
                last_origin[entry.app] = entry.origin


def test_churn_settles_even_under_larger_noise() -> None:
    """Beyond the bound, noise may trigger the odd move, but each must still look like
    an R-sized improvement and an app moves at most once per minimum interval."""
    for noise in (100, 150):
        _, plans = simulate(200, noise=noise)
        moves = [len(plan) for plan in plans]
        assert sum(moves[100:]) <= sum(moves[:100]) // 10, f"churn does not settle ({noise})"
        last_slot: dict[AppId, int] = {}
        for slot, plan in enumerate(plans, start=3):
            for entry in plan:
                assert slot - last_slot.get(entry.app, 2) >= DEFAULT_MIN_MOVE_INTERVAL_SLOTS
                last_slot[entry.app] = slot


def test_one_migration_per_slot_is_algorithm_1_pace() -> None:
    """max_migrations = 1 is the paper's one move per block; it still converges."""
    history, plans = simulate(200, max_migrations=1)
    assert all(len(plan) <= 1 for plan in plans)
    assert not any(plans[-20:])
    end = true_loads(history[-1])
    start = true_loads(history[0])
    assert max(end.values()) - min(end.values()) < (max(start.values()) - min(start.values())) // 10
