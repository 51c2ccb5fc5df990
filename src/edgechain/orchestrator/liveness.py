"""Node liveness from chain data alone (DESIGN.md, "Exactly once: the app-layer contract").

One node status shared by everything that needs it (planner, fleet views, the node's
fencing lease, the CLI): ``active``, ``down`` or ``draining``. Every validator computes
it from the chain, never from its own view of the network, so all of them agree and the
planner stays a deterministic function of the parent state.

* A validator *contributes* in a block when it produced it, or when the block carries
  one of its resource reports (at the report's slot: every ``report_interval_slots``,
  4 by default). A validator included by a block counts as seen in that block. Votes
  do not count: the attestation is not covered by the block hash, and nodes may hold
  one block with different signers, so liveness from votes made the state (and its
  root, block format 8) differ between nodes.
* ``last_seen[node]`` is the slot of its latest contribution on this chain.
* In the plan of slot ``s``, a validator is ``down`` when ``s - last_seen >= K``
  (``ChainParams.down_after_slots``, 12 by default): it gets no placements and every
  running app on it is recovered elsewhere (``PlanAction.RECOVER``). A node that
  contributes again is active again; its old apps are not given back.
* A *stall* is a stretch of at least ``STALL_MIN_SLOTS`` (4) slots in which the chain
  got no block at all, neither a block nor a skip block: the whole fleet was down (a
  power cut at a site), or every node was cut off from the others (the switch they
  share failed). Nobody could be seen in those slots, so they do not count as
  anyone's silence: a node that was not down when the chain stalled counts as seen at
  the first block after the stall (:func:`get_silence_start`), and so has K slots from
  there to contribute again.
  Without that, the first blocks after a 25-slot outage of a 5-node testnet took the
  nodes whose report had not come in yet for down, recovered their apps elsewhere and
  restored their state from older replicas, while the nodes came back with the newer
  state on disk. Only the latest stall counts: a node that was already down when it
  began stays down, so a chain that keeps stalling delays a dead node's recovery by at
  most about K slots and the stall, never for good. The fencing lease reads the real
  ``last_seen`` (:func:`get_lease_end_slot`, :func:`is_quorate`): a stall only ever
  makes the chain recover later, never a node run longer.
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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from edgechain.types import NodeId, Slot

FENCE_MARGIN_SLOTS = 4
"""K - F: a node's lease ends this many slots before the chain may mark it down, to
absorb clock skew between the node's watchdog and the block timestamps, and the slot
the recovering block takes to arrive."""

QUIET_AFTER_SLOTS = 8
"""A node silent for this many slots (two reports late: reports come every 4 slots, and
a live node's ``last_seen`` lags by up to about 6 on a busy 1 s-slot testnet, where 6
left nodes quiet often enough to hold back replica nodes) is *quiet*: not down yet,
but the planner starts nothing new on it and moves nothing off it
(``compute_quiet_nodes``). A migration from a node that has just died could only
complete once the chain takes it for down, without its state; a quiet node's apps
stay put until it speaks again or is recovered."""


class NodeStatus(enum.Enum):
    ACTIVE = "active"
    DOWN = "down"
    DRAINING = "draining"


LastSeen = Mapping[NodeId, Slot]
"""Each validator's latest contributing slot on a chain (the state after a block), and
that of each node that left the set, until it is down."""


@dataclass(frozen=True)
class Stall:
    """The latest stall on a chain: ``before``, the slot of the last block before it,
    and ``resumed``, that of the first block after it, more than
    :data:`STALL_MIN_SLOTS` slots after its parent (``BlockState.stall``)."""

    before: Slot
    resumed: Slot


NO_STALL = Stall(Slot(0), Slot(0))
"""A chain that never stalled: no node's silence starts later than its last sight."""

