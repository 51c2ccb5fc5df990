"""The app component schemas of the API's OpenAPI document (``api/openapi.py``): the
app views, the app spec as ``GET /apps/{app}`` writes it and as ``POST /apps`` takes it
(limits and defaults from ``api/schema.py`` and ``chain/model.py``), its policy, its
history and migrations, and an app as this node's runtime sees it, built by
:func:`get_app_schemas`.
"""

from __future__ import annotations

from edgechain.api.openapi_helpers import (
    APP_STATES,
    END,
    NO_NUL,
    Schema,
    closed_object,
    count,
    limit,
    nullable,
    ref,
    share,
    short_text,
)
from edgechain.api.schema import RUNTIMES, U32_MAX
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import (
    APP_COMMANDS,
    MAX_CPU_LIMIT_MILLICORES,
    MAX_MEMORY_LIMIT_BYTES,
    MAX_STATE_LIMIT_BYTES,
    MIN_CPU_LIMIT_MILLICORES,
    MIN_MEMORY_LIMIT_BYTES,
    MIN_STATE_LIMIT_BYTES,
    PlanAction,
)
from edgechain.runtime.base import AppStatus
from edgechain.runtime.disk_guard import DISK_FULL
from edgechain.runtime.lease_renewal import FENCED
from edgechain.runtime.restart_backoff import CRASH_LOOPING
from edgechain.runtime.transfer_client import MigrationOutcome
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE

# --- component schemas ---------------------------------------------------------------


def _app_view_properties() -> dict[str, Schema]:
    return {
        "app_id": ref("AppId"),
        "name": {"type": "string"},
        "state": {"type": "string", "enum": list(APP_STATES)},
        "version": {"type": "integer", "minimum": 1},
        "node": nullable(ref("NodeId")),
        "runtime": {"type": "string", "enum": sorted(RUNTIMES)},
        "owner": {
            "type": "string",
            "pattern": f"^([0-9a-f]{{{2 * PUBLIC_KEY_SIZE}}})?$",
            "description": "the key that submitted it",
        },
        "created_slot": count(),
        "last_move_slot": {"type": ["integer", "null"], "minimum": 0},
        "move_to": nullable(ref("NodeId")),
        "replica_node": nullable(ref("NodeId")),
        "state_node": {
            **nullable(ref("NodeId")),
            "description": "the replica node the chain confirmed to hold its state, "
            "where it is recovered",
        },
        "reported_on": {
            "type": "array",
            "items": ref("NodeId"),
            "description": "nodes whose latest report lists it and was made after "
            "its last move (a report from before the move says where it was)",
        },
        "state_bytes": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "its state's size as its node's latest report gives it (else "
            "the largest another report that lists it gives; null: no report lists it)",
        },
        "local": {
            "anyOf": [ref("RuntimeApp"), {"type": "null"}],
            "description": "this node's copy as its runtime sees it (null: it holds none); "
            "status crash_looping: it failed here and waits to be restarted; disk_full: "
            "this node holds it stopped, for it was filling the node's disk; fenced: the "
            "chain has not seen this node for F slots, so it holds it stopped",
        },
    }


