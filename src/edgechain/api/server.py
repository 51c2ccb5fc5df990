"""A small JSON-over-HTTP/1.1 server on asyncio streams.

One request per connection (``Connection: close``), bounded request line, headers and
body, JSON in and out. Whatever a client sends, it gets an HTTP answer with a JSON body
before the connection closes (issue 8: a bad query used to drop the connection):

* malformed request line, header, ``Content-Length``, a body cut short: 400;
* a request line or header over the limits: 414 / 431; a body over ``max_body``: 413;
* a ``Transfer-Encoding`` without ``Content-Length`` (chunked is not supported): 411;
* a client that stalls mid-request: 408 after ``read_timeout_s``;
* an exception in the handler: logged, 500 (the catch-all);
* more than ``max_connections`` at once: 503 at once, so a slow client cannot hold them all.

Only a client that connects and sends nothing at all is closed without an answer.
After answering, the server stops writing and reads (and discards) what the client is
still sending for a moment before closing: closing a socket with unread input makes
the kernel send a reset, and the client may lose our answer with it (for example a 413
sent while the oversized body is still arriving).

The routes live in ``api/routes.py``; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("edgechain.api")

MAX_LINE = 8 * 1024
"""Longest request line or header line, in bytes."""
MAX_HEADERS = 64
MAX_BODY = 256 * 1024
"""Largest request body: a spec at the wire's limits fits (64 arguments of 4 KiB)."""
MAX_QUERY_FIELDS = 32
READ_TIMEOUT_S = 5.0
"""Time a client has to send its whole request."""
WRITE_TIMEOUT_S = 30.0
"""Time a client has to take our whole answer."""
MAX_CONNECTIONS = 64
LINGER_S = 1.0
"""How long to read away what a client still sends after our answer."""
LINGER_BYTES = 4 * MAX_BODY

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""RFC 9110 token: methods and header names."""
_VERSION = re.compile(r"^HTTP/1\.[01]$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Still percent-encoded (routes decode each segment)."""
    query: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-case names."""


@dataclass(frozen=True)
class Reply:
    status: int
    payload: Any
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Reply]]

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """An answer other than success: ``status``, a message and the offending field."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers

    def to_reply(self) -> Reply:
        payload: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            payload["field"] = self.field
        return Reply(self.status, payload, self.headers)


class _NothingSentError(Exception):
    """The client closed before sending a byte: there is nobody to answer."""


async def _read_line(reader: asyncio.StreamReader, what: str, too_long: int) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise HttpError(too_long, f"{what} longer than {MAX_LINE} bytes", what) from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial and what == "request_line":
            raise _NothingSentError from None
        raise HttpError(400, f"connection closed inside the {what}", what) from None


