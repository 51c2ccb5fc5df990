"""Bytes ↔ messages: the envelope, its signature rule, and every size check.

``encode_message(msg, sender, sk)`` builds an ``Envelope`` around one message;
``decode_message(data, transport)`` checks the size for the transport *before* parsing,
parses, checks every field length and count, decodes the canonical chain objects inside,
and verifies the envelope signature where the message type requires one. Anything a
peer can get wrong ends in :class:`~edgechain.errors.DecodeError` (malformed) or
:class:`~edgechain.errors.PeerError` (a signature that does not verify), never in
another exception.

Which message types the envelope signs is fixed per type (``ENVELOPE_SIGNED``) and
explained in ``edgechain.proto``: the DHT (whose whole job is binding node ids to
addresses). Between two nodes that know each other's key, a 16-byte MAC under their
session key (``crypto/session.py``) stands in for the signature: the same
authentication for microseconds of CPU instead of two pairings. Every other message,
signed app commands included, is self-authenticating
(a BLS signature on the chain object or vote inside), so signing its envelope would
only cost a pairing per hop; for those, ``sender`` is an unauthenticated hint. Gossip,
IHave and IWant are unsigned hints too: what they lead to is checked by its id
(SHA-256 of the payload) and by the payload's own rule.

Signatures on chain objects are *not* checked here: that needs chain state (who the
producer is, the committee, the validator keys) and is the job of ``chain/`` and
``consensus/``. This module checks what the bytes alone can tell.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from edgechain.chain.command_encoding import decode_command, encode_command
from edgechain.chain.encoding import decode_block, decode_genesis, encode_block, encode_genesis
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import Reader, Writer
from edgechain.chain.model import Block, ExitRequest
from edgechain.chain.report_encoding import decode_report, encode_report
from edgechain.chain.validator_encoding import (
    decode_inclusion,
    encode_inclusion,
    read_address_record,
    read_exit,
    write_address_record,
    write_exit,
)
from edgechain.consensus.messages import (
    AddressMsg,
    BlockMsg,
    CandidateMsg,
    CommandMsg,
    ExitMsg,
    ForwardSyncRequestMsg,
    ForwardSyncResponseMsg,
    GenesisMsg,
    InclusionMsg,
    Message,
    ReportMsg,
    SkipVoteMsg,
    StateRequestMsg,
    StateResponseMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VoteMsg,
)
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id, sha256
from edgechain.crypto.session import MAC_SIZE, SessionKeys, compute_mac
from edgechain.errors import DecodeError, LocalError, PeerError, RejectReason
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import (
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    BlockHash,
    NodeId,
    PublicKey,
    SecretKey,
    Signature,
    Slot,
)
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.limits import (
    MAX_ADDRESS_BYTES,
    MAX_CONTACTS,
    MAX_DATAGRAM_BYTES,
    MAX_FRAME_BYTES,
    MAX_GOSSIP_TTL,
    MAX_IHAVE_IDS,
    MAX_SYNC_BLOCKS,
    WIRE_VERSION,
)
from edgechain.wire.messages import (
    Contact,
    FindNode,
    GossipMsg,
    IHave,
    IWant,
    Nodes,
    Ping,
    Pong,
    compute_message_id,
)

WireMessage = Message | Ping | Pong | FindNode | Nodes | GossipMsg | IHave | IWant
"""Everything that travels in an Envelope."""

GossipableMessage = BlockMsg | InclusionMsg | ExitMsg | AddressMsg | CommandMsg | GenesisMsg
"""What may sit inside a gossip wrapper (DESIGN.md: what is "gossiped")."""

ENVELOPE_SIGNED: frozenset[type] = frozenset({Ping, Pong, FindNode, Nodes})
"""Types whose envelope carries the sender's public key and signature (see module doc)."""

GOSSIP_TYPES: tuple[type, ...] = (
    BlockMsg, InclusionMsg, ExitMsg, AddressMsg, CommandMsg, GenesisMsg
)  # fmt: skip

DATAGRAM_TYPES: tuple[type, ...] = (
    VoteMsg, SkipVoteMsg, ReportMsg, Ping, Pong, FindNode, Nodes, IHave, IWant
)  # fmt: skip
"""Sent over UDP when their encoding fits one datagram; see :func:`select_transport`."""

ENVELOPE_DOMAIN = b"edgechain/envelope/v1"

P = TypeVar("P", bound=ProtoMessage)


class Transport(enum.Enum):
    DATAGRAM = "udp"
    """One UDP datagram, at most ``MAX_DATAGRAM_BYTES``."""
    STREAM = "tcp"
    """One length-prefixed TCP frame, at most ``MAX_FRAME_BYTES``."""


