"""The VDF group period (block format 13): one group, so one discriminant search per
node, every ``epoch_length * vdf_group_epochs`` slots, not every finality epoch."""

from __future__ import annotations

import dataclasses

from edgechain.chain.model import ChainParams
from edgechain.consensus.state import compute_genesis_state, compute_vdf_group
from edgechain.testing import make_genesis
from edgechain.types import BlockHash, Slot

PARENT = BlockHash(b"\x01" * 32)
GROUP = BlockHash(b"\x02" * 32)


def test_the_default_period_is_four_finality_epochs() -> None:
    params = ChainParams("c", 0, 2000, 4)
    assert (params.epoch_length, params.vdf_group_epochs, params.vdf_group_slots) == (8, 4, 32)


def test_blocks_share_the_group_until_the_period_changes() -> None:
    genesis, _ = make_genesis(5, committee_size=4)
    state = compute_genesis_state(genesis)
    parent = dataclasses.replace(state, slot=Slot(9), block_hash=PARENT, vdf_group=GROUP)
    # Slot 9 and slot 31 are in the same 32-slot period (the finality epoch changed at 16
    # and 24: under format 12 those blocks opened a new group).
    assert compute_vdf_group(parent, Slot(16), 32) == GROUP
    assert compute_vdf_group(parent, Slot(31), 32) == GROUP
    # The first block of the next period takes the hash of the last block before it.
    assert compute_vdf_group(parent, Slot(32), 32) == PARENT
    assert compute_vdf_group(parent, Slot(70), 32) == PARENT
    # With one epoch per group, the rule is format 12's.
    assert compute_vdf_group(parent, Slot(16), 8) == PARENT
    assert compute_vdf_group(parent, Slot(15), 8) == GROUP
