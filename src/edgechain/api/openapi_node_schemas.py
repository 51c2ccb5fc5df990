"""The node's component schemas of the API's OpenAPI document (``api/openapi.py``):
``GET /status`` (and the CPU per slot it reports), the accepted blocks, the chain's
blocks and the node views, built by :func:`get_node_schemas`.
"""

from __future__ import annotations

from edgechain.api.openapi_helpers import (
    Schema,
    closed_object,
    coordinate,
    count,
    counters,
    nullable,
    ref,
    share,
)
from edgechain.api.schema import RUNTIMES, U32_MAX
from edgechain.consensus.roles import Role
from edgechain.orchestrator.liveness import NodeStatus

# --- component schemas ---------------------------------------------------------------


def _cpu_duty_schema() -> Schema:
    figures = closed_object({"median": {"type": "number"}, "p99": {"type": "number"}})
    return closed_object(
        {
            "slots": count("slots sampled"),
            "components_ms": {
                "type": "object",
                "description": "ms of CPU per slot by component (telemetry/cpu.py), and "
                "unaccounted, process, process_without_checks (the process but the VDF "
                "and attestation checks)",
                "additionalProperties": figures,
            },
            "measured_share": nullable(
                {"type": "number", "description": "the components' sum over the process's CPU"}
            ),
        }
    )


def _status_schema() -> Schema:
    node_statuses = [s.value for s in NodeStatus]
    return closed_object(
        {
            "node_id": ref("NodeId"),
            "public_key": ref("PublicKey"),
            "chain_id": {"type": "string"},
            "admin_key": nullable(ref("PublicKey")),
            "open_admission": {"type": ["boolean", "null"], "description": "null before genesis"},
            "genesis": {"type": "boolean"},
            "slot": count("the current slot (0 before genesis)"),
            "slot_duration_ms": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "null before genesis",
            },
            "head": nullable(ref("Hash")),
            "head_slot": {"type": ["integer", "null"], "minimum": 0},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "is_validator": {"type": "boolean"},
            "admission_problem": nullable(
                {
                    "type": "string",
                    "description": "why the chain would refuse this node's inclusion "
                    "request (no ticket or enrollment token, one expired or revoked, "
                    "banned); the node sends none meanwhile",
                }
            ),
            "validators": count(),
            "peers": count(),
            "seeds": {
                "type": "array",
                "description": "the configured seed addresses (node/seeds.py)",
                "items": closed_object(
                    {
                        "address": {"type": "string", "description": "as configured"},
                        "node_id": nullable(ref("NodeId")),
                        "reached_at": {
                            "type": ["string", "null"],
                            "description": "where its answer came from (null: none yet)",
                        },
                    }
                ),
            },
            "rtt_us": count("smoothed RTT to random validators, microseconds (node/rtt.py)"),
            "rtt_samples": count("answered RTT probes"),
            "coordinate_us": coordinate("this node's Vivaldi coordinate, as it reports it"),
            "dht_sessions": closed_object({"keys_derived": count(), "macs_verified": count()}),
            "dht_timeout_ms": count(
                "how long a DHT request is waited for: the configured floor, longer when "
                "answers come slowly (network/dht_requests.py)"
            ),
            "blocks_accepted": count(),
            "skip_blocks_accepted": count(),
            "reorgs": count(),
            "leave": ref("Leave"),
            "finality": closed_object(
                {
                    "justified_epoch": count("the head chain's justified checkpoint"),
                    "finalized_epoch": count("the head chain's finalized checkpoint"),
                    "finalized": nullable(ref("Hash")),
                    "finalized_slot": count("slot of the finalized block (0: genesis)"),
                    "epoch_length": count("slots per epoch (0 before genesis)"),
                    "blocks_in_memory": count("blocks held in memory (the rest: the store)"),
                    "blocks_pruned": count("blocks dropped from memory behind finality"),
                    "stale_blocks_ignored": count(
                        "blocks at or below finality that were not on our chain"
                    ),
                    "voters": count("the finality voter set: the finalized block's validators"),
                    "is_voter": {"type": "boolean", "description": "this node is one"},
                    "silent_voters": {
                        "type": "array",
                        "items": ref("NodeId"),
                        "description": "voters that no longer validate or are down: "
                        "if these devices are gone for good, the admin's exclusion "
                        "takes them out of the voter set",
                    },
                    "held_back": {
                        "type": "boolean",
                        "description": "more than a third of the voters are silent: "
                        "nothing new finalizes and memory grows with every block",
                    },
                    "checkpoint_sync": closed_object(
                        {
                            "following": {"type": "boolean"},
                            "installs": count("finalized states fetched and installed"),
                            "failures": count("follows or states given up on"),
                            "blocks_followed": count("blocks checked with the light transition"),
                            "anchor_slot": {"type": ["integer", "null"], "minimum": 0},
                        }
                    ),
                }
            ),
            "peer_errors": counters("peer input refused, by reason"),
            "decode_errors": counters("undecodable input, by kind"),
            "transport": closed_object(
                {
                    name: count()
                    for name in (
                        "datagrams_in",
                        "datagrams_out",
                        "frames_in",
                        "frames_out",
                        "bytes_in",
                        "bytes_out",
                        "send_failures",
                        "bad_frames",
                    )
                }
            ),
            "gossip": closed_object(
                {
                    name: count()
                    for name in (
                        "published",
                        "delivered",
                        "duplicates",
                        "forwarded",
                        "pulled",
                        "ihave_sent",
                        "iwant_sent",
                        "served",
                        "heartbeats_skipped",
                    )
                }
            ),
            "rss_mb": {"type": "number", "minimum": 0},
            "cpu_seconds": {"type": "number", "minimum": 0},
            "cpu_per_slot": closed_object(
                {"on_duty": ref("CpuPerSlot"), "off_duty": ref("CpuPerSlot")}
            ),
            "cpu_capacity": {
                "type": ["number", "null"],
                "description": "declared CPU cores for apps (null: shares of the whole host)",
            },
            "cpu_bp": share(),
            "pressure_bp": share(),
            "operator_key": nullable(ref("PublicKey")),
            "apps": {
                "type": "array",
                "items": closed_object(
                    {
                        "app": ref("AppId"),
                        "name": {"type": "string"},
                        "running": {"type": "boolean"},
                    }
                ),
            },
            "runtimes": {"type": "array", "items": {"type": "string", "enum": sorted(RUNTIMES)}},
            "container_engine": {"type": ["string", "null"]},
            "status": {
                "type": ["string", "null"],
                "enum": [*node_statuses, None],
                "description": "this node's liveness on its head chain (null: not seen yet)",
            },
            "stall": nullable(
                closed_object(
                    {
                        "before_slot": count("slot of the last block before the stall"),
                        "resumed_slot": count("slot of the first block after it"),
                    }
                )
            ),
            "skip_run": nullable(
                closed_object(
                    {
                        "skip_blocks": count("skip blocks in a row at the head"),
                        "since_slot": count("slot of the first of them"),
                    }
                )
            ),
            "frozen_apps": {"type": "array", "items": {"type": "string"}},
            "watchdog": closed_object(
                {
                    "pid": {"type": ["integer", "null"], "description": "null: not running"},
                    "restarts": count("times the node found it ended and started it again"),
                }
            ),
            "app_cgroups": closed_object(
                {
                    "held": {
                        "type": "boolean",
                        "description": "process apps run in a cgroup each, which none of "
                        "their processes can leave (a root node with a cgroup v2 hierarchy)",
                    },
                    "why_not": {"type": "string", "description": "why not; empty when held"},
                }
            ),
            "transfer_refusals": counters("transfer offers refused, by reason"),
            "clock_offset_ms": {"type": "integer"},
            "hostile": nullable(
                closed_object(
                    {
                        "behaviours": {"type": "array", "items": {"type": "string"}},
                        "acts": counters("hostile acts, by behaviour"),
                        "verdicts": counters("verdicts its offers got"),
                    }
                )
            ),
        }
    )


