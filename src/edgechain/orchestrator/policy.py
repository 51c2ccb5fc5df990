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

And the runtime (``AppSpec.runtime``): a container app only ever goes to a node that
declared a container engine, by the label ``edgechain.runtime=container`` of its
inclusion request (``edgechain node --container-engine``); every node runs process
apps. A container app whose spec asks to run as root (``run_as_root``) also needs the
label ``edgechain.runtime=container-root``: the node's operator allowed it
(``--allow-root-containers``). That holds for its placement, its moves and its replica
node (a re-placed app restarts there). Validators recompute every plan, so a plan that
breaks it is refused. A node that declares an engine it does not have fails to start
the app and shows it in its status; it cannot make the app run twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.chain.model import AppPolicy, AppSpec, RuntimeKind
from edgechain.orchestrator.registry import AppRecord
from edgechain.types import NodeId, Slot

CONTAINER_ENGINE_LABEL = "edgechain.runtime=container"
"""In a node's inclusion labels: it runs container apps (it has a container engine)."""
ROOT_CONTAINERS_LABEL = "edgechain.runtime=container-root"
"""And this one: its operator lets container apps whose spec asks for it run as root
inside their container (``edgechain node --allow-root-containers``)."""


@dataclass(frozen=True)
class NodeInfo:
    """A validator as the planner sees it: its id and the labels of its inclusion
    request (order and duplicates of labels do not matter)."""

    node: NodeId
    labels: tuple[str, ...] = ()


def is_node_allowed(spec: AppSpec, node: NodeInfo) -> bool:
    """Whether the app's runtime, ``pin_node`` and ``allowed_labels`` let it run on
    ``node`` (anti-affinity depends on the other apps and is checked by the planner)."""
    policy = spec.policy
    if policy.pin_node and node.node != policy.pin_node:
        return False
    return is_replica_node_allowed(spec, node)


def is_replica_node_allowed(spec: AppSpec, node: NodeInfo) -> bool:
    """Whether ``node`` may keep the app's state replicas: it could run the app (its
    runtime; a re-placed app restarts on its replica node) and its labels are allowed
    (the pin applies to where the app runs only)."""
    return has_runtime(spec, node) and has_allowed_label(spec.policy, node)


def has_runtime(spec: AppSpec, node: NodeInfo) -> bool:
    """Whether ``node`` declared the runtime the app needs."""
    return get_missing_runtime(spec, node) is None


def get_missing_runtime(spec: AppSpec, node: NodeInfo) -> str | None:
    """What ``node`` lacks to run the app, None when nothing."""
    if spec.runtime is not RuntimeKind.CONTAINER:
        return None
    if CONTAINER_ENGINE_LABEL not in node.labels:
        return "a container engine"
    if spec.run_as_root and ROOT_CONTAINERS_LABEL not in node.labels:
        return "its operator's consent to root containers"
    return None


def has_allowed_label(policy: AppPolicy, node: NodeInfo) -> bool:
    """Whether ``allowed_labels`` admit ``node`` (geo-fencing: also where the app's state
    replicas may be kept; the pin applies to where it runs only)."""
    return not policy.allowed_labels or any(label in node.labels for label in policy.allowed_labels)


def is_constrained(spec: AppSpec) -> bool:
    """Whether placement must look beyond "least-loaded node" for this app."""
    policy = spec.policy
    return bool(
        policy.pin_node
        or policy.allowed_labels
        or policy.anti_affinity
        or spec.runtime is RuntimeKind.CONTAINER
    )


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
