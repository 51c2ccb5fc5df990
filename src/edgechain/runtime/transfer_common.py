"""What both ends of a transfer share: timeouts, the chain callbacks, frame I/O, and
the payload leg itself (:func:`send_payload`, :func:`receive_payload`).

A migration and a state replica travel the same way (``runtime/protocol.py``): one
TCP connection, an offer, a verdict, then the same BEGIN / DATA / END payload and the
same RECEIVED / DONE replies. The origin side lives in ``transfer_client.py``, the
destination side in ``transfer_server.py``; both take their common ground from here, so
the payload is sent, bounded and verified by one piece of code for both kinds.
``runtime/transfer.py`` re-exports the public names.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.errors import DecodeError, RejectReason
from edgechain.runtime.base import get_app_dirname
from edgechain.runtime.protocol import (
    CHUNK_BYTES,
    READ_BYTES,
    ZSTD_LEVEL,
    Begin,
    End,
    FrameKind,
    ReplicaOffer,
    TransferError,
    Verdict,
    VerdictMessage,
    decode_begin,
    decode_end,
    decode_nack,
    decode_verdict,
    encode_begin,
    encode_end,
    encode_frame,
    expect_frame,
    read_frame,
)
from edgechain.types import AppId, BlockHash, NodeId

REPLY_WAIT_S = 24 * 3600.0
"""The origin's early-reply listener only ends with the stream (bounded by io_s there)."""

LINGER_S = 2.0
"""After a NACK, how long the destination keeps reading (and dropping) what the origin
still sends, so that closing does not reset the connection before the NACK is read."""

PlanCheck = Callable[[BlockHash, PlanEntry], bool | Awaitable[bool]]
"""``is_planned(block_hash, entry)``: is ``entry`` in the plan of an accepted block?"""

OriginCheck = Callable[[NodeId, bytes, bytes], bool]
"""``verify_origin(origin, message, signature)``: did the validator ``origin`` sign it?"""

SpecCheck = Callable[[AppId, AppSpec], bool]
"""``is_spec_current(app, spec)``: is ``spec`` what the chain records for ``app``?"""

ReplicaCheck = Callable[[AppId, NodeId], bool | Awaitable[bool]]
"""``is_replica_wanted(app, origin)``: does the chain name ``origin`` as the app's host
and this node as its replica node?"""

ProgressCallback = Callable[[int], None]
"""Called by the origin with the compressed bytes sent so far, after each DATA frame."""


@dataclass(frozen=True)
class TransferTimeouts:
    connect_s: float = 5.0
    io_s: float = 15.0
    """Longest silence tolerated on any read or write (a stalled or dead peer)."""
    restore_s: float = 120.0
    """How long the origin waits for DONE after RECEIVED (restore may load an image)."""


LEDGER_DIR = "ledger"
"""Under the transfer server's work dir: one empty file per move this node took."""


def get_ledger_path(work_dir: Path, block_hash: BlockHash, app: AppId) -> Path:
    """The transfer ledger's entry for the move of ``app`` in block ``block_hash``: it
    exists once this node took the move, by a migration it acknowledged DONE, or by
    starting the app itself after the move's origin went down (``reconcile.py``). A
    move in the ledger starts here again whenever the app stops (``lifecycle.
    get_start_reason``: "reconcile"), and the origin's late offer of it is answered
    ALREADY_RUNNING (``transfer_server.py``)."""
    return work_dir / LEDGER_DIR / f"{bytes(block_hash).hex()}-{get_app_dirname(app)}"


def ms_since(start: float) -> float:
    """Milliseconds elapsed since the ``time.perf_counter()`` value ``start``."""
    return (time.perf_counter() - start) * 1000.0


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def retrieve_exception(task: asyncio.Future[tuple[FrameKind, bytes]]) -> None:
    """Done-callback: mark a reply task's failure as seen (the send path reports it)."""
    if not task.cancelled():
        task.exception()


def is_peer_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True when the peer closed or reset the connection (it sends nothing more)."""
    return reader.at_eof() or reader.exception() is not None or writer.transport.is_closing()


async def drain_until_eof(reader: asyncio.StreamReader, limit_s: float) -> None:
    """Read and drop until the peer closes, for at most ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    with contextlib.suppress(Exception):
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(1 << 20), left):
                return


