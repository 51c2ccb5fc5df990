"""``node/report_times.py``: what a real node measures of the reports a block carries
(issue 15, item 3), on real blocks, reports and validator sets."""

from __future__ import annotations

from edgechain.chain.model import Block, ResourceReport
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.consensus.reports import is_report_due
from edgechain.consensus.state import BlockState
from edgechain.node.report_times import KEEP_SLOTS, ReportTimes
from edgechain.orchestrator.registry import Registry
from edgechain.testing import make_identity
from edgechain.types import BlockHash, NodeId, ReportSignature, Signature, Slot

INTERVAL = 4
IDS = [make_identity(i) for i in range(12)]
ME = IDS[0]


def _parent() -> BlockState:
    validators = ValidatorSet.from_members(
        ValidatorInfo(i.node, i.pk, f"127.0.0.1:{n}", ()) for n, i in enumerate(IDS)
    )
    return BlockState(
        BlockHash(bytes(32)), Slot(9), b"", validators, 1, Registry(), (), 0, is_skip=False,
        vdf_group=BlockHash(bytes(32)),
    )  # fmt: skip


def _report(node: NodeId, slot: int, at_ms: int) -> ResourceReport:
    return ResourceReport(node, Slot(slot), at_ms, 0, 0, 0, 0, (), ReportSignature(bytes(64)))


def _block(slot: int, producer: NodeId, reports: tuple[ResourceReport, ...]) -> Block:
    return Block(
        BlockHash(bytes(32)), Slot(slot), 0, producer, 0, 1, b"", b"", bytes(32), reports,
        (), (), (), (), Signature(b""), b"", Signature(b""),
    )  # fmt: skip


def test_a_produced_block_times_each_report_to_its_first_arrival() -> None:
    times = ReportTimes(ME.node)
    due = [i.node for i in IDS if is_report_due(i.node, 10, INTERVAL)]
    assert len(due) >= 2, "the identities' phases put at least two reports in slot 10"
    others = [n for n in due if n != ME.node]
    first, second = others[0], others[1]
    times.on_received([_report(first, 10, 1_000)], 1_040)
    # A representative's batch later repeats it: the first arrival counts.
    times.on_received([_report(first, 10, 1_000), _report(second, 10, 1_010)], 1_300)
    carried = (_report(first, 10, 1_000), _report(second, 10, 1_010), _report(ME.node, 10, 999))
    got = times.on_block(_block(10, ME.node, carried), _parent(), INTERVAL)

    assert got.report_to_producer_ms == (40, 290, 0)  # our own report waited for nothing
    assert got.reports_due == len(due)
    carried_due = {first, second} | ({ME.node} if ME.node in due else set())
    assert got.reports_due_carried == len(carried_due)


def test_another_producer_s_block_is_counted_not_timed() -> None:
    times = ReportTimes(ME.node)
    other = IDS[1].node
    got = times.on_block(_block(10, other, (_report(other, 10, 5),)), _parent(), INTERVAL)
    assert got.report_to_producer_ms is None
    assert got.reports_due == sum(1 for i in IDS if is_report_due(i.node, 10, INTERVAL))
    # Without the parent state nothing is known to be due.
    assert times.on_block(_block(11, other, ()), None, INTERVAL).reports_due == 0


def test_a_report_never_received_counts_zero_and_old_arrivals_are_dropped() -> None:
    times = ReportTimes(ME.node)
    other = IDS[1].node
    # Carried, never seen arriving (the engine took it from elsewhere): no delay invented.
    got = times.on_block(_block(10, ME.node, (_report(other, 10, 7),)), None, INTERVAL)
    assert got.report_to_producer_ms == (0,)
    times.on_received([_report(other, 11, 0)], 50)
    times.on_block(_block(11 + KEEP_SLOTS + 1, ME.node, ()), None, INTERVAL)
    assert times.arrived_ms == {}
    late = _report(other, 30, 100)
    times.on_received([late], 90)  # a clock behind the author's: never negative
    assert times.on_block(_block(30, ME.node, (late,)), None, INTERVAL).report_to_producer_ms == (
        0,
    )
