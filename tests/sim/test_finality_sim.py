"""Finality in the simulator: it advances, it prunes memory to a bounded window, and a
partition into halves finalizes nothing on either side until it heals (the case that
committee weight alone could not make safe, ``chain/finality.py``). Every simulator
run also checks, each slot, that no two honest nodes finalize conflicting blocks
(``sim/audit.py``, ``check_finality``)."""

from __future__ import annotations

import os

from edgechain.consensus.pruning import RETAIN_SLOTS
from edgechain.sim.runner import SimConfig, Simulation

LONG = os.environ.get("EDGECHAIN_LONG") == "1"
EPOCH = 8


def test_finality_follows_the_head_and_memory_stays_bounded() -> None:
    slots = 2_000 if LONG else 150
    sim = Simulation(SimConfig(nodes=8, committee=5, slots=slots, seed=4, preset_genesis=True))
    result = sim.run()
    s = result.summary
    assert s["violations"] == []
    assert s["blocks"] == slots
    for node in sim.nodes:
        engine = node.engine
        head = engine.get_head_state()
        assert head is not None and engine.pruner.finalized is not None
        # Justify epoch e during e+1, finalize it once e+1 is justified: about three
        # epochs behind the head.
        assert head.slot - engine.pruner.finalized_slot <= 4 * EPOCH
        bound = RETAIN_SLOTS + 4 * EPOCH + 2
        assert len(engine.blocks) <= bound and len(engine.states) <= bound + 1
        assert engine.fork is not None and len(engine.fork) <= 4 * EPOCH + 2
        assert engine.pruner.blocks_pruned >= slots - bound


def test_even_halves_finalize_nothing_until_the_partition_heals() -> None:
    sim = Simulation(SimConfig(nodes=12, committee=6, slots=120, seed=5, faults="partition-heal"))
    result = sim.run()
    s = result.summary
    assert s["violations"] == [], s["violations"]
    marks = dict(sim.finality_marks)
    split, healed = marks["split"], marks["heal"]
    assert max(split.values()) >= 1, "nothing was finalized before the split"
    # 6 of 12 voters on each side: neither reaches two thirds.
    assert max(healed.values()) <= max(split.values()), (split, healed)
    # After the heal, one chain and finality moves on everywhere.
    assert s["distinct_heads"] == 1
    for node in sim.nodes:
        finalized = node.engine.pruner.finalized
        assert finalized is not None and finalized.epoch > max(healed.values())
