"""State roots, the light transition and checkpoint sync, on real engines
(``consensus/light_client.py``, ``consensus/checkpoint_sync.py``)."""

from __future__ import annotations

import dataclasses

import pytest

from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import AnyBlock, Block, ChainParams
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.checkpoint_sync import ANSWER_TIMEOUT_MS, CATCH_UP_SLOTS
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.light_client import LightState, get_light_state, process_light_block
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    BlockAccepted,
    BlockMsg,
    BlocksFollowed,
    CheckpointInstalled,
    ForwardSyncRequestMsg,
    ForwardSyncResponseMsg,
    Message,
    Output,
    PeerRejected,
    StateResponseMsg,
    SyncRequestMsg,
    SyncResponseMsg,
)
from edgechain.consensus.pruning import RETAIN_SLOTS
from edgechain.consensus.state import compute_genesis_state
from edgechain.consensus.state_codec import compute_state_root, decode_state, encode_state
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import BlockHash, NodeId

from .test_engine import PARAMS, Harness

SLOTS = RETAIN_SLOTS + 40
VDF_MS = PARAMS.slot_duration_ms * PARAMS.vdf_target_bp // 10_000


@pytest.fixture(scope="module")
def net() -> Harness:
    """A chain run past finality and the retained window (about 15 s of real VDFs and
    signatures), shared by the tests; each test that adds a node adds its own."""
    harness = Harness(5, vdf_ms=VDF_MS)
    harness.start_chain()
    for slot in range(1, SLOTS + 1):
        harness.run_slot(slot)
    return harness


def _archive(net: Harness) -> dict[BlockHash, AnyBlock]:
    """Every block any node accepted: what the nodes' stores hold together."""
    blocks: dict[BlockHash, AnyBlock] = {}
    for node in net.order:
        blocks.update(
            (e.block_hash, e.block) for e in net.events[node] if isinstance(e, BlockAccepted)
        )
    return blocks


def _canonical_chain(net: Harness) -> list[BlockHash]:
    """Node 0's head chain from its first block, oldest first, through the archive."""
    archive = _archive(net)
    chain: list[BlockHash] = []
    current = net.engine(0).head
    while current in archive:
        chain.append(current)
        current = archive[current].parent
    chain.reverse()
    return chain


def _genesis_light(engine: ConsensusEngine) -> tuple[LightState, ChainParams]:
    """The light state a new node starts from (its genesis's), and the chain's params."""
    assert engine.genesis is not None and engine.params is not None
    return get_light_state(compute_genesis_state(engine.genesis)), engine.params


def test_blocks_carry_their_parent_states_root(net: Harness) -> None:
    engine = net.engine(0)
    chain = engine.get_chain()
    checked = 0
    for block_hash in chain[1:]:
        block = engine.blocks[block_hash]
        parent = engine.states.get(block.parent)
        if isinstance(block, Block) and parent is not None:
            assert block.state_root == compute_state_root(parent)
            checked += 1
    assert checked > 20


def test_a_block_with_another_state_root_is_refused(net: Harness) -> None:
    engine = net.engine(0)
    head = engine.blocks[engine.head]  # type: ignore[index]
    block_hash = engine.head
    # Walk back to a full block whose parent state memory still holds.
    while not isinstance(head, Block):
        block_hash = head.parent
        head = engine.blocks[block_hash]
    parent = engine.states[head.parent]
    forged = dataclasses.replace(head, state_root=bytes(32))
    params = engine.params
    assert params is not None
    with pytest.raises(ValidationError) as caught:
        validate_full(
            engine.memo,
            params,
            parent,
            forged,
            engine.memo.get_block_hash(forged),
            ValidationMode(),
        )
    assert caught.value.reason == RejectReason.BAD_STATE_ROOT


def test_the_light_transition_follows_the_full_one(net: Harness) -> None:
    archive = _archive(net)
    chain = _canonical_chain(net)
    engine = net.engine(0)
    light, params = _genesis_light(engine)
    for block_hash in chain:
        light = process_light_block(light, archive[block_hash], block_hash, params)
    head = engine.get_head_state()
    assert head is not None
    assert light.block_hash == head.block_hash and light.seed == head.seed
    assert light.validators == head.validators and light.finality == head.finality
    assert light.finality.finalized.epoch >= 4


