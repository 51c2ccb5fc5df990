"""The geographic latency model (sim/geography.py) and its use as the network's base
latency: deterministic maps, symmetric distance delays, locality, and no change to the
network's random draws."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Callable
from types import MappingProxyType

import pytest

from edgechain.cli import build_parser
from edgechain.sim.clock import MILLISECOND, SimClock
from edgechain.sim.geography import (
    ACCESS_US,
    MAP_HEIGHT_KM,
    MAP_WIDTH_KM,
    NODE_SPREAD_KM,
    Geography,
    Position,
    compute_cluster_latency_us,
    compute_geography,
    summarize_us,
)
from edgechain.sim.network import LinkProfile, SimNetwork, TraceRecord, Uniform
from edgechain.sim.runner import SimConfig, Simulation
from edgechain.types import NodeId


def node(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


NODES = [node(i) for i in range(60)]


# --- the map ---------------------------------------------------------------------------


def test_same_seed_same_map_other_seed_other_map() -> None:
    first = compute_geography(NODES, 4, seed=7)
    assert compute_geography(NODES, 4, seed=7) == first
    other = compute_geography(NODES, 4, seed=8)
    assert other.centres != first.centres
    assert [other.get_position(n) for n in NODES] != [first.get_position(n) for n in NODES]


def test_every_node_is_placed_round_robin_near_its_centre_and_on_the_map() -> None:
    geo = compute_geography(NODES, 3, seed=1)
    assert geo.regions == 3
    assert list(geo.positions) == NODES
    for index, n in enumerate(NODES):
        x, y, region = geo.get_position(n)
        assert region == geo.get_region(n) == index % 3
        cx, cy = geo.centres[region]
        assert (x - cx) ** 2 + (y - cy) ** 2 <= NODE_SPREAD_KM**2
        assert 0 <= x <= MAP_WIDTH_KM and 0 <= y <= MAP_HEIGHT_KM
    # The offsets are spread, not all on the centre.
    assert len({geo.get_position(n)[:2] for n in NODES}) == len(NODES)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="regions"):
        compute_geography(NODES, 0, seed=1)
    with pytest.raises(ValueError, match="twice"):
        compute_geography([NODES[0], NODES[1], NODES[0]], 2, seed=1)
    geo = compute_geography(NODES[:4], 2, seed=1)
    with pytest.raises(KeyError):
        geo.get_one_way_us(NODES[0], NODES[10])


def test_any_seed_works() -> None:
    for seed in (-1, 0, 2**70):
        assert compute_geography(NODES[:3], 2, seed).regions == 2


# --- delays ----------------------------------------------------------------------------


def test_delay_is_symmetric_zero_to_self_and_pays_access_at_both_ends() -> None:
    geo = compute_geography(NODES[:20], 4, seed=3)
    for a, b in itertools.product(NODES[:20], repeat=2):
        delay = geo.get_one_way_us(a, b)
        assert isinstance(delay, int)
        assert delay == geo.get_one_way_us(b, a)
        assert delay == 0 if a == b else delay >= 2 * ACCESS_US


def test_delay_from_hand_placed_positions() -> None:
    a, b, c = NODES[:3]
    geo = Geography(
        0,
        ((0, 0),),
        MappingProxyType({a: Position(0, 0, 0), b: Position(300, 400, 0), c: Position(0, 0, 0)}),
    )
    assert geo.get_one_way_us(a, b) == 1_000 + 500 * 10  # 500 km at 10 µs/km
    assert geo.get_one_way_us(a, c) == 1_000  # same spot, two endpoints


def test_delays_obey_the_triangle_inequality() -> None:
    geo = compute_geography(NODES[:15], 3, seed=5)
    for a, b, c in itertools.permutations(NODES[:15], 3):
        assert geo.get_one_way_us(a, c) <= geo.get_one_way_us(a, b) + geo.get_one_way_us(b, c)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_region_is_much_closer_than_another_region(seed: int) -> None:
    geo = compute_geography(NODES, 3, seed)
    same: list[int] = []
    cross: list[int] = []
    for a, b in itertools.combinations(NODES, 2):
        (same if geo.get_region(a) == geo.get_region(b) else cross).append(geo.get_one_way_us(a, b))
    # Two nodes of one region are at most 800 km apart: 8 ms + 1 ms of access.
    assert max(same) <= 2 * ACCESS_US + 2 * NODE_SPREAD_KM * 10
    assert statistics.median(cross) > 3 * statistics.median(same)


# --- the cluster metric -----------------------------------------------------------------


def test_cluster_latency_is_each_member_to_its_representative() -> None:
    a, b, c, d, e = NODES[:5]
    positions = {
        a: Position(0, 0, 0),  # representative of the first cluster
        b: Position(300, 400, 0),  # 500 km away
        c: Position(0, 0, 0),  # same spot
        d: Position(1_000, 0, 1),  # representative of the second cluster
        e: Position(1_000, 30, 1),  # 30 km away
    }
    geo = Geography(0, ((0, 0), (1_000, 0)), MappingProxyType(positions))
    latencies = compute_cluster_latency_us([[a, b, c], [d, e]], [a, d], geo)
    assert latencies == [6_000, 1_000, 1_300]
    assert compute_cluster_latency_us([[d]], [d], geo) == []  # a lone representative
    with pytest.raises(ValueError):
        compute_cluster_latency_us([[a, b]], [], geo)


def test_summarize_us() -> None:
    assert summarize_us([]) == {"mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "count": 0}
    assert summarize_us([4_000, 1_000, 3_000, 2_000]) == {
        "mean_ms": 2.5,
        "p50_ms": 2.0,
        "p99_ms": 4.0,
        "count": 4,
    }
    assert summarize_us([1_234]) == {"mean_ms": 1.23, "p50_ms": 1.23, "p99_ms": 1.23, "count": 1}


# --- as the network's base latency -----------------------------------------------------

Delivered = tuple[int, NodeId, NodeId, int]
"""(arrival µs, src, dst, payload = index of the send)."""

PROFILE = LinkProfile(latency=Uniform(0, 5 * MILLISECOND), loss=0.1, duplicate=0.1, reorder=0.1)


def run_traffic(
    base_latency: Callable[[NodeId, NodeId], int] | None,
) -> tuple[list[Delivered], list[int], str]:
    """A fixed open-loop pattern (nothing is sent in reaction to a delivery, so shifting
    arrivals changes no later send): deliveries, send times, trace digest."""
    clock = SimClock()
    records: list[TraceRecord] = []
    net: SimNetwork[int] = SimNetwork(
        9, clock, profile=PROFILE, trace=True, trace_hook=records.append, base_latency=base_latency
    )
    nodes = NODES[:12]
    log: list[Delivered] = []
    for n in nodes:
        net.register(n, lambda src, dst, payload, at: log.append((at, src, dst, payload)))
    sent_at: list[int] = []
    for i in range(300):
        clock.run_until(i * 3 * MILLISECOND)
        sent_at.append(clock.now)
        net.send(nodes[i % 12], nodes[(i * 7 + 1) % 12], i, 100)
    clock.run()
    return log, sent_at, net.trace_digest()


def test_zero_base_latency_leaves_the_trace_unchanged() -> None:
    plain, _, plain_digest = run_traffic(None)
    zero, _, zero_digest = run_traffic(lambda a, b: 0)
    assert zero == plain
    assert zero_digest == plain_digest


def test_base_latency_shifts_arrivals_without_changing_the_draws() -> None:
    plain, _, _ = run_traffic(None)
    shifted, _, _ = run_traffic(lambda a, b: 40 * MILLISECOND)
    # Same losses, duplicates and draws: every copy arrives exactly 40 ms later.
    assert sorted((at + 40 * MILLISECOND, s, d, p) for at, s, d, p in plain) == sorted(shifted)


def test_geography_base_latency_is_a_floor_on_delivery() -> None:
    geo = compute_geography(NODES[:12], 3, seed=4)
    plain, _, _ = run_traffic(None)
    log, sent_at, _ = run_traffic(geo.get_one_way_us)
    assert len(log) == len(plain) > 250
    for at, src, dst, payload in log:
        base = geo.get_one_way_us(src, dst)
        assert sent_at[payload] + base <= at <= sent_at[payload] + base + 15 * MILLISECOND


def test_negative_base_latency_is_refused() -> None:
    clock = SimClock()
    net: SimNetwork[int] = SimNetwork(1, clock, base_latency=lambda a, b: -1)
    net.register(NODES[1], lambda src, dst, payload, at: None)
    with pytest.raises(ValueError, match="int >= 0"):
        net.send(NODES[0], NODES[1], 0, 10)


# --- in the simulator ------------------------------------------------------------------


def test_simulation_with_regions_runs_clean() -> None:
    config = SimConfig(nodes=12, committee=4, slots=6, geo_regions=3, preset_genesis=True)
    sim = Simulation(config)
    assert sim.geography is not None
    assert [sim.geography.get_region(n.ident.node) for n in sim.nodes] == [i % 3 for i in range(12)]
    result = sim.run()
    assert result.summary["violations"] == []
    assert result.summary["blocks"] > 0
    plain = Simulation(dataclasses.replace(config, geo_regions=0))
    assert plain.geography is None


def test_cli_option() -> None:
    parser = build_parser()
    assert parser.parse_args(["simulate"]).geo_regions == 0
    assert parser.parse_args(["simulate", "--geo-regions", "5"]).geo_regions == 5
