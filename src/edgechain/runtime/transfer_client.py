"""The origin side of a transfer: migrating an app out (and, through
``replica_send.py``, sending a state replica).

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

Pre-copy (``runtime/precopy.py``): when the destination offers it and the app's state
is large (``precopy_min_bytes``), the state is first sent in rounds while the app runs
on (``precopy_rounds.py``; a failure then costs nothing but the attempt), and the save
freezes the app only for a final delta of what changed; everything after is as above.

Timing (for Table 3's comparison): ``save_ms`` is freezing/stopping the app and
archiving its state (with pre-copy: writing the final delta); ``transmit_ms`` runs from
the first payload byte to the destination's RECEIVED (compression, transfer,
decompression and verification are pipelined, so the paper's compress step is here);
``resume_ms`` runs from RECEIVED to DONE (unpack, start). The origin's end of its copy
comes after and is not counted; the pre-copy rounds are ``precopy_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    is_held,
)
from edgechain.runtime.precopy import MIN_STATE_BYTES, PrecopyUnsupportedError
from edgechain.runtime.precopy_rounds import (
    PrecopyDone,
    get_precopy_dirs,
    save_final_round,
    send_running_rounds,
)
from edgechain.runtime.protocol import (
    ZSTD_LEVEL,
    Begin,
    FrameKind,
    Offer,
    Verdict,
    VerdictMessage,
    compute_offer_signing_root,
    encode_frame,
    encode_offer,
)
from edgechain.runtime.replica import ReplicaInfo
from edgechain.runtime.replica_send import ReplicaResult, hand_off_replica, send_replica
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
    precopy_rounds: int = 0
    """Pre-copy rounds sent while the app ran (``runtime/precopy.py``); then the save,
    transmit and resume segments are the frozen final round's alone."""
    precopy_ms: float = 0.0
    """How long those rounds took (the app ran meanwhile)."""
    precopy_bytes: int = 0
    """Compressed bytes those rounds sent."""

    @property
    def ok(self) -> bool:
        """True when the app now runs at the destination and not here."""
        return self.outcome in (MigrationOutcome.COMPLETED, MigrationOutcome.ALREADY_THERE)

    @property
    def total_ms(self) -> float:
        return self.save_ms + self.transmit_ms + self.resume_ms


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
    precopy: PrecopyDone | None = None

    def get_result(self, outcome: MigrationOutcome, reason: str) -> MigrationResult:
        pre = self.precopy
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
            pre.rounds if pre else 0,
            pre.elapsed_ms if pre else 0.0,
            pre.compressed_bytes if pre else 0,
        )


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
        precopy_min_bytes: int | None = MIN_STATE_BYTES,
    ) -> None:
        self.runtime = runtime
        self.timeouts = timeouts or TransferTimeouts()
        self.zstd_level = zstd_level
        self.precopy_min_bytes = precopy_min_bytes
        """Pre-copy an app whose state is at least this large, when the destination
        offers it (``runtime/precopy.py``); None: never."""
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
            if not await run_in_thread(self._holds, app):
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
        ``host:port`` as the replica of ``slot`` (``replica_send.send_replica``); never
        while a migration of the same app is under way."""
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            return await send_replica(
                self.runtime,
                self.sk,
                self.node_id,
                app,
                slot,
                host,
                port,
                self.timeouts,
                self.zstd_level,
                on_progress,
            )

    async def hand_off_replica(self, info: ReplicaInfo, host: str, port: int) -> ReplicaResult:
        """Send the stored replica ``info`` (checked out) on to ``host:port`` under its
        origin's signature (``replica_send.hand_off_replica``)."""
        lock = self._locks.setdefault(info.app, asyncio.Lock())
        async with lock:
            return await hand_off_replica(info, host, port, self.timeouts, self.zstd_level)

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
                await run_in_thread(self._let_go, job.app)
                return job.get_result(MigrationOutcome.ALREADY_THERE, verdict.reason)
            return job.get_result(MigrationOutcome.REFUSED, verdict.reason)
        if verdict.verdict is Verdict.ALREADY_RUNNING:
            await close_writer(writer)
            await run_in_thread(self._let_go, job.app)
            return job.get_result(MigrationOutcome.ALREADY_THERE, "re-send")

        try:
            # While the app runs on here: a failure costs nothing but the attempt.
            job.precopy = await self._precopy(job, reader, writer, verdict)
        except (PeerError, AppRuntimeError, OSError) as exc:
            await close_writer(writer)
            return job.get_result(MigrationOutcome.FAILED, f"precopy: {exc}")
        except BaseException:
            await close_writer(writer)
            raise
        saved: SavedState | None = None
        saving: asyncio.Future[SavedState] | None = None
        try:
            start = time.perf_counter()
            saving = asyncio.ensure_future(run_in_thread(self._save, job, verdict.need_image))
            # Shielded: a cancellation must not leave the save's thread running unseen
            # (the handler below waits for it, then decides what the app becomes).
            saved = await asyncio.shield(saving)
            job.save_ms = ms_since(start)
            job.raw_bytes, job.live = saved.raw_bytes, saved.live
            job.included_image = saved.includes_image
            begin = Begin(saved.raw_bytes, saved.includes_image, saved.delta, saved.delta)
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
                await run_in_thread(self.runtime.resume, job.app)
            raise
        finally:
            if saved is not None and saved.delta:
                saved.archive.unlink(missing_ok=True)
        await close_writer(writer)
        await run_in_thread(self._let_go, job.app)
        return job.get_result(MigrationOutcome.COMPLETED, "")

    async def _precopy(
        self,
        job: _Job,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        verdict: VerdictMessage,
    ) -> PrecopyDone | None:
        """The pre-copy rounds, when the destination offers them and the app's state is
        large enough; None: a plain migration (also when the state holds what a delta
        cannot carry: the plain archive that follows replaces any rounds sent)."""
        limit = self.precopy_min_bytes
        if not verdict.precopy or limit is None:
            return None
        dirs = await run_in_thread(get_precopy_dirs, self.runtime, job.app, limit)
        if dirs is None:
            return None
        try:
            return await send_running_rounds(
                reader, writer, dirs, self.timeouts, self.zstd_level, job.stream.on_progress
            )
        except PrecopyUnsupportedError:
            return None

    def _save(self, job: _Job, need_image: bool) -> SavedState:
        """Blocking: freeze or stop the app and write what the destination still needs
        (the final delta after pre-copy rounds, else the whole archive)."""
        if job.precopy is not None:
            return save_final_round(self.runtime, job.app, job.precopy, include_image=need_image)
        return self.runtime.save(job.app, include_image=need_image)

    def _holds(self, app: AppId) -> bool:
        """Blocking: does the runtime hold ``app`` (running or not)?"""
        return is_held(self.runtime, app)

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
                    await run_in_thread(self._let_go, job.app)
                    return job.get_result(MigrationOutcome.COMPLETED, "confirmed by re-send")
        await run_in_thread(self._resume_or_stop, job)
        return job.get_result(MigrationOutcome.FAILED, reason)

    def _resume_or_stop(self, job: _Job) -> None:
        """Blocking: the saved app runs here again if ``job.may_resume()``; otherwise it
        is stopped, state kept, and the next offer sends that state as it stands."""
        if job.may_resume():
            self.runtime.resume(job.app)
        else:
            self.runtime.stop(job.app)
