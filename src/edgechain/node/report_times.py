"""How resource reports travel on a real node (paper §4.5, Fig. 12; issue 15, item 3).

The simulator's harness sees every delivery (``sim/report_metrics.py``); a real node
sees only its own. So each node notes when each report first reached it (a
``ReportMsg`` from the member itself or from a representative's batch), and when it
accepts a full block it describes what the block did with the reports due:

* ``reports_due`` and ``reports_due_carried``: the validators of the parent state
  whose report was due for the block's slot (each reports every
  ``report_interval_slots`` slots at its own phase, ``consensus/reports.py``) and how
  many of those the block carries. Every validator counts, live or not: a node that is
  down lowers the share (the simulator counts only live nodes);
* ``report_to_producer_ms``, only for a block this node produced: per carried report,
  from its timestamp (its author's clock, when it signed it) to its first arrival here
  (0 for our own). On one host the nodes share a clock; across hosts the figure
  includes their clock offset.

The testnet summary pools these from every node's ``GET /blocks``
(``lab/report_summary.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.chain.model import Block, ResourceReport
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.reports import is_report_due
from edgechain.types import NodeId

KEEP_SLOTS = 8
"""Arrivals older than this many slots behind the newest accepted block are dropped:
a block carries only its own slot's reports."""


@dataclass(frozen=True)
class BlockReports:
    """What one full block did with the reports due for its slot."""

    reports_due: int
    reports_due_carried: int
    report_to_producer_ms: tuple[int, ...] | None
    """Per carried report, in block order; None unless this node produced the block."""


class ReportTimes:
    """First arrival of each report at this node, and the figures of accepted blocks."""

    def __init__(self, node_id: NodeId) -> None:
        self.node_id = node_id
        self.arrived_ms: dict[tuple[int, NodeId], int] = {}
        """(slot, author) → node clock ms of the report's first arrival."""

    def on_received(self, reports: Iterable[ResourceReport], now_ms: int) -> None:
        for report in reports:
            self.arrived_ms.setdefault((report.slot, report.node), now_ms)

    def on_block(
        self, block: Block, parent: BlockState | None, interval_slots: int
    ) -> BlockReports:
        """``block`` was accepted; ``parent``: its parent's state (None: not held, then
        nothing was due as far as this node can tell)."""
        carried = {report.node for report in block.reports}
        validators = parent.validators.get_node_ids() if parent is not None else ()
        due = [n for n in validators if is_report_due(n, block.slot, interval_slots)]
        delays = None
        if block.producer == self.node_id:
            delays = tuple(self._get_delay(report) for report in block.reports)
        self._forget_before(block.slot - KEEP_SLOTS)
        return BlockReports(len(due), sum(1 for n in due if n in carried), delays)

    def _get_delay(self, report: ResourceReport) -> int:
        if report.node == self.node_id:
            return 0
        arrived = self.arrived_ms.get((report.slot, report.node), report.timestamp_ms)
        return max(0, arrived - report.timestamp_ms)

    def _forget_before(self, slot: int) -> None:
        for key in [k for k in self.arrived_ms if k[0] < slot]:
            del self.arrived_ms[key]