def test_the_light_transition_refuses_a_block_not_attested(net: Harness) -> None:
    archive = _archive(net)
    chain = _canonical_chain(net)
    light, params = _genesis_light(net.engine(0))
    first = archive[chain[0]]
    assert isinstance(first, Block)
    # Another VDF output: another hash, which the committee never signed.
    forged = dataclasses.replace(first, vdf_output=bytes(len(first.vdf_output)))
    with pytest.raises(ValidationError):
        process_light_block(light, forged, compute_block_hash(forged), params)
    # Not the next block of the followed chain.
    with pytest.raises(ValidationError) as caught:
        process_light_block(light, archive[chain[1]], chain[1], params)
    assert caught.value.reason == RejectReason.BAD_PARENT


def _serve_forward_from_archive(net: Harness, *, drop_backward: bool) -> list[int]:
    """Answer ``ArchiveForwardWanted`` from node 0's chain in the archive, as a node's
    canonical index would; optionally drop the newcomer's backward sync requests, so
    only checkpoint sync can bring it up to date. Returns the answers' sizes."""
    archive = _archive(net)
    chain = _canonical_chain(net)
    genesis_hash = net.engine(0).ctx.get_genesis_hash()
    served: list[int] = []
    original = net.handle

    def handle(src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]) -> None:
        for event in out.events:
            if isinstance(event, ArchiveForwardWanted):
                start = 0 if event.after == genesis_hash else chain.index(event.after) + 1
                blocks = tuple(archive[h] for h in chain[start : start + event.limit])
                served.append(len(blocks))
                queue.append((src, event.sender, ForwardSyncResponseMsg(event.after, blocks)))
        if drop_backward:
            out.messages[:] = [o for o in out.messages if not isinstance(o.message, SyncRequestMsg)]
        original(src, out, queue)

    net.handle = handle  # type: ignore[method-assign]
    return served


def _join(net: Harness, index: int) -> ConsensusEngine:
    newcomer = net.add(index)
    engine = net.engine(0)
    net.deliver(len(net.order) - 1, engine.genesis_msg, net.order[0])  # type: ignore[arg-type]
    net.deliver(len(net.order) - 1, BlockMsg(engine.blocks[engine.head]), net.order[0])  # type: ignore[index]
    return newcomer


def test_a_newcomer_catches_up_from_a_checkpoint_not_from_genesis(net: Harness) -> None:
    original = net.handle
    served = _serve_forward_from_archive(net, drop_backward=True)
    try:
        # The head block, 100 slots past its genesis, starts the follow at once.
        newcomer = _join(net, 9)
        engine = net.engine(0)
    finally:
        net.handle = original  # type: ignore[method-assign]
    events = net.events[newcomer.node_id]
    installed = [e for e in events if isinstance(e, CheckpointInstalled)]
    assert len(installed) == 1 and installed[0].followed >= SLOTS - CATCH_UP_SLOTS
    assert served and sum(served) > 0, "the stores were never asked"
    followed = sum(len(e.blocks) for e in events if isinstance(e, BlocksFollowed))
    assert followed == installed[0].followed
    # What /status reports of it (node/queries.get_checkpoint_sync_status).
    sync = newcomer.checkpoint
    assert (sync.installs, sync.anchor_slot, sync.blocks_followed) == (
        1,
        installed[0].slot,
        followed,
    )
    assert not sync.is_following()
    assert newcomer.head == engine.head
    # Only the blocks after the anchor were validated in full.
    assert newcomer.stats.blocks_accepted + newcomer.stats.skip_blocks_accepted < 40
    head = newcomer.get_head_state()
    assert head is not None and head == engine.get_head_state()


