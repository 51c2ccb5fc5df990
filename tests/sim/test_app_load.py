"""Simulated apps' load, migration costs and the paper's worst case (``sim/app_load.py``,
``sim/app_worst_case.py``): the model's arithmetic, and a worst case run through
``edgechain simulate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from edgechain.chain.model import BASIS_POINTS, RuntimeKind
from edgechain.cli import main
from edgechain.sim.app_load import (
    LOAD_MIXED,
    LOAD_REQUEST,
    LOAD_VARYING,
    PAPER_STATE_BYTES,
    PRECOPY_MIN_BYTES,
    compute_node_usage,
    compute_transfer_cost,
    get_demand_bp,
    get_mixed_demand_bp,
    get_profile,
    make_mixed_spec,
)
from edgechain.types import AppId

SLOT_MS = 2_000


def app(n: int) -> AppId:
    return AppId(n.to_bytes(32, "big"))


def test_mixed_demands_and_requests() -> None:
    demands = [get_mixed_demand_bp(i) for i in range(500)]
    assert min(demands) >= 110 and max(demands) <= 790
    assert len(set(demands)) > 200  # spread, not a few values
    assert demands == [get_mixed_demand_bp(i) for i in range(500)]  # no hidden state
    for i in range(50):
        spec = make_mixed_spec(i, stateful=False, replica_interval_slots=4)
        assert spec.runtime is RuntimeKind.PROCESS and spec.cpu_bp % 100 == 0
        assert abs(spec.cpu_bp - get_mixed_demand_bp(i)) <= 50 or spec.cpu_bp == 100


def test_profiles_vary_only_under_varying_load() -> None:
    profiles = {get_profile(app(n)) for n in range(60)}
    assert profiles == {"steady", "diurnal", "bursty"}
    spec = make_mixed_spec(3, stateful=False, replica_interval_slots=0)
    for n in range(60):
        times = range(0, 80 * SLOT_MS, SLOT_MS // 2)
        mixed = {get_demand_bp(app(n), spec, 3, t, SLOT_MS, LOAD_MIXED) for t in times}
        varying = [get_demand_bp(app(n), spec, 3, t, SLOT_MS, LOAD_VARYING) for t in times]
        assert mixed == {get_mixed_demand_bp(3)}
        demand = get_mixed_demand_bp(3)
        if get_profile(app(n)) == "steady":
            assert set(varying) == {demand}
        else:
            assert len(set(varying)) > 1
            assert min(varying) >= demand // 4 and max(varying) <= demand * 4
    assert get_demand_bp(app(1), spec, None, 0, SLOT_MS, LOAD_VARYING) == spec.cpu_bp
    assert get_demand_bp(app(1), spec, 3, 0, SLOT_MS, LOAD_REQUEST) == spec.cpu_bp


def test_a_saturated_node_reports_shares_and_pressure() -> None:
    idle = compute_node_usage([(app(1), 3_000, 10), (app(2), 2_000, 10)], 5)
    assert idle.cpu_bp == 5_000 and idle.pressure_bp == 0
    assert [u.cpu_bp for u in idle.apps] == [3_000, 2_000]
    full = compute_node_usage([(app(1), 15_000, 10), (app(2), 5_000, 10)], 5)
    assert full.cpu_bp == BASIS_POINTS
    assert [u.cpu_bp for u in full.apps] == [7_500, 2_500]  # in proportion to demand
    assert full.pressure_bp == BASIS_POINTS - BASIS_POINTS * BASIS_POINTS // 20_000


def test_transfer_costs_follow_the_measurements() -> None:
    small, large = (compute_transfer_cost(b) for b in PAPER_STATE_BYTES)
    assert small.precopy_ms > 0 and large.precopy_ms > small.precopy_ms  # both pre-copied
    assert small.downtime_ms < large.downtime_ms < 300  # docs/results/migration.md
    plain = compute_transfer_cost(PRECOPY_MIN_BYTES - 1)
    assert plain.precopy_ms == 0 and plain.transmit_ms > large.transmit_ms


def test_the_worst_case_spreads_every_app_from_one_node(tmp_path: Path) -> None:
    """20 nodes, 40 apps of mixed load all started on the first node: the chain's
    planner spreads them to max/mean <= 1.25, never two copies of an app."""
    out = tmp_path / "sim.json"
    args = ["simulate", "--nodes", "20", "--committee", "8", "--slots", "30"]
    args += ["--apps", "40", "--app-load", "mixed", "--app-transfer", "modelled"]
    args += ["--worst-case", "--preset-genesis", "--quiet", "--json", str(out)]
    assert main(args) == 0
    summary = json.loads(out.read_text())["summary"]
    apps = summary["apps"]
    case = apps["worst_case"]
    ratios = {int(k): v for k, v in case["max_over_mean_by_slot"].items()}
    start = case["undrain_at"]
    assert start is not None and ratios[start] == 20.0  # everything on one node of 20
    assert case["slots_to_balance"] is not None, ratios
    assert min(r for s, r in ratios.items() if s > start) <= 1.25
    assert case["migrations"] >= 20
    assert apps["max_copies_seen"] == 1 and not summary["violations"]
    costs = apps["migration_costs_ms"]
    assert costs["count"] == apps["handovers"] and costs["downtime_ms"]["max"] < 300
