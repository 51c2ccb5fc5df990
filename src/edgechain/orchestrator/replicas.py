"""Phase 3 of the plan: replica nodes (DESIGN.md, "Exactly once").

Each running app that opted in to replicas (``spec.replica_interval_slots``) and has no
entry in this plan gets a REPLICA entry when it has no valid replica node (none yet,
down, draining, no longer a validator, the app's own node, or outside its allowed
labels): among the available nodes other than its own that its labels allow and with
room for its state (``PlanState.has_room``; a replica node already named keeps it), the one
holding the fewest replicas (this plan's entries counted), then the least loaded. At
most ``MAX_REPLICA_ENTRIES`` per plan, in app id order. A valid replica node is kept, so
replica nodes do not churn with load.

The app's node need not be a validator, only not down: a node a skip block excluded
keeps its apps until it is down (``registry.py``), and so does the replica node they
get. Before, an app whose node and replica node were both excluded (a partition that
took both, or a pause) had no replica node named until its node was down; the
recovery then went to the least loaded node and started from nothing, though the old
replica node, reachable again, held the app's state to pass on
(``runtime/replication.Replicator.is_passing_on``).

Why the count comes first: an app with a replica node is balanced to that node only
(``balancing.follows_replica``), and a node takes two migrations a slot. By load
alone, every app named in one plan got the same node (the load does not change while
a plan is made): in the simulated worst case (200 apps started on one node, a third
of them stateful, ``sim/app_worst_case.py``) all 67 stateful apps shared one replica
node and 62 of them were still on their first node 25 slots later.
"""

from __future__ import annotations

from collections import Counter

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.orchestrator.plan_state import PlanState
from edgechain.orchestrator.policy import is_replica_node_allowed
from edgechain.orchestrator.registry import AppRecord, AppState
from edgechain.types import NodeId

MAX_REPLICA_ENTRIES = 64
"""REPLICA entries per plan: bounds a block after many stateful apps arrive at once."""


def assign_replicas(state: PlanState) -> list[PlanEntry]:
    """Name a replica node for each replicated app without a valid one (module docstring)."""
    entries: list[PlanEntry] = []
    held = Counter(r.replica_node for r in state.records.values() if r.replica_node is not None)
    for app in sorted(state.records):
        if len(entries) >= MAX_REPLICA_ENTRIES:
            break
        record = state.records[app]
        node = record.node
        if (
            node is None
            or app in state.planned
            or record.state is not AppState.RUNNING
            or not record.spec.stateful
            or record.spec.replica_interval_slots <= 0
            or node in state.down
            or _is_replica_node_valid(state, record, record.replica_node)
        ):
            continue
        best: tuple[int, int, NodeId] | None = None
        for candidate in state.available:
            if _is_replica_node_valid(state, record, candidate) and state.has_room(candidate, app):
                key = (held[candidate], state.load[candidate], candidate)
                best = key if best is None or key < best else best
        if best is not None:
            entries.append(PlanEntry(PlanAction.REPLICA, app, node, best[2]))
            held[best[2]] += 1
            state.take_room(best[2], app)
    return entries


def _is_replica_node_valid(state: PlanState, record: AppRecord, replica: NodeId | None) -> bool:
    """A replica node must be available, not the app's own node, able to run the app
    (its runtime) and within the app's labels (geo-fencing covers its state too); the
    pin does not apply to replicas."""
    if replica is None or replica == record.node or replica not in state.available:
        return False
    return is_replica_node_allowed(record.spec, state.infos[replica])
