"""Per-application placement policies (DESIGN.md, "Migration plan", target).

``AppPolicy`` (chain/model.py) is interpreted here, and only here, so the planner and
the tests agree on what "respecting a policy" means:

* ``pin_node`` (non-empty): the app may only ever be on that node. While that node is
  not a validator the app waits in the queue.
* ``pinned``: once placed, the app never migrates. Without ``pin_node`` it is placed
  like any app and then stays there; if its node leaves the validator set it is
  re-placed (the registry re-queues it) and stays on the new node.
* ``allowed_labels`` (non-empty): the node must carry at least one of these labels
  (geo-fencing: labels such as ``region=eu`` come from the node's inclusion request).
* ``anti_affinity`` (non-empty): two apps with the same group are never on the same
  node *by the planner's doing*: a PLACE or MIGRATE never brings an app to a node that
  already hosts (after the plan's earlier entries) an app of its group. This is a hard
  constraint: an app with no conflict-free node waits in the queue, like a Kubernetes
  pod with required anti-affinity stays pending.
* ``min_interval_slots``: at least this many slots between two moves of the app (its
  placement counts as a move); the planner also applies a protocol-wide minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.chain.model import AppPolicy
from edgechain.orchestrator.registry import AppRecord
from edgechain.types import NodeId, Slot


@dataclass(frozen=True)
class NodeInfo:
    """A validator as the planner sees it: its id and the labels of its inclusion
    request (order and duplicates of labels do not matter)."""

    node: NodeId
    labels: tuple[str, ...] = ()


def is_node_allowed(policy: AppPolicy, node: NodeInfo) -> bool:
    """Whether ``pin_node`` and ``allowed_labels`` let the app run on ``node``
    (anti-affinity depends on the other apps and is checked by the planner)."""
    if policy.pin_node and node.node != policy.pin_node:
        return False
    return has_allowed_label(policy, node)


def has_allowed_label(policy: AppPolicy, node: NodeInfo) -> bool:
    """Whether ``allowed_labels`` admit ``node`` (geo-fencing: also where the app's state
    replicas may be kept; the pin applies to where it runs only)."""
    return not policy.allowed_labels or any(label in node.labels for label in policy.allowed_labels)


def is_constrained(policy: AppPolicy) -> bool:
    """Whether placement must look beyond "least-loaded node" for this app."""
    return bool(policy.pin_node or policy.allowed_labels or policy.anti_affinity)


def is_move_allowed(record: AppRecord, slot: Slot, min_move_interval: int) -> bool:
    """Whether the policy lets the placed app migrate in the plan of ``slot``: not
    pinned (a set ``pin_node`` also rules it out: it is already on its only node), and
    at least max(min_interval_slots, min_move_interval) slots since its last move."""
    policy = record.spec.policy
    if policy.pinned or policy.pin_node:
        return False
    if record.last_move_slot is None:
        return True
    interval = max(policy.min_interval_slots, min_move_interval)
    return slot - record.last_move_slot >= interval