def _spec_properties(*, request: bool) -> dict[str, Schema]:
    """The app spec's keys (``api/schema.py``); ``request``: as ``POST /apps`` takes it
    (limits and defaults), else as ``GET /apps/{app}`` writes it."""
    policy = ref("AppPolicyIn" if request else "AppPolicy")
    if not request:
        return {
            "name": {"type": "string"},
            "runtime": {"type": "string", "enum": sorted(RUNTIMES)},
            "image": {"type": "string"},
            "command": {"type": "array", "items": {"type": "string"}},
            "cpu_bp": share(),
            "ram_bp": share(),
            "stateful": {"type": "boolean"},
            "policy": policy,
            "replica_interval_slots": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
            "cpu_limit_millicores": {"type": "integer", "minimum": 0},
            "memory_limit_bytes": {"type": "integer", "minimum": 0},
            "state_limit_bytes": {"type": "integer", "minimum": 0},
            "run_as_root": {"type": "boolean"},
        }
    name = short_text("the app's name; not only white space", required=True)
    name["pattern"] = rf"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*{END}"
    return {
        "name": name,
        "runtime": {"type": "string", "enum": sorted(RUNTIMES), "default": "process"},
        "image": {**short_text("container image (a container app needs one)"), "default": ""},
        "command": {
            "type": "array",
            "maxItems": Limits.MAX_COMMAND_ARGS,
            "default": [],
            "description": "argv (a process app needs one, with a non-empty first item)",
            "items": {
                "type": "string",
                "maxLength": Limits.MAX_ARG_STR,
                "pattern": NO_NUL,
                "description": f"at most {Limits.MAX_ARG_STR} UTF-8 bytes, no NUL",
            },
        },
        "cpu_bp": {**share("CPU hint, basis points of a node"), "default": 0},
        "ram_bp": {**share("RAM hint, basis points of a node"), "default": 0},
        "stateful": {"type": "boolean", "default": False},
        "policy": policy,
        "replica_interval_slots": {
            "type": "integer",
            "minimum": 0,
            "maximum": U32_MAX,
            "default": 0,
            "description": "slots between state replicas (a stateful app only)",
        },
        "cpu_limit_millicores": limit(
            MIN_CPU_LIMIT_MILLICORES, MAX_CPU_LIMIT_MILLICORES, "CPU limit, millicores"
        ),
        "memory_limit_bytes": limit(
            MIN_MEMORY_LIMIT_BYTES, MAX_MEMORY_LIMIT_BYTES, "memory limit, bytes"
        ),
        "state_limit_bytes": limit(
            MIN_STATE_LIMIT_BYTES, MAX_STATE_LIMIT_BYTES, "state directory limit, bytes"
        ),
        "run_as_root": {
            "type": "boolean",
            "default": False,
            "description": "a container app's own root (never a process app)",
        },
    }


def _app_spec_in_schema() -> Schema:
    schema = {
        "type": "object",
        "description": "An app spec (api/schema.py parse_app_spec). Besides each key's "
        "limits: a process app needs a command whose first item is not empty and may not "
        "run as root, a container app needs an image, and replicas and wait_for_state "
        "need a stateful app; "
        "any other refusal names its field in a 400.",
        "properties": _spec_properties(request=True),
        "required": ["name"],
        "additionalProperties": False,
        "allOf": [
            {
                "if": {"properties": {"runtime": {"const": "container"}}, "required": ["runtime"]},
                "then": {"required": ["image"], "properties": {"image": {"minLength": 1}}},
                "else": {
                    "required": ["command"],
                    "properties": {
                        "command": {"minItems": 1, "prefixItems": [{"minLength": 1}]},
                        "run_as_root": {"const": False},
                    },
                },
            },
            {
                "if": {
                    "properties": {"replica_interval_slots": {"minimum": 1}},
                    "required": ["replica_interval_slots"],
                },
                "then": {"properties": {"stateful": {"const": True}}, "required": ["stateful"]},
            },
            {
                "if": {
                    "properties": {
                        "policy": {
                            "properties": {"wait_for_state": {"const": True}},
                            "required": ["wait_for_state"],
                        }
                    },
                    "required": ["policy"],
                },
                "then": {"properties": {"stateful": {"const": True}}, "required": ["stateful"]},
            },
        ],
    }
    return schema


def _policy_in_schema() -> Schema:
    return {
        "type": "object",
        "description": "Placement policy (chain/model.py AppPolicy)",
        "properties": {
            "pinned": {"type": "boolean", "default": False},
            "pin_node": {
                "type": "string",
                "pattern": f"^([0-9a-fA-F]{{{2 * HASH_SIZE}}})?$",
                "default": "",
                "description": "node id to pin it to (empty: where it is first placed)",
            },
            "allowed_labels": {
                "type": "array",
                "maxItems": Limits.MAX_LABELS,
                "default": [],
                "items": short_text("a node label", required=True),
            },
            "anti_affinity": {**short_text("anti-affinity group"), "default": ""},
            "min_interval_slots": {
                "type": "integer",
                "minimum": 0,
                "maximum": U32_MAX,
                "default": 0,
            },
            "wait_for_state": {
                "type": "boolean",
                "default": False,
                "description": "stateful apps: when its node is down, recover it only "
                "where its state is (its replica node) or an operator's move sends it; "
                "else it waits",
            },
        },
        "additionalProperties": False,
    }


def _policy_out_schema() -> Schema:
    return closed_object(
        {
            "pinned": {"type": "boolean"},
            "pin_node": {"type": "string", "pattern": f"^([0-9a-f]{{{2 * HASH_SIZE}}})?$"},
            "allowed_labels": {"type": "array", "items": {"type": "string"}},
            "anti_affinity": {"type": "string"},
            "min_interval_slots": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
            "wait_for_state": {"type": "boolean"},
        }
    )


