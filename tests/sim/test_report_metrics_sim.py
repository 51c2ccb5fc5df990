"""Report inclusion and travel times in the simulator (``sim/report_metrics.py``).

Times are virtual: the same seed gives the same figures on any machine."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgechain.chain.model import Block
from edgechain.sim.runner import SimConfig, Simulation

SIM = SimConfig(nodes=20, committee=8, slots=24, seed=4, nodes_per_cluster=5, preset_genesis=True)


def _run(faults: str) -> tuple[Simulation, dict[str, Any]]:
    sim = Simulation(dataclasses.replace(SIM, faults=faults))
    summary = sim.run().summary
    assert summary["violations"] == []
    return sim, summary


def test_reports_reach_the_producer_within_a_tenth_of_the_slot() -> None:
    sim, s = _run("none")
    assert s["reports_due"] > 80
    assert s["report_inclusion"] == 1.0
    to_producer = s["report_to_producer_ms"]
    assert isinstance(to_producer, dict)
    # A representative forwards once its cluster's members due for the slot are in;
    # waiting for the whole cluster held every batch to the forward time (1.7 s).
    assert to_producer["p50"] <= SIM.slot_duration_ms // 10
    # One sample per report carried by a block, each block counted once.
    carried = sum(len(b.reports) for b in sim.blocks.values() if isinstance(b, Block))
    assert to_producer["samples"] == carried
    to_representative = s["report_to_representative_ms"]
    assert isinstance(to_representative, dict)
    assert to_representative["p50"] <= to_producer["p50"]


def test_dropping_representatives_show_in_inclusion_and_travel_time() -> None:
    _, honest = _run("none")
    _, dropped = _run("report-dropper")
    # Their clusters' reports miss their own slot's block; the members fall back to
    # the next slot's producer, so those arrive later.
    assert isinstance(dropped["report_inclusion"], float)
    assert dropped["report_inclusion"] < honest["report_inclusion"]
    slow, fast = dropped["report_to_producer_ms"], honest["report_to_producer_ms"]
    assert isinstance(slow, dict) and isinstance(fast, dict)
    assert slow["p99"] > fast["p50"]


def test_a_longer_down_after_and_epoch_carry_fewer_reports_a_block() -> None:
    """The knob issue 13's flat-in-N goal needs: a genesis with twice K and the epoch
    has every node report half as often, so blocks carry half the reports (what a
    block's check costs grows with them), every due report is still carried, and the
    chain still finalizes (two votes an epoch) with no violation."""
    longer = dataclasses.replace(SIM, slots=48, down_after_slots=24, epoch_length=16)
    default = dataclasses.replace(SIM, slots=48)
    carried = {}
    for name, config in (("default", default), ("longer", longer)):
        sim = Simulation(config)
        summary = sim.run().summary
        assert summary["violations"] == []
        assert summary["report_inclusion"] == 1.0
        blocks = [b for b in sim.blocks.values() if isinstance(b, Block) and b.slot > 16]
        carried[name] = sum(len(b.reports) for b in blocks) / len(blocks)
        engine = sim.nodes[1].engine
        head = engine.get_head_state()
        assert head is not None and engine.pruner.finalized is not None  # finality goes on
        assert head.slot - engine.pruner.finalized_slot <= 4 * config.epoch_length
    assert sim.params.report_interval_slots == 8
    assert carried["longer"] < 0.6 * carried["default"]
