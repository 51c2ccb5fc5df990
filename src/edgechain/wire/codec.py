"""Bytes ↔ messages: the Envelope around one message, its signature or session MAC and the
size checks before parsing (the Payload inside: ``payload_encoding``, ``payload_decoding``)."""

from __future__ import annotations

import hmac
import struct
from functools import lru_cache
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from edgechain.chain.encoding import encode_block, encode_genesis
from edgechain.consensus.messages import ForwardSyncResponseMsg, SyncResponseMsg
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id, sha256
from edgechain.crypto.session import MAC_SIZE, SessionKeys, compute_mac
from edgechain.errors import DecodeError, LocalError, PeerError, RejectReason
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE, NodeId, PublicKey, SecretKey
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.limits import MAX_FRAME_BYTES, MAX_SYNC_BLOCKS, WIRE_VERSION
from edgechain.wire.message_kinds import (
    GOSSIP_TYPES,
    GossipableMessage,
    Transport,
    WireMessage,
    get_max_size,
    is_envelope_signed,
    is_gossipable,
)
from edgechain.wire.payload_decoding import check_fixed, decode_payload
from edgechain.wire.payload_encoding import to_payload

ENVELOPE_DOMAIN = b"edgechain/envelope/v1"

P = TypeVar("P", bound=ProtoMessage)


def compute_envelope_signing_root(version: int, sender: bytes, payload: bytes) -> bytes:
    """What the envelope signature signs: the payload bytes exactly as sent."""
    return sha256(ENVELOPE_DOMAIN, struct.pack(">I", version), sender, payload)


# --- encoding ----------------------------------------------------------------------------


def encode_message(
    message: WireMessage,
    sender: NodeId,
    sk: SecretKey | None = None,
    *,
    sessions: SessionKeys | None = None,
    recipient_pk: PublicKey | None = None,
) -> bytes:
    """One Envelope. ``sk`` is required for ``ENVELOPE_SIGNED`` types, ignored otherwise.
    With ``sessions`` and the recipient's public key, such a type is MACed under the
    pair's session key (``crypto/session.py``) instead of signed.

    Raises :class:`LocalError` for our own mistakes: a missing key, a key that is not
    ``sender``'s, a field of the wrong size, or a result beyond ``MAX_FRAME_BYTES``.
    """
    if len(sender) != HASH_SIZE:
        raise LocalError(f"sender must be {HASH_SIZE} bytes, got {len(sender)}")
    try:
        payload = to_payload(message).SerializeToString(deterministic=True)
    except ValueError as exc:  # Writer.fixed on a wrong-sized field of our own object
        raise LocalError(f"cannot encode {type(message).__name__}: {exc}") from exc
    envelope = pb.Envelope(version=WIRE_VERSION, sender=sender, payload=payload)
    if is_envelope_signed(type(message)):
        if sk is None:
            raise LocalError(f"{type(message).__name__} needs an envelope signature")
        public_key = _get_public_key(sk)
        if compute_node_id(public_key) != sender:
            raise LocalError("the signing key does not belong to the sender id")
        root = compute_envelope_signing_root(WIRE_VERSION, sender, payload)
        envelope.public_key = public_key
        if sessions is not None and recipient_pk is not None:
            key = sessions.get_key(recipient_pk)
            envelope.mac = compute_mac(key, compute_node_id(recipient_pk), root)
        else:
            envelope.signature = bls.sign(sk, root)
    data = envelope.SerializeToString(deterministic=True)
    if len(data) > MAX_FRAME_BYTES:
        raise LocalError(f"{type(message).__name__} encodes to {len(data)} bytes")
    return data


def encode_gossip_payload(
    message: GossipableMessage, origin: NodeId, sk: SecretKey | None = None
) -> bytes:
    """The origin's inner Envelope that a :class:`GossipMsg` carries as its payload."""
    if not is_gossipable(message):
        raise LocalError(f"{type(message).__name__} is not gossiped")
    return encode_message(message, origin, sk)


SYNC_RESPONSE_OVERHEAD = 1024
"""Envelope, payload and genesis framing around a sync response's blocks (generous)."""


def fit_sync_response(
    message: SyncResponseMsg, max_bytes: int = MAX_FRAME_BYTES
) -> SyncResponseMsg:
    """The longest oldest-first prefix of ``message.blocks`` that encodes in ``max_bytes``.

    The oldest blocks are kept: they are the ones that connect to the requester's chain
    (it asks again from the newest it got). The engine caps sync responses by count
    (at most ``MAX_SYNC_BLOCKS``); this caps them by bytes, which only the wire knows.
    """
    budget = max_bytes - SYNC_RESPONSE_OVERHEAD
    if message.genesis is not None:
        budget -= len(encode_genesis(message.genesis.genesis))
    kept = 0
    for block in message.blocks[:MAX_SYNC_BLOCKS]:
        budget -= len(encode_block(block)) + 8  # + field tag and length varint
        if budget < 0:
            break
        kept += 1
    if kept == len(message.blocks):
        return message
    return SyncResponseMsg(message.blocks[:kept], message.genesis)


