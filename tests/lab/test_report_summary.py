"""``lab/report_summary.py``: the testnet summary's report figures from the nodes'
``GET /blocks`` records (hand-made here, as ``node/report_times.py`` writes them)."""

from __future__ import annotations

import pytest

from edgechain.lab.report_summary import summarize_reports
from edgechain.lab.summary_records import (
    BlockRecord,
    CanonicalBlock,
    RecordError,
    parse_block_records,
)


def _record(
    block: str, slot: int, due: int | None, carried: int | None, delays: list[int] | None
) -> BlockRecord:
    return BlockRecord(
        block, slot, False, 3, "p", None, 0, due, carried, tuple(delays) if delays else None
    )


def test_inclusion_and_times_pool_over_the_canonical_blocks_after_join() -> None:
    canonical = [
        CanonicalBlock("a", 1, False, "p", None),  # before join: left out
        CanonicalBlock("b", 2, False, "p", None),
        CanonicalBlock("s", 3, True, None, "x"),  # a skip block carries no reports
        CanonicalBlock("c", 4, False, "q", None),
    ]
    records = [
        _record("a", 1, 9, 1, [900]),
        # Every node counts a block; only its producer times it.
        _record("b", 2, 4, 4, None),
        _record("b", 2, 4, 4, [10, 20, 30, 40]),
        _record("c", 4, 5, 3, None),
        _record("c", 4, 5, 3, [50, 60, 70]),
        _record("orphan", 4, 5, 0, [5_000]),  # not canonical
    ]
    got = summarize_reports(canonical, records, join_slot=1)
    assert got["blocks_measured"] == 2 and got["due"] == 9
    assert got["inclusion"] == round(7 / 9, 4)
    assert got["to_producer_ms"] == {"p50": 40, "p99": 70, "max": 70, "samples": 7}


def test_nothing_measured_is_null_not_zero() -> None:
    got = summarize_reports([CanonicalBlock("b", 2, False, "p", None)], [], join_slot=None)
    assert got["inclusion"] is None and got["to_producer_ms"]["p99"] is None


def test_block_records_parse_the_report_fields() -> None:
    entry = {"hash": "h", "slot": 2, "skip": False, "signers": 2, "producer": "p",
             "excluded": None, "accepted_ms": 5}  # fmt: skip
    [old] = parse_block_records([entry])  # a node without the fields
    assert old.reports_due is None and old.report_to_producer_ms is None
    [new] = parse_block_records(
        [{**entry, "reports_due": 4, "reports_due_carried": 3, "report_to_producer_ms": [1, 2]}]
    )
    assert (new.reports_due, new.reports_due_carried, new.report_to_producer_ms) == (4, 3, (1, 2))
    for bad in ({"reports_due": "4"}, {"report_to_producer_ms": [1, True]}):
        with pytest.raises(RecordError):
            parse_block_records([{**entry, **bad}])
