"""Migration transfer, node to node over TCP (paper §3.3; DESIGN.md "Migration execution").

Origin (:class:`TransferClient`): once a block is accepted, for each plan entry whose
origin is this node, offer the migration to the destination; only on acceptance save
the app (so a refusal costs nothing), stream the archive zstd-compressed, wait for the
destination's DONE, and only then delete the local copy. Any failure after the save
(destination dead, stream broken, restore failed, timeout) resumes the app here. An
app is never lost; the one window in which it could run twice, a DONE lost after the
destination started the app, is closed by a re-send of the same offer, which the
destination answers ALREADY_RUNNING (idempotent) so the origin then drops its copy.

Destination (:class:`TransferServer`): accepts only a transfer that matches a plan
entry of its accepted chain (an injected :data:`PlanCheck`, so this layer needs no
chain code), that names it as destination and whose spec hashes to the entry's app
id; bounds and verifies everything it reads, restores and starts the app, then
acknowledges. If it cannot tell the origin, it rolls the restore back.

Timing (for Table 3's comparison): ``save_ms`` is freezing/stopping the app and
archiving its state; ``transmit_ms`` runs from the first payload byte to the
destination's RECEIVED (compression, transfer, decompression and verification are
pipelined, so the paper's compress step is here); ``resume_ms`` runs from RECEIVED to
DONE (unpack, start). The origin's deletion of its copy comes after and is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from edgechain.chain.model import AppSpec, PlanAction, PlanEntry
from edgechain.crypto import bls
from edgechain.errors import DecodeError, PeerError
from edgechain.runtime.base import (
    AppNotFoundError,
    AppRuntime,
    AppRuntimeError,
    SavedState,
    get_app_dirname,
)
from edgechain.runtime.protocol import (
    CHUNK_BYTES,
    DEFAULT_MAX_STATE_BYTES,
    READ_BYTES,
    ZSTD_LEVEL,
    Begin,
    End,
    FrameKind,
    Offer,
    TransferError,
    Verdict,
    VerdictMessage,
    compute_offer_signing_root,
    decode_begin,
    decode_end,
    decode_nack,
    decode_offer,
    decode_verdict,
    encode_begin,
    encode_end,
    encode_frame,
    encode_nack,
    encode_offer,
    encode_verdict,
    expect_frame,
    read_frame,
)
from edgechain.types import AppId, BlockHash, NodeId, SecretKey

_log = logging.getLogger(__name__)

_REPLY_WAIT_S = 24 * 3600.0
"""The origin's early-reply listener only ends with the stream (bounded by io_s there)."""

_LINGER_S = 2.0
"""After a NACK, how long the destination keeps reading (and dropping) what the origin
still sends, so that closing does not reset the connection before the NACK is read."""

PlanCheck = Callable[[BlockHash, PlanEntry], bool | Awaitable[bool]]
OriginCheck = Callable[[NodeId, bytes, bytes], bool]
"""``verify_origin(origin, message, signature)``: did the validator ``origin`` sign it?"""
"""``is_planned(block_hash, entry)``: is ``entry`` in the plan of an accepted block?"""

SpecCheck = Callable[[AppId, AppSpec], bool]
"""``is_spec_current(app, spec)``: is ``spec`` what the chain records for ``app``?"""

ProgressCallback = Callable[[int], None]
"""Called by the origin with the compressed bytes sent so far, after each DATA frame."""


@dataclass(frozen=True)
class TransferTimeouts:
    connect_s: float = 5.0
    io_s: float = 15.0
    """Longest silence tolerated on any read or write (a stalled or dead peer)."""
    restore_s: float = 120.0
    """How long the origin waits for DONE after RECEIVED (restore may load an image)."""


class MigrationOutcome(enum.Enum):
    COMPLETED = "completed"
    """The destination runs the app; the origin deleted its copy."""
    ALREADY_THERE = "already_there"
    """Re-send: the destination already ran the app from this block; copy deleted."""
    REFUSED = "refused"
    """Refused or unreachable before anything was saved; the app kept running here."""
    FAILED = "failed"
    """The migration broke; the app was resumed here."""


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


@dataclass(frozen=True)
class ServerStats:
    """Counters of a :class:`TransferServer` (for telemetry and tests)."""

    completed: int
    already_running: int
    refused: int
    failed: int


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def _retrieve_exception(task: asyncio.Future[tuple[FrameKind, bytes]]) -> None:
    if not task.cancelled():
        task.exception()


