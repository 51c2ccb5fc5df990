"""The HTTP API's routes: parse, call the node's public interface, map errors to statuses.

Every refusal is an :class:`HttpError` with the offending field; anything else a
handler raises is the server's catch-all 500 (``api/server.py``). The node is reached
only through :class:`NodeInterface`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from edgechain.api.auth import is_authorized
from edgechain.api.live import EVENT_STREAM, DashboardFiles, SnapshotFeed
from edgechain.api.log_reads import check_log_read
from edgechain.api.node_interface import NodeInterface
from edgechain.api.openapi import get_openapi_document
from edgechain.api.schema import (
    SchemaError,
    app_spec_to_json,
    check_keys,
    check_query,
    get_hex,
    get_object,
    parse_app_spec,
    parse_query_int,
)
from edgechain.api.server import HttpError, Reply, Request
from edgechain.api.views import render_command_status, render_nodes, render_operator, to_json
from edgechain.chain.command_encoding import decode_command
from edgechain.chain.model import SignedCommand
from edgechain.chain.read_auth import DEFAULT_TAIL_LINES, MAX_TAIL_LINES
from edgechain.consensus.command_status import CommandState
from edgechain.consensus.state import BlockState
from edgechain.errors import DecodeError, PeerError, RejectReason
from edgechain.node import CommandReceipt, NoOperatorKeyError
from edgechain.node.events import MAX_ACCEPTED_LOG
from edgechain.orchestrator.fleet import compute_app_view, compute_app_views, resolve_app
from edgechain.orchestrator.registry import AppRecord, get_record
from edgechain.runtime.base import AppRuntimeError
from edgechain.telemetry.cpu import Component, charge_thread_cpu
from edgechain.telemetry.metrics import CONTENT_TYPE as METRICS_TYPE
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE

MAX_BLOCKS = MAX_ACCEPTED_LOG
"""The most ``GET /blocks`` returns (a node keeps that many in its accepted log)."""

COMMAND_STATUS: dict[RejectReason, int] = {
    RejectReason.COMMAND_BAD_SIGNATURE: 403,
    RejectReason.COMMAND_UNKNOWN_SIGNER: 403,
    RejectReason.COMMAND_REVOKED: 403,
    RejectReason.COMMAND_NOT_ADMIN: 403,
    RejectReason.COMMAND_REPLAYED: 409,
    RejectReason.COMMAND_MALFORMED: 400,
    RejectReason.COMMAND_INVALID: 422,
    RejectReason.COMMAND_POOL_FULL: 503,
    RejectReason.NO_CHAIN: 503,
}
"""HTTP status of each reason a node refuses a command for (unknown reasons: 422)."""

Params = tuple[str, ...]
RouteHandler = Callable[[Request, Params], Reply | Awaitable[Reply]]
"""A route's handler: most answer at once from memory; one that reads files (an app's
log) is a coroutine that reads in a worker thread, off the node's loop."""


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    """Path segments; ``{name}`` matches any one segment."""
    handler: RouteHandler
    query: frozenset[str] = frozenset()
    """The query parameters the route reads (any other is a 400)."""
    before_ready: bool = False
    """It answers while the node starts (it reads nothing of the node's state)."""


def split_path(path: str) -> tuple[str, ...]:
    """Percent-decoded segments of ``path`` (which starts with '/')."""
    try:
        return tuple(unquote(s, errors="strict") for s in path.split("/")[1:])
    except UnicodeDecodeError:
        raise HttpError(400, "path is not UTF-8", "path") from None


def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> Params | None:
    if len(pattern) != len(segments):
        return None
    params = []
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params.append(got)
        elif want != got:
            return None
    return tuple(params)


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def find(self, request: Request) -> tuple[Route, Params]:
        """The route for ``request``; 404 for an unknown path, 405 for a wrong method."""
        segments = split_path(request.path)
        allowed: list[str] = []
        for route in self.routes:
            params = _match(route.pattern, segments)
            if params is None:
                continue
            if route.method == request.method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise HttpError(
                405,
                f"method {request.method[:16]} not allowed here",
                "method",
                (("Allow", ", ".join(sorted(set(allowed)))),),
            )
        raise HttpError(404, "no such endpoint", "path")


def _pattern(text: str) -> tuple[str, ...]:
    return tuple(text.split("/")[1:])


