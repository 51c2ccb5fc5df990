"""The HTTP API described as an OpenAPI 3.1 document: what ``GET /openapi.json`` serves.

:func:`get_openapi_document` builds it once, as plain Python data, from the same
constants the routes and ``api/schema.py`` check against (the wire's limits, the
resource limits, the enums of roles, statuses and outcomes), so a limit changed there
changes here. It describes every route of :class:`~edgechain.api.routes.NodeRoutes`:
its parameters and their bounds, the request bodies (``POST /commands``, the app spec
of ``POST /apps`` with the checks ``parse_app_spec`` makes that a schema can say), the
response bodies key by key (closed objects, except the counters and tables that are
open by nature), the JSON error object every refusal carries and the statuses each
route really answers (including the server's own: 408, 413, 414, 431, 501, and 503
while the node starts). ``POST /apps`` needs the node's bearer token (``api/auth.py``).

It also describes the routes of the dashboard and the metrics (``/openapi.json``,
``/metrics``, ``/events``, ``/dashboard/snapshot``, ``/``, ``/dashboard``,
``/dashboard/{asset}``); the snapshot's own schema is open. The component schemas
(the objects the routes answer and take) are in ``api/openapi_schemas.py``.

``tests/api/test_openapi.py`` checks the document with ``openapi-spec-validator``,
checks that its operations and the router's routes are the same set and
validates answers of the routes against its response schemas;
``tests/api/test_schemathesis_live.py`` runs schemathesis against a live node's
``/openapi.json``. The document is shared: do not modify what this returns.
"""

from __future__ import annotations

import functools
from typing import Any

from edgechain import __version__
from edgechain.api.live import CONTENT_TYPES as DASHBOARD_TYPES
from edgechain.api.live import EVENT_STREAM, DashboardFiles
from edgechain.api.openapi_helpers import Schema, ref
from edgechain.api.openapi_schemas import get_component_schemas
from edgechain.chain.read_auth import (
    DEFAULT_TAIL_LINES,
    KEY_HEADER,
    MAX_TAIL_LINES,
    SIGNATURE_HEADER,
    TIME_HEADER,
)
from edgechain.node.events import MAX_ACCEPTED_LOG
from edgechain.telemetry.metrics import CONTENT_TYPE as METRICS_MEDIA_TYPE
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, SIGNATURE_SIZE

OPENAPI_VERSION = "3.1.0"


MAX_BLOCKS = MAX_ACCEPTED_LOG
"""``GET /blocks``'s largest ``limit`` (``api/routes.MAX_BLOCKS``; not imported from
there, so that the routes can import this module)."""

_SINCE_MAX = 2**63 - 1


# --- responses -----------------------------------------------------------------------

_ERRORS = {
    400: "Bad request: a malformed request, an unknown query parameter, a bad value",
    401: "No or wrong bearer token or operator signature (WWW-Authenticate says how)",
    403: "Refused: the signer may not do this, or this node has no operator key",
    404: "Not found",
    408: "The request was not complete in time",
    409: "Conflict: a replayed command, or a name that matches several apps",
    413: "The body is too large",
    414: "The request line is too long",
    422: "The command is invalid in the head state",
    431: "The request head is too large, or has too many headers",
    501: "A transfer coding other than chunked",
    503: "Not now: the node is starting, has no chain yet, or is too busy (Retry-After)",
}
_TRANSPORT = (400, 408, 413, 414, 431, 501, 503)
"""What any request can be answered: the server's own refusals and 503 while starting."""


def _error_response(status: int) -> Schema:
    out: Schema = {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if status == 503:
        out["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    elif status == 401:
        out["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WwwAuthenticate"}}
    return out


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _array(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    errors: tuple[int, ...] = (),
    tag: str = "node",
    **extra: Any,
) -> Schema:
    all_responses = dict(responses)
    for status in sorted({*_TRANSPORT, *errors}):
        all_responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        **extra,
        "responses": all_responses,
    }


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _signature_headers() -> list[Schema]:
    """The headers of an operator's signed read (``api/log_reads.py``)."""
    described = (
        (
            KEY_HEADER,
            "the operator's BLS public key, hex",
            f"^[0-9a-fA-F]{{{2 * PUBLIC_KEY_SIZE}}}$",
        ),
        (TIME_HEADER, "when it signed, epoch ms (within 60 s of the node)", "^[0-9]+$"),
        (
            SIGNATURE_HEADER,
            "its BLS signature, hex",
            f"^[0-9a-fA-F]{{{2 * SIGNATURE_SIZE}}}$",
        ),
    )
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": text,
            "schema": {"type": "string", "pattern": pattern},
        }
        for name, text, pattern in described
    ]


