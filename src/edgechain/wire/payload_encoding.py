"""Messages to protobuf ``Payload``: the oneof field each message type fills, the chain
objects inside in their canonical encoding (``tests/vectors/README.md``)."""

from __future__ import annotations

from edgechain.chain.command_encoding import encode_command
from edgechain.chain.encoding import encode_block, encode_genesis
from edgechain.chain.encoding_primitives import Writer
from edgechain.chain.model import ExitRequest
from edgechain.chain.report_encoding import encode_report
from edgechain.chain.validator_encoding import encode_inclusion, write_address_record, write_exit
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
from edgechain.wire import edgechain_pb2 as pb
from edgechain.wire.message_kinds import WireMessage
from edgechain.wire.messages import FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong


def _encode_exit(request: ExitRequest) -> bytes:
    w = Writer()
    write_exit(w, request)
    return bytes(w.buf)


def _to_genesis_announce(message: GenesisMsg) -> pb.GenesisAnnounce:
    return pb.GenesisAnnounce(genesis=encode_genesis(message.genesis), signature=message.signature)


def to_payload(message: WireMessage) -> pb.Payload:
    """The Payload whose oneof field holds ``message``, chain objects as their bytes."""
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
                pb.Gossip(
                    message_id=message.message_id,
                    ttl=message.ttl,
                    payload=message.payload,
                    recent_ids=message.recent_ids,
                )
            )
        case IHave():
            p.ihave.message_ids.extend(message.message_ids)
        case IWant():
            p.iwant.message_ids.extend(message.message_ids)
    return p
