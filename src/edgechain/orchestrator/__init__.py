"""App registry, deterministic migration planner and placement policies (paper §3.3).

Pure functions of chain state (Rule 1, Rule 2): no I/O, no time, no randomness, integers
only. ``registry`` is the consensus state of the applications, ``planner`` computes the
plan every committee member recomputes, ``load`` defines the load score, ``policy`` the
meaning of ``AppPolicy``.
"""

from edgechain.orchestrator.load import (
    CPU_WEIGHT,
    RAM_WEIGHT,
    LoadModel,
    compute_load_model,
    compute_load_score,
)
from edgechain.orchestrator.planner import DEFAULT_MIN_MOVE_INTERVAL_SLOTS, compute_plan
from edgechain.orchestrator.policy import NodeInfo, is_move_allowed, is_node_allowed
from edgechain.orchestrator.registry import (
    EMPTY_REGISTRY,
    AppRecord,
    AppState,
    Registry,
    apply_block_to_registry,
    get_apps_on_node,
    get_placement,
    get_queued_records,
    get_record,
)

__all__ = [
    "CPU_WEIGHT",
    "DEFAULT_MIN_MOVE_INTERVAL_SLOTS",
    "EMPTY_REGISTRY",
    "RAM_WEIGHT",
    "AppRecord",
    "AppState",
    "LoadModel",
    "NodeInfo",
    "Registry",
    "apply_block_to_registry",
    "compute_load_model",
    "compute_load_score",
    "compute_plan",
    "get_apps_on_node",
    "get_placement",
    "get_queued_records",
    "get_record",
    "is_move_allowed",
    "is_node_allowed",
]