def _paths() -> dict[str, Schema]:
    app_param = _path_param(
        "app",
        {"type": "string", "minLength": 1},
        "the app's id, a unique id prefix (at least 4 hex digits) or a unique name",
    )
    key_param = _path_param(
        "public_key",
        {"type": "string", "pattern": f"^[0-9a-fA-F]{{{2 * PUBLIC_KEY_SIZE}}}$"},
        f"a BLS public key, {2 * PUBLIC_KEY_SIZE} hex digits",
    )
    hash_param = _path_param(
        "hash",
        {"type": "string", "pattern": f"^[0-9a-fA-F]{{{2 * HASH_SIZE}}}$"},
        f"a command hash (the receipt's command_hash), {2 * HASH_SIZE} hex digits",
    )
    asset_param = _path_param(
        "asset", {"type": "string", "minLength": 1}, "a file of the dashboard"
    )
    asset_param["examples"] = {name: {"value": name} for name in sorted(DashboardFiles().files)}
    return {
        "/health": {
            "get": _operation(
                "getHealth", "The API answers", {"200": _json("Alive", ref("Health"))}
            )
        },
        "/status": {
            "get": _operation(
                "getStatus",
                "The node: identity, chain, role, peers, counters, CPU, apps",
                {"200": _json("The node's status", ref("Status"))},
                parameters=[
                    {
                        "name": "cpu_since_slot",
                        "in": "query",
                        "required": False,
                        "description": "cpu_per_slot over the slots after this one only "
                        "(default: every slot the node keeps)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": _SINCE_MAX},
                    }
                ],
            )
        },
        "/blocks": {
            "get": _operation(
                "getBlocks",
                "Blocks this node accepted (any branch), oldest first",
                {"200": _json("Accepted blocks", _array("AcceptedBlock"))},
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "only blocks of this slot or later",
                        "schema": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": _SINCE_MAX,
                            "default": 0,
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "at most this many blocks",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_BLOCKS,
                            "default": MAX_BLOCKS,
                        },
                    },
                ],
            )
        },
        "/chain": {
            "get": _operation(
                "getChain",
                "The head chain, oldest first (genesis exclusive)",
                {"200": _json("The head chain", _array("ChainBlock"))},
            )
        },
        "/nodes": {
            "get": _operation(
                "getNodes",
                "The validators, their liveness and latest reports",
                {"200": _json("The validators", _array("NodeView"))},
            )
        },
        "/apps": {
            "get": _operation(
                "getApps",
                "Every app of the head registry, in id order",
                {"200": _json("The fleet's apps", _array("AppView"))},
                tag="apps",
            ),
            "post": _operation(
                "postApp",
                "Submit an app, signed with this node's operator key",
                {"202": _json("Signed, checked and gossiped", ref("Receipt"))},
                errors=(401, 403, 409, 422),
                tag="apps",
                security=[{"bearer": []}],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": ref("AppSpecIn")}},
                },
            ),
        },
        "/node/leave": {
            "post": _operation(
                "postLeave",
                "Leave the network: drain (apps move away with their state), exit, stop",
                {"202": _json("The leave's progress", ref("Leave"))},
                errors=(400, 401),
                security=[{"bearer": []}],
            )
        },
        "/apps/{app}": {
            "get": _operation(
                "getApp",
                "One app, with its spec",
                {"200": _json("The app", ref("AppDetail"))},
                errors=(404, 409),
                tag="apps",
                parameters=[app_param],
            )
        },
        "/apps/{app}/history": {
            "get": _operation(
                "getAppHistory",
                "What the head chain did to an app, and this node's migrations of it",
                {"200": _json("The app's history", ref("AppHistory"))},
                errors=(404, 409),
                tag="apps",
                parameters=[app_param],
            )
        },
        "/apps/{app}/log": {
            "get": _operation(
                "getAppLog",
                "The end of an app's output on this node, for the chain's operators "
                "(signed: X-Edgechain-Key, X-Edgechain-Time, X-Edgechain-Signature over "
                "chain/read_auth.compute_log_read_message) or a local bearer",
                {"200": _json("The app's last lines here", ref("AppLog"))},
                errors=(401, 403, 404, 409),
                tag="apps",
                parameters=[
                    app_param,
                    {
                        "name": "lines",
                        "in": "query",
                        "required": False,
                        "description": "how many of the last lines",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_TAIL_LINES,
                            "default": DEFAULT_TAIL_LINES,
                        },
                    },
                    *_signature_headers(),
                ],
                security=[{"bearer": []}, {"operatorSignature": []}],
            )
        },
        "/migrations": {
            "get": _operation(
                "getMigrations",
                "This node's outgoing migrations, oldest first, with timings",
                {"200": _json("Migration results", _array("Migration"))},
                tag="apps",
            )
        },
        "/runtime/apps": {
            "get": _operation(
                "getRuntimeApps",
                "The apps this node's runtime holds",
                {"200": _json("Local apps", _array("RuntimeApp"))},
                tag="apps",
            )
        },
        "/operators/{public_key}": {
            "get": _operation(
                "getOperator",
                "What a key may sign, and its last sequence number",
                {"200": _json("The key's authority", ref("Operator"))},
                errors=(404,),
                parameters=[key_param],
            )
        },
        "/commands": {
            "post": _operation(
                "postCommand",
                "Submit a signed command (admin and operator commands)",
                {"202": _json("Checked and gossiped", ref("Receipt"))},
                errors=(403, 409, 422),
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": ref("CommandIn")}},
                },
            )
        },
        "/commands/{hash}": {
            "get": _operation(
                "getCommand",
                "Where a command stands on this node: applied (a block of its head chain "
                "carries it), pending (with why the last head refused it, if it did) or "
                "dropped unapplied (and why)",
                {"200": _json("The command's status", ref("CommandStatus"))},
                errors=(404,),
                parameters=[hash_param],
            )
        },
        # The dashboard and the metrics (ARCHITECTURE.md, "The HTTP API").
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This document",
                {"200": _json("OpenAPI 3.1", {"type": "object"})},
                tag="meta",
            )
        },
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}},
                    }
                },
                tag="meta",
            )
        },
        "/events": {
            "get": _operation(
                "getEvents",
                "Server-sent events: `snapshot` events whose data is the dashboard snapshot",
                {
                    "200": {
                        "description": "An endless event stream",
                        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
                    }
                },
                tag="dashboard",
            )
        },
        "/dashboard/snapshot": {
            "get": _operation(
                "getDashboardSnapshot",
                "What the dashboard shows, at once",
                {"200": _json("The snapshot", ref("DashboardSnapshot"))},
                tag="dashboard",
            )
        },
        "/": {
            "get": _operation(
                "getIndex", "The dashboard page", {"200": _html("The dashboard")}, tag="dashboard"
            )
        },
        "/dashboard": {
            "get": _operation(
                "getDashboard",
                "The dashboard page",
                {"200": _html("The dashboard")},
                tag="dashboard",
            )
        },
        "/dashboard/{asset}": {
            "get": _operation(
                "getDashboardAsset",
                "A file of the dashboard (its page, style, script, icons)",
                {
                    "200": {
                        "description": "The file",
                        "content": {
                            media: {"schema": {"type": "string"}}
                            for media in sorted(
                                {t.partition(";")[0] for t in DASHBOARD_TYPES.values()}
                            )
                        },
                    }
                },
                errors=(404,),
                tag="dashboard",
                parameters=[asset_param],
            )
        },
    }


