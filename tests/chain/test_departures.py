"""The two rules of ``chain/departures.py`` on their own: a request to join is fresh
(at most ``INCLUSION_MAX_AGE_SLOTS`` before the block, never after it) and signed no
earlier than its node's last departure, which the state keeps only as long as that
window, so the map stays small."""

from __future__ import annotations

import pytest

from edgechain.chain.assembly import make_inclusion_request
from edgechain.chain.departures import (
    INCLUSION_MAX_AGE_SLOTS,
    check_inclusion_slot,
    compute_departures,
)
from edgechain.chain.model import InclusionRequest
from edgechain.chain.validator_set import ValidatorSet, get_validator_info
from edgechain.errors import RejectReason, ValidationError
from edgechain.testing import make_identity
from edgechain.types import NodeId, Slot

IDENTS = [make_identity(i, b"departures") for i in range(4)]


def _request(index: int, nonce: int) -> InclusionRequest:
    return make_inclusion_request(IDENTS[index].sk, f"127.0.0.1:{7000 + index}", (), nonce=nonce)


SET = ValidatorSet.from_members(get_validator_info(_request(i, 1)) for i in range(4))
WITHOUT_2 = ValidatorSet.from_members(m for m in SET.members if m.node != IDENTS[2].node)


def _reason(req: InclusionRequest, slot: int, departures: dict[NodeId, Slot]) -> str:
    with pytest.raises(ValidationError) as refused:
        check_inclusion_slot(req, Slot(slot), departures)
    assert refused.value.reason is RejectReason.BAD_INCLUSION
    return str(refused.value)


def test_a_block_records_whom_it_removed_and_forgets_them_after_the_window() -> None:
    empty: dict[NodeId, Slot] = {}
    assert compute_departures(empty, SET, SET, Slot(5)) is empty  # nobody left: shared
    after = compute_departures(empty, SET, WITHOUT_2, Slot(5))
    assert dict(after) == {IDENTS[2].node: 5}
    last_kept = Slot(5 + INCLUSION_MAX_AGE_SLOTS)
    assert compute_departures(after, WITHOUT_2, WITHOUT_2, last_kept) is after
    assert dict(compute_departures(after, WITHOUT_2, WITHOUT_2, Slot(last_kept + 1))) == {}


def test_a_request_must_be_fresh_and_not_ahead_of_the_block() -> None:
    check_inclusion_slot(_request(1, 100), Slot(100), {})
    check_inclusion_slot(_request(1, 100), Slot(100 + INCLUSION_MAX_AGE_SLOTS), {})
    assert "ahead" in _reason(_request(1, 101), 100, {})
    assert "slots ago" in _reason(_request(1, 100), 101 + INCLUSION_MAX_AGE_SLOTS, {})


def test_a_request_of_a_node_that_left_must_be_signed_since() -> None:
    departures = {IDENTS[2].node: Slot(40)}
    assert "before the node left" in _reason(_request(2, 39), 41, departures)
    check_inclusion_slot(_request(2, 40), Slot(41), departures)  # signed on the head it left at
    check_inclusion_slot(_request(1, 39), Slot(41), departures)  # another node: no record


def test_once_the_record_is_gone_the_old_request_is_too_old() -> None:
    """What keeps the map small is safe: a request signed before a departure that the
    state no longer records is older than the window."""
    left = Slot(40)
    departures = compute_departures({}, SET, WITHOUT_2, left)
    slot = Slot(left + INCLUSION_MAX_AGE_SLOTS + 1)
    assert dict(compute_departures(departures, WITHOUT_2, WITHOUT_2, slot)) == {}
    assert "slots ago" in _reason(_request(2, left - 1), slot, {})