async def send_frame(writer: asyncio.StreamWriter, frame: bytes, timeout_s: float) -> None:
    """Write one encoded frame; a peer that stops reading is a ``TransferError``."""
    writer.write(frame)
    try:
        await asyncio.wait_for(writer.drain(), timeout_s)
    except TimeoutError:
        raise TransferError(RejectReason.TIMEOUT, "peer stopped reading") from None
    except (ConnectionError, OSError) as exc:
        raise TransferError(RejectReason.CONNECTION_ERROR, str(exc)) from None


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


# --- the payload, origin side ----------------------------------------------------------


@dataclass
class PayloadStream:
    """The payload leg of one transfer in progress at the origin (mutable)."""

    on_progress: ProgressCallback | None = None
    compressed_bytes: int = 0
    transmit_ms: float = 0.0
    """First payload byte to the destination's RECEIVED."""
    resume_ms: float = 0.0
    """RECEIVED to DONE."""
    end_sent: bool = False
    """The whole payload left: the destination may run the app even if DONE is lost."""


async def send_payload(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    archive: Path,
    begin: Begin,
    stream: PayloadStream,
    timeouts: TransferTimeouts,
    zstd_level: int = ZSTD_LEVEL,
    *,
    expect_done: bool = True,
) -> None:
    """Send ``archive`` (BEGIN, compressed DATA, END), then wait for RECEIVED and (when
    ``expect_done``: not after a pre-copy round) DONE, timing both legs in ``stream``.
    A NACK or a silent peer is a ``PeerError``."""
    start = time.perf_counter()
    # Listen while sending: a destination that fails mid-stream says so with a NACK
    # at once, and the origin stops sending (and resumes) instead of finishing.
    reply = asyncio.ensure_future(read_frame(reader, REPLY_WAIT_S))
    # Its failure (a reset) is reported by the send path; never log it as unretrieved.
    reply.add_done_callback(retrieve_exception)
    try:
        await _send_archive(writer, archive, begin, stream, reply, timeouts.io_s, zstd_level)
        done, _ = await asyncio.wait({reply}, timeout=timeouts.io_s)
        if not done:
            raise TransferError(RejectReason.TIMEOUT, "no RECEIVED after the payload")
        _check_reply(reply.result(), FrameKind.RECEIVED, stream)
    finally:
        reply.cancel()
    stream.transmit_ms = ms_since(start)
    if not expect_done:
        return
    start = time.perf_counter()
    _check_reply(await read_frame(reader, timeouts.restore_s), FrameKind.DONE, stream)
    stream.resume_ms = ms_since(start)


def _check_reply(
    frame: tuple[FrameKind, bytes], expected: FrameKind, stream: PayloadStream
) -> None:
    kind, body = frame
    if kind is FrameKind.NACK:
        stream.end_sent = False  # the destination said it failed: nothing to confirm
        raise TransferError(RejectReason.NACK, decode_nack(body))
    if kind is not expected:
        raise DecodeError(RejectReason.UNEXPECTED_FRAME, kind.name)


async def _send_archive(
    writer: asyncio.StreamWriter,
    archive: Path,
    begin: Begin,
    stream: PayloadStream,
    reply: asyncio.Future[tuple[FrameKind, bytes]],
    io_s: float,
    zstd_level: int,
) -> None:
    """BEGIN, the archive as compressed DATA frames, END; stop early on a reply."""
    await send_frame(writer, encode_frame(FrameKind.BEGIN, encode_begin(begin)), io_s)
    compressor = zstandard.ZstdCompressor(
        level=zstd_level, write_checksum=True, write_content_size=True
    )
    chunker = compressor.chunker(size=begin.raw_bytes, chunk_size=CHUNK_BYTES)
    digest = hashlib.sha256()

    async def send_chunks(chunks: Iterable[bytes]) -> bool:
        for chunk in chunks:
            if reply.done():
                return False  # an early reply can only be a refusal
            await send_frame(writer, encode_frame(FrameKind.DATA, chunk), io_s)
            stream.compressed_bytes += len(chunk)
            if stream.on_progress is not None:
                stream.on_progress(stream.compressed_bytes)
        return True

    with archive.open("rb") as source:
        while data := source.read(READ_BYTES):
            digest.update(data)
            if not await send_chunks(chunker.compress(data)):
                return
    if not await send_chunks(chunker.finish()):  # type: ignore[no-untyped-call]
        return
    end = End(stream.compressed_bytes, digest.digest())
    await send_frame(writer, encode_frame(FrameKind.END, encode_end(end)), io_s)
    stream.end_sent = True


