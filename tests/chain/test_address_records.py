"""Address records (block format 9): a validator moves its address on chain, only
forward in time, only itself; the transition applies it; the engine announces ours."""

from __future__ import annotations

import dataclasses

import pytest
from chain_world import World, build_slot_1_block, get_slot_1_context, make_world

from edgechain.chain.assembly import make_address_record, make_exit_request
from edgechain.chain.encoding import compute_block_hash, decode_block, encode_block
from edgechain.chain.model import Block
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import (
    is_address_valid,
    validate_address_record,
    validate_block,
    validate_exit,
)
from edgechain.chain.validator_set import ValidatorSet, apply_block_to_validator_set
from edgechain.consensus.addresses import RESEND_MS, AddressRecords, choose_records
from edgechain.consensus.messages import AddressMsg, Output
from edgechain.consensus.state import compute_genesis_state
from edgechain.consensus.state_codec import decode_state, encode_state
from edgechain.errors import RejectReason, ValidationError
from edgechain.testing import make_joining_request
from edgechain.types import Signature, Slot


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _reason(call: object) -> RejectReason:
    assert callable(call)
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.reason


def test_a_record_is_checked_against_its_validator(world: World) -> None:
    genesis, idents, vs = world
    chain = genesis.params.chain_id
    good = make_address_record(idents[2].sk, chain, "10.1.2.3:7000", Slot(5))
    validate_address_record(good, chain, vs, Slot(5))
    cases = {
        "from the future": (good, Slot(4)),
        "another chain": (make_address_record(idents[2].sk, "x", "10.1.2.3:7000", Slot(5)), 5),
        "not a validator": (make_address_record(idents[2].sk, chain, "h:1", Slot(5)), 5),
        "forged": (dataclasses.replace(good, signature=Signature(good.signature[::-1])), 5),
        "not host:port": (make_address_record(idents[2].sk, chain, "10.1.2.3", Slot(5)), 5),
    }
    members = vs
    for name, (record, slot) in cases.items():
        check = members
        if name == "not a validator":
            check = ValidatorSet(tuple(m for m in vs.members if m.node != record.node))
        assert (
            _reason(lambda r=record, s=slot, c=check: validate_address_record(r, chain, c, Slot(s)))
            is RejectReason.BAD_ADDRESS_RECORD
        ), name
    # Not newer than the address it replaces: the replay of an old record.
    info = vs.get(idents[2].node)
    assert info is not None
    moved = dataclasses.replace(info, address="10.1.2.3:7000", address_slot=5)
    later = ValidatorSet(tuple(moved if m.node == moved.node else m for m in vs.members))
    assert _reason(lambda: validate_address_record(good, chain, later, Slot(9))) is (
        RejectReason.BAD_ADDRESS_RECORD
    )
    assert [is_address_valid(a) for a in ("a:1", "[::1]:7000", "a:0", "a b:1", ":1")] == [
        True, True, False, False, False
    ]  # fmt: skip


def test_a_block_moves_the_address_and_round_trips(world: World) -> None:
    genesis, idents, vs = world
    chain = genesis.params.chain_id
    record = make_address_record(idents[3].sk, chain, "192.0.2.9:7100", Slot(1))
    block = build_slot_1_block(world, addresses=(record,))
    assert decode_block(encode_block(block)) == block
    validate_block(block, compute_block_hash(block), get_slot_1_context(world), cache=None)
    after = apply_block_to_validator_set(vs, block)
    info = after.get(idents[3].node)
    assert info is not None and (info.address, info.address_slot) == ("192.0.2.9:7100", 1)
    assert after.get(idents[2].node) == vs.get(idents[2].node)
    # The state carries the address and its slot through its encoding.
    state = dataclasses.replace(compute_genesis_state(genesis), validators=after)
    assert decode_state(encode_state(state)).validators == after


