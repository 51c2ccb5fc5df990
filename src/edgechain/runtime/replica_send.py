"""Sending a state replica (DESIGN.md "Exactly once": a down node's apps are re-placed
from their latest replica): the app's host snapshots the app's state while it keeps
running (frozen only while its state dir is archived, ``ProcessRuntime.snapshot``),
then offers it signed, with its hash and size, to the app's replica node and streams it
the way a migration streams its archive. Nothing changes for the app here, whatever the
outcome; the snapshot archive is deleted afterwards.

``TransferClient.send_replica`` calls :func:`send_replica` under the app's transfer
lock, so a replica never overlaps a migration of the same app.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgechain.crypto import bls
from edgechain.errors import PeerError, RejectReason
from edgechain.runtime.base import AppNotFoundError, AppRuntime, AppRuntimeError
from edgechain.runtime.checkpoint import StateSnapshot
from edgechain.runtime.protocol import (
    Begin,
    FrameKind,
    ReplicaOffer,
    Verdict,
    compute_replica_signing_root,
    encode_frame,
    encode_replica_offer,
)
from edgechain.runtime.replica import ReplicaInfo, SnapshotRuntime, take_snapshot
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer_common import (
    PayloadStream,
    ProgressCallback,
    TransferTimeouts,
    close_writer,
    ms_since,
    send_offer,
    send_payload,
)
from edgechain.types import AppId, NodeId, SecretKey


class ReplicaOutcome(enum.Enum):
    STORED = "stored"
    """The replica node verified and stored the snapshot."""
    REFUSED = "refused"
    """Refused (or the replica node unreachable) before the payload was sent."""
    FAILED = "failed"
    """The snapshot or the stream failed; the replica node kept what it had."""


@dataclass(frozen=True)
class ReplicaResult:
    """One replica as the app's host saw it (the app ran on throughout)."""

    app: AppId
    slot: int
    outcome: ReplicaOutcome
    reason: str
    save_ms: float
    """Snapshot: checkpoint hook, freeze, archive, resume, then hashing the archive."""
    paused_ms: float
    """The part of ``save_ms`` the app was frozen for (0 when it was not running)."""
    transmit_ms: float
    store_ms: float
    """From the replica node's RECEIVED to its DONE (the replica is on its disk)."""
    raw_bytes: int
    compressed_bytes: int
    sha256: bytes
    frozen: bool
    """True when the app was running and frozen for the copy; False: archived as it
    stood (stopped, or already paused)."""

    @property
    def ok(self) -> bool:
        return self.outcome is ReplicaOutcome.STORED

    @property
    def total_ms(self) -> float:
        return self.save_ms + self.transmit_ms + self.store_ms


@dataclass
class _ReplicaJob:
    """One replica in progress at the app's host (mutable, private)."""

    app: AppId
    slot: int
    stream: PayloadStream = field(default_factory=PayloadStream)
    save_ms: float = 0.0
    paused_ms: float = 0.0
    raw_bytes: int = 0
    sha256: bytes = b""
    frozen: bool = False

    def get_result(self, outcome: ReplicaOutcome, reason: str) -> ReplicaResult:
        return ReplicaResult(
            self.app,
            self.slot,
            outcome,
            reason,
            self.save_ms,
            self.paused_ms,
            self.stream.transmit_ms,
            self.stream.resume_ms,
            self.raw_bytes,
            self.stream.compressed_bytes,
            self.sha256,
            self.frozen,
        )


def _drop_snapshot(taking: asyncio.Future[tuple[StateSnapshot, bytes]]) -> None:
    """Delete the archive of a snapshot nobody waits for any more."""
    if not taking.cancelled() and taking.exception() is None:
        taking.result()[0].archive.unlink(missing_ok=True)


