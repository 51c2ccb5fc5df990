"""Round trips, the per-type envelope signature rule, size limits and transport choice."""

from __future__ import annotations

import dataclasses

import pytest

from edgechain.chain.assembly import make_report
from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import AppUsage
from edgechain.consensus.messages import (
    BlockMsg,
    CandidateMsg,
    ForwardSyncResponseMsg,
    ReportMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VoteMsg,
)
from edgechain.errors import DecodeError, LocalError, PeerError
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, NodeId, Slot
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.codec import (
    compute_envelope_signing_root,
    decode_gossip_payload,
    decode_message,
    encode_gossip_payload,
    encode_message,
    fit_sync_response,
)
from edgechain.wire.limits import (
    MAX_DATAGRAM_BYTES,
    MAX_FRAME_BYTES,
    MAX_GOSSIP_TTL,
    MAX_IHAVE_IDS,
    MAX_SYNC_BLOCKS,
    WIRE_VERSION,
)
from edgechain.wire.message_kinds import (
    DATAGRAM_TYPES,
    ENVELOPE_SIGNED,
    GOSSIP_TYPES,
    Transport,
    is_envelope_signed,
    select_transport,
)
from edgechain.wire.messages import (
    Contact,
    GossipMsg,
    IHave,
    IWant,
    Nodes,
    Ping,
    compute_message_id,
)

from .samples import IDENTS, IPV4, REPORT, SAMPLES, SENDER, SIG, SKIP

OTHER = make_identity(98, b"edgechain-wire-test")


def _encode(name: str) -> bytes:
    return encode_message(SAMPLES[name], SENDER.node, SENDER.sk)


def _reencode(data: bytes, **changes: object) -> bytes:
    """The same envelope with some fields replaced (payload bytes untouched)."""
    env = pb.Envelope()
    env.ParseFromString(data)
    for field, value in changes.items():
        setattr(env, field, value)
    return env.SerializeToString()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_roundtrips(name: str) -> None:
    data = _encode(name)
    message, sender = decode_message(data)
    assert message == SAMPLES[name]
    assert sender == SENDER.node


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_received_blocks_come_with_the_hash_of_their_bytes(name: str) -> None:
    """The engine takes these instead of encoding each block again to hash it."""
    message, _ = decode_message(_encode(name))
    if isinstance(message, BlockMsg | CandidateMsg):
        assert message.block_hash == compute_block_hash(message.block)
    elif isinstance(message, SyncResponseMsg | ForwardSyncResponseMsg):
        assert message.hashes == tuple(compute_block_hash(b) for b in message.blocks)
        assert len(message.hashes) == len(message.blocks) > 0


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_signature_fields_follow_the_per_type_rule(name: str) -> None:
    env = pb.Envelope()
    env.ParseFromString(_encode(name))
    assert env.version == WIRE_VERSION
    if is_envelope_signed(type(SAMPLES[name])):
        assert len(env.public_key) == 48
        assert len(env.signature) == 96
    else:
        assert env.public_key == b""
        assert env.signature == b""


def test_signed_types_are_exactly_the_documented_ones() -> None:
    names = {t.__name__ for t in ENVELOPE_SIGNED}
    assert names == {"Ping", "Pong", "FindNode", "Nodes"}


def test_every_payload_kind_has_a_sample() -> None:
    kinds = {f.name for f in pb.Payload.DESCRIPTOR.oneofs_by_name["kind"].fields}
    sampled = set()
    for message in SAMPLES.values():
        payload = pb.Payload()
        env = pb.Envelope()
        env.ParseFromString(encode_message(message, SENDER.node, SENDER.sk))
        payload.ParseFromString(env.payload)
        kind = payload.WhichOneof("kind")
        assert kind is not None
        sampled.add(kind)
    assert sampled == kinds


# --- the envelope signature --------------------------------------------------------------


def test_signed_message_needs_a_key() -> None:
    with pytest.raises(LocalError):
        encode_message(Ping(1), SENDER.node)


