"""The consensus engine driven directly, sans I/O (an h11 ConnectionPair-style harness).

A tiny zero-latency network pumps engine outputs into other engines; time only moves
when a test says so. Everything is real: keys, VDF proofs, signatures, validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from edgechain.chain.assembly import make_command, make_ticket
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import (
    AppSpec,
    Block,
    ChainParams,
    CommandKind,
    RuntimeKind,
    SkipBlock,
)
from edgechain.consensus.engine import ConsensusEngine, EngineConfig
from edgechain.consensus.messages import (
    HEAD_WANT,
    BlockAccepted,
    BlockMsg,
    Event,
    GenesisMsg,
    Message,
    MigrationOrder,
    Outgoing,
    Output,
    PeerRejected,
    Route,
    SyncRequestMsg,
    VoteMsg,
)
from edgechain.consensus.state import (
    compute_next_difficulty,
    get_candidate_deadline_ms,
    get_roles,
    get_slot_start_ms,
)
from edgechain.consensus.sync import SYNC_RETRY_MS
from edgechain.crypto import vdf
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import RejectReason
from edgechain.testing import ADMIN, make_identity
from edgechain.types import BlockHash, NodeId, Signature, Slot

PARAMS = ChainParams(
    chain_id="harness",
    genesis_time_ms=0,
    slot_duration_ms=2_000,
    committee_size=3,
    initial_difficulty=300,
    admin_key=ADMIN.pk,
    nodes_per_cluster=3,
)
BOOTSTRAP = make_identity(0, b"harness")


class Harness:
    """Engines on a perfect, instant network; ``down`` nodes send and receive nothing."""

    def __init__(self, count: int, params: ChainParams = PARAMS, vdf_ms: int = 0) -> None:
        self.vdf_ms = vdf_ms
        """How long an evaluation takes in harness time. Long runs need the difficulty
        rule's target (0 makes every VDF instant, so the rule raises difficulty 25 %
        a block)."""
        self.engines: dict[NodeId, ConsensusEngine] = {}
        self.order: list[NodeId] = []
        self.down: set[NodeId] = set()
        self.events: dict[NodeId, list[Event]] = {}
        self.now = 0
        self.params = params
        for i in range(count):
            self.add(i)

    def add(self, i: int, ticket: bytes | None = None) -> ConsensusEngine:
        """Node ``i``, with ``ticket`` (None: the admin's ticket for its key)."""
        ident = BOOTSTRAP if i == 0 else make_identity(i, b"harness")
        if ticket is None:
            ticket = make_ticket(ADMIN.sk, self.params.chain_id, ident.pk)
        config = EngineConfig(
            chain_id=self.params.chain_id,
            genesis_key=BOOTSTRAP.pk,
            address=f"harness:{i}",
            ticket=ticket,
            genesis_template=self.params if i == 0 else None,
            genesis_delay_ms=1_000,
        )
        engine = ConsensusEngine(ident.sk, config)
        self.engines[engine.node_id] = engine
        self.order.append(engine.node_id)
        self.events[engine.node_id] = []
        return engine

    def engine(self, i: int) -> ConsensusEngine:
        return self.engines[self.order[i]]

    def handle(self, src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]) -> None:
        self.events[src].extend(out.events)
        for outgoing in out.messages:
            targets: Iterable[NodeId] = (
                self.order if outgoing.route is Route.GOSSIP else outgoing.to
            )
            queue.extend((src, dst, outgoing.message) for dst in targets if dst != src)
        for request in out.vdf_requests:
            result = vdf.prove(request.group, request.challenge, request.iterations)
            done = self.now + self.vdf_ms
            self.handle(src, self.engines[src].on_vdf_result(request, result, done), queue)

    def pump(self, queue: list[tuple[NodeId, NodeId, Message]]) -> None:
        while queue:
            src, dst, msg = queue.pop(0)
            if src in self.down or dst in self.down or dst not in self.engines:
                continue
            self.handle(dst, self.engines[dst].on_message(msg, src, self.now), queue)

    def tick(self, now: int) -> None:
        self.now = now
        queue: list[tuple[NodeId, NodeId, Message]] = []
        for node in self.order:
            if node not in self.down:
                self.handle(node, self.engines[node].on_tick(now), queue)
        self.pump(queue)

    def deliver(self, dst: int, msg: Message, src: NodeId | None = None) -> Output:
        out = self.engine(dst).on_message(msg, src, self.now)
        queue: list[tuple[NodeId, NodeId, Message]] = []
        self.handle(self.order[dst], out, queue)
        self.pump(queue)
        return out

    def run_slot(self, slot: int) -> None:
        """Tick at every checkpoint of ``slot``: start, VDF done, 2/3, end."""
        params = self.chain_params()
        start = get_slot_start_ms(params, slot)
        for at in (start, start + 600, get_candidate_deadline_ms(params, slot), start + 1_999):
            self.tick(at)

    def get_next_producer(self, slot: int) -> ConsensusEngine:
        """The engine elected to produce ``slot`` on node 0's head."""
        head = self.engine(0).get_head_state()
        assert head is not None
        roles = get_roles(self.engine(0).memo, head, Slot(slot), self.params.committee_size)
        return next(e for e in self.engines.values() if e.pk == roles.producer)

    def chain_params(self) -> ChainParams:
        params = self.engine(0).params
        assert params is not None, "no genesis yet"
        return params

    def start_chain(self) -> None:
        self.tick(0)
        self.tick(10)
        assert all(e.genesis is not None for e in self.engines.values())