def _html(description: str) -> Schema:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _build() -> dict[str, Any]:
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "edgechain node API",
            "version": __version__,
            "description": "The HTTP API of one edgechain node (JSON over HTTP/1.1, one "
            "request per connection). Every refusal is a JSON Error naming the field at "
            "fault; an unknown path is a 404 and a known path with another method a 405 "
            "(with Allow).",
        },
        "paths": _paths(),
        "components": {
            "schemas": get_component_schemas(),
            "responses": {f"E{status}": _error_response(status) for status in sorted(_ERRORS)},
            "headers": {
                "RetryAfter": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 0},
                },
                "WwwAuthenticate": {
                    "description": 'Bearer realm="edgechain"',
                    "schema": {"type": "string"},
                },
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the node's API token (64 hex digits in <data_dir>/api.token)",
                },
                "operatorSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": f"an operator's signed read, with {KEY_HEADER} and "
                    f"{TIME_HEADER} (api/log_reads.py)",
                },
            },
        },
        "tags": [
            {"name": "node", "description": "the node and its chain"},
            {"name": "apps", "description": "the fleet's apps"},
            {"name": "dashboard", "description": "the web dashboard"},
            {"name": "meta", "description": "the API itself, metrics"},
        ],
    }
    return document


@functools.cache
def get_openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the node's HTTP API (built once; do not modify it)."""
    return _build()
