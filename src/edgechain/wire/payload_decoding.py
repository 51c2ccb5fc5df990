"""Protobuf ``Payload`` to messages: every field length, count and bound checked, and the
chain objects inside decoded strictly (``tests/vectors/README.md``); chain signatures are not."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgechain.chain.command_encoding import decode_command
from edgechain.chain.encoding import decode_block_with_hash, decode_genesis
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import Reader
from edgechain.chain.model import AnyBlock, Block
from edgechain.chain.report_encoding import decode_report
from edgechain.chain.validator_encoding import decode_inclusion, read_address_record, read_exit
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
    ReportMsg,
    SkipVoteMsg,
    StateRequestMsg,
    StateResponseMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VoteMsg,
)
from edgechain.errors import DecodeError, RejectReason
from edgechain.types import HASH_SIZE, SIGNATURE_SIZE, BlockHash, NodeId, Signature, Slot
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.limits import (
    MAX_ADDRESS_BYTES,
    MAX_CONTACTS,
    MAX_GOSSIP_TTL,
    MAX_IHAVE_IDS,
    MAX_SYNC_BLOCKS,
)
from edgechain.wire.message_kinds import WireMessage
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


def decode_payload(payload: pb.Payload) -> WireMessage:
    """The message in a parsed Payload (its oneof names the type), every field checked."""
    kind = payload.WhichOneof("kind")
    if kind is None:
        raise DecodeError(RejectReason.EMPTY_PAYLOAD)
    return _DECODERS[kind](payload)


def check_fixed(value: bytes, size: int, field: str) -> bytes:
    """``value`` if it has exactly ``size`` bytes, else a DecodeError naming ``field``."""
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
    block, block_hash = decode_block_with_hash(p.candidate.block)
    if not isinstance(block, Block):
        raise DecodeError(RejectReason.BAD_CANDIDATE, "a candidate is never a skip block")
    return CandidateMsg(block, block_hash)


def _decode_vote(p: pb.Payload) -> VoteMsg:
    v = p.vote
    return VoteMsg(
        block_hash=BlockHash(check_fixed(v.block_hash, HASH_SIZE, "block_hash")),
        slot=Slot(v.slot),
        voter=NodeId(check_fixed(v.voter, HASH_SIZE, "voter")),
        signature=Signature(check_fixed(v.signature, SIGNATURE_SIZE, "signature")),
    )


def _decode_skip_vote(p: pb.Payload) -> SkipVoteMsg:
    v = p.skip_vote
    return SkipVoteMsg(
        parent=BlockHash(check_fixed(v.parent, HASH_SIZE, "parent")),
        slot=Slot(v.slot),
        excluded=NodeId(check_fixed(v.excluded, HASH_SIZE, "excluded")),
        voter=NodeId(check_fixed(v.voter, HASH_SIZE, "voter")),
        signature=Signature(check_fixed(v.signature, SIGNATURE_SIZE, "signature")),
    )


def _decode_block(p: pb.Payload) -> BlockMsg:
    return BlockMsg(*decode_block_with_hash(p.block.block))


def _decode_blocks(encoded: Sequence[bytes]) -> tuple[tuple[AnyBlock, ...], tuple[BlockHash, ...]]:
    """Blocks and the hashes of their received bytes."""
    decoded = [decode_block_with_hash(b) for b in encoded]
    return tuple(b for b, _ in decoded), tuple(h for _, h in decoded)


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
    signature = Signature(check_fixed(g.signature, SIGNATURE_SIZE, "signature"))
    return GenesisMsg(decode_genesis(g.genesis), signature)


def _decode_sync_request(p: pb.Payload) -> SyncRequestMsg:
    s = p.sync_request
    if not 0 < s.limit <= MAX_SYNC_BLOCKS:
        raise DecodeError(RejectReason.BAD_LIMIT, str(s.limit))
    return SyncRequestMsg(BlockHash(check_fixed(s.want, HASH_SIZE, "want")), s.limit)


def _decode_sync_response(p: pb.Payload) -> SyncResponseMsg:
    s = p.sync_response
    _check_count(len(s.blocks), MAX_SYNC_BLOCKS, "blocks")
    blocks, hashes = _decode_blocks(s.blocks)
    genesis = _from_genesis_announce(s.genesis) if s.HasField("genesis") else None
    return SyncResponseMsg(blocks, genesis, hashes)


def _decode_forward_sync_request(p: pb.Payload) -> ForwardSyncRequestMsg:
    s = p.forward_sync_request
    if not 0 < s.limit <= MAX_SYNC_BLOCKS:
        raise DecodeError(RejectReason.BAD_LIMIT, str(s.limit))
    return ForwardSyncRequestMsg(BlockHash(check_fixed(s.after, HASH_SIZE, "after")), s.limit)


def _decode_forward_sync_response(p: pb.Payload) -> ForwardSyncResponseMsg:
    s = p.forward_sync_response
    _check_count(len(s.blocks), MAX_SYNC_BLOCKS, "blocks")
    after = BlockHash(check_fixed(s.after, HASH_SIZE, "after"))
    return ForwardSyncResponseMsg(after, *_decode_blocks(s.blocks))


def _decode_state_request(p: pb.Payload) -> StateRequestMsg:
    return StateRequestMsg(BlockHash(check_fixed(p.state_request.block, HASH_SIZE, "block")))


def _decode_state_response(p: pb.Payload) -> StateResponseMsg:
    s = p.state_response
    # The state itself is decoded (and bounded) by consensus/state_codec.py when the
    # follower checks it; the frame limit bounds it here.
    return StateResponseMsg(BlockHash(check_fixed(s.block, HASH_SIZE, "block")), bytes(s.state))


def _decode_ping(p: pb.Payload) -> Ping:
    return Ping(p.ping.request_id)


def _decode_pong(p: pb.Payload) -> Pong:
    return Pong(p.pong.request_id)


def _decode_find_node(p: pb.Payload) -> FindNode:
    f = p.find_node
    return FindNode(f.request_id, NodeId(check_fixed(f.target, HASH_SIZE, "target")))


def _decode_nodes(p: pb.Payload) -> Nodes:
    n = p.nodes
    _check_count(len(n.contacts), MAX_CONTACTS, "contacts")
    contacts = tuple(
        Contact(NodeId(check_fixed(c.node_id, HASH_SIZE, "node_id")), _check_address(c.address))
        for c in n.contacts
    )
    return Nodes(n.request_id, contacts)


def _decode_gossip(p: pb.Payload) -> GossipMsg:
    g = p.gossip
    message_id = check_fixed(g.message_id, HASH_SIZE, "message_id")
    if not 0 < g.ttl <= MAX_GOSSIP_TTL:
        raise DecodeError(RejectReason.BAD_TTL, str(g.ttl))
    if not g.payload:
        raise DecodeError(RejectReason.EMPTY_GOSSIP)
    # A wrong id could poison every receiver's seen-cache against the real message.
    if compute_message_id(g.payload) != message_id:
        raise DecodeError(RejectReason.BAD_MESSAGE_ID)
    return GossipMsg(message_id, g.ttl, g.payload, _decode_message_ids(g.recent_ids))


def _decode_message_ids(ids: Sequence[bytes]) -> tuple[bytes, ...]:
    _check_count(len(ids), MAX_IHAVE_IDS, "message_ids")
    return tuple(check_fixed(i, HASH_SIZE, "message_id") for i in ids)


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
