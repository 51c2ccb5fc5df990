"""chain/recent_encodings.py: remembered bytes by object identity, bounded, exact."""

from __future__ import annotations

import dataclasses

from edgechain.chain.encoding_primitives import Writer
from edgechain.chain.model import Coordinate, ResourceReport
from edgechain.chain.recent_encodings import RecentEncodings
from edgechain.chain.report_encoding import RECENT_REPORTS, write_report, write_report_body
from edgechain.types import NodeId, ReportSignature, Slot


def test_the_least_recently_used_entry_goes_first_and_equal_objects_are_not_confused() -> None:
    cache = RecentEncodings[list[int]](2)
    a, b, c = [1], [2], [3]
    cache.put(a, b"a")
    cache.put(b, b"b")
    assert cache.get(a) == b"a"  # a is now the most recent
    cache.put(c, b"c")
    assert (cache.get(a), cache.get(b), cache.get(c)) == (b"a", None, b"c")
    assert cache.get([1]) is None  # equal, but another object: never its bytes
    assert len(cache) == 2


def test_a_remembered_report_encodes_to_the_same_bytes_as_a_fresh_one() -> None:
    report = ResourceReport(
        node=NodeId(b"\x01" * 32), slot=Slot(7), timestamp_ms=5, cpu_bp=1, ram_bp=2,
        disk_bp=3, rtt_us=4, apps=(), signature=ReportSignature(b"\x02" * 64),
        coordinate=Coordinate(3, -4),
    )  # fmt: skip
    first, second, fresh = Writer(), Writer(), Writer()
    write_report(first, report)
    assert RECENT_REPORTS.get(report) is not None
    write_report(second, report)
    write_report_body(fresh, report)
    fresh.fixed(report.signature, 64)
    assert first.buf == second.buf == fresh.buf
    changed = dataclasses.replace(report, cpu_bp=9)  # equal fields but one: its own bytes
    other = Writer()
    write_report(other, changed)
    assert other.buf != first.buf
