"""The component schemas of the API's OpenAPI document (``api/openapi.py``): the
JSON objects the routes answer and take, key by key, from the same constants and enums
the routes and ``api/schema.py`` check against, so a limit changed there changes here.
The node's schemas are built in ``api/openapi_node_schemas.py``, the apps' in
``api/openapi_app_schemas.py``, the dashboard snapshot's in ``api/openapi_snapshot.py``.
"""

from __future__ import annotations

from edgechain.api.openapi_app_schemas import get_app_schemas
from edgechain.api.openapi_helpers import (
    Schema,
    closed_object,
    count,
    hex_string,
    ref,
)
from edgechain.api.openapi_node_schemas import get_node_schemas
from edgechain.api.openapi_snapshot import get_snapshot_schemas
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE

# --- component schemas ---------------------------------------------------------------


def _error_schema() -> Schema:
    return {
        "type": "object",
        "description": "Every refusal: what is wrong, and the request field it is about "
        "(a JSON path such as policy.min_interval_slots, a query parameter, path, "
        "method, body, authorization...) when there is one.",
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    }


def get_component_schemas() -> dict[str, Schema]:
    return {
        "Error": _error_schema(),
        "Hash": hex_string(HASH_SIZE, "a block or command hash"),
        "NodeId": hex_string(HASH_SIZE, "a node id"),
        "AppId": hex_string(HASH_SIZE, "an app id"),
        "PublicKey": hex_string(PUBLIC_KEY_SIZE, "a BLS public key"),
        "Health": closed_object({"ok": {"type": "boolean", "const": True}}),
        **get_node_schemas(),
        **get_app_schemas(),
        "Operator": closed_object(
            {
                "public_key": ref("PublicKey"),
                "admin": {"type": "boolean"},
                "operator": {"type": "boolean"},
                "revoked": {"type": "boolean"},
                "last_seq": count("its last applied command's sequence number (0: none)"),
            }
        ),
        "CommandIn": {
            "type": "object",
            "properties": {
                "command": {
                    "type": "string",
                    "pattern": "^([0-9a-fA-F]{2})*$",
                    "description": "hex of a signed command's canonical encoding",
                }
            },
            "required": ["command"],
            "additionalProperties": False,
        },
        "Leave": closed_object(
            {
                "phase": {
                    "type": "string",
                    "enum": ["staying", "draining", "exiting", "left"],
                    "description": "node/leaving.py: drain on chain and apps moved "
                    "away, then the exit request, then the stop",
                },
                "started_ms": {"type": ["integer", "null"], "description": "when asked"},
                "draining_on_chain": {"type": "boolean"},
                "apps_here": {
                    "type": "array",
                    "items": ref("AppId"),
                    "description": "running apps the head chain places here",
                },
                "apps_running_here": {
                    "type": "array",
                    "items": ref("AppId"),
                    "description": "apps this node's runtime still runs or hands over",
                },
                "apps_left_behind": {
                    "type": "array",
                    "items": ref("AppId"),
                    "description": "running apps still here when a timed-out drain exited",
                },
            }
        ),
        "CommandStatus": closed_object(
            {
                "command_hash": ref("Hash"),
                "status": {"type": "string", "enum": ["applied", "pending", "dropped"]},
                "kind": {"type": "string", "description": "the command's kind, lower case"},
                "signer": ref("PublicKey"),
                "seq": count(),
                "slot": count(
                    "applied: the block's slot; pending: the slot it came in; dropped: "
                    "the head's slot then"
                ),
                "block": {**ref("Hash"), "description": "applied: the block carrying it"},
                "reason": {
                    "type": "string",
                    "description": "pending: why the last head refused it; dropped: why",
                },
                "refused_heads": count("pending: heads in a row that refused it"),
            },
            optional=("kind", "signer", "seq", "slot", "block", "reason", "refused_heads"),
        ),
        "Receipt": closed_object(
            {
                "command_hash": ref("Hash"),
                "seq": count(),
                "app_id": {**ref("AppId"), "description": "a SUBMIT's app id to be"},
            },
            optional=("app_id",),
        ),
        **get_snapshot_schemas(),
    }