def test_key_must_belong_to_the_sender() -> None:
    with pytest.raises(LocalError):
        encode_message(Ping(1), OTHER.node, SENDER.sk)


def test_unsigned_message_ignores_the_key() -> None:
    vote = SAMPLES["vote"]
    assert encode_message(vote, SENDER.node, SENDER.sk) == encode_message(vote, SENDER.node)


def test_forged_sender_is_rejected() -> None:
    """Claiming another id with one's own key: the id is not the hash of the key."""
    data = _reencode(_encode("ping"), sender=OTHER.node)
    with pytest.raises(DecodeError, match="key_mismatch"):
        decode_message(data)


def test_signature_from_another_key_is_rejected() -> None:
    genuine = pb.Envelope()
    genuine.ParseFromString(_encode("find_node"))
    other = pb.Envelope()
    other.ParseFromString(encode_message(SAMPLES["find_node"], OTHER.node, OTHER.sk))
    data = _reencode(_encode("find_node"), signature=other.signature)
    with pytest.raises(PeerError, match="bad_envelope_signature"):
        decode_message(data)


def test_signature_covers_the_payload() -> None:
    # A signed Ping moved onto another payload (a Pong) does not verify.
    ping = pb.Envelope()
    ping.ParseFromString(_encode("ping"))
    pong = pb.Envelope()
    pong.ParseFromString(_encode("pong"))
    with pytest.raises(PeerError, match="bad_envelope_signature"):
        decode_message(_reencode(ping.SerializeToString(), payload=pong.payload))


def test_signing_root_is_domain_separated() -> None:
    a = compute_envelope_signing_root(1, b"\x00" * 32, b"p")
    assert a != compute_envelope_signing_root(2, b"\x00" * 32, b"p")
    assert a != compute_envelope_signing_root(1, b"\x01" * 32, b"p")


@pytest.mark.parametrize("field", ["public_key", "signature"])
def test_missing_signature_fields_are_rejected(field: str) -> None:
    with pytest.raises(DecodeError, match="bad_length"):
        decode_message(_reencode(_encode("pong"), **{field: b""}))


def test_signature_on_an_unsigned_type_is_rejected() -> None:
    ping = pb.Envelope()
    ping.ParseFromString(_encode("ping"))
    data = _reencode(_encode("vote"), public_key=ping.public_key, signature=ping.signature)
    with pytest.raises(DecodeError, match="unexpected_signature"):
        decode_message(data)


def test_wrong_version_is_rejected() -> None:
    with pytest.raises(DecodeError, match="bad_version"):
        decode_message(_reencode(_encode("vote"), version=2))


def test_empty_payload_is_rejected() -> None:
    with pytest.raises(DecodeError, match="empty_payload"):
        decode_message(_reencode(_encode("vote"), payload=b""))


# --- gossip payloads ---------------------------------------------------------------------


def test_gossip_payload_is_the_origins_envelope() -> None:
    inner = encode_gossip_payload(SAMPLES["command"], SENDER.node, SENDER.sk)  # type: ignore[arg-type]
    outer = GossipMsg(compute_message_id(inner), 5, inner)
    received, hop = decode_message(encode_message(outer, OTHER.node))
    assert hop == OTHER.node
    assert isinstance(received, GossipMsg)
    message, origin = decode_gossip_payload(received.payload)
    assert message == SAMPLES["command"]
    assert origin == SENDER.node


def test_only_gossip_types_are_gossiped() -> None:
    assert all(isinstance(SAMPLES[n], GOSSIP_TYPES) for n in ("block", "genesis", "exit"))
    with pytest.raises(LocalError):
        encode_gossip_payload(SAMPLES["vote"], SENDER.node)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="not_gossipable"):
        decode_gossip_payload(_encode("vote"))


def test_gossip_with_a_wrong_message_id_is_rejected() -> None:
    forged = GossipMsg(b"\x00" * 32, 3, b"payload")
    with pytest.raises(DecodeError, match="bad_message_id"):
        decode_message(encode_message(forged, SENDER.node))


