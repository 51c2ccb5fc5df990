"""chain/recent_encodings.py: remembered bytes by object identity, bounded, exact."""

from __future__ import annotations

import dataclasses
import gc
import weakref

from edgechain.chain.encoding_primitives import Writer
from edgechain.chain.model import Coordinate, ResourceReport
from edgechain.chain.recent_encodings import RecentEncodings
from edgechain.chain.report_encoding import RECENT_REPORTS, write_report, write_report_body
from edgechain.types import NodeId, ReportSignature, Slot


class Thing:
    """A plain object (weak references allowed), equal to another with the same value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.value == self.value

    def __hash__(self) -> int:
        return self.value


def test_the_least_recently_used_entry_goes_first_and_equal_objects_are_not_confused() -> None:
    cache = RecentEncodings[Thing](2)
    a, b, c = Thing(1), Thing(2), Thing(3)
    cache.put(a, b"a")
    cache.put(b, b"b")
    assert cache.get(a) == b"a"  # a is now the most recent
    cache.put(c, b"c")
    assert (cache.get(a), cache.get(b), cache.get(c)) == (b"a", None, b"c")
    assert cache.get(Thing(1)) is None  # equal, but another object: never its bytes
    assert len(cache) == 2


def test_an_entry_goes_with_its_object_and_keeps_nothing_alive() -> None:
    """Session 32: the reports cache held every report it encoded until 4096 were in
    it, 5 MB a 20-node testnet gained between slots 200 and 1000."""
    cache = RecentEncodings[Thing](100)
    kept = [Thing(i) for i in range(10)]
    for thing in kept:
        cache.put(thing, bytes([thing.value]))
    del thing  # the loop's name would keep the last one alive
    probe = weakref.ref(kept[3])
    del kept[3:]
    gc.collect()
    assert probe() is None  # the cache did not keep it
    assert len(cache) == 3
    assert [cache.get(t) for t in kept] == [b"\x00", b"\x01", b"\x02"]
    fresh = [Thing(i) for i in range(20)]  # ids of the dead may be reused: never their bytes
    assert all(cache.get(t) is None for t in fresh)


def test_a_dead_objects_late_callback_does_not_drop_a_newer_entry_under_its_id() -> None:
    cache = RecentEncodings[Thing](10)
    a = Thing(1)
    cache.put(a, b"old")
    stale_forget = cache._get_forget(id(a))
    cache.put(a, b"new")  # the entry under id(a) now holds a new weak reference
    stale_forget(weakref.ref(a))  # a callback for another reference: ignored
    assert cache.get(a) == b"new"


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
