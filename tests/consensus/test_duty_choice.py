"""choose_duty_nice (node/duty.py): the pure choice of the loop's priority from the
engine's state, on engines of the consensus test harness (no OS calls)."""

from __future__ import annotations

from edgechain.chain.model import NO_SIGNATURE, SkipBlock
from edgechain.consensus.roles import Role
from edgechain.consensus.state import get_slot_start_ms
from edgechain.node.duty import choose_duty_nice, get_current_role
from edgechain.node.priority import CATCH_UP_NICE, COMMITTEE_NICE, PRODUCER_NICE
from edgechain.types import BlockHash, NodeId, Slot

from .test_engine import Harness


def _get_choices_by_role(net: Harness, now: int) -> dict[Role, set[int | None]]:
    """Each role's duty choices over the harness's nodes at ``now`` (no VDF running)."""
    choices: dict[Role, set[int | None]] = {}
    for engine in net.engines.values():
        _, role = get_current_role(engine, engine.pk, now)
        choices[role] = choices.get(role, set()) | {
            choose_duty_nice(engine, engine.pk, now, vdf_running=False)
        }
    return choices


def test_the_current_slots_roles_get_their_raise_and_everyone_else_none() -> None:
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    params = net.chain_params()
    now = get_slot_start_ms(params, 2) + 10  # the head is slot 1's block: up to date
    choices = _get_choices_by_role(net, now)
    assert choices[Role.PRODUCER] == {PRODUCER_NICE}
    assert choices[Role.COMMITTEE] == {COMMITTEE_NICE}
    assert choices.get(Role.NONE, {None}) == {None}


def test_once_the_slots_block_is_in_the_next_slots_roles_get_their_raise() -> None:
    """Within slot 1, after slot 1's block: nobody has a duty left in slot 1, and the
    roles slot 2 elects on that block are raised already."""
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    params = net.chain_params()
    now = get_slot_start_ms(params, 1) + params.slot_duration_ms - 10
    nices: dict[Role, set[int | None]] = {}
    for engine in net.engines.values():
        assert get_current_role(engine, engine.pk, now)[1] is Role.NONE
        # The role slot 2 gives this node, read a moment after slot 2 began.
        _, role = get_current_role(engine, engine.pk, now + 20)
        assert engine.get_next_role(now) is role
        nices[role] = nices.get(role, set()) | {
            choose_duty_nice(engine, engine.pk, now, vdf_running=False)
        }
    assert nices[Role.PRODUCER] == {PRODUCER_NICE}
    assert nices[Role.COMMITTEE] == {COMMITTEE_NICE}
    assert nices.get(Role.NONE, {None}) == {None}


def test_after_an_empty_slot_the_duties_are_still_raised() -> None:
    """Slots 2 and 3 got no block: the head is the network's, its roles stand."""
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    params = net.chain_params()
    choices = _get_choices_by_role(net, get_slot_start_ms(params, 4) + 10)
    assert choices[Role.PRODUCER] == {PRODUCER_NICE}
    assert choices[Role.COMMITTEE] == {COMMITTEE_NICE}


def test_a_node_behind_gets_the_catch_up_raise_and_a_running_vdf_keeps_the_producers() -> None:
    """A block of slot 3 waits for its parent: the network is ahead of our head. No
    duty is raised on roles computed from a stale head, but catching up is, below
    every duty."""
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    params = net.chain_params()
    later = get_slot_start_ms(params, 4) + 10
    newer = SkipBlock(BlockHash(b"\x01" * 32), Slot(3), NodeId(bytes(32)), b"", NO_SIGNATURE)
    for engine in net.engines.values():
        engine.sync.add_orphan(newer, BlockHash(b"\x02" * 32), None)
        assert engine.sync.has_orphan_after(Slot(1))
        assert choose_duty_nice(engine, engine.pk, later, vdf_running=False) == CATCH_UP_NICE
        assert choose_duty_nice(engine, engine.pk, later, vdf_running=True) == PRODUCER_NICE
        # An orphan of an older slot (a dead fork) is no sign of being behind.
        assert not engine.sync.has_orphan_after(Slot(3))


def test_the_catch_up_raise_is_below_every_duty_and_needs_a_sign_of_being_behind() -> None:
    """An old head alone (a stalled chain, the same for everyone) raises nothing; an
    orphan of the current slot's parent slot is no lag either."""
    assert PRODUCER_NICE < COMMITTEE_NICE < CATCH_UP_NICE < 0
    net = Harness(5)
    net.start_chain()
    net.run_slot(1)
    params = net.chain_params()
    stalled = get_slot_start_ms(params, 6) + 10
    for engine in net.engines.values():
        _, role = get_current_role(engine, engine.pk, stalled)
        if role is Role.NONE:
            assert choose_duty_nice(engine, engine.pk, stalled, vdf_running=False) is None
    now = get_slot_start_ms(params, 2) + 10
    newer = SkipBlock(BlockHash(b"\x01" * 32), Slot(2), NodeId(bytes(32)), b"", NO_SIGNATURE)
    for engine in net.engines.values():
        engine.sync.add_orphan(newer, BlockHash(b"\x03" * 32), None)
        _, role = get_current_role(engine, engine.pk, now)
        expected = {Role.PRODUCER: PRODUCER_NICE, Role.COMMITTEE: COMMITTEE_NICE}.get(role)
        assert choose_duty_nice(engine, engine.pk, now, vdf_running=False) == expected


def test_a_node_waiting_for_another_nodes_genesis_gets_the_catch_up_raise() -> None:
    """Before the genesis a joiner is as far behind as a node can be; the node that
    makes the genesis (its template) is not behind anyone."""
    net = Harness(5)
    maker, joiner = net.engine(0), net.engine(1)
    assert maker.params is None and joiner.params is None
    assert choose_duty_nice(maker, maker.pk, 0, vdf_running=False) is None
    assert choose_duty_nice(joiner, joiner.pk, 0, vdf_running=False) == CATCH_UP_NICE
    net.start_chain()
    net.run_slot(1)
    assert joiner.params is not None
    now = get_slot_start_ms(net.chain_params(), 2) + 10
    _, role = get_current_role(joiner, joiner.pk, now)
    expected = {Role.PRODUCER: PRODUCER_NICE, Role.COMMITTEE: COMMITTEE_NICE}.get(role)
    assert choose_duty_nice(joiner, joiner.pk, now, vdf_running=False) == expected