def test_gossip_announcements_are_checked_and_not_part_of_the_id() -> None:
    ids = (b"\x05" * 32, b"\x06" * 32)
    msg = GossipMsg(compute_message_id(b"p"), 3, b"p", ids)
    received, _ = decode_message(encode_message(msg, SENDER.node))
    assert received == msg
    too_many = GossipMsg(msg.message_id, 3, b"p", tuple(bytes([i]) * 32 for i in range(33)))
    with pytest.raises(DecodeError, match="too_many"):
        decode_message(encode_message(too_many, SENDER.node))
    short = GossipMsg(msg.message_id, 3, b"p", (b"\x05" * 31,))
    with pytest.raises(DecodeError, match="bad_length"):
        decode_message(encode_message(short, SENDER.node))


@pytest.mark.parametrize("ttl", [0, MAX_GOSSIP_TTL + 1])
def test_gossip_ttl_is_bounded(ttl: int) -> None:
    msg = GossipMsg(compute_message_id(b"p"), ttl, b"p")
    with pytest.raises(DecodeError, match="bad_ttl"):
        decode_message(encode_message(msg, SENDER.node))


# --- field checks ------------------------------------------------------------------------


def test_short_hash_is_rejected() -> None:
    vote = VoteMsg(BlockHash(b"\x01" * 31), Slot(1), IDENTS[1].node, SIG)
    with pytest.raises(DecodeError, match="bad_length"):
        decode_message(encode_message(vote, SENDER.node))


def test_candidate_must_not_be_a_skip_block() -> None:
    env = pb.Envelope()
    env.ParseFromString(_encode("skip_block"))
    payload = pb.Payload()
    payload.ParseFromString(env.payload)
    bad = pb.Payload()
    bad.candidate.block = payload.block.block
    with pytest.raises(DecodeError, match="bad_candidate"):
        decode_message(_reencode(_encode("skip_block"), payload=bad.SerializeToString()))


@pytest.mark.parametrize("limit", [0, MAX_SYNC_BLOCKS + 1])
def test_sync_limit_is_bounded(limit: int) -> None:
    with pytest.raises(DecodeError, match="bad_limit"):
        decode_message(encode_message(SyncRequestMsg(SKIP.parent, limit), SENDER.node))


def test_sync_response_block_count_is_bounded() -> None:
    msg = SyncResponseMsg((SKIP,) * (MAX_SYNC_BLOCKS + 1))
    with pytest.raises(DecodeError, match="too_many"):
        decode_message(encode_message(msg, SENDER.node))


@pytest.mark.parametrize("address", ["", "x" * 65, "é" * 33])
def test_contact_addresses_are_bounded(address: str) -> None:
    msg = Nodes(1, (Contact(NodeId(b"\x01" * 32), address),))
    with pytest.raises(DecodeError, match="bad_address"):
        decode_message(encode_message(msg, SENDER.node, SENDER.sk))


def test_too_many_message_ids_are_rejected() -> None:
    msg = IHave(tuple(i.to_bytes(32, "big") for i in range(MAX_IHAVE_IDS + 1)))
    with pytest.raises(DecodeError, match="too_many"):
        decode_message(encode_message(msg, SENDER.node))
    with pytest.raises(DecodeError, match="bad_length"):
        decode_message(encode_message(IWant((b"\x01" * 31,)), SENDER.node))


def test_too_many_contacts_are_rejected() -> None:
    msg = Nodes(1, tuple(Contact(NodeId(bytes([i]) * 32), "a:1") for i in range(33)))
    with pytest.raises(DecodeError, match="too_many"):
        decode_message(encode_message(msg, SENDER.node, SENDER.sk))


def test_local_object_with_a_bad_field_is_a_local_error() -> None:
    bad = dataclasses.replace(REPORT, node=NodeId(b"\x01" * 3))
    with pytest.raises(LocalError):
        encode_message(ReportMsg((bad,)), SENDER.node)