MAX_JSON_DEPTH = 32
"""Nesting deeper than any request needs; json's C scanner recurses once per level, and
a 256 KiB body of ``[`` overflows the C stack of a thread with a small stack."""

_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def get_json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (strings skipped), without
    parsing it; it stops counting past ``MAX_JSON_DEPTH``."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


def parse_json_body(body: bytes) -> object:
    if not body:
        raise HttpError(400, "empty body, expected JSON", "body")
    if get_json_depth(body) > MAX_JSON_DEPTH:
        raise HttpError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "body")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise HttpError(400, "body is not valid JSON", "body") from None


def schema_error(exc: SchemaError) -> HttpError:
    return HttpError(400, exc.message, exc.field)


def command_error(exc: PeerError, field: str = "command") -> HttpError:
    """A refused command's HTTP answer (SPEC: 403 authority, 409 replay, 422 invalid)."""
    status = COMMAND_STATUS.get(exc.reason, 422)
    headers = (("Retry-After", "2"),) if status == 503 else ()
    return HttpError(status, str(exc), field if status < 500 else None, headers)


def render_receipt(receipt: CommandReceipt) -> dict[str, Any]:
    out: dict[str, Any] = {"command_hash": receipt.command_hash.hex(), "seq": receipt.seq}
    if receipt.app_id is not None:
        out["app_id"] = receipt.app_id.hex()
    return out