def test_a_block_refuses_two_records_for_one_node_or_one_for_an_exiting_node(
    world: World,
) -> None:
    genesis, idents, _ = world
    chain = genesis.params.chain_id
    a = make_address_record(idents[3].sk, chain, "192.0.2.9:7100", Slot(1))
    b = make_address_record(idents[3].sk, chain, "192.0.2.9:7200", Slot(1))
    ctx = get_slot_1_context(world)
    for block in (
        build_slot_1_block(world, addresses=(a, b)),
        build_slot_1_block(
            world, addresses=(a,), exits=(make_exit_request(idents[3].sk, Slot(1)),)
        ),
    ):
        reason = _reason(lambda blk=block: validate_block(blk, compute_block_hash(blk), ctx))
        assert reason is RejectReason.BAD_ADDRESS_RECORD


def test_an_inclusion_stamps_the_address_slot(world: World) -> None:
    genesis, _, vs = world
    from edgechain.testing import make_identity

    newcomer = make_identity(70)
    block = build_slot_1_block(
        world, inclusions=(make_joining_request(newcomer, genesis.params, 70),)
    )
    info = apply_block_to_validator_set(vs, block).get(newcomer.node)
    assert info is not None and info.address_slot == 1


def test_an_exit_signed_before_the_address_slot_is_refused(world: World) -> None:
    """The node's address slot marks its present stay (its inclusion): an exit signed
    before it ended an earlier stay and cannot end this one."""
    _, idents, vs = world
    info = vs.get(idents[2].node)
    assert info is not None
    again = dataclasses.replace(info, address_slot=10)
    rejoined = ValidatorSet(tuple(again if m.node == again.node else m for m in vs.members))
    validate_exit(make_exit_request(idents[2].sk, Slot(10)), rejoined, Slot(12))
    old = make_exit_request(idents[2].sk, Slot(9))
    validate_exit(old, vs, Slot(12))
    with pytest.raises(ValidationError, match="current stay") as caught:
        validate_exit(old, rejoined, Slot(12))
    assert caught.value.reason is RejectReason.BAD_EXIT


class _Ctx:
    """The slice of EngineContext that AddressRecords reads."""

    def __init__(self, world: World, index: int, address: str) -> None:
        genesis, idents, _ = world
        self.params = genesis.params
        self.node_id = idents[index].node
        self.sk = idents[index].sk
        self.config = type("Config", (), {"address": address})()
        self.memo = type("Memo", (), {"signatures": SignatureCache()})()


def test_the_engine_announces_a_moved_address_until_a_block_carries_it(world: World) -> None:
    genesis, idents, _ = world
    head = compute_genesis_state(genesis)
    on_chain = head.validators.get(idents[2].node)
    assert on_chain is not None
    same = AddressRecords(_Ctx(world, 2, on_chain.address))  # type: ignore[arg-type]
    out = Output()
    same.maybe_announce(head, Slot(3), 0, out)
    assert out.messages == []

    moved = AddressRecords(_Ctx(world, 2, "198.51.100.4:7000"))  # type: ignore[arg-type]
    out = Output()
    moved.maybe_announce(head, Slot(3), 0, out)
    ((sent,),) = [[m.message for m in out.messages]]
    assert isinstance(sent, AddressMsg) and sent.record.address == "198.51.100.4:7000"
    out = Output()
    moved.maybe_announce(head, Slot(3), RESEND_MS - 1, out)
    assert out.messages == []
    moved.maybe_announce(head, Slot(4), RESEND_MS, out)
    assert [m.message for m in out.messages] == [sent]  # the same record again

    # Another node pools it (the newest per node) and a producer carries it.
    other = AddressRecords(_Ctx(world, 0, on_chain.address))  # type: ignore[arg-type]
    other.on_record(sent.record, head)
    assert choose_records(other.pending, head, Slot(3), frozenset(), 10) == (sent.record,)
    assert choose_records(other.pending, head, Slot(2), frozenset(), 10) == ()  # future
    assert choose_records(other.pending, head, Slot(3), frozenset({sent.record.node}), 10) == ()
    forged = dataclasses.replace(sent.record, slot=Slot(4))
    assert _reason(lambda: other.on_record(forged, head)) is RejectReason.BAD_ADDRESS_RECORD
    # Once a block applied it, it is dropped from the pool.
    block: Block = build_slot_1_block(world, slot=Slot(3), addresses=(sent.record,))
    applied = dataclasses.replace(
        head, validators=apply_block_to_validator_set(head.validators, block)
    )
    other.prune(applied)
    assert other.pending == {}
