"""What the node tells its metrics (``telemetry/metrics.py``): one collaborator of
:class:`~edgechain.node.Node`, so the loop only hands it events and timings.

:class:`NodeObserver` builds the scrape-time :class:`MetricsReading` from the node's
own counters and observes what is timed: each block as it is accepted (its votes, its
propagation from the start of its slot, its reports' latency), how long taking a
received block took, each slot's CPU by component, each migration's phases. Replayed
blocks (the store, at start) are history, not propagation: they are not observed.
"""

from __future__ import annotations

from collections.abc import Callable

from edgechain.chain.model import Block
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import BlockAccepted
from edgechain.runtime.transfer_client import MigrationOutcome, MigrationResult
from edgechain.telemetry.cpu import SlotCpu
from edgechain.telemetry.metrics import MetricsReading, MigrationPhase, NodeMetrics

SUCCESSFUL = frozenset({MigrationOutcome.COMPLETED})
"""Outcomes whose phases are a migration's timings (a refusal saved nothing)."""


class NodeObserver:
    """Feeds one node's :class:`NodeMetrics`."""

    def __init__(self, read: Callable[[], MetricsReading | None]) -> None:
        self.metrics = NodeMetrics()
        self.metrics.read = read

    def on_block_accepted(
        self, engine: ConsensusEngine, event: BlockAccepted, now_ms: int, *, replaying: bool
    ) -> None:
        params = engine.params
        block = engine.blocks.get(event.block_hash)
        if replaying or params is None or not isinstance(block, Block):
            return
        slot_start_ms = params.genesis_time_ms + block.slot * params.slot_duration_ms
        self.metrics.observe_block(
            votes=event.signers,
            propagation_s=(now_ms - slot_start_ms) / 1000,
            report_latencies_s=[(now_ms - r.timestamp_ms) / 1000 for r in block.reports],
        )

    def on_block_taken(self, seconds: float) -> None:
        """A received block went through the engine in ``seconds`` (wall time)."""
        self.metrics.observe_validation(seconds)

    def on_slot_cpu(self, sample: SlotCpu) -> None:
        self.metrics.observe_slot_cpu(sample)

    def on_migration(self, result: MigrationResult) -> None:
        if result.outcome in SUCCESSFUL:
            self.metrics.observe_migration(
                {
                    MigrationPhase.SAVE: result.save_ms,
                    MigrationPhase.TRANSMIT: result.transmit_ms,
                    MigrationPhase.RESUME: result.resume_ms,
                }
            )

    def render(self) -> bytes:
        return self.metrics.render()
