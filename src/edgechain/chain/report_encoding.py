"""Canonical encoding of resource reports, with their app usages and the finality vote
they carry, and the reports' signing root (``tests/vectors/README.md``)."""

from __future__ import annotations

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import (
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

_APP_USAGE_SIZE = HASH_SIZE + 4 * 3 + 8 * 3


def write_app_usage(w: Writer, u: AppUsage) -> None:
    w.fixed(u.app, HASH_SIZE)
    w.u32(u.cpu_bp)
    w.u32(u.ram_bp)
    w.u32(u.disk_bp)
    w.u64(u.net_bps)
    w.u64(u.timestamp_ms)
    w.u64(u.state_bytes)


def read_app_usage(r: Reader) -> AppUsage:
    app = AppId(r.fixed(HASH_SIZE))
    cpu, ram, disk = r.u32(), r.u32(), r.u32()
    net, ts, state = r.u64(), r.u64(), r.u64()
    return AppUsage(app, cpu, ram, disk, net, ts, state_bytes=state)


def write_report_body(w: Writer, rep: ResourceReport) -> None:
    w.fixed(rep.node, HASH_SIZE)
    w.u64(rep.slot)
    w.u64(rep.timestamp_ms)
    w.u32(rep.cpu_bp)
    w.u32(rep.ram_bp)
    w.u32(rep.disk_bp)
    w.u32(rep.rtt_us)
    w.u32(rep.pressure_bp)
    w.i32(rep.coordinate.x_us)
    w.i32(rep.coordinate.y_us)
    w.u64(rep.state_room_bytes)
    w.items(rep.apps, write_app_usage)
    w.boolean(rep.vote is not None)
    if rep.vote is not None:
        _write_vote(w, rep.vote)


def write_checkpoint(w: Writer, c: Checkpoint) -> None:
    w.u64(c.epoch)
    w.fixed(c.block, HASH_SIZE)


def read_checkpoint(r: Reader) -> Checkpoint:
    epoch = r.u64()
    return Checkpoint(epoch, BlockHash(r.fixed(HASH_SIZE)))


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
    node = NodeId(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    ts = r.u64()
    cpu, ram, disk, rtt, pressure = r.u32(), r.u32(), r.u32(), r.u32(), r.u32()
    coordinate = Coordinate(r.i32(), r.i32())
    room = r.u64()
    apps = tuple(r.items(Limits.MAX_APPS_PER_REPORT, _APP_USAGE_SIZE, read_app_usage))
    vote = FinalityVote(read_checkpoint(r), read_checkpoint(r)) if r.boolean() else None
    sig = ReportSignature(r.fixed(REPORT_SIGNATURE_SIZE))
    return ResourceReport(
        node, slot, ts, cpu, ram, disk, rtt, apps, sig, pressure_bp=pressure, vote=vote,
        coordinate=coordinate, state_room_bytes=room,
    )  # fmt: skip


MIN_REPORT_SIZE = HASH_SIZE + 8 * 2 + 4 * 5 + 4 * 2 + 8 + 4 + 1 + REPORT_SIGNATURE_SIZE


def encode_report(rep: ResourceReport) -> bytes:
    return encode_with(rep, write_report)


def decode_report(data: bytes) -> ResourceReport:
    return decode_with(data, read_report)


def compute_report_signing_root(rep: ResourceReport) -> bytes:
    return compute_signing_root(b"edgechain/report/v4", rep, write_report_body)
