"""The destination side of a transfer: planned migrations in, and state replicas in.

Migration: accepts only a transfer that matches a plan entry of its accepted chain (an
injected :data:`PlanCheck`, so this layer needs no chain code), that names it as
destination, whose spec is the chain's (``is_spec_current``) and, when
``verify_origin`` is given, that the plan's origin signed; bounds and verifies
everything it reads, restores and starts the app, then acknowledges. If it cannot tell
the origin, it rolls the restore back.

Replica: accepts a snapshot only from the node the chain names as the app's host, for
an app whose replica node the chain says this is (an injected :data:`ReplicaCheck`),
signed by that host when ``verify_origin`` is given, and not older than the replica
already kept; the stream must match the hash and size the offer signed. It goes to the
:class:`~edgechain.runtime.replica.ReplicaStore`, never to the runtime: a replica is
not a start, and the running app set here does not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgechain.chain.model import PlanAction
from edgechain.errors import BindError, DecodeError, PeerError, RejectReason
from edgechain.orchestrator.load import TRANSFER_ROOM_FACTOR
from edgechain.runtime.archive import MAX_ARCHIVE_MEMBERS
from edgechain.runtime.base import AppRuntime, AppRuntimeError, PrecopyRuntime, get_app_dirname
from edgechain.runtime.handovers import HandoverMarks
from edgechain.runtime.precopy import MAX_ROUNDS
from edgechain.runtime.protocol import (
    DEFAULT_MAX_STATE_BYTES,
    FrameKind,
    Offer,
    ReplicaOffer,
    TransferError,
    Verdict,
    VerdictMessage,
    compute_offer_signing_root,
    compute_replica_signing_root,
    decode_offer,
    decode_replica_offer,
    encode_frame,
    encode_nack,
    encode_verdict,
    expect_frame,
)
from edgechain.runtime.replica import ReplicaStore
from edgechain.runtime.state_delta import StagedTree, apply_state_delta
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer_common import (
    LEDGER_DIR,
    LINGER_S,
    OriginCheck,
    PlanCheck,
    ReceivedPayload,
    ReplicaCheck,
    SpecCheck,
    TransferTimeouts,
    close_writer,
    drain_until_eof,
    get_ledger_path,
    is_peer_gone,
    receive_payload,
    send_frame,
)
from edgechain.telemetry import logs
from edgechain.types import AppId, NodeId

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStats:
    """Counters of a :class:`TransferServer` (for telemetry and tests)."""

    completed: int
    already_running: int
    refused: int
    """Migration and replica offers refused."""
    failed: int
    replicas: int = 0
    """Replicas verified and stored."""
    refused_by_reason: Mapping[RejectReason, int] = field(default_factory=dict)
    """``refused`` by the reason sent to the peer (``not_planned``: an offer no block
    of our head chain carries; ``unauthenticated_origin``; ...)."""


class TransferServer:
    """The destination side: receives planned migrations into ``runtime``, and, given a
    ``replicas`` store and ``is_replica_wanted``, state replicas into that store."""

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
        replicas: ReplicaStore | None = None,
        is_replica_wanted: ReplicaCheck | None = None,
        get_writable: Callable[[], int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.get_writable = get_writable
        """When set, what this node's disk can still take above its reserve
        (``disk_guard.DiskSpace.get_writable``): a payload that would not fit is refused
        before a byte of it lands (``no_room``). A migration lands ``TRANSFER_ROOM_FACTOR``
        times its payload (the payload and the state restored from it), a replica once.
        The planner leaves that much room (``orchestrator/plan_state.py``); this is for
        a disk that filled since the node's report."""
        self.is_spec_current = is_spec_current
        """When set, the offered spec must be the one the chain records for the app (app
        ids do not hash the spec: an UPDATE changes the spec and keeps the id)."""
        self.node_id = node_id
        self.is_planned = is_planned
        self.verify_origin = verify_origin
        """When set, only offers signed by their origin are accepted (a migration's: the
        plan entry's origin; a replica's: the node it names, the app's host)."""
        self.replicas = replicas
        self.is_replica_wanted = is_replica_wanted
        """Without both, every replica offer is refused (``replicas_not_accepted``)."""
        self.work_dir = Path(work_dir)
        self.handovers = HandoverMarks(self.work_dir)
        self.timeouts = timeouts or TransferTimeouts()
        self.max_state_bytes = max_state_bytes
        """Bound on a received archive (uncompressed, and compressed), migration or
        replica alike."""
        (self.work_dir / "incoming").mkdir(parents=True, exist_ok=True)
        (self.work_dir / LEDGER_DIR).mkdir(parents=True, exist_ok=True)
        self._server: asyncio.Server | None = None
        self._locks: dict[AppId, asyncio.Lock] = {}
        self._replica_locks: dict[AppId, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals: Counter[RejectReason] = Counter()
        self._counts = {
            "completed": 0,
            "already_running": 0,
            "refused": 0,
            "failed": 0,
            "replicas": 0,
        }

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, hint: str = ""
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (0: a free port); :class:`BindError`, ending with
        ``hint``, when it cannot."""
        try:
            self._server = await asyncio.start_server(self._on_connection, host, port)
        except OSError as exc:
            raise BindError("state transfers", host, port, exc, hint) from exc
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    def get_stats(self) -> ServerStats:
        return ServerStats(**self._counts, refused_by_reason=dict(self._refusals))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _get_room(self, factor: int) -> int | None:
        """The largest payload this node takes now (None: no check), landing ``factor``
        times its size."""
        return None if self.get_writable is None else self.get_writable() // factor

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
            if exc.reason is RejectReason.NO_ROOM:
                _log.warning("transfer refused, this disk is too full: %s", exc)
            with contextlib.suppress(Exception):
                await send_frame(writer, encode_frame(FrameKind.NACK, encode_nack(str(exc))), 1.0)
                await drain_until_eof(reader, LINGER_S)
        except (ConnectionError, OSError):
            self._counts["failed"] += 1
        except asyncio.CancelledError:
            # ``close`` cancelled us: ended quietly, as NetworkTransport's handler does
            # (Python 3.11 logs a cancelled stream handler as an error).
            pass
        finally:
            await close_writer(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _send_verdict(self, writer: asyncio.StreamWriter, verdict: VerdictMessage) -> None:
        frame = encode_frame(FrameKind.VERDICT, encode_verdict(verdict))
        await send_frame(writer, frame, self.timeouts.io_s)

    async def _refuse(self, writer: asyncio.StreamWriter, reason: RejectReason) -> None:
        self._counts["refused"] += 1
        self._refusals[reason] += 1
        await self._send_verdict(writer, VerdictMessage(Verdict.REFUSED, False, reason))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t = self.timeouts
        try:
            kind, body = await expect_frame(reader, t.io_s, FrameKind.OFFER, FrameKind.REPLICA)
            if kind is FrameKind.NACK:
                raise DecodeError(RejectReason.UNEXPECTED_FRAME, kind.name)
            offer = decode_replica_offer(body) if kind is FrameKind.REPLICA else decode_offer(body)
        except DecodeError as exc:
            await self._refuse(writer, exc.reason)
            return
        if isinstance(offer, ReplicaOffer):
            await self._serve_replica(reader, writer, offer)
        else:
            await self._serve_migration(reader, writer, offer)

    # --- migrations --------------------------------------------------------------------

    async def _check(self, offer: Offer) -> RejectReason | None:
        """Why ``offer`` must be refused, or None when it is a planned migration to us."""
        entry = offer.entry
        if entry.action is not PlanAction.MIGRATE:
            return RejectReason.NOT_A_MIGRATION
        if entry.destination != self.node_id:
            return RejectReason.WRONG_DESTINATION
        if self.is_spec_current is not None and not self.is_spec_current(entry.app, offer.spec):
            return RejectReason.SPEC_DOES_NOT_MATCH_APP
        if offer.spec.runtime not in self.runtime.kinds:
            return RejectReason.WRONG_RUNTIME
        if self.verify_origin is not None:
            root = compute_offer_signing_root(offer.block_hash, entry, offer.spec)
            if not offer.signature or not self.verify_origin(
                NodeId(entry.origin), root, offer.signature
            ):
                return RejectReason.UNAUTHENTICATED_ORIGIN
        try:
            planned = self.is_planned(offer.block_hash, entry)
            if inspect.isawaitable(planned):
                planned = await planned
        except Exception:
            # The chain layer's bug, not the peer's: refuse, and say so loudly.
            logs.log_exception(_log, "plan check failed", block=bytes(offer.block_hash).hex())
            return RejectReason.PLAN_CHECK_FAILED
        if not planned:
            return RejectReason.NOT_PLANNED
        return None

    async def _serve_migration(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: Offer
    ) -> None:
        reason = await self._check(offer)
        if reason is not None:
            await self._refuse(writer, reason)
            return
        app = offer.entry.app
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            ledger = get_ledger_path(self.work_dir, offer.block_hash, app)
            # Taken already (by this offer's DONE, or by an "origin down" start here),
            # whether it runs now or not: the origin ends its copy; ours is newer.
            if ledger.exists():
                self._counts["already_running"] += 1
                verdict = VerdictMessage(Verdict.ALREADY_RUNNING, False, "")
                await self._send_verdict(writer, verdict)
                return
            if await run_in_thread(self.runtime.is_running, app):
                await self._refuse(writer, RejectReason.APP_ALREADY_RUNNING_HERE)
                return
            need_image = not await run_in_thread(self.runtime.has_image, offer.spec)
            precopy = (
                isinstance(self.runtime, PrecopyRuntime)
                and self.runtime.can_restore_staged(offer.spec)
                and not need_image
            )
            verdict = VerdictMessage(Verdict.ACCEPT, need_image, "", precopy)
            await self._send_verdict(writer, verdict)
            await self._receive_and_restore(reader, writer, offer, ledger, precopy)

    async def _receive_and_restore(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        offer: Offer,
        ledger: Path,
        precopy: bool,
    ) -> None:
        t = self.timeouts
        app = offer.entry.app
        incoming = self.work_dir / "incoming" / f"{get_app_dirname(app)}-{secrets.token_hex(4)}"
        staged = StagedTree(
            incoming.with_name(incoming.name + ".staged"),
            self.max_state_bytes,
            MAX_ARCHIVE_MEMBERS,
        )
        try:
            received = await self._receive_rounds(reader, writer, incoming, staged, precopy)
            await send_frame(writer, encode_frame(FrameKind.RECEIVED), t.io_s)
            try:
                if received.begin.delta:
                    await run_in_thread(self._restore_staged, offer, incoming, staged)
                else:
                    await run_in_thread(self.runtime.restore, app, offer.spec, incoming)
            except (AppRuntimeError, PeerError, OSError) as exc:
                self._counts["failed"] += 1
                reason = f"restore_failed: {exc}"
                await send_frame(writer, encode_frame(FrameKind.NACK, encode_nack(reason)), 1.0)
                return
            try:
                if is_peer_gone(reader, writer):
                    # The origin gave up (timeout) while we restored: it resumes its own
                    # copy, so ours must go, or the app would run twice.
                    raise TransferError(
                        RejectReason.ORIGIN_GONE, "connection closed during restore"
                    )
                ledger.touch()
                # The app runs here again: a copy we once handed over is replaced.
                await run_in_thread(self.handovers.forget, app)
                await send_frame(writer, encode_frame(FrameKind.DONE), t.io_s)
            except BaseException:
                ledger.unlink(missing_ok=True)
                await run_in_thread(self.runtime.remove, app)
                raise
            self._counts["completed"] += 1
        finally:
            incoming.unlink(missing_ok=True)
            staged.discard()

    async def _receive_rounds(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        incoming: Path,
        staged: StagedTree,
        precopy: bool,
    ) -> ReceivedPayload:
        """Receive payloads until the one to restore from: a plain archive, or the final
        delta of a pre-copy. Each earlier pre-copy round is applied to ``staged`` and
        acknowledged with RECEIVED."""
        rounds = 0
        while True:
            received = await receive_payload(
                reader,
                incoming,
                self.timeouts,
                self.max_state_bytes,
                room=self._get_room(TRANSFER_ROOM_FACTOR),
            )
            begin = received.begin
            if not begin.delta:
                return received  # a plain archive replaces any staged rounds
            if not precopy or (not begin.final and rounds >= MAX_ROUNDS):
                raise DecodeError(RejectReason.PRECOPY_NOT_OFFERED, f"round {rounds + 1}")
            if begin.final:
                return received
            await run_in_thread(apply_state_delta, incoming, staged)
            rounds += 1
            await send_frame(writer, encode_frame(FrameKind.RECEIVED), self.timeouts.io_s)

    def _restore_staged(self, offer: Offer, delta: Path, staged: StagedTree) -> None:
        """Blocking: apply the final delta (the tree is then the origin's frozen state)
        and start the app from it."""
        if not apply_state_delta(delta, staged):
            raise DecodeError(RejectReason.DELTA_MALFORMED, "the last round is not final")
        runtime = self.runtime
        if not isinstance(runtime, PrecopyRuntime):
            raise AppRuntimeError("this runtime takes no pre-copy")
        runtime.restore_staged(offer.entry.app, offer.spec, staged.root)

    # --- replicas ----------------------------------------------------------------------

    async def _check_replica(self, offer: ReplicaOffer) -> RejectReason | None:
        """Why ``offer`` must be refused, or None when this node keeps that app's replica."""
        if self.replicas is None or self.is_replica_wanted is None:
            return RejectReason.REPLICAS_NOT_ACCEPTED
        if offer.raw_bytes > self.max_state_bytes:
            return RejectReason.PAYLOAD_TOO_LARGE
        try:
            wanted = self.is_replica_wanted(offer.app, offer.origin)
            if inspect.isawaitable(wanted):
                wanted = await wanted
        except Exception:
            logs.log_exception(_log, "replica check failed", app=bytes(offer.app).hex()[:16])
            return RejectReason.REPLICA_CHECK_FAILED
        if not wanted:
            return RejectReason.REPLICA_NOT_WANTED
        if self.verify_origin is not None:
            root = compute_replica_signing_root(
                offer.app, offer.origin, offer.slot, offer.sha256, offer.raw_bytes
            )
            if not offer.signature or not self.verify_origin(offer.origin, root, offer.signature):
                return RejectReason.UNAUTHENTICATED_ORIGIN
        stored = self.replicas.get(offer.app)
        if stored is not None and offer.slot < stored.slot:
            return RejectReason.STALE_SLOT
        return None

    async def _serve_replica(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: ReplicaOffer
    ) -> None:
        reason = await self._check_replica(offer)
        if reason is not None:
            await self._refuse(writer, reason)
            return
        store = self.replicas
        assert store is not None  # checked above
        lock = self._replica_locks.setdefault(offer.app, asyncio.Lock())
        async with lock:
            await self._send_verdict(writer, VerdictMessage(Verdict.ACCEPT, False, ""))
            incoming = store.get_incoming_path(offer.app)
            try:
                payload = await receive_payload(
                    reader,
                    incoming,
                    self.timeouts,
                    self.max_state_bytes,
                    expected=offer,
                    room=self._get_room(1),
                )
                await send_frame(writer, encode_frame(FrameKind.RECEIVED), self.timeouts.io_s)
                try:
                    info = await run_in_thread(
                        store.put,
                        offer.app,
                        offer.origin,
                        offer.slot,
                        incoming,
                        payload.sha256,
                        payload.raw_bytes,
                        compressed_bytes=payload.compressed_bytes,
                        signature=offer.signature,
                    )
                except (OSError, ValueError) as exc:
                    # Our disk, not the peer: say so loudly, and tell the origin at once.
                    _log.error("cannot store replica of %s: %s", bytes(offer.app).hex()[:16], exc)
                    info, nack = None, f"store_failed: {exc}"
                else:
                    # None: a newer replica was stored since the check (another connection).
                    nack = RejectReason.STALE_SLOT
                if info is None:
                    self._counts["failed"] += 1
                    await send_frame(writer, encode_frame(FrameKind.NACK, encode_nack(nack)), 1.0)
                    return
                await send_frame(writer, encode_frame(FrameKind.DONE), self.timeouts.io_s)
                self._counts["replicas"] += 1
            finally:
                incoming.unlink(missing_ok=True)
