"""One real, signed instance of every wire message type (shared by the wire tests)."""

from __future__ import annotations

from edgechain.chain.assembly import (
    make_address_record,
    make_command,
    make_exit_request,
    make_report,
)
from edgechain.chain.encoding import compute_genesis_hash, encode_genesis
from edgechain.chain.model import AppPolicy, AppSpec, AppUsage, CommandKind, RuntimeKind
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
from edgechain.crypto import bls
from edgechain.testing import build_block, build_skip_block, make_genesis, make_identity
from edgechain.types import AppId, BlockHash, NodeId, Signature, Slot
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

ITERATIONS = 50
GENESIS, IDENTS = make_genesis(6, committee_size=4, difficulty=ITERATIONS)
GENESIS_HASH = compute_genesis_hash(GENESIS)
GENESIS_SIG = bls.sign(IDENTS[0].sk, encode_genesis(GENESIS))
SENDER = make_identity(99, b"edgechain-wire-test")
APP = AppId(b"\x05" * 32)
REPORT = make_report(
    IDENTS[2].sk, Slot(1), timestamp_ms=9, cpu_bp=1, ram_bp=2, disk_bp=3, rtt_us=4,
    apps=(AppUsage(APP, 1, 2, 3, 4, 5),),
)  # fmt: skip
SPEC = AppSpec(
    "web", RuntimeKind.CONTAINER, image="nginx", policy=AppPolicy(allowed_labels=("eu",))
)
BLOCK = build_block(
    parent=GENESIS_HASH,
    slot=Slot(1),
    params=GENESIS.params,
    vdf_iterations=ITERATIONS,
    producer=IDENTS[0],
    committee=IDENTS[1:5],
    reports=(REPORT,),
    commands=(
        make_command(IDENTS[0].sk, GENESIS.params.chain_id, 1, CommandKind.SUBMIT, spec=SPEC),
    ),
)
SKIP = build_skip_block(
    parent=GENESIS_HASH, slot=Slot(1), excluded=IDENTS[0].node, committee=IDENTS[1:5]
)
SIG = Signature(bls.sign(IDENTS[1].sk, b"x"))
EXIT = make_exit_request(IDENTS[3].sk, Slot(7))
ADDRESS = make_address_record(IDENTS[2].sk, "wire", "[2001:db8::7]:7000", Slot(9))
INNER = b"\x0a" * 40
IPV4 = "255.255.255.255:65535"

SAMPLES: dict[str, WireMessage] = {
    "candidate": CandidateMsg(BLOCK),
    "vote": VoteMsg(BlockHash(b"\x01" * 32), Slot(1), IDENTS[1].node, SIG),
    "skip_vote": SkipVoteMsg(GENESIS_HASH, Slot(1), IDENTS[0].node, IDENTS[2].node, SIG),
    "block": BlockMsg(BLOCK),
    "skip_block": BlockMsg(SKIP),
    "reports": ReportMsg((REPORT, REPORT)),
    "inclusion": InclusionMsg(GENESIS.inclusions[0]),
    "exit": ExitMsg(EXIT),
    "address": AddressMsg(ADDRESS),
    "command": CommandMsg(BLOCK.commands[0]),
    "genesis": GenesisMsg(GENESIS, GENESIS_SIG),
    "sync_request": SyncRequestMsg(BlockHash(b"\x02" * 32), 64),
    "sync_response": SyncResponseMsg((BLOCK, SKIP), GenesisMsg(GENESIS, GENESIS_SIG)),
    "sync_response_no_genesis": SyncResponseMsg((SKIP,)),
    "forward_sync_request": ForwardSyncRequestMsg(BlockHash(b"\x03" * 32), 256),
    "forward_sync_response": ForwardSyncResponseMsg(BlockHash(b"\x03" * 32), (BLOCK, SKIP)),
    "state_request": StateRequestMsg(BlockHash(b"\x04" * 32)),
    "state_response": StateResponseMsg(BlockHash(b"\x04" * 32), b"\x01state bytes"),
    "ping": Ping(1),
    "pong": Pong(2**64 - 1),
    "find_node": FindNode(3, NodeId(b"\x03" * 32)),
    "nodes": Nodes(4, tuple(Contact(NodeId(bytes([i]) * 32), IPV4) for i in range(16))),
    "gossip": GossipMsg(compute_message_id(INNER), 8, INNER),
    "gossip_announcing": GossipMsg(
        compute_message_id(INNER), 7, INNER, tuple(bytes([i]) * 32 for i in range(32))
    ),
    "ihave": IHave(tuple(bytes([i]) * 32 for i in range(32))),
    "iwant": IWant((b"\x07" * 32,)),
}
