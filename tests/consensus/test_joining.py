"""Joining after the genesis: when a node asks to be included, and with which request.

A node asks once it holds the chain (not while a block later than its head waits for
its ancestors; a head lagging the clock first asks the seeds for theirs), signs for
its head's slot, and a request signed before the genesis
(nonce 0) is pooled by nobody after it (``consensus/joining.py``).
"""

from __future__ import annotations

import dataclasses

from edgechain.chain.assembly import make_exit_request, make_ticket
from edgechain.chain.enrollment import TOKEN_ID_SIZE, make_enrollment_token
from edgechain.chain.model import ExitRequest, InclusionRequest
from edgechain.chain.validator_set import ValidatorSet
from edgechain.consensus.backoff import get_backoff_ms
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.joining import (
    DIRECT_TO_PRODUCERS,
    MAX_LAG_ASKS,
    MAX_RETRY_BACKOFF,
    PRE_GENESIS_NONCE,
    RESIGN_EVERY,
)
from edgechain.consensus.messages import (
    HEAD_WANT,
    AdmissionRefused,
    BlockMsg,
    ExitMsg,
    InclusionMsg,
    Message,
    Output,
    PeerRejected,
    Route,
    SyncRequestMsg,
)
from edgechain.errors import RejectReason
from edgechain.testing import ADMIN, make_identity
from edgechain.types import NodeId, Slot

from .test_engine import PARAMS, Harness

PK_7 = make_identity(7, b"harness").pk


def _get_requests(out: Output) -> list[InclusionRequest]:
    """The requests ``out`` gossips (each also goes straight to the next producers)."""
    return [
        o.message.request
        for o in out.messages
        if isinstance(o.message, InclusionMsg) and o.route is Route.GOSSIP
    ]