def _is_peer_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True when the peer closed or reset the connection (it sends nothing more)."""
    return reader.at_eof() or reader.exception() is not None or writer.transport.is_closing()


async def _drain_until_eof(reader: asyncio.StreamReader, limit_s: float) -> None:
    """Read and drop until the peer closes, for at most ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    with contextlib.suppress(Exception):
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(1 << 20), left):
                return


async def _send(writer: asyncio.StreamWriter, frame: bytes, timeout_s: float) -> None:
    writer.write(frame)
    try:
        await asyncio.wait_for(writer.drain(), timeout_s)
    except TimeoutError:
        raise TransferError("timeout", "peer stopped reading") from None
    except (ConnectionError, OSError) as exc:
        raise TransferError("connection_error", str(exc)) from None


# --- origin ----------------------------------------------------------------------------


@dataclass
class _Job:
    """One migration in progress at the origin (mutable, private)."""

    app: AppId
    block_hash: BlockHash
    offer: bytes
    host: str
    port: int
    on_progress: ProgressCallback | None
    save_ms: float = 0.0
    transmit_ms: float = 0.0
    resume_ms: float = 0.0
    raw_bytes: int = 0
    compressed_bytes: int = 0
    included_image: bool = False
    live: bool = False
    end_sent: bool = False
    """The whole payload left: the destination may run the app even if DONE is lost."""

    def get_result(self, outcome: MigrationOutcome, reason: str) -> MigrationResult:
        return MigrationResult(
            self.app,
            self.block_hash,
            outcome,
            reason,
            self.save_ms,
            self.transmit_ms,
            self.resume_ms,
            self.raw_bytes,
            self.compressed_bytes,
            self.included_image,
            self.live,
        )