def _history_event_schema() -> Schema:
    # The commands an app's history lists (those naming an app, and its SUBMIT).
    kinds = sorted(k.name.lower() for k in APP_COMMANDS)
    kinds += [a.name.lower() for a in PlanAction]
    kinds.append("node_left")
    return closed_object(
        {
            "slot": count(),
            "block": ref("Hash"),
            "kind": {"type": "string", "enum": kinds},
            "node": nullable(ref("NodeId")),
            "origin": nullable(ref("NodeId")),
            "signer": nullable(ref("PublicKey")),
            "version": {"type": ["integer", "null"], "minimum": 1},
        }
    )


def _migration_schema() -> Schema:
    return closed_object(
        {
            "app": {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "id prefix"},
            "name": {"type": "string"},
            "slot": count("the slot of the block that planned it"),
            "to": {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "node id prefix"},
            "attempt": count(),
            "outcome": {"type": "string", "enum": [o.value for o in MigrationOutcome]},
            "reason": {"type": "string"},
            "save_ms": {"type": "number", "minimum": 0},
            "transmit_ms": {"type": "number", "minimum": 0},
            "resume_ms": {"type": "number", "minimum": 0},
            "raw_bytes": count(),
            "compressed_bytes": count(),
            "live": {"type": "boolean", "description": "frozen in memory, not stopped"},
            "precopy_rounds": count("rounds sent while the app ran (0: no pre-copy)"),
            "precopy_ms": {"type": "number", "minimum": 0},
            "precopy_bytes": count("compressed bytes those rounds sent"),
        }
    )


def _runtime_app_schema() -> Schema:
    return closed_object(
        {
            "app": ref("AppId"),
            "node": ref("NodeId"),
            "name": {"type": "string"},
            "running": {"type": "boolean"},
            "status": {
                "type": "string",
                "enum": [*(s.value for s in AppStatus), CRASH_LOOPING, DISK_FULL, FENCED],
                "description": "crash_looping: it failed here and waits to be restarted; "
                "disk_full: this node holds it stopped, for it was filling the node's disk; "
                "fenced: the chain has not seen this node for F slots, so it holds it "
                "stopped (hold says so) until the chain sees it again",
            },
            "cpu_bp": share(),
            "ram_bp": share(),
            "disk_bytes": count(),
            "net_bytes_per_s": count(
                "network bytes sent and received per second (a process app: TCP only)"
            ),
            "version": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "the spec version it runs (null: not known yet)",
            },
            "restarts": count("restarts after failures here since it last stayed up"),
            "last_exit": {
                "type": ["string", "null"],
                "description": "how its last failure here ended (exit code 2, killed by "
                "SIGKILL, a start's error) while its failures count",
            },
            "next_restart_in_s": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "seconds until it is started again, while it waits",
            },
            "hold": {
                "type": ["string", "null"],
                "description": "why this node holds it stopped (status disk_full: it was "
                "filling the node's disk), while it does",
            },
            "state_lost": {
                "type": ["string", "null"],
                "description": "how this copy started from nothing although the app had "
                "run elsewhere with state (no replica reached this node in time, or the "
                "app keeps none), until it starts here again with state or moves",
            },
        }
    )


def get_app_schemas() -> dict[str, Schema]:
    """AppView to RuntimeApp, in the order ``get_component_schemas`` lists them."""
    app_view = _app_view_properties()
    return {
        "AppView": closed_object(app_view),
        "AppDetail": closed_object({**app_view, "spec": ref("AppSpec")}),
        "AppSpec": closed_object(_spec_properties(request=False)),
        "AppPolicy": _policy_out_schema(),
        "AppSpecIn": _app_spec_in_schema(),
        "AppPolicyIn": _policy_in_schema(),
        "HistoryEvent": _history_event_schema(),
        "AppHistory": closed_object(
            {
                "app_id": ref("AppId"),
                "events": {"type": "array", "items": ref("HistoryEvent")},
                "migrations": {"type": "array", "items": ref("Migration")},
            }
        ),
        "AppLog": closed_object(
            {
                "app_id": ref("AppId"),
                "node_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "running": {"type": "boolean", "description": "its copy here runs now"},
                "lines": {"type": "array", "items": {"type": "string"}},
                "truncated": {
                    "type": "boolean",
                    "description": "earlier output exists that these lines do not show",
                },
            }
        ),
        "Migration": _migration_schema(),
        "RuntimeApp": _runtime_app_schema(),
    }
