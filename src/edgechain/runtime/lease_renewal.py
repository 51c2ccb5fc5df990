"""The fencing lease as the app manager renews it (DESIGN.md, "Exactly once";
ARCHITECTURE.md, "Fencing").

:class:`LeaseRenewal` computes, once per head, the end of this node's lease (the start
of slot ``min(own last_seen, quorum slot) + F``, ``orchestrator/liveness.py``) and the
apps the head places here, and writes it through the ``LeaseWriter``
(``runtime/fencing.py``) that the watchdog reads. The manager renews it on every tick
and asks :meth:`LeaseRenewal.is_valid` before it starts an app.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from edgechain.chain.model import ChainParams
from edgechain.consensus.state import get_slot_start_ms
from edgechain.orchestrator.liveness import FENCE_MARGIN_SLOTS, get_lease_end_slot
from edgechain.orchestrator.registry import get_apps_on_node
from edgechain.runtime.fencing import LeaseWriter
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lease import get_now_ms
from edgechain.runtime.lifecycle import get_seen_by
from edgechain.types import AppId, BlockHash, NodeId

FENCED = "fenced"
"""The status the API gives an app this node holds stopped or frozen because its lease
has expired: the chain has not seen the node for F slots, so the network may run the
app elsewhere (the watchdog froze it, then killed it). Not a failure of the app: it
starts again, from its state here, once the chain sees the node and the lease is
renewed."""

FENCED_HOLD = (
    "this node's fencing lease expired: the chain has not seen it for F = K - 4 slots (it "
    "is cut off, or the chain makes no blocks), so its apps stay stopped until it does"
)


class LeaseRenewal:
    """Renews ``lease`` from the head of ``head``'s engine; ``get_outgoing``: the apps
    this node is handing over (listed too: they run here until the destination has
    them); ``clock``: the node's wall clock (epoch ms, the lease's times are in it)."""

    def __init__(
        self,
        node_id: NodeId,
        head: HeadQueries,
        lease: LeaseWriter,
        get_outgoing: Callable[[], Collection[AppId]],
        *,
        clock: Callable[[], int] = get_now_ms,
    ) -> None:
        self.node_id = node_id
        self._clock = clock
        self.head = head
        self.lease = lease
        self._get_outgoing = get_outgoing
        self._head_lease: (
            tuple[tuple[BlockHash, ChainParams], tuple[int, tuple[AppId, ...]]] | None
        ) = None
        """The end of the lease last renewed (epoch ms; 0: we hold none)."""

    def renew(self) -> None:
        """Let the watchdog keep our apps running until F slots after our latest
        contribution on the head chain (``orchestrator/liveness.py``): before the first
        slot whose plan may take us for down and recover them elsewhere. Listed: the apps
        the head places here and those we are handing over."""
        lease = self._get_head_lease()
        engine = self.head.engine
        params = engine.params if engine is not None else None
        if lease is None or params is None:
            return
        valid_until, apps = lease
        # From the first slot whose plan may take us for down, the watchdog kills what
        # it froze: a node back from a pause then finds no stale copy to stop.
        margin_ms = FENCE_MARGIN_SLOTS * params.slot_duration_ms
        self.lease.renew(valid_until, [*apps, *self._get_outgoing()], valid_until + margin_ms)

    def get_until(self) -> int | None:
        """Our lease's end on the head chain, epoch ms (0: the chain does not know us;
        None: no chain yet)."""
        lease = self._get_head_lease()
        return lease[0] if lease is not None else None

    def _get_head_lease(self) -> tuple[int, tuple[AppId, ...]] | None:
        """Our lease's end and the apps the head places here, computed once per head:
        ``tick`` renews the lease on every loop turn, and the quorum slot sorts every
        node's last sighting."""
        engine = self.head.engine
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if engine is None or state is None or params is None:
            return None
        cached = self._head_lease
        if cached is not None and cached[0] == (state.block_hash, params):
            return cached[1]
        end = get_lease_end_slot(
            state.last_seen,
            self.node_id,
            params.down_after_slots,
            lambda slot: get_seen_by(engine, self.node_id, slot),
        )
        valid_until = get_slot_start_ms(params, end) if end is not None else 0
        apps = tuple(r.app for r in get_apps_on_node(state.registry, self.node_id))
        self._head_lease = ((state.block_hash, params), (valid_until, apps))
        return valid_until, apps

    def is_valid(self) -> bool:
        """Never start an app under an expired lease: the watchdog would freeze it only
        at its next poll, and the network may run it elsewhere already. (No chain
        parameters: a manager driven without a chain's liveness, as in unit tests.)"""
        engine = self.head.engine
        if engine is None or engine.params is None:
            return True
        until = self.get_until()
        return until is not None and self._clock() < until
