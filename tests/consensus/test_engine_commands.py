"""Signed commands through the engines: refused and counted by every node, and a
hostile producer that carries an unsigned command gets no votes."""

from __future__ import annotations

import dataclasses

import pytest

from edgechain.chain.assembly import EMPTY_SIGNATURE, make_command
from edgechain.chain.authority import is_banned
from edgechain.chain.command_encoding import compute_command_hash, compute_submitted_app_id
from edgechain.chain.model import AppSpec, Block, CommandKind, RuntimeKind, SignedCommand
from edgechain.consensus.command_pool import REFUSED_HEADS, PendingCommand
from edgechain.consensus.command_status import CommandState, get_command_status
from edgechain.consensus.messages import CommandMsg, VoteMsg
from edgechain.errors import RejectReason, ValidationError
from edgechain.orchestrator import AppRecord, get_record
from edgechain.testing import ADMIN, make_identity
from edgechain.types import AppId, Slot

from .test_engine import PARAMS, Harness

SPEC = AppSpec("web", RuntimeKind.PROCESS, command=("sleep", "infinity"))
OPERATOR = make_identity(7, b"operator")


def gossip_to_all(net: Harness, cmd: SignedCommand, sender: int) -> None:
    for i in range(len(net.order)):
        if i != sender:
            net.deliver(i, CommandMsg(cmd), net.order[sender])


def chain_commands(net: Harness, i: int) -> list[SignedCommand]:
    engine = net.engine(i)
    return [
        c
        for h in engine.get_chain()
        if isinstance(block := engine.blocks[h], Block)
        for c in block.commands
    ]


def admin(seq: int, kind: CommandKind, **fields: object) -> SignedCommand:
    return make_command(ADMIN.sk, PARAMS.chain_id, seq, kind, **fields)  # type: ignore[arg-type]


def operator(seq: int, kind: CommandKind, **fields: object) -> SignedCommand:
    return make_command(OPERATOR.sk, PARAMS.chain_id, seq, kind, **fields)  # type: ignore[arg-type]


def include(net: Harness, cmd: SignedCommand, first_slot: int) -> int:
    """Submit ``cmd`` at node 1's API and run slots until a block carries it."""
    _, out = net.engine(1).submit_command(cmd, net.now)
    queue: list = []  # type: ignore[type-arg]
    net.handle(net.order[1], out, queue)
    net.pump(queue)
    slot = first_slot
    while cmd not in chain_commands(net, 0):
        net.run_slot(slot)
        slot += 1
        assert slot < first_slot + 6, "command never included"
    return slot


def test_bad_commands_are_refused_and_counted_by_every_node() -> None:
    net = Harness(5)
    net.start_chain()
    slot = include(net, admin(1, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk), 1)
    slot = include(net, operator(1, CommandKind.SUBMIT, spec=SPEC), slot)
    slot = include(net, admin(2, CommandKind.REVOKE_OPERATOR, key=OPERATOR.pk), slot)
    node_key = make_identity(3, b"harness")  # a validator, not an operator
    stranger = make_identity(99, b"stranger")
    bad = {
        RejectReason.COMMAND_BAD_SIGNATURE: dataclasses.replace(
            admin(5, CommandKind.SUBMIT, spec=SPEC), signature=EMPTY_SIGNATURE
        ),
        RejectReason.COMMAND_UNKNOWN_SIGNER: make_command(
            node_key.sk, PARAMS.chain_id, 1, CommandKind.SUBMIT, spec=SPEC
        ),
        RejectReason.COMMAND_REVOKED: operator(2, CommandKind.SUBMIT, spec=SPEC),
        RejectReason.COMMAND_REPLAYED: admin(1, CommandKind.GRANT_OPERATOR, key=stranger.pk),
        RejectReason.COMMAND_NOT_ADMIN: make_command(
            node_key.sk, PARAMS.chain_id, 1, CommandKind.EXCLUDE_NODE, node=net.order[4]
        ),
    }
    for reason, cmd in bad.items():
        # Gossiped by node 3 (a validator holding no operator key) to every other node.
        gossip_to_all(net, cmd, sender=3)
        for i in range(len(net.order)):
            if i != 3:
                assert net.engine(i).stats.peer_errors[reason] >= 1, (reason, i)
        # The API refuses it with the same reason.
        with pytest.raises(ValidationError) as info:
            net.engine(0).submit_command(cmd, net.now)
        assert info.value.reason == reason
    for extra in range(3):
        net.run_slot(slot + extra)
    carried = chain_commands(net, 0)
    assert not any(cmd in carried for cmd in bad.values())
    for engine in net.engines.values():
        assert all(compute_command_hash(c) not in engine.commands.pending for c in bad.values())
        state = engine.get_head_state()
        assert state is not None and len(state.registry.records) == 1  # the one SUBMIT


