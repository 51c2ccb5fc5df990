"""The migration transfer's wire format and every constant it depends on, in one place.

A migration (paper §3.3, DESIGN.md "Migration execution") is one TCP connection from
the origin to the destination carrying typed, length-prefixed frames::

    frame  = kind:u8 || length:u32 (big-endian) || body[length]

    origin                                   destination
    OFFER  (block hash, PlanEntry, AppSpec) ->
                                          <- VERDICT (accept [+ need image] | already
                                                      running | refused + reason)
    BEGIN  (raw size, flags)                ->            (origin saved the app here)
    DATA*  (zstd-compressed archive chunks) ->
    END    (compressed size, SHA-256 of raw) ->
                                          <- RECEIVED   (payload verified)
                                          <- DONE       (restored and started) | NACK

Pre-copy (``runtime/precopy.py``): a destination that can start an app from a staged
state directory says so in its VERDICT (flag PRECOPY). The origin may then send, while
the app still runs, up to ``precopy.MAX_ROUNDS`` payloads flagged DELTA (a
``runtime/state_delta.py`` delta each, acknowledged by RECEIVED and applied to the
staging tree), then freeze the app and send one payload flagged DELTA|FINAL, answered
RECEIVED and DONE like a plain archive. A plain archive after DELTA rounds replaces them
(the state turned out to hold what a delta cannot carry).

The OFFER body is the "length-prefixed binary header"::

    magic "EMIG" || version:u8 || block_hash[32]
    || entry_len:u32 || encode_plan_entry(entry) || spec_len:u32 || encode_app_spec(spec)
    || signature_len:u32 || signature (0 or 96 bytes)

The signature is the origin node's BLS signature over :func:`compute_offer_signing_root`.
A destination that checks it (``TransferServer(verify_origin=...)``) accepts a
migration only from the node the plan names as origin: without it, anyone who read the
public plan could offer a forged archive first, and the real origin, told the app
already runs there, would delete the only true copy.

A state replica (DESIGN.md "Exactly once": a down node's apps are re-placed from their
latest replica) uses the same connection shape with another first frame. The app keeps
running at its host, which takes the snapshot *before* offering it, so the offer can
bind the payload::

    origin (the app's host)                  replica node
    REPLICA (app, origin, slot, SHA-256, raw size, signature) ->
                                          <- VERDICT (accept | refused + reason)
    BEGIN, DATA*, END                       ->
                                          <- RECEIVED   (payload matches the offer)
                                          <- DONE       (stored) | NACK

    REPLICA body = magic "EREP" || version:u8 || app[32] || origin[32] || slot:u64
                   || sha256[32] || raw_bytes:u64 || signature_len:u32 || signature

The signature (:func:`compute_replica_signing_root`) binds app, origin, slot, hash and
size: nobody but the app's host can make a replica node store a state for it, and a
replayed offer cannot carry another payload or a newer slot.

Everything read is peer input: each frame kind has a maximum body length checked
before the body is read, unknown kinds and malformed bodies are ``DecodeError``, a
stalled or closed peer is a :class:`TransferError`; both are ``PeerError``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import struct
from dataclasses import dataclass

from edgechain.chain.command_encoding import decode_app_spec, encode_app_spec
from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.chain.plan_encoding import decode_plan_entry, encode_plan_entry
from edgechain.errors import DecodeError, PeerError, RejectReason
from edgechain.types import HASH_SIZE, SIGNATURE_SIZE, AppId, BlockHash, NodeId

# --- protocol constants ----------------------------------------------------------------

PROTOCOL_MAGIC = b"EMIG"
PROTOCOL_VERSION = 3
REPLICA_MAGIC = b"EREP"
REPLICA_VERSION = 1

MAX_HEADER_BYTES = 64 * 1024
"""Largest OFFER body (block hash + plan entry + app spec); a spec is well under this."""

CHUNK_BYTES = 256 * 1024
"""Size of the compressed DATA frames the origin sends."""

MAX_DATA_FRAME_BYTES = 2 * CHUNK_BYTES
"""Largest DATA body a destination accepts."""

READ_BYTES = 1024 * 1024
"""How much of the archive the origin reads and compresses per step."""

MAX_REASON_BYTES = 200
"""Longest human-readable reason in a VERDICT or NACK."""

DEFAULT_MAX_STATE_BYTES = 4 * 1024**3
"""Default bound on the uncompressed archive a destination accepts (state + image)."""

ZSTD_LEVEL = 1
"""Fast compression: the paper notes compressing is the costly part of a save (§4.2)."""

_FRAME_HEAD = struct.Struct(">BI")
_BEGIN = struct.Struct(">QB")
_END = struct.Struct(">Q32s")
_VERDICT_HEAD = struct.Struct(">BB")
_REPLICA_HEAD = struct.Struct(f">{len(REPLICA_MAGIC)}sB32s32sQ32sQI")


class FrameKind(enum.IntEnum):
    OFFER = 1
    VERDICT = 2
    BEGIN = 3
    DATA = 4
    END = 5
    RECEIVED = 6
    DONE = 7
    NACK = 8
    REPLICA = 9
    """The offer of a state replica (instead of OFFER)."""


MAX_BODY_BYTES: dict[FrameKind, int] = {
    FrameKind.OFFER: MAX_HEADER_BYTES,
    FrameKind.VERDICT: _VERDICT_HEAD.size + MAX_REASON_BYTES,
    FrameKind.BEGIN: _BEGIN.size,
    FrameKind.DATA: MAX_DATA_FRAME_BYTES,
    FrameKind.END: _END.size,
    FrameKind.RECEIVED: 0,
    FrameKind.DONE: 0,
    FrameKind.NACK: MAX_REASON_BYTES,
    FrameKind.REPLICA: _REPLICA_HEAD.size + SIGNATURE_SIZE,
}


class Verdict(enum.IntEnum):
    ACCEPT = 1
    ALREADY_RUNNING = 2
    """Idempotent re-send: this destination already runs the app from that block."""
    REFUSED = 3


FLAG_IMAGE = 0x01
"""VERDICT: the destination lacks the base image. BEGIN: the archive carries it."""
FLAG_PRECOPY = 0x02
"""VERDICT: the destination takes pre-copy rounds."""
FLAG_DELTA = 0x02
"""BEGIN: the payload is a state delta."""
FLAG_FINAL = 0x04
"""BEGIN: with FLAG_DELTA, the frozen last round."""


class TransferError(PeerError):
    """The peer stalled, closed the connection or broke the protocol's sequence."""