STALL_MIN_SLOTS = FENCE_MARGIN_SLOTS
"""The fewest slots in a row without a block that make a stall. Shorter gaps fit in the
slack K leaves a live node (its ``last_seen`` lags by up to about 6 of K = 12 slots),
and they are what a few dead committee members cause: were every gap a stall, dead
nodes that keep a chain skipping slots would keep earning their grace. A chain that
comes back sputtering (its blocks gapped while the last nodes boot) keeps the grace of
the stall it came back from."""


def compute_stall(parent: Stall, parent_slot: Slot, slot: Slot) -> Stall:
    """The latest stall after (or in the plan of) a block of ``slot`` on a parent of
    ``parent_slot``: this block's, when at least :data:`STALL_MIN_SLOTS` slots between
    them got no block at all."""
    return Stall(parent_slot, slot) if slot - parent_slot > STALL_MIN_SLOTS else parent


def get_silence_start(seen: Slot, stall: Stall, down_after: int) -> Slot:
    """The slot a node's silence counts from: its latest contribution ``seen``, or the
    first block after the latest stall if the node was seen before the stall and was
    not down when it began (the module's docstring)."""
    stalled = stall.resumed > stall.before  # NO_STALL is none
    if stalled and seen < stall.resumed and stall.before - seen < down_after:
        return stall.resumed
    return seen


def compute_last_seen(
    parent: LastSeen,
    slot: Slot,
    contributions: Iterable[tuple[NodeId, Slot]],
    validators: Iterable[NodeId],
    down_after: int,
    banned: Collection[bytes] = (),
    stall: Stall = NO_STALL,
) -> dict[NodeId, Slot]:
    """``last_seen`` after a block of ``slot``: the parent's, raised by this block's
    ``contributions`` (node, slot), for the validators after the block; a validator the
    parent did not know (just included) is seen at ``slot``.

    A node that left the set (exit, exclusion) keeps its entry: its apps stay placed on
    it until it is down, and it still counts in the quorum (:func:`is_quorate`). The
    entry goes once the node is down *and* the parent chain is quorate, or the admin
    banned the node (EXCLUDE_NODE); ``stall`` is the chain's latest after the block
    (:func:`get_silence_start`). Why the quorum: the minority side of a partition
    still builds blocks, and its skip blocks exclude the silent majority one by one; if
    those exclusions shrank the quorum's denominator, the minority would soon hold a
    "majority" of what is left and run the majority's apps a second time.
    """
    seen = dict(parent)
    for node, at in contributions:
        if at > seen.get(node, -1):
            seen[node] = at
    members = set(validators)
    after = {node: seen.get(node, slot) for node in members}
    may_forget = is_quorate(parent, slot, down_after)
    for node, at in seen.items():
        if node in members:
            continue
        silent = slot - get_silence_start(at, stall, down_after)
        gone = silent >= down_after and (may_forget or node in banned)
        if not gone:
            after[node] = at
    return {node: after[node] for node in sorted(after)}


def is_down(last_seen: LastSeen, node: NodeId, slot: int, down_after: int, stall: Stall) -> bool:
    """Whether ``node`` counts as down in the plan (or view) of ``slot`` on a chain whose
    latest stall is ``stall``; a node without an entry (never a validator here, or gone
    for K slots) is down."""
    seen = last_seen.get(node)
    return seen is None or slot - get_silence_start(seen, stall, down_after) >= down_after


def get_node_status(
    last_seen: LastSeen,
    node: NodeId,
    slot: int,
    down_after: int,
    draining: Iterable[bytes],
    stall: Stall,
) -> NodeStatus:
    if is_down(last_seen, node, slot, down_after, stall):
        return NodeStatus.DOWN
    return NodeStatus.DRAINING if node in frozenset(draining) else NodeStatus.ACTIVE


def get_fence_slots(down_after: int) -> int:
    """F: how long a lease outlives the chain's last sight of its node, or of a majority."""
    return max(1, down_after - FENCE_MARGIN_SLOTS)