def get_max_size(transport: Transport) -> int:
    return MAX_DATAGRAM_BYTES if transport is Transport.DATAGRAM else MAX_FRAME_BYTES


def is_envelope_signed(message_type: type) -> bool:
    return message_type in ENVELOPE_SIGNED


def is_gossipable(message: object) -> bool:
    return isinstance(message, GOSSIP_TYPES)


def select_transport(message: WireMessage, encoded: bytes) -> Transport:
    """UDP for a datagram type whose encoding fits one datagram, TCP otherwise.

    Size decides, not only the type: a report with many applications, or a DHT answer
    with unusually long addresses, is still delivered (over TCP) rather than truncated.
    """
    if isinstance(message, DATAGRAM_TYPES) and len(encoded) <= MAX_DATAGRAM_BYTES:
        return Transport.DATAGRAM
    return Transport.STREAM


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
        payload = _to_payload(message).SerializeToString(deterministic=True)
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


def _encode_exit(request: ExitRequest) -> bytes:
    w = Writer()
    write_exit(w, request)
    return bytes(w.buf)


def _to_genesis_announce(message: GenesisMsg) -> pb.GenesisAnnounce:
    return pb.GenesisAnnounce(genesis=encode_genesis(message.genesis), signature=message.signature)


def _to_payload(message: WireMessage) -> pb.Payload:
    p = pb.Payload()
    match message:
        case CandidateMsg():
            p.candidate.block = encode_block(message.block)
        case VoteMsg():
            p.vote.CopyFrom(
                pb.Vote(
                    block_hash=message.block_hash,
                    slot=message.slot,
                    voter=message.voter,
                    signature=message.signature,
                )
            )
        case SkipVoteMsg():
            p.skip_vote.CopyFrom(
                pb.SkipVote(
                    parent=message.parent,
                    slot=message.slot,
                    excluded=message.excluded,
                    voter=message.voter,
                    signature=message.signature,
                )
            )
        case BlockMsg():
            p.block.block = encode_block(message.block)
        case ReportMsg():
            p.reports.reports.extend(encode_report(r) for r in message.reports)
        case InclusionMsg():
            p.inclusion.request = encode_inclusion(message.request)
        case ExitMsg():
            p.exit.request = _encode_exit(message.request)
        case AddressMsg():
            w = Writer()
            write_address_record(w, message.record)
            p.address.record = bytes(w.buf)
        case CommandMsg():
            p.command.command = encode_command(message.command)
        case GenesisMsg():
            p.genesis.CopyFrom(_to_genesis_announce(message))
        case SyncRequestMsg():
            p.sync_request.CopyFrom(pb.SyncRequest(want=message.want, limit=message.limit))
        case SyncResponseMsg():
            p.sync_response.blocks.extend(encode_block(b) for b in message.blocks)
            if message.genesis is not None:
                p.sync_response.genesis.CopyFrom(_to_genesis_announce(message.genesis))
        case ForwardSyncRequestMsg():
            p.forward_sync_request.CopyFrom(
                pb.ForwardSyncRequest(after=message.after, limit=message.limit)
            )
        case ForwardSyncResponseMsg():
            p.forward_sync_response.after = message.after
            p.forward_sync_response.blocks.extend(encode_block(b) for b in message.blocks)
        case StateRequestMsg():
            p.state_request.block = message.block
        case StateResponseMsg():
            p.state_response.CopyFrom(pb.StateResponse(block=message.block, state=message.state))
        case Ping():
            p.ping.request_id = message.request_id
        case Pong():
            p.pong.request_id = message.request_id
        case FindNode():
            p.find_node.CopyFrom(pb.FindNode(request_id=message.request_id, target=message.target))
        case Nodes():
            contacts = [pb.Contact(node_id=c.node_id, address=c.address) for c in message.contacts]
            p.nodes.CopyFrom(pb.Nodes(request_id=message.request_id, contacts=contacts))
        case GossipMsg():
            p.gossip.CopyFrom(
                pb.Gossip(message_id=message.message_id, ttl=message.ttl, payload=message.payload)
            )
        case IHave():
            p.ihave.message_ids.extend(message.message_ids)
        case IWant():
            p.iwant.message_ids.extend(message.message_ids)
    return p


# --- decoding ----------------------------------------------------------------------------