def _parse_request_line(line: bytes) -> tuple[str, str]:
    parts = line.decode("latin-1").strip("\r\n").split(" ")
    if len(parts) != 3:
        raise HttpError(400, "expected METHOD TARGET HTTP/1.x", "request_line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HttpError(400, "bad method", "method")
    if not _VERSION.match(version):
        raise HttpError(400, "only HTTP/1.0 and HTTP/1.1 are spoken", "version")
    return method, target


def _split_target(target: str) -> tuple[str, dict[str, str]]:
    if target.startswith("/"):
        path, _, rest = target.partition("?")
        query = rest.partition("#")[0]
    elif target.lower().startswith(("http://", "https://")):
        try:
            parts = urlsplit(target)
        except ValueError:
            raise HttpError(400, "bad request target", "target") from None
        path, query = parts.path or "/", parts.query
    else:
        raise HttpError(400, "the request target must be a path", "target")
    try:
        pairs = parse_qsl(
            query,
            keep_blank_values=True,
            max_num_fields=MAX_QUERY_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:
        raise HttpError(400, "query is not UTF-8", "query") from None
    except ValueError:
        raise HttpError(400, f"more than {MAX_QUERY_FIELDS} query fields", "query") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise HttpError(400, f"query parameter {name!r} given twice", name)
        params[name] = value
    return path, params


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await _read_line(reader, "headers", 431)
        if line in (b"\r\n", b"\n"):
            return headers
        text = line.decode("latin-1").rstrip("\r\n")
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, f"malformed header line {text[:64]!r}", "headers")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length":
                if headers[key] != value:
                    raise HttpError(400, "conflicting Content-Length headers", key)
                continue
            value = f"{headers[key]}, {value}"
        headers[key] = value
    raise HttpError(431, f"more than {MAX_HEADERS} headers", "headers")


def _get_body_length(headers: Mapping[str, str], max_body: int) -> int:
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise HttpError(400, "both Transfer-Encoding and Content-Length", "transfer-encoding")
        raise HttpError(
            411, "chunked bodies are not supported; send Content-Length", "transfer-encoding"
        )
    text = headers.get("content-length", "0")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise HttpError(400, "Content-Length is not a number", "content-length")
    length = int(text)
    if length > max_body:
        raise HttpError(413, f"body over {max_body} bytes", "body")
    return length


def encode_response(reply: Reply) -> bytes:
    body = json.dumps(reply.payload, separators=(",", ":")).encode() + b"\n"
    lines = [
        f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Unknown')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _describe(request: Request | None) -> dict[str, str]:
    if request is None:
        return {"stage": "reading"}
    return {"method": request.method[:16], "path": request.path[:128]}


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        max_body: int = MAX_BODY,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_body = max_body
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        # The stream limit bounds every readuntil: a longer line is a LimitOverrunError.
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_LINE)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request:
        line = await _read_line(reader, "request_line", 414)
        for _ in range(4):  # RFC 9112 2.2: ignore empty lines before the request line
            if line not in (b"\r\n", b"\n"):
                break
            try:
                line = await _read_line(reader, "request_line", 414)
            except _NothingSentError:
                # It sent empty lines, then closed: someone is there to answer.
                raise HttpError(
                    400, "connection closed before the request line", "request_line"
                ) from None
        method, target = _parse_request_line(line)
        headers = await _read_headers(reader)
        path, query = _split_target(target)
        length = _get_body_length(headers, self.max_body)
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise HttpError(400, "body shorter than Content-Length", "body") from None
        return Request(method, path, query, body, headers)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Reply:
        request: Request | None = None
        try:
            async with asyncio.timeout(self.read_timeout_s):
                request = await self._read_request(reader, writer)
            return await self.handler(request)
        except TimeoutError:
            if request is not None:  # the handler's own, not the client's
                log.exception("api handler timed out", extra={"fields": _describe(request)})
                return Reply(500, {"error": "internal error"})
            return HttpError(408, "request not complete in time", "request").to_reply()
        except HttpError as exc:
            return exc.to_reply()
        except (_NothingSentError, ConnectionError):
            raise
        except Exception:
            # The catch-all: our bug, never the client's connection's problem.
            log.exception("api request failed", extra={"fields": _describe(request)})
            return Reply(500, {"error": "internal error"})

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open += 1
        try:
            if self._open > self.max_connections:
                reply = Reply(503, {"error": "too many connections"}, (("Retry-After", "1"),))
            else:
                reply = await self._answer(reader, writer)
            try:
                data = encode_response(reply)
            except (TypeError, ValueError):
                log.exception("api reply not serialisable", extra={"fields": {}})
                data = encode_response(Reply(500, {"error": "internal error"}))
            # A client that stops reading must not hold the connection (and its slot).
            async with asyncio.timeout(self.write_timeout_s):
                writer.write(data)
                await writer.drain()
            await self._linger(reader, writer)
        except (_NothingSentError, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._open -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then read away the client's leftover input (see module doc)."""
        if writer.can_write_eof():
            writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(LINGER_S):
                while discarded < LINGER_BYTES:
                    chunk = await reader.read(64 * 1024)
                    if not chunk:
                        return
                    discarded += len(chunk)