def test_genesis_once_committee_plus_one_requests_are_in() -> None:
    net = Harness(3)
    net.tick(0)
    assert net.engine(0).genesis is None  # 3 of the 4 requests it needs
    net.add(3)
    net.tick(5)
    net.tick(10)
    genesis = net.engine(0).genesis
    assert genesis is not None and len(genesis.inclusions) == 4
    assert all(e.genesis == genesis for e in net.engines.values())


def test_forged_genesis_is_rejected() -> None:
    net = Harness(4)
    net.start_chain()
    msg = net.engine(0).genesis_msg
    assert msg is not None
    outsider = Harness(2).engine(1)
    forged = GenesisMsg(msg.genesis, Signature(bytes(96)))
    out = outsider.on_message(forged, None, 0)
    assert [e.reason for e in out.events if isinstance(e, PeerRejected)] == [
        "bad_genesis_signature"
    ]
    assert outsider.genesis is None


def test_slots_produce_attested_blocks_everywhere() -> None:
    net = Harness(5)
    net.start_chain()
    for slot in (1, 2, 3):
        net.run_slot(slot)
    heads = {e.head for e in net.engines.values()}
    assert len(heads) == 1
    engine = net.engine(1)
    chain = [engine.blocks[h] for h in engine.get_chain()]
    assert [b.slot for b in chain] == [1, 2, 3]
    assert all(isinstance(b, Block) for b in chain)
    assert all(engine.states[h].signers == 3 for h in engine.get_chain())


def test_silent_producer_is_excluded_by_a_skip_block() -> None:
    net = Harness(6)
    net.start_chain()
    net.run_slot(1)
    # Take slot 2's producer down before the slot starts.
    silent = net.get_next_producer(2).node_id
    net.down.add(silent)
    net.run_slot(2)
    live = [e for n, e in net.engines.items() if n not in net.down]
    assert len({e.head for e in live}) == 1
    tip = live[0].blocks[live[0].head]  # type: ignore[index]
    assert isinstance(tip, SkipBlock) and tip.excluded == silent
    state = live[0].get_head_state()
    assert state is not None and silent not in state.validators


