"""Whether finality can move on, and who holds it back (for ``/status``).

Finality needs votes from more than two thirds of the voter set, the validators of the
last finalized block (``chain/finality.py``). A voter that died keeps its place there:
skip blocks take it out of the validator set, not out of the voter set, and once more
than a third of the voters are silent nothing new finalizes and every node's memory
grows with each block. Only the admin can say that a device is gone for good: its
``EXCLUDE_NODE`` takes the node out of the voter set (block format 20). This module
names the silent voters so that the operator knows whom.
"""

from __future__ import annotations

from edgechain.chain.finality import is_supermajority
from edgechain.consensus.block_state import BlockState
from edgechain.orchestrator.liveness import is_down
from edgechain.types import NodeId


def get_silent_voters(state: BlockState, down_after_slots: int) -> tuple[NodeId, ...]:
    """The voters of ``state``'s chain that no longer validate on it or are down there
    (no block, vote or report for ``down_after_slots``), sorted."""
    if state.finality is None:
        return ()
    slot = state.slot + 1
    return tuple(
        sorted(
            node
            for node in state.finality.voters.get_node_ids()
            if node not in state.validators
            or is_down(state.last_seen, node, slot, down_after_slots, state.stall)
        )
    )


def is_finality_held_back(state: BlockState, silent: tuple[NodeId, ...]) -> bool:
    """Whether the voters not silent are too few to finalize anything (two thirds or
    fewer of the voter set)."""
    if state.finality is None:
        return False
    total = len(state.finality.voters)
    return not is_supermajority(total - len(silent), total)