def _run_a_waiting_newcomer(
    duration_ms: int, next_block_at_ms: int | None = None
) -> tuple[list[tuple[int, InclusionRequest]], list[int]]:
    """A node that joins a two-block chain whose validators then all go down, ticked
    every 0.5 s for ``duration_ms``: when (ms after the start) it sent which request,
    and when it asked the seeds for their head instead. It holds the first block from
    the start, the second from ``next_block_at_ms``."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    net.run_slot(2)
    first, second = (net.engine(0).blocks[h] for h in net.engine(0).get_chain())
    assert (first.slot, second.slot) == (1, 2)
    newcomer = net.add(7)
    net.deliver(4, BlockMsg(first), net.order[0])
    assert newcomer.genesis is not None
    net.down.update(net.order[:4])
    start = net.now
    sent, head_asks = [], []
    for at in range(start, start + duration_ms, 500):
        if next_block_at_ms is not None and at - start == next_block_at_ms:
            newcomer.on_message(BlockMsg(second), net.order[0], at)
        for o in newcomer.on_tick(at).messages:
            if isinstance(o.message, InclusionMsg) and o.route is Route.GOSSIP:
                sent.append((at - start, o.message.request))
            elif isinstance(o.message, SyncRequestMsg) and o.message.want == HEAD_WANT:
                head_asks.append(at - start)
    return sent, head_asks


def test_a_node_waiting_to_join_backs_off_its_requests() -> None:
    """Each new request costs every node a pairing: the retry interval doubles up to 4x
    the base while a node waits to be included (backoff.get_backoff_ms)."""
    assert [get_backoff_ms(8_000, a, MAX_RETRY_BACKOFF) for a in range(5)] == [
        8_000, 8_000, 16_000, 32_000, 32_000,
    ]  # fmt: skip
    # Nobody includes it (the others are down). Its first request goes at once; then
    # its head lags the clock by more than JOIN_MAX_LAG_SLOTS, so it asks the seeds for
    # their head MAX_LAG_ASKS times (+8, +16, +24 s), and then asks to join all the same
    # (the chain may be stalled): +32, +48, +80 s.
    sent, head_asks = _run_a_waiting_newcomer(100_000)
    assert [at // 1000 for at, _ in sent] == [0, 32, 48, 80]
    assert [at // 1000 for at in head_asks] == [8, 16, 24] and MAX_LAG_ASKS == 3


def test_a_waiting_node_resends_its_signed_request_and_signs_anew_only_every_fourth_time() -> None:
    """A repeat of a pending request costs the nodes that hold it nothing; each new one a
    pairing check on every node. So retries re-send the same signed request, and a new
    one (for the head's slot) goes out only every RESIGN_EVERY sends."""
    sent, _ = _run_a_waiting_newcomer(170_000, 60_000)
    requests = [request for _, request in sent]
    assert len(requests) == 6 and RESIGN_EVERY == 4
    # Its first request after the genesis is signed for its head's slot, never with the
    # pre-genesis nonce 0 (which nobody pools after the genesis).
    assert requests[1:4] == [requests[0]] * 3 and requests[0].nonce == 1
    assert requests[4] != requests[0] and requests[4].nonce == 2  # the head's slot now
    assert requests[5] == requests[4]
    # With no newer head there is nothing new to sign for: the same request goes out.
    still, _ = _run_a_waiting_newcomer(170_000)
    assert [request for _, request in still] == [still[0][1]] * 6


def test_a_request_signed_before_the_genesis_is_pooled_by_nobody_after_it() -> None:
    """A node started after the genesis gossips the request it signed while waiting for
    the chain; a validator that included it got a producer that could not produce (its
    slots became skip blocks that excluded it again)."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    late = net.add(7)  # no genesis yet
    requests = _get_requests(late.on_tick(net.now))
    assert [r.nonce for r in requests] == [PRE_GENESIS_NONCE]
    validator = net.engine(0)
    validator.on_message(InclusionMsg(requests[0]), late.node_id, net.now)
    assert bytes(late.pk) not in validator.pending_inclusions
    # The same node's request once it follows the chain is pooled. (The chain goes on
    # for the retry interval meanwhile: a head older than the clock is lagging.)
    net.down.add(late.node_id)
    for slot in range(2, 7):
        net.run_slot(slot)
    late.on_message(validator.ctx.genesis_msg, net.order[0], net.now)  # type: ignore[arg-type]
    for block_hash in validator.get_chain():
        late.on_message(BlockMsg(validator.blocks[block_hash]), net.order[0], net.now)
    assert late.head == validator.head
    requests = _get_requests(late.on_tick(net.now))
    assert [r.nonce for r in requests] == [6]
    validator.on_message(InclusionMsg(requests[0]), late.node_id, net.now)
    assert validator.pending_inclusions[bytes(late.pk)] == requests[0]


def test_a_node_behind_the_chain_does_not_ask_to_join_until_it_caught_up() -> None:
    """Holding the genesis is not following the chain: while a block beyond its head
    waits for its ancestors the node stays silent, and asks as soon as they came."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    net.run_slot(2)
    first, second = (net.engine(0).blocks[h] for h in net.engine(0).get_chain())
    late = net.add(7)
    late.on_message(net.engine(0).ctx.genesis_msg, net.order[0], net.now)  # type: ignore[arg-type]
    assert late.genesis is not None and late.get_head_state().slot == 0  # type: ignore[union-attr]
    late.on_message(BlockMsg(second), net.order[0], net.now)  # its parent is missing
    assert late.sync.has_orphan_after(Slot(0))
    for at in range(net.now, net.now + 6_000, 500):
        assert _get_requests(late.on_tick(at)) == []
    late.on_message(BlockMsg(first), net.order[0], net.now + 6_000)
    assert late.head == net.engine(0).head
    requests = _get_requests(late.on_tick(net.now + 6_000))
    assert [r.nonce for r in requests] == [2]


def test_a_request_also_goes_straight_to_the_next_producers() -> None:
    """Gossip drops a re-sent request as a duplicate everywhere it was seen, so a request
    gossip lost stayed lost until the next re-signing: the next producers get it
    directly too, and the first of them includes it in its block."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    late = net.add(7)
    validator = net.engine(0)
    late.on_message(validator.ctx.genesis_msg, net.order[0], net.now)  # type: ignore[arg-type]
    for block_hash in validator.get_chain():
        late.on_message(BlockMsg(validator.blocks[block_hash]), net.order[0], net.now)
    out = late.on_tick(net.now)
    direct = [
        o for o in out.messages if isinstance(o.message, InclusionMsg) and o.route is Route.DIRECT
    ]
    assert len(direct) == 1 and direct[0].message == InclusionMsg(late.joining.own_request)
    head = validator.get_head_state()
    assert head is not None
    assert direct[0].to == late.joining.get_next_producers(head)
    next_producer = net.get_next_producer(2)
    assert next_producer.node_id in direct[0].to and late.node_id not in direct[0].to
    assert 1 <= len(direct[0].to) <= DIRECT_TO_PRODUCERS
    # Only the next producer hears it (gossip lost): it includes the node.
    next_producer.on_message(direct[0].message, late.node_id, net.now)
    net.down.add(late.node_id)
    net.run_slot(2)
    state = validator.get_head_state()
    assert state is not None and state.slot == 2 and late.node_id in state.validators


def test_a_node_the_genesis_left_out_asks_again_as_soon_as_it_has_the_genesis() -> None:
    """Its pre-genesis request is pooled by nobody now: it must not wait out the retry
    interval that request started (a node started just after the genesis joined 8 s
    late, and the live tests that expect every node in the set saw it missing)."""
    net = Harness(4)
    net.start_chain()
    late = net.add(7)
    assert [r.nonce for r in _get_requests(late.on_tick(net.now))] == [PRE_GENESIS_NONCE]
    late.on_message(net.engine(0).ctx.genesis_msg, net.order[0], net.now + 500)  # type: ignore[arg-type]
    assert [r.nonce for r in _get_requests(late.on_tick(net.now + 500))] == [1]


def _get_exit(out: Output) -> ExitMsg:
    return next(o.message for o in out.messages if isinstance(o.message, ExitMsg))


def test_an_exit_of_an_earlier_stay_does_not_remove_the_node_that_joined_again() -> None:
    """A node leaves, is started again on its key and included again; its old exit
    request, replayed (a restarted node's own gossip pulled it back in CI at stop 47),
    is refused by every node, itself included, and no block carries it."""
    net = Harness(6)
    net.start_chain()
    net.run_slot(1)
    leaver = net.engine(5)
    node = leaver.node_id
    out = leaver.request_exit(net.now)
    old_exit = _get_exit(out)
    queue: list[tuple[NodeId, NodeId, Message]] = []
    net.handle(node, out, queue)
    net.pump(queue)
    slot = 2
    while node in _validators(net) and slot < 10:
        net.run_slot(slot)
        slot += 1
    assert node not in _validators(net)

    # Restarted on the same key: a fresh engine, which syncs the chain and asks to join.
    net.order.remove(node)
    rejoined = net.add(5)
    tip = net.engine(0).blocks[net.engine(0).head]  # type: ignore[index]
    net.deliver(5, BlockMsg(tip), net.order[0])
    while node not in _validators(net) and slot < 20:
        net.run_slot(slot)
        slot += 1
    assert node in _validators(net)

    for engine in (rejoined, net.engine(0)):
        rejected = [e.reason for e in net.deliver(net.order.index(engine.node_id), old_exit).events
                    if isinstance(e, PeerRejected)]  # fmt: skip
        assert rejected == [RejectReason.STALE_EXIT.value]  # not bad: honest relays carry it
        assert node not in engine.joining.pending_exits
    for _ in range(4):  # every node produces once or more: none carries the old exit
        net.run_slot(slot)
        slot += 1
    assert node in _validators(net)
    assert {e.head for e in net.engines.values()} == {net.engine(0).head}


def _validators(net: Harness) -> ValidatorSet:
    state = net.engine(0).get_head_state()
    assert state is not None
    return state.validators


def _join_with(ticket: bytes) -> tuple[Harness, ConsensusEngine, list[Output]]:
    """A node with ``ticket`` that holds a two-block chain of four validators, ticked
    at the chain's next slot and again past its retry interval."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    net.run_slot(2)
    newcomer = net.add(7, ticket=ticket)
    for block_hash in net.engine(0).get_chain():
        net.deliver(4, BlockMsg(net.engine(0).blocks[block_hash]), net.order[0])
    assert newcomer.get_head_state() is not None
    outs = [newcomer.on_tick(net.now), newcomer.on_tick(net.now + 40_000)]
    return net, newcomer, outs


def _refusals(outs: list[Output]) -> list[AdmissionRefused]:
    return [e for out in outs for e in out.events if isinstance(e, AdmissionRefused)]


def test_a_node_without_a_ticket_says_once_why_it_cannot_join_and_asks_nobody() -> None:
    """Restarted without ``--ticket`` on a permissioned chain, a node asked every retry
    and every peer refused it in silence (``bad_admission_ticket`` in their metrics):
    it followed the chain for good with nothing in its own log (session 59)."""
    net, newcomer, outs = _join_with(b"")
    assert [_get_requests(out) for out in outs] == [[], []]
    refusals = _refusals(outs)
    assert [r.reason for r in refusals] == [RejectReason.BAD_ADMISSION_TICKET]  # told once
    assert newcomer.admission_problem is not None
    # A node with its ticket asks, and has nothing to be told.
    _, admitted, outs = _join_with(make_ticket(ADMIN.sk, net.params.chain_id, bytes(PK_7)))
    assert _get_requests(outs[0]) and not _refusals(outs)
    assert admitted.admission_problem is None


def test_a_node_whose_enrollment_token_expired_says_so() -> None:
    token = make_enrollment_token(ADMIN.sk, PARAMS.chain_id, b"\x07" * TOKEN_ID_SIZE, 1)
    _, newcomer, outs = _join_with(token.encode())
    assert newcomer.admission_problem is not None
    assert [_get_requests(out) for out in outs] == [[], []]
    assert [(r.reason, r.detail) for r in _refusals(outs)] == [
        (RejectReason.BAD_ADMISSION_TICKET, "enrollment token expired at slot 1")
    ]


def test_a_stale_exit_is_told_apart_from_a_bad_one() -> None:
    """Over gossip, an exit of a node that is no validator is ``stale_exit`` (honest
    relays carry such, unchecked); a validator's exit with a wrong signature is still
    ``bad_exit``; a good one is taken."""
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    engine = net.engine(0)
    outsider = make_identity(99)
    member = net.engine(3)

    def reasons(req: ExitRequest) -> list[RejectReason]:
        out = engine.on_message(ExitMsg(req), member.node_id, net.now)
        return [e.reason for e in out.events if isinstance(e, PeerRejected)]

    assert reasons(make_exit_request(outsider.sk, Slot(1))) == [RejectReason.STALE_EXIT]
    good = make_exit_request(member.ctx.sk, Slot(1))
    forged = dataclasses.replace(good, signature=make_exit_request(outsider.sk, Slot(1)).signature)
    assert reasons(forged) == [RejectReason.BAD_EXIT]
    assert member.node_id not in engine.joining.pending_exits
    assert reasons(good) == []
    assert engine.joining.pending_exits[member.node_id] == good