def decode_message(
    data: bytes, transport: Transport = Transport.STREAM, sessions: SessionKeys | None = None
) -> tuple[WireMessage, NodeId]:
    """The message in one Envelope and its sender.

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
    sender = NodeId(_check_fixed(envelope.sender, HASH_SIZE, "sender"))
    payload = _parse(pb.Payload(), envelope.payload, "payload")
    kind = payload.WhichOneof("kind")
    if kind is None:
        raise DecodeError(RejectReason.EMPTY_PAYLOAD)
    message = _DECODERS[kind](payload)
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
    public_key = PublicKey(_check_fixed(envelope.public_key, PUBLIC_KEY_SIZE, "public_key"))
    if compute_node_id(public_key) != envelope.sender:
        raise DecodeError(RejectReason.KEY_MISMATCH, "sender is not SHA-256(public_key)")
    root = compute_envelope_signing_root(envelope.version, envelope.sender, envelope.payload)
    if envelope.mac:
        if envelope.signature:
            raise DecodeError(RejectReason.UNEXPECTED_SIGNATURE, "both a MAC and a signature")
        mac = _check_fixed(envelope.mac, MAC_SIZE, "mac")
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
    signature = _check_fixed(envelope.signature, SIGNATURE_SIZE, "signature")
    with cpu_span(Component.DHT):
        valid = bls.verify(public_key, root, signature)
    if not valid:
        raise PeerError(RejectReason.BAD_ENVELOPE_SIGNATURE, message_type.__name__)
    if sessions is not None:
        # The sender proved this key: our answers to it can be MACed from now on.
        sessions.learn(public_key)


def _check_fixed(value: bytes, size: int, field: str) -> bytes:
    if len(value) != size:
        raise DecodeError(RejectReason.BAD_LENGTH, f"{field}: {len(value)} bytes, expected {size}")
    return value


def _check_address(address: str) -> str:
    size = len(address.encode("utf-8"))
    if not 0 < size <= MAX_ADDRESS_BYTES:
        raise DecodeError(RejectReason.BAD_ADDRESS, f"{size} bytes")
    return address


def _check_count(count: int, maximum: int, field: str) -> None:
    if count > maximum:
        raise DecodeError(RejectReason.TOO_MANY, f"{field}: {count} > {maximum}")


def _decode_candidate(p: pb.Payload) -> CandidateMsg:
    block = decode_block(p.candidate.block)
    if not isinstance(block, Block):
        raise DecodeError(RejectReason.BAD_CANDIDATE, "a candidate is never a skip block")
    return CandidateMsg(block)


def _decode_vote(p: pb.Payload) -> VoteMsg:
    v = p.vote
    return VoteMsg(
        block_hash=BlockHash(_check_fixed(v.block_hash, HASH_SIZE, "block_hash")),
        slot=Slot(v.slot),
        voter=NodeId(_check_fixed(v.voter, HASH_SIZE, "voter")),
        signature=Signature(_check_fixed(v.signature, SIGNATURE_SIZE, "signature")),
    )


def _decode_skip_vote(p: pb.Payload) -> SkipVoteMsg:
    v = p.skip_vote
    return SkipVoteMsg(
        parent=BlockHash(_check_fixed(v.parent, HASH_SIZE, "parent")),
        slot=Slot(v.slot),
        excluded=NodeId(_check_fixed(v.excluded, HASH_SIZE, "excluded")),
        voter=NodeId(_check_fixed(v.voter, HASH_SIZE, "voter")),
        signature=Signature(_check_fixed(v.signature, SIGNATURE_SIZE, "signature")),
    )


def _decode_block(p: pb.Payload) -> BlockMsg:
    return BlockMsg(decode_block(p.block.block))


def _decode_reports(p: pb.Payload) -> ReportMsg:
    _check_count(len(p.reports.reports), Limits.MAX_REPORTS, "reports")
    return ReportMsg(tuple(decode_report(r) for r in p.reports.reports))


def _decode_inclusion(p: pb.Payload) -> InclusionMsg:
    return InclusionMsg(decode_inclusion(p.inclusion.request))


def _decode_exit(p: pb.Payload) -> ExitMsg:
    r = Reader(p.exit.request)
    request = read_exit(r)
    r.finish()
    return ExitMsg(request)


def _decode_address(p: pb.Payload) -> AddressMsg:
    r = Reader(p.address.record)
    record = read_address_record(r)
    r.finish()
    return AddressMsg(record)


def _decode_command(p: pb.Payload) -> CommandMsg:
    return CommandMsg(decode_command(p.command.command))


def _decode_genesis(p: pb.Payload) -> GenesisMsg:
    return _from_genesis_announce(p.genesis)


def _from_genesis_announce(g: pb.GenesisAnnounce) -> GenesisMsg:
    signature = Signature(_check_fixed(g.signature, SIGNATURE_SIZE, "signature"))
    return GenesisMsg(decode_genesis(g.genesis), signature)


def _decode_sync_request(p: pb.Payload) -> SyncRequestMsg:
    s = p.sync_request
    if not 0 < s.limit <= MAX_SYNC_BLOCKS:
        raise DecodeError(RejectReason.BAD_LIMIT, str(s.limit))
    return SyncRequestMsg(BlockHash(_check_fixed(s.want, HASH_SIZE, "want")), s.limit)


def _decode_sync_response(p: pb.Payload) -> SyncResponseMsg:
    s = p.sync_response
    _check_count(len(s.blocks), MAX_SYNC_BLOCKS, "blocks")
    blocks = tuple(decode_block(b) for b in s.blocks)
    genesis = _from_genesis_announce(s.genesis) if s.HasField("genesis") else None
    return SyncResponseMsg(blocks, genesis)


def _decode_forward_sync_request(p: pb.Payload) -> ForwardSyncRequestMsg:
    s = p.forward_sync_request
    if not 0 < s.limit <= MAX_SYNC_BLOCKS:
        raise DecodeError(RejectReason.BAD_LIMIT, str(s.limit))
    return ForwardSyncRequestMsg(BlockHash(_check_fixed(s.after, HASH_SIZE, "after")), s.limit)


def _decode_forward_sync_response(p: pb.Payload) -> ForwardSyncResponseMsg:
    s = p.forward_sync_response
    _check_count(len(s.blocks), MAX_SYNC_BLOCKS, "blocks")
    after = BlockHash(_check_fixed(s.after, HASH_SIZE, "after"))
    return ForwardSyncResponseMsg(after, tuple(decode_block(b) for b in s.blocks))


def _decode_state_request(p: pb.Payload) -> StateRequestMsg:
    return StateRequestMsg(BlockHash(_check_fixed(p.state_request.block, HASH_SIZE, "block")))


def _decode_state_response(p: pb.Payload) -> StateResponseMsg:
    s = p.state_response
    # The state itself is decoded (and bounded) by consensus/state_codec.py when the
    # follower checks it; the frame limit bounds it here.
    return StateResponseMsg(BlockHash(_check_fixed(s.block, HASH_SIZE, "block")), bytes(s.state))


def _decode_ping(p: pb.Payload) -> Ping:
    return Ping(p.ping.request_id)


def _decode_pong(p: pb.Payload) -> Pong:
    return Pong(p.pong.request_id)


def _decode_find_node(p: pb.Payload) -> FindNode:
    f = p.find_node
    return FindNode(f.request_id, NodeId(_check_fixed(f.target, HASH_SIZE, "target")))


def _decode_nodes(p: pb.Payload) -> Nodes:
    n = p.nodes
    _check_count(len(n.contacts), MAX_CONTACTS, "contacts")
    contacts = tuple(
        Contact(NodeId(_check_fixed(c.node_id, HASH_SIZE, "node_id")), _check_address(c.address))
        for c in n.contacts
    )
    return Nodes(n.request_id, contacts)


def _decode_gossip(p: pb.Payload) -> GossipMsg:
    g = p.gossip
    message_id = _check_fixed(g.message_id, HASH_SIZE, "message_id")
    if not 0 < g.ttl <= MAX_GOSSIP_TTL:
        raise DecodeError(RejectReason.BAD_TTL, str(g.ttl))
    if not g.payload:
        raise DecodeError(RejectReason.EMPTY_GOSSIP)
    # A wrong id could poison every receiver's seen-cache against the real message.
    if compute_message_id(g.payload) != message_id:
        raise DecodeError(RejectReason.BAD_MESSAGE_ID)
    return GossipMsg(message_id, g.ttl, g.payload)


def _decode_message_ids(ids: Sequence[bytes]) -> tuple[bytes, ...]:
    _check_count(len(ids), MAX_IHAVE_IDS, "message_ids")
    return tuple(_check_fixed(i, HASH_SIZE, "message_id") for i in ids)


def _decode_ihave(p: pb.Payload) -> IHave:
    return IHave(_decode_message_ids(p.ihave.message_ids))


def _decode_iwant(p: pb.Payload) -> IWant:
    return IWant(_decode_message_ids(p.iwant.message_ids))


_DECODERS: dict[str, Callable[[pb.Payload], WireMessage]] = {
    "candidate": _decode_candidate,
    "vote": _decode_vote,
    "skip_vote": _decode_skip_vote,
    "block": _decode_block,
    "reports": _decode_reports,
    "inclusion": _decode_inclusion,
    "exit": _decode_exit,
    "address": _decode_address,
    "command": _decode_command,
    "genesis": _decode_genesis,
    "sync_request": _decode_sync_request,
    "sync_response": _decode_sync_response,
    "forward_sync_request": _decode_forward_sync_request,
    "forward_sync_response": _decode_forward_sync_response,
    "state_request": _decode_state_request,
    "state_response": _decode_state_response,
    "ping": _decode_ping,
    "pong": _decode_pong,
    "find_node": _decode_find_node,
    "nodes": _decode_nodes,
    "gossip": _decode_gossip,
    "ihave": _decode_ihave,
    "iwant": _decode_iwant,
}
