"""The schema of the dashboard's snapshot (``api/snapshot.py``) in the API's OpenAPI
document: closed objects, key by key, as :func:`~edgechain.api.snapshot.compute_snapshot`
builds them."""

from __future__ import annotations

from edgechain.api.openapi_helpers import (
    APP_STATES,
    Schema,
    closed_object,
    count,
    hex_string,
    nullable,
    ref,
    share,
)
from edgechain.api.schema import RUNTIMES
from edgechain.api.snapshot import SHORT_HEX, SHOWN_ACTIONS
from edgechain.consensus.roles import Role
from edgechain.orchestrator.liveness import NodeStatus
from edgechain.runtime.transfer_client import MigrationOutcome

# --- the dashboard's snapshot (api/snapshot.py) ---------------------------------------


def _snapshot_node_schema() -> Schema:
    return closed_object(
        {
            "id": ref("ShortId"),
            "chain_id": {"type": ["string", "null"], "minLength": 1},
            "slot": count("the current slot by this node's clock (0 before genesis)"),
            "head": nullable(ref("ShortId")),
            "head_slot": {"type": ["integer", "null"], "minimum": 0},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "peers": count("DHT contacts"),
            "validators": count("on the head"),
            "rss_mb": count("resident memory, whole MiB"),
            "slot_duration_ms": {"type": ["integer", "null"], "minimum": 1},
            "committee_size": {"type": ["integer", "null"], "minimum": 1},
        }
    )


def _snapshot_block_schema() -> Schema:
    return closed_object(
        {
            "slot": count(),
            "hash": ref("ShortId"),
            "skip": {"type": "boolean"},
            "signers": count("committee votes in its attestation"),
            "committee": count("the committee elected for it"),
            "by": {
                **nullable(ref("ShortId")),
                "description": "the producer, or the node a skip block excludes",
            },
            "accepted_ms": {
                "type": ["integer", "null"],
                "description": "when this node accepted it, node clock, epoch ms",
            },
        }
    )


def _snapshot_validator_schema() -> Schema:
    usage = closed_object(
        {
            "id": ref("ShortId"),
            "cpu_bp": share(),
            "ram_bp": share(),
            "net_bytes_per_s": count("network bytes per second (a process app: TCP only)"),
        }
    )
    return closed_object(
        {
            "id": ref("ShortId"),
            "status": {"type": "string", "enum": [s.value for s in NodeStatus]},
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "cpu_bp": nullable(share()),
            "ram_bp": nullable(share()),
            "pressure_bp": nullable(share()),
            "report_slot": {"type": ["integer", "null"], "minimum": 0},
            "apps": {"type": "array", "items": usage, "description": "its latest report's"},
        }
    )


def _snapshot_app_schema() -> Schema:
    return closed_object(
        {
            "id": ref("ShortId"),
            "name": {"type": "string"},
            "state": {"type": "string", "enum": list(APP_STATES)},
            "node": nullable(ref("ShortId")),
            "runtime": {"type": "string", "enum": sorted(RUNTIMES)},
            "move_to": nullable(ref("ShortId")),
            "last_move_slot": {"type": ["integer", "null"], "minimum": 0},
        }
    )


def _snapshot_migration_schema() -> Schema:
    """A plan entry that starts or moves an app; the keys of this node's measurement
    (``runtime/migrations_out.py``) come all together, on a migration only."""
    measured: dict[str, Schema] = {
        "outcome": {"type": "string", "enum": [o.value for o in MigrationOutcome]},
        "attempts": {"type": "integer", "minimum": 1},
        "save_ms": {"type": "number", "minimum": 0},
        "transmit_ms": {"type": "number", "minimum": 0},
        "resume_ms": {"type": "number", "minimum": 0},
        "bytes": count("compressed, as sent"),
        "live": {"type": "boolean", "description": "frozen in memory, not stopped"},
    }
    actions = [a.name.lower() for a in sorted(SHOWN_ACTIONS)]
    schema = closed_object(
        {
            "slot": count("the slot of the block that planned it"),
            "action": {"type": "string", "enum": actions},
            "app": ref("ShortId"),
            "name": {"type": ["string", "null"], "description": "null once the app is gone"},
            "from": nullable(ref("ShortId")),
            "to": ref("ShortId"),
            **measured,
        },
        optional=tuple(measured),
    )
    rest = [key for key in measured if key != "outcome"]
    schema["dependentRequired"] = {"outcome": rest, **{key: ["outcome"] for key in rest}}
    schema["if"] = {"required": ["outcome"]}
    schema["then"] = {"properties": {"action": {"const": "migrate"}}}
    return schema


def get_snapshot_schemas() -> dict[str, Schema]:
    listed = {
        "blocks": ("SnapshotBlock", "the last blocks of the head chain, oldest first"),
        "nodes": ("SnapshotNode", "the head's validators, in public-key order"),
        "apps": ("SnapshotApp", "the head registry, in app id order"),
        "migrations": ("SnapshotMigration", "placements and moves, newest last"),
    }
    snapshot = closed_object(
        {
            "node": _snapshot_node_schema(),
            **{
                key: {"type": "array", "items": ref(name), "description": description}
                for key, (name, description) in listed.items()
            },
        }
    )
    snapshot["description"] = "what the dashboard shows (api/snapshot.py compute_snapshot)"
    return {
        "ShortId": hex_string(
            SHORT_HEX // 2, f"an id's (node, app, block) first {SHORT_HEX} hex digits"
        ),
        "DashboardSnapshot": snapshot,
        "SnapshotBlock": _snapshot_block_schema(),
        "SnapshotNode": _snapshot_validator_schema(),
        "SnapshotApp": _snapshot_app_schema(),
        "SnapshotMigration": _snapshot_migration_schema(),
    }