def test_a_newcomer_sent_the_chain_with_its_genesis_follows_it_to_a_checkpoint(
    net: Harness,
) -> None:
    """The answer to a chain ask before the genesis holds the genesis and the blocks from
    it (up to ``sync_limit``). A chain past ``CATCH_UP_SLOTS`` is not replayed from the
    genesis: the newest block starts a follow, as a head block far ahead does. (In a
    100-node join on 2 cores, replaying took a late joiner minutes.)"""
    original = net.handle
    served = _serve_forward_from_archive(net, drop_backward=True)
    try:
        newcomer = net.add(11)
        engine = net.engine(0)
        archive = _archive(net)
        blocks = tuple(archive[h] for h in _canonical_chain(net))
        assert blocks[-1].slot >= CATCH_UP_SLOTS
        answer = SyncResponseMsg(blocks, engine.genesis_msg)
        net.deliver(len(net.order) - 1, answer, net.order[0])
    finally:
        net.handle = original  # type: ignore[method-assign]
    events = net.events[newcomer.node_id]
    assert newcomer.genesis == engine.genesis
    assert len([e for e in events if isinstance(e, CheckpointInstalled)]) == 1
    assert served and sum(served) > 0
    assert newcomer.head == engine.head
    assert newcomer.stats.blocks_accepted + newcomer.stats.skip_blocks_accepted < 40


def test_a_state_that_does_not_match_its_root_is_refused(net: Harness) -> None:
    original = net.handle
    _serve_forward_from_archive(net, drop_backward=True)
    tampered_with = []

    def tamper(src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]) -> None:
        for index, outgoing in enumerate(out.messages):
            message = outgoing.message
            if isinstance(message, StateResponseMsg) and message.state:
                state = decode_state(message.state)
                changed = dataclasses.replace(state, difficulty=state.difficulty + 1)
                out.messages[index] = dataclasses.replace(
                    outgoing, message=StateResponseMsg(message.block, encode_state(changed))
                )
                tampered_with.append(message.block)
        served_handle(src, out, queue)

    served_handle = net.handle
    net.handle = tamper  # type: ignore[method-assign]
    try:
        newcomer = _join(net, 10)
        net.tick(net.now + 10)
    finally:
        net.handle = original  # type: ignore[method-assign]
    events = net.events[newcomer.node_id]
    assert tampered_with
    assert RejectReason.BAD_STATE_ROOT in [e.reason for e in events if isinstance(e, PeerRejected)]
    assert not [e for e in events if isinstance(e, CheckpointInstalled)]
    assert newcomer.head != net.engine(0).head
    assert not newcomer.checkpoint.is_following()  # its only peer failed it


def test_forward_requests_are_answered_from_memory_then_the_store(net: Harness) -> None:
    engine = net.engine(0)
    chain = engine.get_chain()
    asker = net.order[1]
    out = engine.on_message(ForwardSyncRequestMsg(chain[0], 5), asker, net.now)
    responses = [o.message for o in out.messages if isinstance(o.message, ForwardSyncResponseMsg)]
    assert len(responses) == 1
    assert [engine.memo.get_block_hash(b) for b in responses[0].blocks] == chain[1:6]
    # Older than memory: the node's store answers.
    genesis_hash = engine.ctx.get_genesis_hash()
    assert genesis_hash is not None
    out = engine.on_message(ForwardSyncRequestMsg(genesis_hash, 5), asker, net.now)
    assert not out.messages
    assert [e.after for e in out.events if isinstance(e, ArchiveForwardWanted)] == [genesis_hash]


def test_a_silent_peer_is_passed_over_for_another(net: Harness) -> None:
    original = net.handle
    _serve_forward_from_archive(net, drop_backward=True)
    serving = net.handle
    silent = net.order[0]

    def drop_to_silent(
        src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]
    ) -> None:
        out.messages[:] = [
            o
            for o in out.messages
            if not (isinstance(o.message, ForwardSyncRequestMsg) and o.to == (silent,))
        ]
        serving(src, out, queue)

    net.handle = drop_to_silent  # type: ignore[method-assign]
    try:
        newcomer = _join(net, 11)  # follows node 0, which never answers
        assert newcomer.checkpoint.is_following() and newcomer.checkpoint.peer == silent
        engine = net.engine(1)
        net.deliver(len(net.order) - 1, BlockMsg(engine.blocks[engine.head]), net.order[1])  # type: ignore[index]
        net.tick(net.now + ANSWER_TIMEOUT_MS)
    finally:
        net.handle = original  # type: ignore[method-assign]
    assert newcomer.checkpoint.failures == 1 and newcomer.checkpoint.installs == 1
    assert newcomer.head == net.engine(1).head