class TransferClient:
    """The origin side: migrates apps of ``runtime`` to other nodes' servers."""

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
        self._locks: dict[AppId, asyncio.Lock] = {}

    async def migrate(
        self,
        block_hash: BlockHash,
        entry: PlanEntry,
        spec: AppSpec,
        host: str,
        port: int,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        """Carry out one plan entry whose origin is this node; never loses the app.

        Raises ``AppNotFoundError`` when the app does not run here (a local matter:
        the planner will see it in the next reports); every peer-side failure is a
        result with outcome REFUSED or FAILED, the app running here.
        """
        app = entry.app
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            if not await asyncio.to_thread(self.runtime.is_running, app):
                raise AppNotFoundError(f"app {bytes(app).hex()[:16]} does not run here")
            signature = (
                bls.sign(self.sk, compute_offer_signing_root(block_hash, entry, spec))
                if self.sk is not None
                else b""
            )
            offer = encode_frame(
                FrameKind.OFFER, encode_offer(Offer(block_hash, entry, spec, signature))
            )
            return await self._migrate(_Job(app, block_hash, offer, host, port, on_progress))

    async def _offer(
        self, job: _Job
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, VerdictMessage]:
        t = self.timeouts
        try:
            connecting = asyncio.open_connection(job.host, job.port)
            reader, writer = await asyncio.wait_for(connecting, t.connect_s)
        except TimeoutError:
            raise TransferError("connect_timeout", f"{job.host}:{job.port}") from None
        except OSError as exc:
            raise TransferError("connect_failed", str(exc)) from None
        try:
            await _send(writer, job.offer, t.io_s)
            kind, body = await expect_frame(reader, t.io_s, FrameKind.VERDICT)
            if kind is FrameKind.NACK:
                verdict = VerdictMessage(Verdict.REFUSED, False, decode_nack(body))
            else:
                verdict = decode_verdict(body)
        except BaseException:
            await _close(writer)
            raise
        return reader, writer, verdict

    async def _migrate(self, job: _Job) -> MigrationResult:
        try:
            reader, writer, verdict = await self._offer(job)
        except PeerError as exc:
            return job.get_result(MigrationOutcome.REFUSED, str(exc))
        if verdict.verdict is Verdict.REFUSED:
            await _close(writer)
            return job.get_result(MigrationOutcome.REFUSED, verdict.reason)
        if verdict.verdict is Verdict.ALREADY_RUNNING:
            await _close(writer)
            await asyncio.to_thread(self.runtime.remove, job.app)
            return job.get_result(MigrationOutcome.ALREADY_THERE, "re-send")

        saved: SavedState | None = None
        try:
            start = time.perf_counter()
            saved = await asyncio.to_thread(
                self.runtime.save, job.app, include_image=verdict.need_image
            )
            job.save_ms = _ms_since(start)
            job.raw_bytes, job.live = saved.raw_bytes, saved.live
            job.included_image = saved.includes_image
            await self._stream(reader, writer, saved, job)
        except (PeerError, AppRuntimeError, OSError) as exc:
            reason = str(exc)
            await _close(writer)
            if saved is None:
                # save itself failed (and resumed the app): nothing left the node.
                return job.get_result(MigrationOutcome.FAILED, reason)
            return await self._recover(job, reason)
        except BaseException:
            # Cancelled (node shutting down) or our own bug: the app must not stay frozen.
            await _close(writer)
            if saved is not None:
                await asyncio.to_thread(self.runtime.resume, job.app)
            raise
        await _close(writer)
        await asyncio.to_thread(self.runtime.remove, job.app)
        return job.get_result(MigrationOutcome.COMPLETED, "")

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        saved: SavedState,
        job: _Job,
    ) -> None:
        t = self.timeouts
        start = time.perf_counter()
        # Listen while sending: a destination that fails mid-stream says so with a NACK
        # at once, and the origin stops sending (and resumes) instead of finishing.
        reply = asyncio.ensure_future(read_frame(reader, _REPLY_WAIT_S))
        # Its failure (a reset) is reported by the send path; never log it as unretrieved.
        reply.add_done_callback(_retrieve_exception)
        try:
            await self._send_payload(writer, saved, job, reply)
            done, _ = await asyncio.wait({reply}, timeout=t.io_s)
            if not done:
                raise TransferError("timeout", "no RECEIVED after the payload")
            self._check_reply(reply.result(), FrameKind.RECEIVED, job)
        finally:
            reply.cancel()
        job.transmit_ms = _ms_since(start)
        start = time.perf_counter()
        self._check_reply(await read_frame(reader, t.restore_s), FrameKind.DONE, job)
        job.resume_ms = _ms_since(start)

    @staticmethod
    def _check_reply(frame: tuple[FrameKind, bytes], expected: FrameKind, job: _Job) -> None:
        kind, body = frame
        if kind is FrameKind.NACK:
            job.end_sent = False  # the destination said it failed: nothing to confirm
            raise TransferError("nack", decode_nack(body))
        if kind is not expected:
            raise DecodeError("unexpected_frame", kind.name)

    async def _send_payload(
        self,
        writer: asyncio.StreamWriter,
        saved: SavedState,
        job: _Job,
        reply: asyncio.Future[tuple[FrameKind, bytes]],
    ) -> None:
        """BEGIN, the archive as compressed DATA frames, END; stop early on a reply."""
        t = self.timeouts
        begin = Begin(saved.raw_bytes, saved.includes_image)
        await _send(writer, encode_frame(FrameKind.BEGIN, encode_begin(begin)), t.io_s)
        compressor = zstandard.ZstdCompressor(
            level=self.zstd_level, write_checksum=True, write_content_size=True
        )
        chunker = compressor.chunker(size=saved.raw_bytes, chunk_size=CHUNK_BYTES)
        digest = hashlib.sha256()

        async def send_chunks(chunks: Iterable[bytes]) -> bool:
            for chunk in chunks:
                if reply.done():
                    return False  # an early reply can only be a refusal
                await _send(writer, encode_frame(FrameKind.DATA, chunk), t.io_s)
                job.compressed_bytes += len(chunk)
                if job.on_progress is not None:
                    job.on_progress(job.compressed_bytes)
            return True

        with saved.archive.open("rb") as source:
            while data := source.read(READ_BYTES):
                digest.update(data)
                if not await send_chunks(chunker.compress(data)):
                    return
        if not await send_chunks(chunker.finish()):  # type: ignore[no-untyped-call]
            return
        end = End(job.compressed_bytes, digest.digest())
        await _send(writer, encode_frame(FrameKind.END, encode_end(end)), t.io_s)
        job.end_sent = True

    async def _recover(self, job: _Job, reason: str) -> MigrationResult:
        """After a failure past the save: confirm by re-send, else resume here."""
        if job.end_sent:
            # The whole payload left: the destination may have started the app and lost
            # only the DONE. The same offer again is idempotent and tells us which.
            with contextlib.suppress(PeerError):
                _, writer, verdict = await self._offer(job)
                await _close(writer)
                if verdict.verdict is Verdict.ALREADY_RUNNING:
                    await asyncio.to_thread(self.runtime.remove, job.app)
                    return job.get_result(MigrationOutcome.COMPLETED, "confirmed by re-send")
        await asyncio.to_thread(self.runtime.resume, job.app)
        return job.get_result(MigrationOutcome.FAILED, reason)