def test_hostile_messages_are_counted_never_raised() -> None:
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    engine = net.engine(2)
    head = engine.blocks[engine.head]  # type: ignore[index]
    assert isinstance(head, Block)
    outsider = make_identity(999, b"harness")
    hostile: list[Message] = [
        VoteMsg(head.parent, Slot(1), outsider.node, Signature(b"\x01" * 96)),
        BlockMsg(dataclasses.replace(head, slot=Slot(1), timestamp_ms=head.timestamp_ms + 1)),
        BlockMsg(dataclasses.replace(head, producer_signature=Signature(bytes(96)))),
    ]
    for msg in hostile:
        engine.on_message(msg, outsider.node, net.now)
    assert sum(engine.stats.peer_errors.values()) >= 1
    net.run_slot(2)
    assert engine.get_head_state() is not None
    assert engine.get_head_state().slot == 2  # type: ignore[union-attr]


def test_block_from_the_future_is_held_then_accepted() -> None:
    net = Harness(5)
    net.start_chain()
    net.down.add(net.order[4])
    net.run_slot(1)
    late = net.engine(4)
    block = net.engine(0).blocks[net.engine(0).head]  # type: ignore[index]
    # Node 4's clock is behind: the block is from its future.
    late.on_message(BlockMsg(block), net.order[0], now_ms=10)
    assert late.get_head_state().slot == 0 and late.held  # type: ignore[union-attr]
    late.on_tick(get_slot_start_ms(net.chain_params(), 1))
    assert late.get_head_state().slot == 1  # type: ignore[union-attr]


def test_missing_ancestors_are_synced_from_the_sender() -> None:
    net = Harness(5)
    net.start_chain()
    net.down.add(net.order[4])
    for slot in (1, 2, 3):
        net.run_slot(slot)
    net.down.clear()
    tip = net.engine(0).blocks[net.engine(0).head]  # type: ignore[index]
    out = net.deliver(4, BlockMsg(tip), net.order[0])
    assert any(isinstance(o.message, SyncRequestMsg) for o in out.messages)
    assert net.engine(4).head == net.engine(0).head


def test_late_node_without_genesis_syncs_it() -> None:
    net = Harness(4)
    net.start_chain()
    net.run_slot(1)
    newcomer = net.add(7)
    assert newcomer.genesis is None
    tip = net.engine(0).blocks[net.engine(0).head]  # type: ignore[index]
    net.deliver(4, BlockMsg(tip), net.order[0])
    assert newcomer.genesis == net.engine(0).genesis
    assert newcomer.head == net.engine(0).head
    # It asks to join and is included by a later block.
    net.run_slot(2)
    net.run_slot(3)
    state = newcomer.get_head_state()
    assert state is not None and newcomer.node_id in state.validators


def test_a_node_without_genesis_asks_for_the_chain_once_per_retry_not_per_block() -> None:
    """Each gossiped block before the genesis is a new block to ask about; the asks
    (each answered with up to ``sync_limit`` blocks) share one retry time."""
    net = Harness(4)
    net.start_chain()
    for slot in (1, 2, 3):
        net.run_slot(slot)
    newcomer = net.add(7)
    chain = net.engine(0).get_chain()
    blocks = [net.engine(0).blocks[h] for h in chain[-3:]]

    def count_asks(block_index: int, now: int) -> int:
        out = newcomer.on_message(BlockMsg(blocks[block_index]), net.order[0], now)
        return sum(isinstance(o.message, SyncRequestMsg) for o in out.messages)

    start = net.now
    assert count_asks(0, start) == 1
    assert count_asks(1, start + SYNC_RETRY_MS - 1) == 0  # another block, same wait
    assert count_asks(2, start + SYNC_RETRY_MS) == 1
    assert count_asks(0, start + SYNC_RETRY_MS + 1) == 0  # the wait has doubled
    assert newcomer.genesis is None  # no answer was delivered


