"""Which deadlines wake an engine (consensus/wakeups.py), and a pass at once after a
message that moved the head."""

from __future__ import annotations

from edgechain.consensus.messages import BlockMsg
from edgechain.consensus.roles import Role
from edgechain.consensus.state import get_candidate_deadline_ms, get_roles, get_slot_start_ms
from edgechain.consensus.wakeups import get_slot_deadlines
from edgechain.types import Slot

from .test_engine import PARAMS, Harness


def _start(slot: int) -> int:
    return get_slot_start_ms(PARAMS, slot)


def _deadline(slot: int) -> int:
    return get_candidate_deadline_ms(PARAMS, slot)


def test_without_the_current_slots_block_every_deadline_is_kept() -> None:
    deadlines = get_slot_deadlines(PARAMS, 5, 4, Role.NONE, producer_open=False)
    assert sorted(deadlines) == [_start(5), _deadline(5), _start(6), _deadline(6)]


def test_with_the_current_slots_block_only_the_duties_deadlines_are_kept() -> None:
    assert get_slot_deadlines(PARAMS, 5, 5, Role.NONE, producer_open=False) == [_deadline(6)]
    # The committee of the next slot acts on the candidate or at its deadline.
    assert get_slot_deadlines(PARAMS, 5, 5, Role.COMMITTEE, producer_open=False) == [_deadline(6)]
    assert sorted(get_slot_deadlines(PARAMS, 5, 5, Role.PRODUCER, producer_open=False)) == [
        _start(6),
        _deadline(6),
    ]
    # A producer still aggregating votes keeps its own slot's deadline.
    assert sorted(get_slot_deadlines(PARAMS, 5, 5, Role.NONE, producer_open=True)) == [
        _deadline(5),
        _deadline(6),
    ]


def test_everyone_wakes_at_the_start_of_slot_one() -> None:
    assert _start(1) in get_slot_deadlines(PARAMS, 0, 0, Role.NONE, producer_open=False)


def _run_to_block(net: Harness, slot: int) -> None:
    start = get_slot_start_ms(net.chain_params(), slot)
    net.tick(start)
    net.tick(start + 600)


def test_an_idle_validator_sleeps_past_the_next_slots_start_once_the_block_is_in() -> None:
    net = Harness(8)
    net.start_chain()
    for slot in (1, 2):  # the genesis holds 4 validators; blocks include the others
        net.run_slot(slot)
    _run_to_block(net, 3)
    head = net.engine(0).get_head_state()
    assert head is not None and head.slot == 3 and len(head.validators) == 8
    roles = get_roles(net.engine(0).memo, head, Slot(4), PARAMS.committee_size)
    idle = [e for e in net.engines.values() if roles.get_role(e.pk) is Role.VALIDATOR]
    producer = next(e for e in net.engines.values() if e.pk == roles.producer)
    assert idle
    now = net.now
    params = net.chain_params()
    for engine in idle:
        wakeup = engine.on_tick(now).next_wakeup_ms
        assert wakeup is not None and wakeup != get_slot_start_ms(params, 4)
    # The next slot's producer is woken at its start, to begin its VDF.
    assert producer.on_tick(now).next_wakeup_ms == get_slot_start_ms(params, 4)


def test_a_block_that_moves_the_head_asks_for_a_pass_at_once() -> None:
    net = Harness(5)
    net.start_chain()
    _run_to_block(net, 1)
    source = net.engine(0)
    assert source.head is not None
    block = source.blocks[source.head]
    late = net.add(5)
    assert source.genesis_msg is not None
    late.on_message(source.genesis_msg, None, net.now)
    out = late.on_message(BlockMsg(block), source.node_id, net.now)
    assert late.head == source.head
    assert out.next_wakeup_ms == net.now
    # The same block again moves nothing: no pass of its own.
    again = late.on_message(BlockMsg(block), source.node_id, net.now)
    assert again.next_wakeup_ms is not None and again.next_wakeup_ms > net.now