def fit_forward_response(
    message: ForwardSyncResponseMsg, max_bytes: int = MAX_FRAME_BYTES
) -> ForwardSyncResponseMsg:
    """The longest oldest-first prefix that encodes in ``max_bytes`` (the follower asks
    again from the newest block it got, like ``fit_sync_response``)."""
    fitted = fit_sync_response(SyncResponseMsg(message.blocks), max_bytes)
    if len(fitted.blocks) == len(message.blocks):
        return message
    return ForwardSyncResponseMsg(message.after, fitted.blocks)


@lru_cache(maxsize=16)
def _get_public_key(sk: SecretKey) -> PublicKey:
    # A node signs every DHT message with the same key; the scalar multiplication that
    # derives the public key is worth caching.
    return bls.sk_to_pk(sk)


# --- decoding ----------------------------------------------------------------------------


def decode_message(
    data: bytes, transport: Transport = Transport.STREAM, sessions: SessionKeys | None = None
) -> tuple[WireMessage, NodeId]:
    """The message in one Envelope and its sender.

    The size for the transport is checked before parsing; then every field length and
    count, the canonical chain objects inside, and the envelope signature where the
    message type requires one. Anything a peer can get wrong ends in
    :class:`~edgechain.errors.DecodeError` (malformed) or
    :class:`~edgechain.errors.PeerError` (a signature that does not verify), never in
    another exception. Signatures on chain objects are *not* checked here: that needs
    chain state (who the producer is, the committee, the validator keys) and is the job
    of ``chain/`` and ``consensus/``.

    ``sender`` is authenticated (by the envelope signature, or with ``sessions`` by a
    MAC under our session key with it) only for ``ENVELOPE_SIGNED`` types; for the
    others it is what the peer claims.
    """
    limit = get_max_size(transport)
    if len(data) > limit:
        raise DecodeError(
            RejectReason.TOO_LARGE, f"{len(data)} bytes > {limit} over {transport.value}"
        )
    envelope = _parse(pb.Envelope(), data, "envelope")
    if envelope.version != WIRE_VERSION:
        raise DecodeError(RejectReason.BAD_VERSION, str(envelope.version))
    sender = NodeId(check_fixed(envelope.sender, HASH_SIZE, "sender"))
    payload = _parse(pb.Payload(), envelope.payload, "payload")
    message = decode_payload(payload)
    _check_envelope_signature(envelope, type(message), sessions)
    return message, sender


def decode_gossip_payload(data: bytes) -> tuple[GossipableMessage, NodeId]:
    """The origin's message inside a :class:`GossipMsg` payload, and the origin."""
    message, origin = decode_message(data, Transport.STREAM)
    if not isinstance(message, GOSSIP_TYPES):
        raise DecodeError(RejectReason.NOT_GOSSIPABLE, type(message).__name__)
    return message, origin  # type: ignore[return-value]


def _parse(proto: P, data: bytes, what: str) -> P:
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # the C parser raises its own DecodeError, or RuntimeError
        raise DecodeError(RejectReason.MALFORMED, f"{what}: {exc}") from None
    return proto


def _check_envelope_signature(
    envelope: pb.Envelope, message_type: type, sessions: SessionKeys | None
) -> None:
    if not is_envelope_signed(message_type):
        if envelope.public_key or envelope.signature or envelope.mac:
            raise DecodeError(RejectReason.UNEXPECTED_SIGNATURE, message_type.__name__)
        return
    public_key = PublicKey(check_fixed(envelope.public_key, PUBLIC_KEY_SIZE, "public_key"))
    if compute_node_id(public_key) != envelope.sender:
        raise DecodeError(RejectReason.KEY_MISMATCH, "sender is not SHA-256(public_key)")
    root = compute_envelope_signing_root(envelope.version, envelope.sender, envelope.payload)
    if envelope.mac:
        if envelope.signature:
            raise DecodeError(RejectReason.UNEXPECTED_SIGNATURE, "both a MAC and a signature")
        mac = check_fixed(envelope.mac, MAC_SIZE, "mac")
        if sessions is None:
            raise DecodeError(RejectReason.UNEXPECTED_MAC, message_type.__name__)
        with cpu_span(Component.DHT):  # only the DHT's envelopes are authenticated
            key = sessions.get_key(public_key)  # BlsError (a PeerError) if invalid
            valid = hmac.compare_digest(compute_mac(key, sessions.node_id, root), mac)
        if not valid:
            raise PeerError(RejectReason.BAD_ENVELOPE_MAC, message_type.__name__)
        sessions.macs_verified += 1
        sessions.learn(public_key)
        return
    signature = check_fixed(envelope.signature, SIGNATURE_SIZE, "signature")
    with cpu_span(Component.DHT):
        valid = bls.verify(public_key, root, signature)
    if not valid:
        raise PeerError(RejectReason.BAD_ENVELOPE_SIGNATURE, message_type.__name__)
    if sessions is not None:
        # The sender proved this key: our answers to it can be MACed from now on.
        sessions.learn(public_key)