def _accepted_block_schema() -> Schema:
    return closed_object(
        {
            "hash": ref("Hash"),
            "slot": count(),
            "skip": {"type": "boolean"},
            "signers": count(),
            "producer": nullable(ref("NodeId")),
            "excluded": nullable(ref("NodeId")),
            "accepted_ms": {"type": "integer", "description": "node clock, epoch ms"},
            "reports_due": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "validators whose report was due for the slot (null: a skip"
                " block, or replayed from the store)",
            },
            "reports_due_carried": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "how many of the due reports the block carries",
            },
            "report_to_producer_ms": {
                "type": ["array", "null"],
                "items": count(),
                "description": "per carried report, its timestamp to its first arrival"
                " here, node clock ms (only for a block this node produced)",
            },
        }
    )


def _node_view_schema() -> Schema:
    return closed_object(
        {
            "node_id": ref("NodeId"),
            "status": {"type": "string", "enum": [s.value for s in NodeStatus]},
            "last_seen_slot": {"type": ["integer", "null"], "minimum": 0},
            "public_key": ref("PublicKey"),
            "address": {"type": "string"},
            "labels": {"type": "array", "items": {"type": "string"}},
            "cpu_bp": nullable(share()),
            "ram_bp": nullable(share()),
            "pressure_bp": nullable(share()),
            "rtt_us": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": U32_MAX,
                "description": "the smoothed RTT its latest report gives (microseconds)",
            },
            "state_room_bytes": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "the app state its latest report says it can take in "
                "(bytes free above twice its disk reserve); the planner sends it no app "
                "whose state this fills. null: no report, or not measured (no limit)",
            },
            "coordinate_us": nullable(
                coordinate("the chain's copy of its coordinate (null: never reported)")
            ),
            "report_slot": {"type": ["integer", "null"], "minimum": 0},
            "apps": {"type": "array", "items": ref("AppId")},
        }
    )


def get_node_schemas() -> dict[str, Schema]:
    """Status to NodeView, in the order ``get_component_schemas`` lists them."""
    return {
        "Status": _status_schema(),
        "CpuPerSlot": _cpu_duty_schema(),
        "AcceptedBlock": _accepted_block_schema(),
        "ChainBlock": closed_object(
            {"hash": ref("Hash"), "slot": count(), "skip": {"type": "boolean"}}
        ),
        "NodeView": _node_view_schema(),
    }
