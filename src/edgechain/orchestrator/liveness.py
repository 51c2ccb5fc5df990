"""Node liveness from chain data alone (DESIGN.md, "Exactly once: the app-layer contract").

One node status shared by everything that needs it (planner, fleet views, the node's
fencing lease, the CLI): ``active``, ``down`` or ``draining``. Every validator computes
it from the chain, never from its own view of the network, so all of them agree and the
planner stays a deterministic function of the parent state.

* A validator *contributes* in a block when it produced it, when its vote is in the
  block's attestation (committee members sign every slot they serve, skip blocks
  included), or when the block carries one of its resource reports (at the report's
  slot: every ``report_interval_slots``, 4 by default). A validator included by a
  block counts as seen in that block.
* ``last_seen[node]`` is the slot of its latest contribution on this chain.
* In the plan of slot ``s``, a validator is ``down`` when ``s - last_seen >= K``
  (``ChainParams.down_after_slots``, 12 by default): it gets no placements and every
  running app on it is recovered elsewhere (``PlanAction.RECOVER``). A node that
  contributes again is active again; its old apps are not given back.
* ``draining`` is the admin's DRAIN_NODE (``chain/authority.py``): the node keeps
  validating, gets no placements and its apps are migrated away, with their state.
  Down wins over draining: a silent node cannot hand anything over.

Why K = 12: a live node reports every 4 slots; its report travels through its cluster
representative, or straight to the producer when the representative is silent
(``consensus/reports.py``), so a live node's ``last_seen`` lags by at most about 5
slots, and 12 leaves it one more lost report before it is taken for down. The node's
own fencing lease (``runtime/lease.py``, F = K - 4 slots after its own ``last_seen``)
expires before the chain can recover its apps: an app is fenced before it is re-placed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from edgechain.types import NodeId, Slot

FENCE_MARGIN_SLOTS = 4
"""K - F: a node's lease ends this many slots before the chain may mark it down, to
absorb clock skew between the node's watchdog and the block timestamps, and the slot
the recovering block takes to arrive."""


class NodeStatus(enum.Enum):
    ACTIVE = "active"
    DOWN = "down"
    DRAINING = "draining"


LastSeen = Mapping[NodeId, Slot]
"""Each validator's latest contributing slot on a chain (the state after a block)."""


def compute_last_seen(
    parent: LastSeen,
    slot: Slot,
    contributions: Iterable[tuple[NodeId, Slot]],
    validators: Iterable[NodeId],
) -> dict[NodeId, Slot]:
    """``last_seen`` after a block of ``slot``: the parent's, raised by this block's
    ``contributions`` (node, slot), for the validators after the block; a validator the
    parent did not know (just included) is seen at ``slot``."""
    seen = dict(parent)
    for node, at in contributions:
        if at > seen.get(node, -1):
            seen[node] = at
    return {node: seen.get(node, slot) for node in validators}


def is_down(last_seen: LastSeen, node: NodeId, slot: int, down_after: int) -> bool:
    """Whether ``node`` counts as down in the plan (or view) of ``slot``."""
    seen = last_seen.get(node)
    return seen is not None and slot - seen >= down_after


def get_node_status(
    last_seen: LastSeen, node: NodeId, slot: int, down_after: int, draining: Iterable[bytes]
) -> NodeStatus:
    if is_down(last_seen, node, slot, down_after):
        return NodeStatus.DOWN
    return NodeStatus.DRAINING if node in frozenset(draining) else NodeStatus.ACTIVE


def compute_down_nodes(last_seen: LastSeen, slot: int, down_after: int) -> frozenset[NodeId]:
    """The validators down in the plan of ``slot``."""
    return frozenset(n for n in last_seen if is_down(last_seen, n, slot, down_after))


def get_lease_end_slot(last_seen: LastSeen, node: NodeId, down_after: int) -> Slot | None:
    """The slot at whose start ``node``'s fencing lease ends, by the chain it sees: F =
    K - FENCE_MARGIN_SLOTS slots after its latest contribution there (None: it is not
    a validator on that chain, so it holds no lease)."""
    seen = last_seen.get(node)
    if seen is None:
        return None
    return Slot(seen + max(1, down_after - FENCE_MARGIN_SLOTS))
