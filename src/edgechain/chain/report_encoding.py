"""Canonical encoding of resource reports, with their app usages and the finality vote
they carry, and the reports' signing root (``tests/vectors/README.md``)."""

from __future__ import annotations

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import (
    Layout,
    Reader,
    Writer,
    compute_signing_root,
    decode_with,
    encode_with,
)
from edgechain.chain.model import AppUsage, Checkpoint, Coordinate, FinalityVote, ResourceReport
from edgechain.chain.recent_encodings import RecentEncodings
from edgechain.types import (
    HASH_SIZE,
    REPORT_SIGNATURE_SIZE,
    AppId,
    BlockHash,
    NodeId,
    ReportSignature,
    Slot,
)

_APP_USAGE = Layout(f">{HASH_SIZE}sIIIQQQ")
"""An app usage: app id, CPU, RAM and disk shares, net bytes/s, timestamp, state bytes."""
_APP_USAGE_SIZE = _APP_USAGE.size

_REPORT_HEAD = Layout(f">{HASH_SIZE}sQQIIIIIiiQ")
"""A report's fixed fields: node, slot, timestamp, CPU, RAM and disk shares, RTT,
pressure, the coordinate's x and y, state room. One ``struct`` call each way instead
of one a field: every node decodes every block's reports (issue 13)."""

_CHECKPOINT = Layout(f">Q{HASH_SIZE}s")


def write_app_usage(w: Writer, u: AppUsage) -> None:
    w.record(
        _APP_USAGE, u.app, u.cpu_bp, u.ram_bp, u.disk_bp, u.net_bps, u.timestamp_ms,
        u.state_bytes,
    )  # fmt: skip


def read_app_usage(r: Reader) -> AppUsage:
    app, cpu, ram, disk, net, ts, state = r.record(_APP_USAGE)
    return AppUsage(AppId(app), cpu, ram, disk, net, ts, state_bytes=state)


def write_report_body(w: Writer, rep: ResourceReport) -> None:
    w.record(
        _REPORT_HEAD, rep.node, rep.slot, rep.timestamp_ms, rep.cpu_bp, rep.ram_bp,
        rep.disk_bp, rep.rtt_us, rep.pressure_bp, rep.coordinate.x_us, rep.coordinate.y_us,
        rep.state_room_bytes,
    )  # fmt: skip
    w.items(rep.apps, write_app_usage)
    w.boolean(rep.vote is not None)
    if rep.vote is not None:
        _write_vote(w, rep.vote)


def write_checkpoint(w: Writer, c: Checkpoint) -> None:
    w.record(_CHECKPOINT, c.epoch, c.block)


def read_checkpoint(r: Reader) -> Checkpoint:
    epoch, block = r.record(_CHECKPOINT)
    return Checkpoint(epoch, BlockHash(block))


def _write_vote(w: Writer, vote: FinalityVote) -> None:
    write_checkpoint(w, vote.source)
    write_checkpoint(w, vote.target)


def encode_finality_vote(vote: FinalityVote) -> bytes:
    """A node's last vote as it persists it (``consensus/finality_votes.py``)."""
    return encode_with(vote, _write_vote)


def decode_finality_vote(data: bytes) -> FinalityVote:
    return decode_with(data, lambda r: FinalityVote(read_checkpoint(r), read_checkpoint(r)))


RECENT_REPORTS = RecentEncodings[ResourceReport](4096)
"""Reports whose bytes :func:`write_report` remembers: every block's ``state_root``
encodes the state's latest report of each validator, most of them the previous block's
(``chain/recent_encodings.py``). Room for a few thousand validators' reports."""


def write_report(w: Writer, rep: ResourceReport) -> None:
    data = RECENT_REPORTS.get(rep)
    if data is None:
        own = Writer()
        write_report_body(own, rep)
        own.fixed(rep.signature, REPORT_SIGNATURE_SIZE)
        data = bytes(own.buf)
        RECENT_REPORTS.put(rep, data)
    w.buf += data


def read_report(r: Reader) -> ResourceReport:
    node, slot, ts, cpu, ram, disk, rtt, pressure, x, y, room = r.record(_REPORT_HEAD)
    apps = tuple(r.items(Limits.MAX_APPS_PER_REPORT, _APP_USAGE_SIZE, read_app_usage))
    vote = FinalityVote(read_checkpoint(r), read_checkpoint(r)) if r.boolean() else None
    sig = ReportSignature(r.fixed(REPORT_SIGNATURE_SIZE))
    return ResourceReport(
        NodeId(node), Slot(slot), ts, cpu, ram, disk, rtt, apps, sig, pressure_bp=pressure,
        vote=vote, coordinate=Coordinate(x, y), state_room_bytes=room,
    )  # fmt: skip


MIN_REPORT_SIZE = HASH_SIZE + 8 * 2 + 4 * 5 + 4 * 2 + 8 + 4 + 1 + REPORT_SIGNATURE_SIZE


def encode_report(rep: ResourceReport) -> bytes:
    return encode_with(rep, write_report)


def decode_report(data: bytes) -> ResourceReport:
    return decode_with(data, read_report)


def compute_report_signing_root(rep: ResourceReport) -> bytes:
    return compute_signing_root(b"edgechain/report/v4", rep, write_report_body)