def test_api_refuses_commands_that_do_not_apply() -> None:
    net = Harness(4)
    net.start_chain()
    stop_unknown = admin(1, CommandKind.STOP, app=b"\x05" * 32)
    with pytest.raises(ValidationError) as info:
        net.engine(0).submit_command(stop_unknown, net.now)
    assert info.value.reason == RejectReason.COMMAND_INVALID
    long_name = dataclasses.replace(SPEC, name="x" * 5000)
    with pytest.raises(ValidationError):
        net.engine(0).submit_command(admin(1, CommandKind.SUBMIT, spec=long_name), net.now)


def test_api_refuses_a_second_submission_of_a_name_pending_or_on_chain() -> None:
    """A resent ``apps submit`` (a new seq, the same name) is refused while the first
    waits for a block and once the chain holds it; the first, posted again as is, is
    still taken (a retry of one command is no second app)."""
    net = Harness(4)
    net.start_chain()
    first = admin(1, CommandKind.SUBMIT, spec=SPEC)
    net.engine(0).submit_command(first, net.now)
    resent = admin(2, CommandKind.SUBMIT, spec=SPEC)
    with pytest.raises(ValidationError, match="is submitted already") as info:
        net.engine(0).submit_command(resent, net.now)
    assert info.value.reason == RejectReason.COMMAND_INVALID
    net.engine(0).submit_command(first, net.now)
    other = admin(2, CommandKind.SUBMIT, spec=dataclasses.replace(SPEC, name="db"))
    net.engine(0).submit_command(other, net.now)
    include(net, first, 1)
    with pytest.raises(ValidationError, match="an app named 'web' exists"):
        net.engine(1).submit_command(admin(3, CommandKind.SUBMIT, spec=SPEC), net.now)


def head_record(net: Harness, app: AppId) -> AppRecord:
    state = net.engine(0).get_head_state()
    assert state is not None
    record = get_record(state.registry, app)
    assert record is not None
    return record


def test_api_refuses_a_move_to_a_draining_node_which_a_block_may_still_carry() -> None:
    net = Harness(5)
    net.start_chain()
    slot = include(net, admin(1, CommandKind.SUBMIT, spec=SPEC), 1)
    app = compute_submitted_app_id(bytes(PARAMS.admin_key), 1)
    while head_record(net, app).node is None:
        net.run_slot(slot)
        slot += 1
        assert slot < 12, "app never placed"
    target = next(n for n in net.order if n != head_record(net, app).node)
    slot = include(net, admin(2, CommandKind.DRAIN_NODE, node=target), slot)
    move = admin(3, CommandKind.MOVE, app=app, node=target)
    with pytest.raises(ValidationError, match="is draining") as info:
        net.engine(1).submit_command(move, net.now)
    assert info.value.reason == RejectReason.COMMAND_INVALID
    # Not a validity rule: gossiped, the same MOVE is kept, carried and left pending.
    gossip_to_all(net, move, sender=1)
    while move not in chain_commands(net, 0):
        net.run_slot(slot)
        slot += 1
        assert slot < 30, "gossiped MOVE never carried"
    record = head_record(net, app)
    assert record.move_to == target and record.node != target


def test_hostile_producer_with_an_unsigned_command_gets_no_votes() -> None:
    net = Harness(5)
    net.start_chain()
    producer = net.get_next_producer(1)
    unsigned = dataclasses.replace(
        admin(1, CommandKind.SUBMIT, spec=SPEC), signature=EMPTY_SIGNATURE
    )
    # The hostile producer skips the pool's checks and carries the command anyway.
    producer.commands.pending[compute_command_hash(unsigned)] = PendingCommand(unsigned, Slot(0))
    votes: list[VoteMsg] = []
    original = net.handle

    def spy(src, out, queue):  # type: ignore[no-untyped-def]
        votes.extend(m.message for m in out.messages if isinstance(m.message, VoteMsg))
        original(src, out, queue)

    net.handle = spy  # type: ignore[method-assign]
    net.run_slot(1)
    assert votes == []
    rejected = sum(
        e.stats.peer_errors[RejectReason.COMMAND_BAD_SIGNATURE] for e in net.engines.values()
    )
    assert rejected >= PARAMS.committee_size // 2 + 1
    engine = net.engine(0)
    head = engine.blocks[engine.head]  # type: ignore[index]
    assert not isinstance(head, Block) or unsigned not in head.commands
    state = engine.get_head_state()
    assert state is not None
    assert get_record(state.registry, compute_submitted_app_id(ADMIN.pk, 1)) is None


