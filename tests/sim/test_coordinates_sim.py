"""Network coordinates in the simulator (sim/coordinates.py): with nodes in regions, the
overlay the chain's coordinates give comes to keep each report near home, where hash
positions send it across the map (issue 15, item 2)."""

from __future__ import annotations

from edgechain.sim.runner import SimConfig, Simulation

GEO = SimConfig(
    nodes=60,
    committee=8,
    slots=40,
    slot_duration_ms=16_000,
    latency_ms=(0, 2),
    preset_genesis=True,
    geo_regions=3,
)


def test_the_coordinate_overlay_becomes_tighter_than_hash_positions() -> None:
    result = Simulation(GEO).run()
    summary = result.summary
    assert summary["violations"] == []
    assert summary["report_inclusion"] == 1.0
    latency = summary["cluster_latency"]
    assert latency["coordinate_mode_from_slot"] is not None
    last = latency["by_slot"][-5:]
    overlay = sum(row[1] for row in last) / len(last)
    hashed = sum(row[2] for row in last) / len(last)
    # Three regions, k = 3: once converged, members sit a few ms from their
    # representative (same region), against ~35 ms on average with hash positions.
    assert overlay * 3 < hashed, latency["by_slot"]
    assert all(row[3] == 1 for row in last)


def test_without_a_geography_there_is_no_coordinate_layer() -> None:
    sim = Simulation(SimConfig(nodes=8, committee=3, slots=3, preset_genesis=True))
    assert sim.coordinates is None
    assert "cluster_latency" not in sim.run().summary