# --- sizes and transports ----------------------------------------------------------------


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(DecodeError, match="too_large"):
        decode_message(b"\xff" * (MAX_DATAGRAM_BYTES + 1), Transport.DATAGRAM)
    with pytest.raises(DecodeError, match="too_large"):
        decode_message(b"\xff" * (MAX_FRAME_BYTES + 1), Transport.STREAM)


def test_datagram_sized_messages_choose_udp() -> None:
    for name in ("vote", "skip_vote", "ping", "pong", "find_node", "nodes", "ihave", "iwant"):
        data = _encode(name)
        assert len(data) <= MAX_DATAGRAM_BYTES, name
        assert select_transport(SAMPLES[name], data) is Transport.DATAGRAM
        decode_message(data, Transport.DATAGRAM)


def test_sixteen_ipv4_contacts_fit_one_datagram() -> None:
    """The DHT's default reply limit (16) is chosen so that a signed answer fits."""
    longest = Nodes(2**64 - 1, tuple(Contact(NodeId(bytes([i]) * 32), IPV4) for i in range(16)))
    assert len(encode_message(longest, SENDER.node, SENDER.sk)) <= MAX_DATAGRAM_BYTES
    twenty = Nodes(1, tuple(Contact(NodeId(bytes([i]) * 32), IPV4) for i in range(20)))
    data = encode_message(twenty, SENDER.node, SENDER.sk)
    assert select_transport(twenty, data) is Transport.STREAM


def test_one_nodes_report_fits_a_datagram_until_it_has_many_apps() -> None:
    usages = tuple(AppUsage(AppId(bytes([i]) * 32), 1, 2, 3, 4, 5) for i in range(40))
    small = ReportMsg((REPORT,))
    assert select_transport(small, encode_message(small, SENDER.node)) is Transport.DATAGRAM
    big_report = make_report(
        IDENTS[2].sk, Slot(1), timestamp_ms=1, cpu_bp=1, ram_bp=1, disk_bp=1, rtt_us=1,
        apps=usages,
    )  # fmt: skip
    big = ReportMsg((big_report,))
    assert select_transport(big, encode_message(big, SENDER.node)) is Transport.STREAM


def test_blocks_never_choose_udp() -> None:
    for name in ("block", "skip_block", "candidate", "genesis", "sync_response", "command"):
        assert not isinstance(SAMPLES[name], DATAGRAM_TYPES)
        assert select_transport(SAMPLES[name], _encode(name)) is Transport.STREAM


def test_oversized_encoding_is_a_local_error() -> None:
    usages = tuple(AppUsage(AppId(i.to_bytes(32, "big")), 1, 2, 3, 4, 5) for i in range(256))
    report = dataclasses.replace(REPORT, apps=usages)  # ~15 KiB each
    too_many = ReportMsg((report,) * (MAX_FRAME_BYTES // 15_000 + 1))
    with pytest.raises(LocalError):
        encode_message(too_many, SENDER.node)


def test_sync_responses_are_trimmed_to_fit_a_frame() -> None:
    announce = SAMPLES["block"]
    assert isinstance(announce, BlockMsg)
    block = announce.block
    size = len(encode_message(SyncResponseMsg((block,)), SENDER.node))
    many = SyncResponseMsg((block,) * 40, SAMPLES["genesis"])  # type: ignore[arg-type]
    fitted = fit_sync_response(many, max_bytes=10 * size)
    assert 5 <= len(fitted.blocks) < 10
    assert fitted.blocks == many.blocks[: len(fitted.blocks)]  # the oldest are kept
    assert fitted.genesis == many.genesis
    assert len(encode_message(fitted, SENDER.node)) <= 10 * size
    assert fit_sync_response(fitted, max_bytes=10 * size) is fitted
    too_many = SyncResponseMsg((SKIP,) * (MAX_SYNC_BLOCKS + 5))
    assert len(fit_sync_response(too_many).blocks) == MAX_SYNC_BLOCKS
