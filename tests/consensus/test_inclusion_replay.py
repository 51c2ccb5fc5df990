"""A node's request to join belongs to one stay (block format 15, ``chain/departures.py``).

A node joins again with a new request, leaves again; its request of that stay, replayed,
must not readmit it: every node refuses it, no producer carries it, and a block that does
is invalid. Before format 15 the request's nonce was not checked and it would have been
carried (an exit of an earlier stay had the same hole: ``test_joining.py``).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from edgechain.chain.assembly import sign_as_producer
from edgechain.chain.model import Block, InclusionRequest
from edgechain.chain.validator_set import ValidatorSet
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.memo import Memo
from edgechain.consensus.messages import (
    BlockMsg,
    ExitMsg,
    InclusionMsg,
    Message,
    PeerRejected,
    Route,
)
from edgechain.errors import RejectReason, ValidationError
from edgechain.hostile import Hostile
from edgechain.types import NodeId

from .test_engine import Harness

LEAVER = 5


def _validators(net: Harness) -> ValidatorSet:
    state = net.engine(0).get_head_state()
    assert state is not None
    return state.validators


def _leave(net: Harness, engine: ConsensusEngine, slot: int) -> int:
    """``engine`` asks to exit; slots run until the set no longer holds it."""
    out = engine.request_exit(net.now)
    queue: list[tuple[NodeId, NodeId, Message]] = []
    net.handle(engine.node_id, out, queue)
    net.pump(queue)
    assert any(isinstance(o.message, ExitMsg) for o in out.messages)
    while engine.node_id in _validators(net) and slot < 40:
        net.run_slot(slot)
        slot += 1
    assert engine.node_id not in _validators(net)
    return slot


def _restart_and_join(net: Harness, slot: int) -> tuple[ConsensusEngine, int]:
    """The leaver started again on its key: a fresh engine that syncs and asks to join."""
    net.order.remove(net.engine(LEAVER).node_id)
    engine = net.add(LEAVER)
    tip = net.engine(0).blocks[net.engine(0).head]  # type: ignore[index]
    net.deliver(LEAVER, BlockMsg(tip), net.order[0])
    while engine.node_id not in _validators(net) and slot < 60:
        net.run_slot(slot)
        slot += 1
    assert engine.node_id in _validators(net)
    return engine, slot


@pytest.fixture(scope="module")
def replay() -> tuple[Harness, InclusionRequest, int]:
    """A chain whose node 5 left, joined again with a request, and left again."""
    net = Harness(6)
    net.start_chain()
    net.run_slot(1)
    slot = _leave(net, net.engine(LEAVER), 2)
    rejoined, slot = _restart_and_join(net, slot)
    request = rejoined.joining.own_request
    assert request.nonce > 0
    slot = _leave(net, rejoined, slot)
    net.run_slot(slot)  # a block on the state that records the second departure
    return net, request, slot + 1


def test_every_node_refuses_the_request_of_the_stay_that_ended(
    replay: tuple[Harness, InclusionRequest, int],
) -> None:
    net, request, slot = replay
    node = net.engine(LEAVER).node_id
    for index in (0, 1):
        out = net.deliver(index, InclusionMsg(request), net.order[2])
        rejected = [e for e in out.events if isinstance(e, PeerRejected)]
        assert [e.reason for e in rejected] == [RejectReason.BAD_INCLUSION]
        assert bytes(request.public_key) not in net.engine(index).joining.pending_inclusions
    # Planted in every pool anyway (as a node that pooled it before the exit would hold
    # it), no producer carries it: a few slots later the node is still out.
    for engine in net.engines.values():
        if engine.node_id != node:
            engine.joining.pending_inclusions[bytes(request.public_key)] = request
    for s in range(slot, slot + 4):
        net.run_slot(s)
    assert node not in _validators(net)
    assert len({e.head for e in net.engines.values() if e.node_id != node}) == 1


def test_a_block_that_carries_it_is_invalid(
    replay: tuple[Harness, InclusionRequest, int],
) -> None:
    net, request, _ = replay
    engine = net.engine(0)
    block_hash = engine.head
    block = engine.blocks[block_hash]  # type: ignore[index]
    while not isinstance(block, Block):
        block = engine.blocks[block.parent]
    parent = engine.states[block.parent]
    assert parent.departures.get(net.engine(LEAVER).node_id, -1) > request.nonce
    producer = next(e for e in net.engines.values() if e.node_id == block.producer)
    forged = sign_as_producer(dataclasses.replace(block, inclusions=(request,)), producer.ctx.sk)
    memo = Memo(randomness=os.urandom(32))
    mode = ValidationMode(check_attestation=False)
    # The same block without the request is valid: what fails is the request alone.
    honest = sign_as_producer(dataclasses.replace(block, inclusions=()), producer.ctx.sk)
    validate_full(memo, net.chain_params(), parent, honest, memo.get_block_hash(honest), mode)
    with pytest.raises(ValidationError) as refused:
        validate_full(memo, net.chain_params(), parent, forged, memo.get_block_hash(forged), mode)
    assert refused.value.reason is RejectReason.BAD_INCLUSION
    assert "before the node left" in str(refused.value)


def test_started_again_it_signs_a_new_request_that_admits_it(
    replay: tuple[Harness, InclusionRequest, int],
) -> None:
    net, request, slot = replay
    left = net.engine(0).get_head_state().departures[net.engine(LEAVER).node_id]  # type: ignore[union-attr]
    engine, _ = _restart_and_join(net, slot + 4)
    assert engine.joining.own_request.nonce >= left > request.nonce


def test_the_hostile_replay_sends_that_request(
    replay: tuple[Harness, InclusionRequest, int],
) -> None:
    """``replay-inclusions`` (``hostile.py``, judged on real nodes in
    ``tests/lab/test_hostile_live.py``) picks this very request from the head chain."""
    net, request, _ = replay
    replayer = net.engine(1)
    hostile = Hostile(("replay-inclusions",), replayer.ctx.sk, replayer.node_id, lambda: replayer)
    (sent,) = hostile.on_tick(net.now)
    assert sent.message == InclusionMsg(request) and sent.route is Route.GOSSIP
    assert hostile.acts["replay-inclusions"] == 1
    out = net.deliver(0, sent.message, replayer.node_id)
    assert [e.reason for e in out.events if isinstance(e, PeerRejected)] == [
        RejectReason.BAD_INCLUSION
    ]