def is_quorate(last_seen: LastSeen, slot: int, down_after: int) -> bool:
    """A strict majority of the nodes ``last_seen`` knows was seen within the last F
    slots: exactly when the leases of this chain's nodes may still be valid
    (:func:`get_lease_end_slot`).

    A chain that is not quorate may be the minority side of a partition, whose other
    side is alive and recovers the apps it can no longer see: such a chain recovers
    nothing (:func:`compute_down_nodes`) and forgets no departed node
    (:func:`compute_last_seen`), and its nodes' leases run out. The window is F, not K:
    with K, both sides of a partition would count each other alive for K slots.
    """
    window = get_fence_slots(down_after)
    alive = sum(1 for at in last_seen.values() if slot - at < window)
    return 2 * alive > len(last_seen)


def compute_down_nodes(
    last_seen: LastSeen,
    slot: int,
    down_after: int,
    stall: Stall,
    holders: Iterable[NodeId] = (),
) -> frozenset[NodeId]:
    """The nodes down in the plan of ``slot``: known nodes silent for K slots (``stall``
    not counted), and the ``holders`` (nodes the registry places apps on) that the chain
    no longer knows. None when the chain is not quorate: a minority must not recover
    what the majority runs."""
    if not is_quorate(last_seen, slot, down_after):
        return frozenset()
    # A stall only moves a silence's start later, so a node seen within the last K
    # slots is not down: only the others need the full rule (issue 13: this runs over
    # every validator at every block).
    latest = slot - down_after
    down = {
        n
        for n, at in last_seen.items()
        if at <= latest and is_down(last_seen, n, slot, down_after, stall)
    }
    down.update(n for n in holders if n not in last_seen)
    return frozenset(down)


def compute_quiet_nodes(
    last_seen: LastSeen,
    slot: int,
    down_after: int,
    stall: Stall,
    quiet_after: int = QUIET_AFTER_SLOTS,
) -> frozenset[NodeId]:
    """The known nodes silent for ``quiet_after`` slots (``stall`` not counted) but not
    yet down in the plan of ``slot`` (``QUIET_AFTER_SLOTS``)."""
    # As in compute_down_nodes: a node seen within ``quiet_after`` slots is not quiet.
    latest = slot - quiet_after
    return frozenset(
        node
        for node, at in last_seen.items()
        if at <= latest
        and quiet_after <= slot - get_silence_start(at, stall, down_after) < down_after
    )


def get_quorum_slot(last_seen: LastSeen) -> Slot | None:
    """The latest slot by which a strict majority of the known nodes had been seen."""
    if not last_seen:
        return None
    ordered = sorted(last_seen.values(), reverse=True)
    return ordered[len(ordered) // 2]


def get_lease_end_slot(
    last_seen: LastSeen,
    node: NodeId,
    down_after: int,
    seen_by: Callable[[Slot], Slot | None],
) -> Slot | None:
    """The slot at whose start ``node``'s fencing lease ends, by the chain it sees: F =
    K - FENCE_MARGIN_SLOTS slots after its own latest contribution at or before the
    quorum slot (None: the chain does not know it, so it holds no lease).

    Own contribution: the chain marks the node down K slots after it, so its apps are
    frozen FENCE_MARGIN_SLOTS before they can be recovered. Quorum slot: a node whose
    chain stops hearing from a majority (the minority side of a partition) freezes its
    apps too, while the majority side recovers them K slots after it last heard of it.
    At or before the quorum slot: what the node contributed later may be only on its
    own side's blocks, which the majority never sees. A chaos run found it (a ring, then
    even halves): a node's contributions on its half's fork renewed its lease to the
    quorum slot, 6 slots past its last contribution the other half knew, which took it
    for down and recovered its app while it still ran. ``seen_by(slot)``: the node's
    latest contribution on this chain at or before ``slot`` (its ``last_seen`` in the
    state of the chain's latest block at or before it; None if out of reach).
    """
    seen = last_seen.get(node)
    quorum = get_quorum_slot(last_seen)
    if seen is None or quorum is None:
        return None
    if seen > quorum:
        seen = seen_by(quorum)
        if seen is None:
            return None
    return Slot(min(seen, quorum) + get_fence_slots(down_after))