def test_admin_exclusion_goes_through_blocks_and_the_node_never_returns() -> None:
    net = Harness(6)
    net.start_chain()
    victim = net.order[5]
    slot = include(net, admin(1, CommandKind.EXCLUDE_NODE, node=victim), 1)
    for extra in range(6):  # the victim keeps asking to join with its valid ticket
        net.run_slot(slot + extra)
    for i in range(5):
        state = net.engine(i).get_head_state()
        assert state is not None and victim not in state.validators
        assert is_banned(state.authority, victim)
    assert not net.engine(5).is_validator()


def test_a_command_another_operator_overtook_is_dropped_with_the_reason() -> None:
    """The API took a STOP while the app existed; another operator's REMOVE of the app
    came first. Every head refuses the STOP: it is pending with the reason, then dropped
    after ``REFUSED_HEADS`` heads, and ``get_command_status`` says why, where the
    sender used to wait for a block until its timeout."""
    net = Harness(4)
    net.start_chain()
    slot = include(net, admin(1, CommandKind.GRANT_OPERATOR, key=OPERATOR.pk), 1)
    slot = include(net, admin(2, CommandKind.SUBMIT, spec=SPEC), slot)
    app = compute_submitted_app_id(bytes(PARAMS.admin_key), 2)
    # The producer takes commands in (signer, seq) order: the REMOVE's signer first,
    # so that one block carrying both applies the REMOVE first too.
    first, second = sorted(
        [(bytes(OPERATOR.pk), operator), (bytes(ADMIN.pk), admin)], key=lambda pair: pair[0]
    )
    remove, stop = (
        first[1](10, CommandKind.REMOVE, app=app),
        second[1](10, CommandKind.STOP, app=app),
    )
    net.engine(1).submit_command(stop, net.now)  # kept by node 1 alone: not gossiped
    digest = compute_command_hash(stop)
    assert get_command_status(net.engine(1), digest).state is CommandState.PENDING
    slot = include(net, remove, slot)
    engine = net.engine(1)
    status = get_command_status(engine, digest)
    assert status.state is CommandState.PENDING and status.refused_heads >= 1
    assert status.reason is not None and "unknown app" in status.reason
    for _ in range(REFUSED_HEADS):
        net.run_slot(slot)
        slot += 1
    status = get_command_status(engine, digest)
    assert status.state is CommandState.DROPPED, status
    assert status.reason is not None and "unknown app" in status.reason
    assert digest not in engine.commands.pending and stop not in chain_commands(net, 0)
    assert get_command_status(engine, compute_command_hash(remove)).state is CommandState.APPLIED
    assert get_command_status(engine, b"\x00" * 32).state is CommandState.UNKNOWN


def test_a_command_waiting_for_its_signers_earlier_one_is_not_dropped() -> None:
    """An UPDATE of an app whose SUBMIT (an earlier seq of the same signer) is still
    pending does not apply to the head alone; it is not counted refused, and a block
    carries both."""
    net = Harness(4)
    net.start_chain()
    submit = admin(1, CommandKind.SUBMIT, spec=SPEC)
    app = compute_submitted_app_id(bytes(PARAMS.admin_key), 1)
    update = admin(2, CommandKind.UPDATE, app=app, spec=dataclasses.replace(SPEC, cpu_bp=200))
    engine = net.engine(1)
    _, out = engine.submit_command(submit, net.now)
    engine.submit_command(update, net.now)
    # Gossip the SUBMIT too, so that any producer may carry the pair (not only node 1,
    # whose turn the block hashes decide).
    queue: list = []  # type: ignore[type-arg]
    net.handle(net.order[1], out, queue)
    net.pump(queue)
    digest = compute_command_hash(update)
    engine.commands.prune(engine.get_head_state(), Slot(0))  # type: ignore[arg-type]
    status = get_command_status(engine, digest)
    assert status.state is CommandState.PENDING and status.reason is None
    include(net, update, 1)
    assert get_command_status(engine, digest).state is CommandState.APPLIED
    assert head_record(net, app).spec.cpu_bp == 200