@dataclass(frozen=True)
class Offer:
    """The transfer header: which planned migration this connection carries."""

    block_hash: BlockHash
    entry: PlanEntry
    spec: AppSpec
    signature: bytes = b""
    """The origin's BLS signature over :func:`compute_offer_signing_root` (or empty)."""


def compute_offer_signing_root(block_hash: BlockHash, entry: PlanEntry, spec: AppSpec) -> bytes:
    """What the origin signs: the offer's block hash, plan entry and spec, tagged."""
    return hashlib.sha256(
        b"edgechain/migration-offer/v1"
        + bytes(block_hash)
        + encode_plan_entry(entry)
        + encode_app_spec(spec)
    ).digest()


@dataclass(frozen=True)
class ReplicaOffer:
    """The header of a replica transfer: which app's state, from whom, of which slot."""

    app: AppId
    origin: NodeId
    """The node that hosts the app and signed this offer."""
    slot: int
    """The slot the snapshot was taken in (a replica node keeps the latest)."""
    sha256: bytes
    """SHA-256 of the uncompressed archive that follows."""
    raw_bytes: int
    """Size of that archive."""
    signature: bytes = b""
    """The origin's BLS signature over :func:`compute_replica_signing_root` (or empty)."""


def compute_replica_signing_root(
    app: AppId, origin: NodeId, slot: int, sha256: bytes, raw_bytes: int
) -> bytes:
    """What the origin signs for a replica: every field of the offer, domain-tagged (a
    migration offer's signature can never pass for a replica's, nor the reverse)."""
    return hashlib.sha256(
        b"edgechain/replica-offer/v1"
        + bytes(app)
        + bytes(origin)
        + struct.pack(">Q", slot)
        + sha256
        + struct.pack(">Q", raw_bytes)
    ).digest()


@dataclass(frozen=True)
class VerdictMessage:
    verdict: Verdict
    need_image: bool
    reason: str
    precopy: bool = False
    """ACCEPT: this destination takes pre-copy rounds (DELTA payloads)."""


@dataclass(frozen=True)
class Begin:
    raw_bytes: int
    includes_image: bool
    delta: bool = False
    """The payload is a state delta (a pre-copy round), not an archive."""
    final: bool = False
    """The delta is the last round, sent with the app frozen: restore after it."""