class NodeRoutes:
    """The API of one node; ``handle`` is the server's handler."""

    def __init__(self, node: NodeInterface, token: str) -> None:
        self.node = node
        self.token = token
        self.router = Router(
            [
                Route("GET", _pattern("/health"), self.get_health),
                Route("GET", _pattern("/status"), self.get_status, frozenset({"cpu_since_slot"})),
                Route("GET", _pattern("/blocks"), self.get_blocks, frozenset({"since", "limit"})),
                Route("GET", _pattern("/chain"), self.get_chain),
                Route("GET", _pattern("/nodes"), self.get_nodes),
                Route("GET", _pattern("/apps"), self.get_apps),
                Route("GET", _pattern("/apps/{app}"), self.get_app),
                Route("GET", _pattern("/apps/{app}/history"), self.get_app_history),
                Route("GET", _pattern("/apps/{app}/log"), self.get_app_log, frozenset({"lines"})),
                Route("GET", _pattern("/migrations"), self.get_migrations),
                Route("GET", _pattern("/runtime/apps"), self.get_runtime_apps),
                Route("GET", _pattern("/operators/{public_key}"), self.get_operator),
                Route("POST", _pattern("/commands"), self.post_command),
                Route("GET", _pattern("/commands/{hash}"), self.get_command),
                Route("POST", _pattern("/apps"), self.post_app),
                Route("POST", _pattern("/node/leave"), self.post_leave),
                # Observability (ARCHITECTURE.md, "API"): these answer before genesis.
                Route("GET", _pattern("/openapi.json"), self.get_openapi, before_ready=True),
                Route("GET", _pattern("/metrics"), self.get_metrics),
                Route("GET", _pattern("/events"), self.get_events),
                Route("GET", _pattern("/"), self.get_dashboard, before_ready=True),
                Route("GET", _pattern("/dashboard"), self.get_dashboard, before_ready=True),
                Route("GET", _pattern("/dashboard/snapshot"), self.get_snapshot),
                Route("GET", _pattern("/dashboard/{asset}"), self.get_asset, before_ready=True),
            ]
        )
        self.files = DashboardFiles()
        self.feed = SnapshotFeed(node)

    async def handle(self, request: Request) -> Reply:
        route, params = self.router.find(request)
        try:
            check_query(request.query, route.query)
        except SchemaError as exc:
            raise schema_error(exc) from None
        if not self.node.is_ready() and not route.before_ready:
            raise HttpError(503, "node is starting", None, (("Retry-After", "1"),))
        reply = route.handler(request, params)
        return await reply if inspect.isawaitable(reply) else reply

    def _get_state(self) -> BlockState:
        state = self.node.get_head_state()
        if state is None:
            raise HttpError(503, "no chain yet (before genesis)", None, (("Retry-After", "2"),))
        return state

    # --- reading --------------------------------------------------------------------

    def get_health(self, request: Request, params: Params) -> Reply:
        return Reply(200, {"ok": True})

    def get_status(self, request: Request, params: Params) -> Reply:
        since = None
        if "cpu_since_slot" in request.query:
            try:
                since = parse_query_int(
                    request.query, "cpu_since_slot", default=0, low=0, high=2**63 - 1
                )
            except SchemaError as exc:
                raise schema_error(exc) from None
        return Reply(200, self.node.get_status(since))

    def get_blocks(self, request: Request, params: Params) -> Reply:
        try:
            since = parse_query_int(request.query, "since", default=0, low=0, high=2**63 - 1)
            limit = parse_query_int(
                request.query, "limit", default=MAX_BLOCKS, low=1, high=MAX_BLOCKS
            )
        except SchemaError as exc:
            raise schema_error(exc) from None
        return Reply(200, self.node.get_blocks(since, limit))

    def get_chain(self, request: Request, params: Params) -> Reply:
        return Reply(200, self.node.get_chain())

    def get_nodes(self, request: Request, params: Params) -> Reply:
        chain_params = self.node.get_params()
        down_after = chain_params.down_after_slots if chain_params is not None else 0
        return Reply(200, render_nodes(self._get_state(), down_after))

    def get_apps(self, request: Request, params: Params) -> Reply:
        state = self._get_state()
        local = self._get_local_copies()
        views = to_json(compute_app_views(state.registry, state.reports))
        return Reply(200, [{**view, "local": local.get(view["app_id"])} for view in views])

    def _get_local_copies(self) -> dict[str, dict[str, Any]]:
        """This node's copies, by app id: the chain's view of an app plus what this
        node's runtime says of its copy (``local``; a crash loop is only known here)."""
        return {str(copy["app"]): copy for copy in to_json(self.node.get_runtime_apps())}

    def _resolve_app(self, state: BlockState, text: str) -> AppRecord:
        try:
            app = resolve_app(state.registry, text)
        except KeyError:
            raise HttpError(404, f"no app named {text[:64]!r}", "app") from None
        except ValueError as exc:
            raise HttpError(409, str(exc), "app") from None
        record = get_record(state.registry, app)
        assert record is not None  # resolve_app returns only apps of the registry
        return record

    def get_app(self, request: Request, params: Params) -> Reply:
        state = self._get_state()
        record = self._resolve_app(state, params[0])
        view = to_json(compute_app_view(record, state.reports))
        local = self._get_local_copies().get(view["app_id"])
        return Reply(200, {**view, "local": local, "spec": app_spec_to_json(record.spec)})

    def get_app_history(self, request: Request, params: Params) -> Reply:
        state = self._get_state()
        app = self._resolve_app(state, params[0]).app
        events = self.node.get_app_history(app)
        migrations = [
            m for m in self.node.get_migrations() if app.hex().startswith(str(m.get("app", "-")))
        ]
        return Reply(
            200, {"app_id": app.hex(), "events": to_json(events), "migrations": to_json(migrations)}
        )

    async def get_app_log(self, request: Request, params: Params) -> Reply:
        """The end of the app's output on this node, for its operators (log_reads.py).
        Read in a worker thread: up to 1 MiB of file (11.6 ms measured), or a
        container engine's answer, would hold the node's loop."""
        state = self._get_state()
        app = self._resolve_app(state, params[0]).app
        chain = self.node.get_params()
        assert chain is not None  # a head state implies the genesis params
        check_log_read(
            request.headers, self.token, state, chain.chain_id, app, self.node.get_now_ms()
        )
        try:
            lines = parse_query_int(
                request.query, "lines", default=DEFAULT_TAIL_LINES, low=1, high=MAX_TAIL_LINES
            )
        except SchemaError as exc:
            raise schema_error(exc) from None
        try:
            # Charged as the API's other answers are, on the loop (telemetry/cpu.py).
            read = charge_thread_cpu(Component.OTHER, self.node.get_app_log)
            log = await asyncio.to_thread(read, app, lines)
        except AppRuntimeError as exc:
            raise HttpError(503, str(exc), "app") from None
        if log is None:
            raise HttpError(404, f"app {app.hex()[:12]} has no output on this node", "app")
        return Reply(200, log)

    def get_migrations(self, request: Request, params: Params) -> Reply:
        return Reply(200, to_json(self.node.get_migrations()))

    def get_runtime_apps(self, request: Request, params: Params) -> Reply:
        return Reply(200, to_json(self.node.get_runtime_apps()))

    def get_operator(self, request: Request, params: Params) -> Reply:
        try:
            key = get_hex(params[0], "public_key", sizes=(PUBLIC_KEY_SIZE,))
        except SchemaError as exc:
            raise schema_error(exc) from None
        return Reply(200, render_operator(self._get_state(), key))

    def get_command(self, request: Request, params: Params) -> Reply:
        """Where a command stands on this node (``consensus/command_status.py``)."""
        try:
            digest = get_hex(params[0], "hash", sizes=(HASH_SIZE,))
        except SchemaError as exc:
            raise schema_error(exc) from None
        self._get_state()  # 503 before the genesis
        status = self.node.get_command_status(digest)
        if status.state is CommandState.UNKNOWN:
            raise HttpError(
                404,
                "unknown command: no block of this node's head chain in memory carries it, "
                "and it is neither pending nor dropped here",
                "hash",
            )
        return Reply(200, render_command_status(digest, status))

    # --- observability --------------------------------------------------------------

    def get_openapi(self, request: Request, params: Params) -> Reply:
        return Reply(200, get_openapi_document())

    def get_metrics(self, request: Request, params: Params) -> Reply:
        return Reply(200, body=self.node.get_metrics_text(), content_type=METRICS_TYPE)

    def get_events(self, request: Request, params: Params) -> Reply:
        if self.feed.is_full():
            raise HttpError(503, "too many event streams", None, (("Retry-After", "5"),))
        headers = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))
        return Reply(200, headers=headers, content_type=EVENT_STREAM, stream=self.feed.stream)

    def get_snapshot(self, request: Request, params: Params) -> Reply:
        self._get_state()  # 503 before genesis, as /events waits for it
        return Reply(200, self.feed.get_snapshot())

    def get_dashboard(self, request: Request, params: Params) -> Reply:
        return self._file("index.html")

    def get_asset(self, request: Request, params: Params) -> Reply:
        return self._file(params[0])

    def _file(self, name: str) -> Reply:
        found = self.files.get(name)
        if found is None:
            raise HttpError(404, f"no dashboard file {name[:64]!r}", "path")
        body, content_type = found
        return Reply(200, body=body, content_type=content_type)

    # --- writing --------------------------------------------------------------------

    def post_command(self, request: Request, params: Params) -> Reply:
        try:
            body = get_object(parse_json_body(request.body), "body")
            check_keys(body, frozenset({"command"}))
            if "command" not in body:
                raise SchemaError("command", "missing")
            text = body["command"]
            if not isinstance(text, str):
                raise SchemaError("command", "expected the hex of an encoded command")
            raw = bytes.fromhex(text)
        except SchemaError as exc:
            raise schema_error(exc) from None
        except ValueError:
            raise HttpError(400, "not hexadecimal", "command") from None
        try:
            command = decode_command(raw)
        except DecodeError as exc:
            raise HttpError(400, f"undecodable command: {exc}", "command") from None
        return self._submit(command)

    def _submit(self, command: SignedCommand) -> Reply:
        try:
            receipt = self.node.submit_command(command)
        except PeerError as exc:
            raise command_error(exc) from None
        return Reply(202, render_receipt(receipt))

    def _check_token(self, request: Request) -> None:
        if not is_authorized(request.headers, self.token):
            raise HttpError(
                401,
                "needs Authorization: Bearer <the node's api.token>",
                "authorization",
                (("WWW-Authenticate", 'Bearer realm="edgechain"'),),
            )

    def post_leave(self, request: Request, params: Params) -> Reply:
        """Start this node's leave (node/leaving.py): 202 with its progress; asking
        again while it runs changes nothing."""
        self._check_token(request)
        if request.body.strip() not in (b"", b"{}"):
            raise HttpError(400, "POST /node/leave takes no body", "body")
        return Reply(202, self.node.leave())

    def post_app(self, request: Request, params: Params) -> Reply:
        # Token first: without it a caller learns nothing, not even what is wrong with
        # its spec. Then the spec, then whether this node can sign for it at all.
        self._check_token(request)
        try:
            spec = parse_app_spec(get_object(parse_json_body(request.body), "body"))
        except SchemaError as exc:
            raise schema_error(exc) from None
        try:
            receipt = self.node.submit_app(spec)
        except NoOperatorKeyError as exc:
            raise HttpError(403, str(exc), "operator_key") from None
        except PeerError as exc:
            raise command_error(exc, "body") from None
        return Reply(202, render_receipt(receipt))
