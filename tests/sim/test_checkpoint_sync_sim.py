"""Nodes that start when the chain is long catch up through checkpoint sync in the
simulator: the same engines, the real DHT and gossip objects, a simulated network."""

from __future__ import annotations

from edgechain.sim.faults import get_late_join_slot
from edgechain.sim.runner import SimConfig, Simulation

LATE = SimConfig(nodes=10, committee=4, slots=150, seed=1, faults="late-join", apps=12)


def test_late_nodes_sync_from_a_checkpoint_and_join() -> None:
    sim = Simulation(LATE)
    result = sim.run()
    summary = result.summary
    assert summary["violations"] == []
    # The apps stay exactly once while nodes install states fetched from peers.
    assert summary["apps"]["max_copies_seen"] == 1 and summary["apps"]["liveness_checked"]
    late = [n for n in sim.nodes if n.index >= LATE.nodes * 4 // 5]
    assert len(late) == 2
    assert summary["checkpoints_installed"] == len(late)
    heads = {n.engine.head for n in sim.nodes if n.up}
    assert len(heads) == 1
    start = get_late_join_slot(LATE.slots)
    for node in late:
        engine = node.engine
        assert engine.checkpoint.installs == 1
        # It validated in full only what came after its anchor, not the 100 slots before.
        accepted = engine.stats.blocks_accepted + engine.stats.skip_blocks_accepted
        assert accepted < LATE.slots - start + 40
        assert engine.is_validator()  # and it was admitted afterwards