# --- destination -----------------------------------------------------------------------


class _BoundedSink:
    """File sink for decompressed bytes: hashes them and refuses more than ``limit``.

    The limit is enforced per write, so a decompression bomb stops at ``limit`` bytes
    on disk and one zstd output block in memory.
    """

    def __init__(self, file: BinaryIO, limit: int) -> None:
        self.file = file
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise DecodeError("payload_too_large", f"more than the announced {self.limit} bytes")
        self.digest.update(data)
        return self.file.write(data)


class TransferServer:
    """The destination side: receives planned migrations into ``runtime``."""

    def __init__(
        self,
        runtime: AppRuntime,
        node_id: NodeId,
        is_planned: PlanCheck,
        work_dir: Path,
        *,
        timeouts: TransferTimeouts | None = None,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        verify_origin: OriginCheck | None = None,
        is_spec_current: SpecCheck | None = None,
    ) -> None:
        self.runtime = runtime
        self.is_spec_current = is_spec_current
        """When set, the offered spec must be the one the chain records for the app (app
        ids do not hash the spec: an UPDATE changes the spec and keeps the id)."""
        self.node_id = node_id
        self.is_planned = is_planned
        self.verify_origin = verify_origin
        """When set, only offers signed by the plan entry's origin are accepted."""
        self.work_dir = Path(work_dir)
        self.timeouts = timeouts or TransferTimeouts()
        self.max_state_bytes = max_state_bytes
        (self.work_dir / "incoming").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "ledger").mkdir(parents=True, exist_ok=True)
        self._server: asyncio.Server | None = None
        self._locks: dict[AppId, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = {"completed": 0, "already_running": 0, "refused": 0, "failed": 0}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._on_connection, host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    def get_stats(self) -> ServerStats:
        return ServerStats(**self._counts)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _get_ledger_path(self, block_hash: BlockHash, app: AppId) -> Path:
        return self.work_dir / "ledger" / f"{bytes(block_hash).hex()}-{get_app_dirname(app)}"

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except PeerError as exc:
            # Counted and dropped: a peer's bad input never takes the node down.
            self._counts["failed"] += 1
            with contextlib.suppress(Exception):
                await _send(writer, encode_frame(FrameKind.NACK, encode_nack(str(exc))), 1.0)
                await _drain_until_eof(reader, _LINGER_S)
        except (ConnectionError, OSError):
            self._counts["failed"] += 1
        finally:
            await _close(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _check(self, offer: Offer) -> str:
        """Why ``offer`` must be refused, or "" when it is a planned migration to us."""
        entry = offer.entry
        if entry.action is not PlanAction.MIGRATE:
            return "not_a_migration"
        if entry.destination != self.node_id:
            return "wrong_destination"
        if self.is_spec_current is not None and not self.is_spec_current(entry.app, offer.spec):
            return "spec_does_not_match_app"
        if offer.spec.runtime is not self.runtime.kind:
            return "wrong_runtime"
        if self.verify_origin is not None:
            root = compute_offer_signing_root(offer.block_hash, entry, offer.spec)
            if not offer.signature or not self.verify_origin(
                NodeId(entry.origin), root, offer.signature
            ):
                return "unauthenticated_origin"
        try:
            planned = self.is_planned(offer.block_hash, entry)
            if inspect.isawaitable(planned):
                planned = await planned
        except Exception:
            # The chain layer's bug, not the peer's: refuse, and say so loudly.
            _log.exception("plan check failed for block %s", bytes(offer.block_hash).hex())
            return "plan_check_failed"
        if not planned:
            return "not_planned"
        return ""

    async def _send_verdict(self, writer: asyncio.StreamWriter, verdict: VerdictMessage) -> None:
        frame = encode_frame(FrameKind.VERDICT, encode_verdict(verdict))
        await _send(writer, frame, self.timeouts.io_s)

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self._counts["refused"] += 1
        await self._send_verdict(writer, VerdictMessage(Verdict.REFUSED, False, reason))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t = self.timeouts
        try:
            _, body = await expect_frame(reader, t.io_s, FrameKind.OFFER)
            offer = decode_offer(body)
        except DecodeError as exc:
            await self._refuse(writer, exc.reason)
            return
        reason = await self._check(offer)
        if reason:
            await self._refuse(writer, reason)
            return
        app = offer.entry.app
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            ledger = self._get_ledger_path(offer.block_hash, app)
            running = await asyncio.to_thread(self.runtime.is_running, app)
            if running and ledger.exists():
                self._counts["already_running"] += 1
                verdict = VerdictMessage(Verdict.ALREADY_RUNNING, False, "")
                await self._send_verdict(writer, verdict)
                return
            if running:
                await self._refuse(writer, "app_already_running_here")
                return
            need_image = not await asyncio.to_thread(self.runtime.has_image, offer.spec)
            await self._send_verdict(writer, VerdictMessage(Verdict.ACCEPT, need_image, ""))
            await self._receive_and_restore(reader, writer, offer, ledger)

    async def _receive_and_restore(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        offer: Offer,
        ledger: Path,
    ) -> None:
        t = self.timeouts
        app = offer.entry.app
        incoming = self.work_dir / "incoming" / f"{get_app_dirname(app)}-{secrets.token_hex(4)}"
        try:
            await self._receive(reader, incoming)
            await _send(writer, encode_frame(FrameKind.RECEIVED), t.io_s)
            try:
                await asyncio.to_thread(self.runtime.restore, app, offer.spec, incoming)
            except (AppRuntimeError, PeerError, OSError) as exc:
                self._counts["failed"] += 1
                reason = f"restore_failed: {exc}"
                await _send(writer, encode_frame(FrameKind.NACK, encode_nack(reason)), 1.0)
                return
            try:
                if _is_peer_gone(reader, writer):
                    # The origin gave up (timeout) while we restored: it resumes its own
                    # copy, so ours must go, or the app would run twice.
                    raise TransferError("origin_gone", "connection closed during restore")
                ledger.touch()
                await _send(writer, encode_frame(FrameKind.DONE), t.io_s)
            except BaseException:
                ledger.unlink(missing_ok=True)
                await asyncio.to_thread(self.runtime.remove, app)
                raise
            self._counts["completed"] += 1
        finally:
            incoming.unlink(missing_ok=True)

    async def _receive(self, reader: asyncio.StreamReader, path: Path) -> None:
        """Receive BEGIN, DATA*, END into ``path``; verify sizes, zstd checksum, SHA-256."""
        t = self.timeouts
        _, body = await expect_frame(reader, t.io_s, FrameKind.BEGIN)
        begin = decode_begin(body)
        if begin.raw_bytes > self.max_state_bytes:
            raise DecodeError("payload_too_large", f"{begin.raw_bytes} bytes announced")
        compressed = 0
        with path.open("wb") as file:
            sink = _BoundedSink(file, begin.raw_bytes)
            decompressor = zstandard.ZstdDecompressor().stream_writer(
                cast(BinaryIO, sink), write_size=CHUNK_BYTES, closefd=False
            )
            try:
                while True:
                    kind, body = await expect_frame(reader, t.io_s, FrameKind.DATA, FrameKind.END)
                    if kind is FrameKind.NACK:
                        raise TransferError("origin_aborted", decode_nack(body))
                    if kind is FrameKind.END:
                        end = decode_end(body)
                        break
                    compressed += len(body)
                    if compressed > self.max_state_bytes:
                        raise DecodeError("payload_too_large", "compressed stream too long")
                    decompressor.write(body)
                decompressor.flush()  # type: ignore[no-untyped-call]
            except zstandard.ZstdError as exc:
                raise DecodeError("bad_compression", str(exc)) from None
        if end.compressed_bytes != compressed:
            raise DecodeError("size_mismatch", f"{compressed} != {end.compressed_bytes}")
        if sink.size != begin.raw_bytes:
            raise DecodeError("size_mismatch", f"raw {sink.size} != {begin.raw_bytes}")
        if sink.digest.digest() != end.sha256:
            raise DecodeError("checksum_mismatch")