async def send_replica(
    runtime: AppRuntime,
    sk: SecretKey | None,
    origin: NodeId | None,
    app: AppId,
    slot: int,
    host: str,
    port: int,
    timeouts: TransferTimeouts,
    zstd_level: int,
    on_progress: ProgressCallback | None = None,
) -> ReplicaResult:
    """Snapshot ``app`` (it keeps running here) and send it, signed with ``sk`` as
    ``origin`` (this node: the id of ``sk``'s public key), to the
    replica node at ``host:port`` as the replica of ``slot``.

    Raises ``AppNotFoundError`` when the runtime does not hold the app (running or
    stopped), and ``AppRuntimeError`` when there is no key (a replica must name and
    prove its origin) or the runtime takes no snapshots. Everything else is a result:
    REFUSED (the replica node said no, or is unreachable) or FAILED (the snapshot or the
    stream broke); the replica node then keeps its previous replica.
    """
    if sk is None or origin is None:
        raise AppRuntimeError("a replica must be signed: this transfer client has no key")
    if not isinstance(runtime, SnapshotRuntime):
        raise AppRuntimeError(f"the {runtime.kind.value} runtime takes no snapshots")
    job = _ReplicaJob(app, slot, PayloadStream(on_progress))
    start = time.perf_counter()
    taking = asyncio.ensure_future(run_in_thread(take_snapshot, runtime, app))
    try:
        snapshot, digest = await asyncio.shield(taking)
    except asyncio.CancelledError:
        taking.add_done_callback(_drop_snapshot)  # the thread runs on: clean up after
        raise
    except AppNotFoundError:
        raise
    except (AppRuntimeError, OSError) as exc:
        job.save_ms = ms_since(start)
        return job.get_result(ReplicaOutcome.FAILED, f"snapshot_failed: {exc}")
    job.save_ms = ms_since(start)
    job.paused_ms, job.frozen = snapshot.paused_ms, snapshot.frozen
    job.raw_bytes, job.sha256 = snapshot.raw_bytes, digest
    try:
        root = compute_replica_signing_root(app, origin, slot, digest, snapshot.raw_bytes)
        offer = ReplicaOffer(app, origin, slot, digest, snapshot.raw_bytes, bls.sign(sk, root))
        frame = encode_frame(FrameKind.REPLICA, encode_replica_offer(offer))
        return await _send(job, frame, snapshot.archive, host, port, timeouts, zstd_level)
    finally:
        snapshot.archive.unlink(missing_ok=True)


async def hand_off_replica(
    info: ReplicaInfo,
    host: str,
    port: int,
    timeouts: TransferTimeouts,
    zstd_level: int,
    on_progress: ProgressCallback | None = None,
) -> ReplicaResult:
    """Send a stored replica (``info``, checked out so its archive stays put) on to the
    node at ``host:port``, under the signature of the origin that took it: the
    receiver checks it as if the origin sent it (``replication.Replicator.get_handoffs``).
    Raises ``AppRuntimeError`` for a replica stored without its signature."""
    if not info.signature:
        raise AppRuntimeError("this replica was stored without its origin's signature")
    job = _ReplicaJob(info.app, info.slot, PayloadStream(on_progress))
    job.raw_bytes, job.sha256 = info.raw_bytes, info.sha256
    offer = ReplicaOffer(
        info.app, info.origin, info.slot, info.sha256, info.raw_bytes, info.signature
    )
    frame = encode_frame(FrameKind.REPLICA, encode_replica_offer(offer))
    return await _send(job, frame, info.path, host, port, timeouts, zstd_level)


async def _send(
    job: _ReplicaJob,
    offer: bytes,
    archive: Path,
    host: str,
    port: int,
    timeouts: TransferTimeouts,
    zstd_level: int,
) -> ReplicaResult:
    try:
        reader, writer, verdict = await send_offer(host, port, offer, timeouts)
    except PeerError as exc:
        return job.get_result(ReplicaOutcome.REFUSED, str(exc))
    try:
        if verdict.verdict is not Verdict.ACCEPT:
            return job.get_result(ReplicaOutcome.REFUSED, verdict.reason or "refused")
        begin = Begin(job.raw_bytes, False)
        await send_payload(reader, writer, archive, begin, job.stream, timeouts, zstd_level)
    except PeerError as exc:
        if exc.reason is RejectReason.NACK and exc.detail == RejectReason.STALE_SLOT:
            # A newer replica landed there meanwhile: refused as at the offer.
            return job.get_result(ReplicaOutcome.REFUSED, RejectReason.STALE_SLOT.value)
        return job.get_result(ReplicaOutcome.FAILED, str(exc))
    except OSError as exc:
        return job.get_result(ReplicaOutcome.FAILED, str(exc))
    finally:
        await close_writer(writer)
    return job.get_result(ReplicaOutcome.STORED, "")
