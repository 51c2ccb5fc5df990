"""The testnet summary's report figures (paper §4.5, Fig. 12; issue 15, item 3): the
same ones the simulator gives (``sim/report_metrics.py``), from what real nodes measured
(``node/report_times.py``) and list in ``GET /blocks``. Pure, like ``lab/summary.py``.

Over the canonical full blocks after every node joined (before that, nodes still
joining are validators whose reports cannot be relayed yet):

* ``inclusion``: carried / due, where due counts the parent state's validators whose
  report was due for the block's slot (all of them, live or not);
* ``to_producer_ms``: p50, p99 and max over every carried report, from its timestamp
  to its first arrival at the block's producer, as the producer measured it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from edgechain.telemetry.cpu import compute_percentile

if TYPE_CHECKING:
    from edgechain.lab.summary_records import BlockRecord, CanonicalBlock


def summarize_reports(
    canonical: Sequence[CanonicalBlock], records: Iterable[BlockRecord], join_slot: int | None
) -> dict[str, Any]:
    """The report figures of the canonical blocks after ``join_slot`` (all of them when
    None), from every node's block records."""
    by_hash: dict[str, list[BlockRecord]] = {}
    for record in records:
        by_hash.setdefault(record.hash, []).append(record)
    due = carried = measured = 0
    delays: list[int] = []
    for block in canonical:
        if block.skip or (join_slot is not None and block.slot <= join_slot):
            continue
        seen = by_hash.get(block.hash, [])
        counted = next((r for r in seen if r.reports_due is not None), None)
        if counted is not None:
            measured += 1
            due += counted.reports_due or 0
            carried += counted.reports_due_carried or 0
        for record in seen:
            if record.report_to_producer_ms is not None:
                delays.extend(record.report_to_producer_ms)
                break
    return {
        "blocks_measured": measured,
        "due": due,
        "inclusion": round(carried / due, 4) if due else None,
        "to_producer_ms": {
            "p50": compute_percentile(delays, 0.5) if delays else None,
            "p99": compute_percentile(delays, 0.99) if delays else None,
            "max": max(delays) if delays else None,
            "samples": len(delays),
        },
    }