# --- the payload, destination side -----------------------------------------------------


@dataclass(frozen=True)
class ReceivedPayload:
    """What a received payload turned out to be (all of it verified)."""

    raw_bytes: int
    compressed_bytes: int
    sha256: bytes
    begin: Begin
    """What the payload said it is (an archive, a delta, the final delta)."""


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
            raise DecodeError(
                RejectReason.PAYLOAD_TOO_LARGE, f"more than the announced {self.limit} bytes"
            )
        self.digest.update(data)
        return self.file.write(data)


async def receive_payload(
    reader: asyncio.StreamReader,
    path: Path,
    timeouts: TransferTimeouts,
    max_bytes: int,
    *,
    expected: ReplicaOffer | None = None,
    room: int | None = None,
) -> ReceivedPayload:
    """Receive BEGIN, DATA*, END into ``path``; verify sizes (at most ``max_bytes``),
    the zstd checksum and SHA-256 (and, for a replica, that size and SHA-256 are the
    ones ``expected`` signed). Any mismatch is a ``DecodeError``. A payload larger than
    ``room`` (what this node's disk can take, None: not checked) is refused before a
    byte of it is written: ``TransferError`` ``no_room``."""
    _, body = await expect_frame(reader, timeouts.io_s, FrameKind.BEGIN)
    begin = decode_begin(body)
    if begin.raw_bytes > max_bytes:
        raise DecodeError(RejectReason.PAYLOAD_TOO_LARGE, f"{begin.raw_bytes} bytes announced")
    if room is not None and begin.raw_bytes > room:
        raise TransferError(
            RejectReason.NO_ROOM, f"{begin.raw_bytes} bytes announced, room here for {room}"
        )
    if expected is not None and begin != Begin(expected.raw_bytes, False):
        raise DecodeError(RejectReason.SIZE_MISMATCH, f"{begin.raw_bytes} != {expected.raw_bytes}")
    compressed = 0
    with path.open("wb") as file:
        sink = _BoundedSink(file, begin.raw_bytes)
        decompressor = zstandard.ZstdDecompressor().stream_writer(
            cast(BinaryIO, sink), write_size=CHUNK_BYTES, closefd=False
        )
        try:
            while True:
                kind, body = await expect_frame(
                    reader, timeouts.io_s, FrameKind.DATA, FrameKind.END
                )
                if kind is FrameKind.NACK:
                    raise TransferError(RejectReason.ORIGIN_ABORTED, decode_nack(body))
                if kind is FrameKind.END:
                    end = decode_end(body)
                    break
                compressed += len(body)
                if compressed > max_bytes:
                    raise DecodeError(RejectReason.PAYLOAD_TOO_LARGE, "compressed stream too long")
                decompressor.write(body)
            decompressor.flush()  # type: ignore[no-untyped-call]
        except zstandard.ZstdError as exc:
            raise DecodeError(RejectReason.BAD_COMPRESSION, str(exc)) from None
    if end.compressed_bytes != compressed:
        raise DecodeError(RejectReason.SIZE_MISMATCH, f"{compressed} != {end.compressed_bytes}")
    if sink.size != begin.raw_bytes:
        raise DecodeError(RejectReason.SIZE_MISMATCH, f"raw {sink.size} != {begin.raw_bytes}")
    digest = sink.digest.digest()
    if digest != end.sha256:
        raise DecodeError(RejectReason.CHECKSUM_MISMATCH)
    if expected is not None and digest != expected.sha256:
        raise DecodeError(RejectReason.CHECKSUM_MISMATCH, "not the signed snapshot")
    return ReceivedPayload(sink.size, compressed, digest, begin)