@dataclass(frozen=True)
class End:
    compressed_bytes: int
    sha256: bytes


# --- encoding --------------------------------------------------------------------------


def encode_frame(kind: FrameKind, body: bytes = b"") -> bytes:
    if len(body) > MAX_BODY_BYTES[kind]:
        raise ValueError(f"{kind.name} body of {len(body)} bytes exceeds its maximum")
    return _FRAME_HEAD.pack(int(kind), len(body)) + body


def _encode_reason(reason: str) -> bytes:
    raw = reason.encode("utf-8", errors="replace")[:MAX_REASON_BYTES]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def _decode_reason(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def encode_offer(offer: Offer) -> bytes:
    if len(offer.block_hash) != HASH_SIZE:
        raise ValueError("block hash must be 32 bytes")
    entry = encode_plan_entry(offer.entry)
    spec = encode_app_spec(offer.spec)
    return b"".join(
        (
            PROTOCOL_MAGIC,
            bytes([PROTOCOL_VERSION]),
            bytes(offer.block_hash),
            struct.pack(">I", len(entry)),
            entry,
            struct.pack(">I", len(spec)),
            spec,
            struct.pack(">I", len(offer.signature)),
            offer.signature,
        )
    )


def decode_offer(body: bytes) -> Offer:
    """Decode an OFFER body; every length is checked against what remains."""
    if len(body) > MAX_HEADER_BYTES:
        raise DecodeError(RejectReason.HEADER_TOO_LARGE, f"{len(body)} bytes")
    head = len(PROTOCOL_MAGIC) + 1 + HASH_SIZE
    if len(body) < head + 8:
        raise DecodeError(RejectReason.HEADER_TRUNCATED, f"{len(body)} bytes")
    if body[: len(PROTOCOL_MAGIC)] != PROTOCOL_MAGIC:
        raise DecodeError(RejectReason.BAD_MAGIC)
    version = body[len(PROTOCOL_MAGIC)]
    if version != PROTOCOL_VERSION:
        raise DecodeError(RejectReason.BAD_VERSION, str(version))
    block_hash = BlockHash(body[len(PROTOCOL_MAGIC) + 1 : head])
    pos = head
    parts: list[bytes] = []
    for _ in range(3):
        if pos + 4 > len(body):
            raise DecodeError(RejectReason.HEADER_TRUNCATED)
        (size,) = struct.unpack_from(">I", body, pos)
        pos += 4
        if size > len(body) - pos:
            raise DecodeError(RejectReason.HEADER_TRUNCATED, f"field of {size} bytes")
        parts.append(body[pos : pos + size])
        pos += size
    if pos != len(body):
        raise DecodeError(RejectReason.HEADER_TRAILING_BYTES, f"{len(body) - pos} bytes")
    if len(parts[2]) not in (0, SIGNATURE_SIZE):
        raise DecodeError(RejectReason.BAD_OFFER_SIGNATURE, f"{len(parts[2])} bytes")
    return Offer(block_hash, decode_plan_entry(parts[0]), decode_app_spec(parts[1]), parts[2])


def encode_replica_offer(offer: ReplicaOffer) -> bytes:
    for name, value in (("app", offer.app), ("origin", offer.origin), ("sha256", offer.sha256)):
        if len(value) != HASH_SIZE:
            raise ValueError(f"{name} must be {HASH_SIZE} bytes")
    return (
        _REPLICA_HEAD.pack(
            REPLICA_MAGIC,
            REPLICA_VERSION,
            bytes(offer.app),
            bytes(offer.origin),
            offer.slot,
            offer.sha256,
            offer.raw_bytes,
            len(offer.signature),
        )
        + offer.signature
    )


def decode_replica_offer(body: bytes) -> ReplicaOffer:
    """Decode a REPLICA body (fixed layout; the signature is absent or 96 bytes)."""
    if len(body) < _REPLICA_HEAD.size:
        raise DecodeError(RejectReason.HEADER_TRUNCATED, f"{len(body)} bytes")
    magic, version, app, origin, slot, digest, raw, sig_len = _REPLICA_HEAD.unpack_from(body)
    if magic != REPLICA_MAGIC:
        raise DecodeError(RejectReason.BAD_MAGIC)
    if version != REPLICA_VERSION:
        raise DecodeError(RejectReason.BAD_VERSION, str(version))
    if sig_len not in (0, SIGNATURE_SIZE):
        raise DecodeError(RejectReason.BAD_OFFER_SIGNATURE, f"{sig_len} bytes")
    if len(body) != _REPLICA_HEAD.size + sig_len:
        raise DecodeError(RejectReason.HEADER_TRAILING_BYTES, f"{len(body)} bytes")
    signature = body[_REPLICA_HEAD.size :]
    return ReplicaOffer(AppId(app), NodeId(origin), slot, digest, raw, signature)


def encode_verdict(message: VerdictMessage) -> bytes:
    flags = (FLAG_IMAGE if message.need_image else 0) | (FLAG_PRECOPY if message.precopy else 0)
    return _VERDICT_HEAD.pack(int(message.verdict), flags) + _encode_reason(message.reason)


def decode_verdict(body: bytes) -> VerdictMessage:
    if len(body) < _VERDICT_HEAD.size:
        raise DecodeError(RejectReason.VERDICT_TRUNCATED)
    code, flags = _VERDICT_HEAD.unpack_from(body)
    try:
        verdict = Verdict(code)
    except ValueError:
        raise DecodeError(RejectReason.BAD_VERDICT, str(code)) from None
    if flags & ~(FLAG_IMAGE | FLAG_PRECOPY):
        raise DecodeError(RejectReason.BAD_FLAGS, str(flags))
    return VerdictMessage(
        verdict, bool(flags & FLAG_IMAGE), _decode_reason(body[2:]), bool(flags & FLAG_PRECOPY)
    )


def encode_begin(begin: Begin) -> bytes:
    flags = FLAG_IMAGE if begin.includes_image else 0
    flags |= (FLAG_DELTA if begin.delta else 0) | (FLAG_FINAL if begin.final else 0)
    return _BEGIN.pack(begin.raw_bytes, flags)


def decode_begin(body: bytes) -> Begin:
    if len(body) != _BEGIN.size:
        raise DecodeError(RejectReason.BAD_BEGIN)
    raw, flags = _BEGIN.unpack(body)
    if flags & ~(FLAG_IMAGE | FLAG_DELTA | FLAG_FINAL):
        raise DecodeError(RejectReason.BAD_FLAGS, str(flags))
    delta, final = bool(flags & FLAG_DELTA), bool(flags & FLAG_FINAL)
    image = bool(flags & FLAG_IMAGE)
    if (final and not delta) or (delta and image):
        raise DecodeError(RejectReason.BAD_FLAGS, str(flags))
    return Begin(raw, image, delta, final)


def encode_end(end: End) -> bytes:
    return _END.pack(end.compressed_bytes, end.sha256)


def decode_end(body: bytes) -> End:
    if len(body) != _END.size:
        raise DecodeError(RejectReason.BAD_END)
    compressed, digest = _END.unpack(body)
    return End(compressed, digest)


def encode_nack(reason: str) -> bytes:
    return _encode_reason(reason)


def decode_nack(body: bytes) -> str:
    return _decode_reason(body)


# --- reading ---------------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader, timeout_s: float) -> tuple[FrameKind, bytes]:
    """Read one frame, bounding its length by its kind and the wait by ``timeout_s``."""
    try:
        head = await asyncio.wait_for(reader.readexactly(_FRAME_HEAD.size), timeout_s)
        code, size = _FRAME_HEAD.unpack(head)
        try:
            kind = FrameKind(code)
        except ValueError:
            raise DecodeError(RejectReason.UNKNOWN_FRAME, str(code)) from None
        if size > MAX_BODY_BYTES[kind]:
            raise DecodeError(RejectReason.FRAME_TOO_LARGE, f"{kind.name} of {size} bytes")
        body = await asyncio.wait_for(reader.readexactly(size), timeout_s) if size else b""
    except asyncio.IncompleteReadError:
        raise TransferError(RejectReason.CONNECTION_CLOSED) from None
    except TimeoutError:
        raise TransferError(RejectReason.TIMEOUT, f"no frame within {timeout_s:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise TransferError(RejectReason.CONNECTION_ERROR, str(exc)) from None
    return kind, body


async def expect_frame(
    reader: asyncio.StreamReader, timeout_s: float, *kinds: FrameKind
) -> tuple[FrameKind, bytes]:
    """``read_frame`` that accepts only ``kinds`` (a NACK is always accepted)."""
    kind, body = await read_frame(reader, timeout_s)
    if kind not in kinds and kind is not FrameKind.NACK:
        raise DecodeError(RejectReason.UNEXPECTED_FRAME, kind.name)
    return kind, body