def test_submitted_app_is_included_then_placed() -> None:
    net = Harness(5)
    net.start_chain()
    spec = AppSpec("counter", RuntimeKind.PROCESS, command=("sh", "-c", "sleep 1"))
    command = make_command(ADMIN.sk, PARAMS.chain_id, 1, CommandKind.SUBMIT, spec=spec)
    _, out = net.engine(3).submit_command(command, net.now)
    app_id = compute_submitted_app_id(ADMIN.pk, 1)
    queue: list[tuple[NodeId, NodeId, Message]] = []
    net.handle(net.order[3], out, queue)
    net.pump(queue)
    for slot in (1, 2):
        net.run_slot(slot)
    engine = net.engine(0)
    chain = [engine.blocks[h] for h in engine.get_chain()]
    assert isinstance(chain[0], Block) and chain[0].commands == (command,)
    assert isinstance(chain[1], Block) and [e.app for e in chain[1].plan] == [app_id]
    destination = chain[1].plan[0].destination
    orders = [e for e in net.events[destination] if isinstance(e, MigrationOrder)]
    assert [o.entry.app for o in orders] == [app_id] and orders[0].spec == spec
    assert all(
        isinstance(e, BlockAccepted)
        for e in net.events[destination]
        if isinstance(e, BlockAccepted)
    )


@pytest.mark.parametrize("elapsed", [1, 100, 499, 500, 501, 900, 1333])
def test_difficulty_rule_steers_to_the_target(elapsed: int) -> None:
    params = dataclasses.replace(PARAMS, vdf_target_bp=2_500)  # target 500 ms of 2 s
    new = compute_next_difficulty(params, 10_000, elapsed)
    assert 7_500 <= new <= 12_500  # at most ±25 % a block
    if elapsed < 500:
        assert new > 10_000
    elif elapsed > 500:
        assert new < 10_000
    else:
        assert new == 10_000


