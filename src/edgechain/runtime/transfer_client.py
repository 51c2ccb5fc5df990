"""The origin side of a transfer: migrating an app out, and sending a state replica.

Migration (paper §3.3; DESIGN.md "Migration execution"): once a block is accepted, for
each plan entry whose origin is this node, offer the migration to the destination; only
on acceptance save the app (so a refusal costs nothing), stream the archive
zstd-compressed, wait for the destination's DONE, and only then end the local copy
(its state is kept where the runtime can, ``RetiringRuntime``: a reorg may give it back).
Any failure after the save (destination dead, stream broken, restore failed, timeout)
resumes the app here. An app is never lost; the one window in which it could run twice,
a DONE lost after the destination started the app, is closed by a re-send of the same
offer, which the destination answers ALREADY_RUNNING (idempotent) so the origin then
drops its copy.

Replica (DESIGN.md "Exactly once": a down node's apps are re-placed from their latest
replica): snapshot the app's state while it keeps running (frozen only while its state
dir is archived, ``ProcessRuntime.snapshot``), then offer it signed, with its hash and
size, to the app's replica node and stream it the same way. Nothing changes for the app
here, whatever the outcome; the snapshot archive is deleted afterwards.

Timing (for Table 3's comparison): ``save_ms`` is freezing/stopping the app and
archiving its state; ``transmit_ms`` runs from the first payload byte to the
destination's RECEIVED (compression, transfer, decompression and verification are
pipelined, so the paper's compress step is here); ``resume_ms`` runs from RECEIVED to
DONE (unpack, start; for a replica: storing it). The origin's end of its copy comes
after and is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import PeerError, RejectReason
from edgechain.runtime.base import (
    AppNotFoundError,
    AppRuntime,
    AppRuntimeError,
    RetiringRuntime,
    SavedState,
)
from edgechain.runtime.checkpoint import StateSnapshot
from edgechain.runtime.protocol import (
    ZSTD_LEVEL,
    Begin,
    FrameKind,
    Offer,
    ReplicaOffer,
    TransferError,
    Verdict,
    VerdictMessage,
    compute_offer_signing_root,
    compute_replica_signing_root,
    decode_nack,
    decode_verdict,
    encode_frame,
    encode_offer,
    encode_replica_offer,
    expect_frame,
)
from edgechain.runtime.replica import SnapshotRuntime, take_snapshot
from edgechain.runtime.transfer_common import (
    PayloadStream,
    ProgressCallback,
    TransferTimeouts,
    close_writer,
    ms_since,
    send_frame,
    send_payload,
)
from edgechain.types import AppId, BlockHash, NodeId, SecretKey


class MigrationOutcome(enum.Enum):
    COMPLETED = "completed"
    """The destination runs the app; the origin deleted its copy."""
    ALREADY_THERE = "already_there"
    """The destination runs the app already: a re-send after it ran the app from this
    block, or it started the app itself once it took us for down (``origin down``:
    refused ``app_already_running_here``); our copy ended, its state kept."""
    REFUSED = "refused"
    """Refused or unreachable before anything was saved; the app kept running here."""
    FAILED = "failed"
    """The migration broke; the app was resumed here, or left stopped (state kept) when
    it may not run here any more (``may_resume``: our fencing lease ran out meanwhile)."""


@dataclass(frozen=True)
class MigrationResult:
    """One migration as the origin saw it (paper Table 3's segments, in ms)."""

    app: AppId
    block_hash: BlockHash
    outcome: MigrationOutcome
    reason: str
    save_ms: float
    transmit_ms: float
    resume_ms: float
    raw_bytes: int
    compressed_bytes: int
    included_image: bool
    live: bool
    """True when the app was frozen in memory rather than stopped for the save."""

    @property
    def ok(self) -> bool:
        """True when the app now runs at the destination and not here."""
        return self.outcome in (MigrationOutcome.COMPLETED, MigrationOutcome.ALREADY_THERE)

    @property
    def total_ms(self) -> float:
        return self.save_ms + self.transmit_ms + self.resume_ms


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
class _Job:
    """One migration in progress at the origin (mutable, private)."""

    app: AppId
    block_hash: BlockHash
    offer: bytes
    host: str
    port: int
    stream: PayloadStream
    may_resume: Callable[[], bool]
    save_ms: float = 0.0
    raw_bytes: int = 0
    included_image: bool = False
    live: bool = False

    def get_result(self, outcome: MigrationOutcome, reason: str) -> MigrationResult:
        return MigrationResult(
            self.app,
            self.block_hash,
            outcome,
            reason,
            self.save_ms,
            self.stream.transmit_ms,
            self.stream.resume_ms,
            self.raw_bytes,
            self.stream.compressed_bytes,
            self.included_image,
            self.live,
        )


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


class TransferClient:
    """The origin side: migrates apps of ``runtime`` to other nodes' servers, and sends
    snapshots of its apps' state to their replica nodes."""

    def __init__(
        self,
        runtime: AppRuntime,
        *,
        timeouts: TransferTimeouts | None = None,
        zstd_level: int = ZSTD_LEVEL,
        sk: SecretKey | None = None,
    ) -> None:
        self.runtime = runtime
        self.timeouts = timeouts or TransferTimeouts()
        self.zstd_level = zstd_level
        self.sk = sk
        """The origin node's key: signs every offer so destinations can authenticate it."""
        self.node_id: NodeId | None = compute_node_id(bls.sk_to_pk(sk)) if sk is not None else None
        """This node's id (from ``sk``): the origin a replica offer names."""
        self._locks: dict[AppId, asyncio.Lock] = {}
        """One transfer per app at a time: a replica never overlaps a migration."""

    async def migrate(
        self,
        block_hash: BlockHash,
        entry: PlanEntry,
        spec: AppSpec,
        host: str,
        port: int,
        *,
        on_progress: ProgressCallback | None = None,
        may_resume: Callable[[], bool] = lambda: True,
    ) -> MigrationResult:
        """Carry out one plan entry whose origin is this node; never loses the app.

        Raises ``AppNotFoundError`` when the runtime does not hold the app (a local
        matter: the planner will see it in the next reports). A held app that is not
        running (this node restarted before it handed the app over) is handed over as
        its state stands. Every peer-side failure is a result with outcome REFUSED or
        FAILED, the app running here when ``may_resume()`` allows it, else stopped with
        its state kept: a node paused mid-transfer for longer than its fencing lease
        finds the transfer broken when it runs again, and the chain may have started the
        app at the destination meanwhile (``origin down``). A destination that refuses
        because it already runs the app (``app_already_running_here``: it started the
        app itself after taking us for down) ends our copy: outcome ALREADY_THERE.

        Cancelled, it resumes a saved app here when ``may_resume()`` says so (a node
        stopping); otherwise (the chain re-placed the app on a third node meanwhile) the
        app stays as the save left it, stopped or paused, and the caller stops it:
        resuming it would run it beside the copy the chain started.
        """
        app = entry.app
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            if not await asyncio.to_thread(self._holds, app):
                raise AppNotFoundError(f"app {bytes(app).hex()[:16]} is not held here")
            signature = (
                bls.sign(self.sk, compute_offer_signing_root(block_hash, entry, spec))
                if self.sk is not None
                else b""
            )
            offer = encode_frame(
                FrameKind.OFFER, encode_offer(Offer(block_hash, entry, spec, signature))
            )
            job = _Job(app, block_hash, offer, host, port, PayloadStream(on_progress), may_resume)
            return await self._migrate(job)

    async def send_replica(
        self,
        app: AppId,
        slot: int,
        host: str,
        port: int,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> ReplicaResult:
        """Snapshot ``app`` (it keeps running here) and send it to the replica node at
        ``host:port`` as the replica of ``slot``.

        Raises ``AppNotFoundError`` when the runtime does not hold the app (running or
        stopped), and ``AppRuntimeError`` when this client has no key (a replica must
        name and prove its origin) or its runtime takes no snapshots. Everything else is
        a result: REFUSED (the replica node said no, or is unreachable) or FAILED (the
        snapshot or the stream broke); the replica node then keeps its previous replica.
        """
        runtime = self.runtime
        if self.sk is None or self.node_id is None:
            raise AppRuntimeError("a replica must be signed: this transfer client has no key")
        if not isinstance(runtime, SnapshotRuntime):
            raise AppRuntimeError(f"the {runtime.kind.value} runtime takes no snapshots")
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            job = _ReplicaJob(app, slot, PayloadStream(on_progress))
            start = time.perf_counter()
            taking = asyncio.ensure_future(asyncio.to_thread(take_snapshot, runtime, app))
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
                root = compute_replica_signing_root(
                    app, self.node_id, slot, digest, snapshot.raw_bytes
                )
                offer = ReplicaOffer(
                    app, self.node_id, slot, digest, snapshot.raw_bytes, bls.sign(self.sk, root)
                )
                frame = encode_frame(FrameKind.REPLICA, encode_replica_offer(offer))
                return await self._send_replica(job, frame, snapshot.archive, host, port)
            finally:
                snapshot.archive.unlink(missing_ok=True)

    async def _send_replica(
        self, job: _ReplicaJob, offer: bytes, archive: Path, host: str, port: int
    ) -> ReplicaResult:
        try:
            reader, writer, verdict = await send_offer(host, port, offer, self.timeouts)
        except PeerError as exc:
            return job.get_result(ReplicaOutcome.REFUSED, str(exc))
        try:
            if verdict.verdict is not Verdict.ACCEPT:
                return job.get_result(ReplicaOutcome.REFUSED, verdict.reason or "refused")
            await send_payload(
                reader,
                writer,
                archive,
                Begin(job.raw_bytes, False),
                job.stream,
                self.timeouts,
                self.zstd_level,
            )
        except (PeerError, OSError) as exc:
            return job.get_result(ReplicaOutcome.FAILED, str(exc))
        finally:
            await close_writer(writer)
        return job.get_result(ReplicaOutcome.STORED, "")

    async def _migrate(self, job: _Job) -> MigrationResult:
        try:
            reader, writer, verdict = await send_offer(job.host, job.port, job.offer, self.timeouts)
        except PeerError as exc:
            return job.get_result(MigrationOutcome.REFUSED, str(exc))
        if verdict.verdict is Verdict.REFUSED:
            await close_writer(writer)
            if verdict.reason == RejectReason.APP_ALREADY_RUNNING_HERE.value:
                # The destination planned this move and runs the app without our state:
                # it started it itself while the chain took us for down. Offering again
                # would never end, and our copy must not run beside it.
                await asyncio.to_thread(self._let_go, job.app)
                return job.get_result(MigrationOutcome.ALREADY_THERE, verdict.reason)
            return job.get_result(MigrationOutcome.REFUSED, verdict.reason)
        if verdict.verdict is Verdict.ALREADY_RUNNING:
            await close_writer(writer)
            await asyncio.to_thread(self._let_go, job.app)
            return job.get_result(MigrationOutcome.ALREADY_THERE, "re-send")

        saved: SavedState | None = None
        saving: asyncio.Future[SavedState] | None = None
        try:
            start = time.perf_counter()
            saving = asyncio.ensure_future(
                asyncio.to_thread(self.runtime.save, job.app, include_image=verdict.need_image)
            )
            # Shielded: a cancellation must not leave the save's thread running unseen
            # (the handler below waits for it, then decides what the app becomes).
            saved = await asyncio.shield(saving)
            job.save_ms = ms_since(start)
            job.raw_bytes, job.live = saved.raw_bytes, saved.live
            job.included_image = saved.includes_image
            begin = Begin(saved.raw_bytes, saved.includes_image)
            await send_payload(
                reader, writer, saved.archive, begin, job.stream, self.timeouts, self.zstd_level
            )
        except (PeerError, AppRuntimeError, OSError) as exc:
            reason = str(exc)
            await close_writer(writer)
            if saved is None:
                # save itself failed (and resumed the app): nothing left the node.
                return job.get_result(MigrationOutcome.FAILED, reason)
            return await self._recover(job, reason)
        except BaseException:
            # Cancelled (node stopping, or the head re-placed the app) or our own bug.
            await close_writer(writer)
            if saved is None and saving is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    saved = await asyncio.shield(saving)  # a failed save resumed the app
            if saved is not None and job.may_resume():
                await asyncio.to_thread(self.runtime.resume, job.app)
            raise
        await close_writer(writer)
        await asyncio.to_thread(self._let_go, job.app)
        return job.get_result(MigrationOutcome.COMPLETED, "")

    def _holds(self, app: AppId) -> bool:
        """Blocking: does the runtime hold ``app`` (running or not)?"""
        return any(info.app == app for info in self.runtime.list())

    def _let_go(self, app: AppId) -> None:
        """Blocking: the destination runs the app now. End ours; keep its state when the
        runtime can (``RetiringRuntime``: a reorg may give the app back), else delete."""
        if isinstance(self.runtime, RetiringRuntime):
            self.runtime.retire(app)
        else:
            self.runtime.remove(app)

    async def _recover(self, job: _Job, reason: str) -> MigrationResult:
        """After a failure past the save: confirm by re-send, else resume here (or
        stop, when the app may no longer run here: ``_resume_or_stop``)."""
        if job.stream.end_sent:
            # The whole payload left: the destination may have started the app and lost
            # only the DONE. The same offer again is idempotent and tells us which.
            with contextlib.suppress(PeerError):
                _, writer, verdict = await send_offer(job.host, job.port, job.offer, self.timeouts)
                await close_writer(writer)
                if verdict.verdict is Verdict.ALREADY_RUNNING:
                    await asyncio.to_thread(self._let_go, job.app)
                    return job.get_result(MigrationOutcome.COMPLETED, "confirmed by re-send")
        await asyncio.to_thread(self._resume_or_stop, job)
        return job.get_result(MigrationOutcome.FAILED, reason)

    def _resume_or_stop(self, job: _Job) -> None:
        """Blocking: the saved app runs here again if ``job.may_resume()``; otherwise it
        is stopped, state kept, and the next offer sends that state as it stands."""
        if job.may_resume():
            self.runtime.resume(job.app)
        else:
            self.runtime.stop(job.app)


async def send_offer(
    host: str, port: int, offer: bytes, timeouts: TransferTimeouts
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, VerdictMessage]:
    """Connect to a transfer server, send an OFFER frame and read its verdict; the
    connection stays open for the payload. Raises ``TransferError`` (a PeerError)."""
    try:
        connecting = asyncio.open_connection(host, port)
        reader, writer = await asyncio.wait_for(connecting, timeouts.connect_s)
    except TimeoutError:
        raise TransferError(RejectReason.CONNECT_TIMEOUT, f"{host}:{port}") from None
    except OSError as exc:
        raise TransferError(RejectReason.CONNECT_FAILED, str(exc)) from None
    try:
        await send_frame(writer, offer, timeouts.io_s)
        kind, body = await expect_frame(reader, timeouts.io_s, FrameKind.VERDICT)
        if kind is FrameKind.NACK:
            verdict = VerdictMessage(Verdict.REFUSED, False, decode_nack(body))
        else:
            verdict = decode_verdict(body)
    except BaseException:
        await close_writer(writer)
        raise
    return reader, writer, verdict
