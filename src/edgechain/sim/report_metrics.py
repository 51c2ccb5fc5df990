"""How resource reports travel in a simulated run (paper §4.5, Fig. 12).

A node signs a report for a target slot (``ReportRelay``, ``consensus/reports.py``)
and sends it to its cluster's representative, which batches its cluster's reports to
the producer of that slot; the block of the slot carries what the producer pooled in
time. The harness sees every delivery, so it measures, per report that a block
carries:

* ``to_representative``: from the report's timestamp to its first delivery to another
  node: the representative, unless the member fell back to the producer, or is its own
  representative (then its first hop is the batch to the producer); 0 when the member
  is the block's producer;
* ``to_producer``: to its first delivery to the producer of the block that carries it;
  0 when the producer made or relayed it itself.

And per full block: ``inclusion``, the share of the reports due for its slot (every
live honest validator of the parent state reports every ``report_interval_slots``
slots, at its own phase) that the block carries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgechain.chain.model import Block, ResourceReport
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.reports import is_report_due
from edgechain.telemetry.cpu import compute_percentile
from edgechain.types import NodeId

KEEP_SLOTS = 8
"""Deliveries of reports older than this many slots behind the newest block are
forgotten: no later block can carry them (a block carries only its own slot's)."""


def get_percentiles(values: list[int]) -> dict[str, int | None]:
    """p50 and p99 by nearest rank (None when there is nothing to rank)."""
    if not values:
        return {"p50": None, "p99": None}
    return {"p50": compute_percentile(values, 0.5), "p99": compute_percentile(values, 0.99)}


@dataclass
class ReportMetrics:
    """Deliveries of reports as they happen, and the figures of the blocks that
    carry them."""

    interval_slots: int
    first_hop_ms: dict[tuple[NodeId, int], int] = field(default_factory=dict)
    """(author, slot) → time of its first delivery to another node."""
    delivered_ms: dict[tuple[NodeId, NodeId, int], int] = field(default_factory=dict)
    """(receiver, author, slot) → time of the first delivery there."""
    to_representative_ms: list[int] = field(default_factory=list)
    to_producer_ms: list[int] = field(default_factory=list)
    sample_slots: list[int] = field(default_factory=list)
    """The slot of the block that carried each sample (parallel to the two lists above)."""
    blocks: list[tuple[int, int, int]] = field(default_factory=list)
    """(slot, reports due, reports carried) of every full block counted, in the order
    seen: the per-block inclusion behind ``inclusion`` (Fig. 12 of ``lab/paper``)."""
    included: int = 0
    due: int = 0

    def on_delivered(self, receiver: NodeId, reports: Iterable[ResourceReport], now: int) -> None:
        for report in reports:
            self.first_hop_ms.setdefault((report.node, report.slot), now)
            self.delivered_ms.setdefault((receiver, report.node, report.slot), now)

    def on_block(self, block: Block, parent: BlockState, live: Iterable[NodeId]) -> None:
        """A full block, seen for the first time; ``live``: honest nodes up now."""
        producer = block.producer
        for report in block.reports:
            created = report.timestamp_ms
            key = (report.node, report.slot)
            self.to_representative_ms.append(
                0 if report.node == producer else self.first_hop_ms.get(key, created) - created
            )
            arrived = self.delivered_ms.get((producer, report.node, report.slot), created)
            self.to_producer_ms.append(max(0, arrived - created))
            self.sample_slots.append(block.slot)
        carried = {report.node for report in block.reports}
        due = [
            node
            for node in live
            if node in parent.validators and is_report_due(node, block.slot, self.interval_slots)
        ]
        included = sum(1 for node in due if node in carried)
        self.due += len(due)
        self.included += included
        self.blocks.append((block.slot, len(due), included))
        self._forget_before(block.slot - KEEP_SLOTS)

    def _forget_before(self, slot: int) -> None:
        self.first_hop_ms = {k: v for k, v in self.first_hop_ms.items() if k[1] >= slot}
        self.delivered_ms = {k: v for k, v in self.delivered_ms.items() if k[2] >= slot}

    def summary(self) -> dict[str, Any]:
        return {
            "report_inclusion": round(self.included / self.due, 4) if self.due else None,
            "reports_due": self.due,
            "report_to_representative_ms": get_percentiles(self.to_representative_ms),
            "report_to_producer_ms": {
                **get_percentiles(self.to_producer_ms),
                "samples": len(self.to_producer_ms),
            },
        }