def test_difficulty_rule_converges() -> None:
    """Iterations/s fixed: evaluation time settles at the target fraction of the slot."""
    ips, difficulty = 180_000, 5_000
    for _ in range(40):
        difficulty = compute_next_difficulty(PARAMS, difficulty, difficulty * 1_000 // ips)
    assert abs(difficulty * 1_000 // ips - 500) <= 5


def test_skip_at_the_validator_floor_excludes_nobody() -> None:
    """With exactly committee_size + 1 validators, a silent producer is not excluded:
    the chain must keep a committee to recover once producers are fast enough again."""
    from edgechain.chain.validator_set import NO_EXCLUSION

    net = Harness(4)  # committee 3 + 1: the floor
    net.start_chain()
    net.run_slot(1)
    head = net.engine(0).get_head_state()
    assert head is not None
    silent = net.get_next_producer(2).node_id
    net.down.add(silent)
    net.run_slot(2)
    live = next(e for n, e in net.engines.items() if n not in net.down)
    tip = live.blocks[live.head]  # type: ignore[index]
    assert isinstance(tip, SkipBlock) and tip.excluded == NO_EXCLUSION
    state = live.get_head_state()
    assert state is not None and len(state.validators) == 4
    assert state.difficulty == head.difficulty * 3 // 4


def test_a_vdf_is_wanted_only_while_it_can_still_become_the_candidate() -> None:
    net = Harness(6)
    net.start_chain()
    net.run_slot(1)
    producer = net.get_next_producer(2)
    start = get_slot_start_ms(net.chain_params(), 2)
    [request] = producer.on_tick(start).vdf_requests
    assert producer.is_vdf_wanted(request, start + 100)
    # Past 2/3 of the slot a candidate could not be sent any more.
    deadline = get_candidate_deadline_ms(net.chain_params(), 2)
    assert not producer.is_vdf_wanted(request, deadline)
    # Once the candidate went out, a second evaluation is not wanted either.
    result = vdf.prove(request.group, request.challenge, request.iterations)
    out = producer.on_vdf_result(request, result, start + 100)
    assert out.messages, "the candidate went to the committee"
    assert not producer.is_vdf_wanted(request, start + 200)
    # A request for another parent (the head moved on) is never wanted.
    stale = dataclasses.replace(request, challenge=BlockHash(bytes(32)))
    assert not producer.is_vdf_wanted(stale, start + 100)


class RecordingHarness(Harness):
    def __init__(self, count: int) -> None:
        self.sent: list[tuple[NodeId, Outgoing]] = []
        super().__init__(count)

    def handle(self, src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]) -> None:
        self.sent.extend((src, outgoing) for outgoing in out.messages)
        super().handle(src, out, queue)


def test_a_new_block_goes_straight_to_the_next_producer_and_committee() -> None:
    net = RecordingHarness(8)
    net.start_chain()
    net.run_slot(1)
    engine = net.engine(0)
    [block_hash] = engine.get_chain()
    block = engine.blocks[block_hash]
    assert isinstance(block, Block)
    state = engine.states[block_hash]
    roles = get_roles(engine.memo, state, Slot(2), PARAMS.committee_size)
    next_duties = {compute_node_id(pk) for pk in (roles.producer, *roles.committee)}
    sends = [
        (src, o)
        for src, o in net.sent
        if isinstance(o.message, BlockMsg) and o.message.block == block
    ]
    # The producer of slot 1 sent it directly to slot 2's duties, then gossiped it.
    [(src, direct)] = [(s, o) for s, o in sends if o.route is Route.DIRECT]
    assert src == block.producer
    assert set(direct.to) == next_duties - {block.producer}
    assert [o.route for s, o in sends if s == block.producer] == [Route.DIRECT, Route.GOSSIP]


def test_a_restart_applies_stored_blocks_without_validating_them_again() -> None:
    net = Harness(4)
    net.start_chain()
    for slot in (1, 2, 3, 4):
        net.run_slot(slot)
    source = net.engine(0)
    chain = [(h, source.blocks[h]) for h in source.get_chain()]
    assert len(chain) >= 3
    genesis_msg = source.genesis_msg
    assert genesis_msg is not None

    restarted = net.add(9)
    restarted._adopt_genesis(genesis_msg.genesis, genesis_msg.signature)
    for block_hash, block in chain:
        out = restarted.on_stored_block(block, block_hash, net.now)
        assert not any(isinstance(e, PeerRejected) for e in out.events)
    assert restarted.head == source.head
    assert restarted.get_head_state() == source.get_head_state()
    assert dict(restarted.stats.peer_errors) == {}
    # Only its own store is trusted, and only bytes that hash to the key they were
    # stored under: a block altered on disk goes through full validation and fails.
    damaged = net.add(10)
    damaged._adopt_genesis(genesis_msg.genesis, genesis_msg.signature)
    first_hash, first = chain[0]
    assert isinstance(first, Block)
    altered = dataclasses.replace(first, timestamp_ms=first.timestamp_ms + 1)
    out = damaged.on_stored_block(altered, first_hash, net.now)
    assert damaged.stats.peer_errors[RejectReason.STORED_BLOCK_HASH_MISMATCH] == 1
    assert any(isinstance(e, PeerRejected) for e in out.events)
    assert damaged.head != first_hash and len(damaged.get_chain()) == 0


def test_a_node_nobody_gossips_to_asks_the_bootstrap_for_the_chain() -> None:
    """No block or gossip reaches it (its DHT lookups failed): with its first inclusion
    request it asks the bootstrap directly (HEAD_WANT) and syncs the whole chain."""
    net = Harness(4)
    net.start_chain()
    for slot in (1, 2, 3):
        net.run_slot(slot)
    newcomer = net.add(7)
    assert newcomer.genesis is None
    out = newcomer.on_tick(net.now)
    asks = [(o.message.want, o.to) for o in out.messages if isinstance(o.message, SyncRequestMsg)]
    assert asks == [(HEAD_WANT, (net.order[0],))]
    queue: list[tuple[NodeId, NodeId, Message]] = []
    net.handle(newcomer.node_id, out, queue)
    net.pump(queue)
    assert newcomer.genesis == net.engine(0).genesis
    assert newcomer.head == net.engine(0).head
