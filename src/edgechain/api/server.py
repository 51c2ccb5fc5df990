"""The API's HTTP/1.1 server: h11 on asyncio streams.

h11 (a sans-I/O HTTP/1.1 state machine, ~0.4 MB of RSS: ARCHITECTURE.md, "API") parses
requests and frames responses; this module adds the limits, the timeouts and the rule
that whatever a client sends, it gets an HTTP answer with a JSON body before the
connection closes (issue 8: a bad query used to drop the connection):

* a request h11 cannot parse (request line, headers, ``Content-Length``, a body cut
  short), an HTTP version other than 1.0/1.1, ``Transfer-Encoding`` beside
  ``Content-Length``: 400 naming the field;
* a request target over ``MAX_LINE``: 414; a head over ``MAX_HEAD`` or more than
  ``MAX_HEADERS`` headers: 431; a body over ``max_body`` (declared or chunked): 413;
* a transfer coding other than chunked: 501;
* a client that stalls mid-request: 408 after ``read_timeout_s``;
* an exception in the handler: logged, 500 (the catch-all);
* more than ``max_connections`` at once: 503 at once, so a slow client cannot hold them all.

Only a client that connects and sends nothing at all is closed without an answer.
One request per connection (``Connection: close``). After answering, the server stops
writing and reads (and discards) what the client is still sending for a moment before
closing: closing a socket with unread input makes the kernel send a reset, and the
client may lose our answer with it (for example a 413 sent while the oversized body is
still arriving).

A :class:`Reply` is JSON (``payload``), raw bytes of a content type (``body``: the
dashboard's files, ``/metrics``), or a stream (``stream``: server-sent events), which
runs until the client goes or the server closes. The routes live in ``api/routes.py``;
this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

from edgechain.errors import BindError, StoreError
from edgechain.telemetry import logs

log = logging.getLogger("edgechain.api")

MAX_LINE = 8 * 1024
"""Longest request target, in bytes."""
MAX_HEAD = 16 * 1024
"""Longest request head (request line and headers), in bytes."""
MAX_HEADERS = 64
MAX_BODY = 256 * 1024
"""Largest request body: a spec at the wire's limits fits (64 arguments of 4 KiB)."""
MAX_QUERY_FIELDS = 32
READ_TIMEOUT_S = 5.0
"""Time a client has to send its whole request."""
WRITE_TIMEOUT_S = 30.0
"""Time a client has to take our whole answer (each piece of a stream)."""
MAX_CONNECTIONS = 64
LINGER_S = 1.0
"""How long to read away what a client still sends after our answer."""
LINGER_BYTES = 4 * MAX_BODY
READ_CHUNK = 64 * 1024

JSON_TYPE = "application/json"

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""RFC 9110 token: methods."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Still percent-encoded (routes decode each segment)."""
    query: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-case names."""


Stream = Callable[[], AsyncGenerator[bytes, None]]
"""A streamed body: called once, its pieces written as they come."""


@dataclass(frozen=True)
class Reply:
    status: int
    payload: Any = None
    """The JSON body (when ``body`` and ``stream`` are None)."""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    """A body of ``content_type`` as is."""
    content_type: str = JSON_TYPE
    stream: Stream | None = None


Handler = Callable[[Request], Awaitable[Reply]]


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


def _get_field_of(error: h11.RemoteProtocolError, *, line_done: bool, head_done: bool) -> str:
    """The part of the request an h11 error is about (h11 says it only in its message)."""
    if head_done:
        return "body"
    if not line_done:
        return "request_line"
    text = str(error).lower()
    if "content-length" in text:
        return "content-length"
    if "transfer-encoding" in text:
        return "transfer-encoding"
    if "request line" in text:
        return "request_line"
    return "headers"


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


def _check_head(event: h11.Request, max_body: int) -> tuple[str, str, dict[str, str]]:
    """Method, target and headers of a parsed head, or the HttpError it deserves."""
    if event.http_version not in (b"1.0", b"1.1"):
        raise HttpError(400, "only HTTP/1.0 and HTTP/1.1 are spoken", "version")
    method = event.method.decode("latin-1")
    if not _TOKEN.match(method):  # h11 checks this too; kept as the API's own rule
        raise HttpError(400, "bad method", "method")
    if len(event.target) > MAX_LINE:
        raise HttpError(414, f"request target longer than {MAX_LINE} bytes", "request_line")
    if len(event.headers) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} headers", "headers")
    # h11 bounds a head that arrives in pieces (max_incomplete_event_size), not one
    # that arrives whole.
    if sum(len(n) + len(v) + 4 for n, v in event.headers) + len(event.target) > MAX_HEAD:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes", "headers")
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "transfer-encoding" in headers and "content-length" in headers:
        # h11 lets Transfer-Encoding win (RFC 9112 6.3); refusing both is safer.
        raise HttpError(400, "both Transfer-Encoding and Content-Length", "transfer-encoding")
    length = headers.get("content-length")
    if length is not None and int(length) > max_body:  # h11 checked it is a number
        raise HttpError(413, f"body over {max_body} bytes", "body")
    return method, event.target.decode("latin-1"), headers


def _describe(request: Request | None) -> dict[str, str]:
    if request is None:
        return {"stage": "reading"}
    return {"method": request.method[:16], "path": request.path[:128]}


def _get_reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def encode_head(conn: h11.Connection, reply: Reply, length: int | None) -> bytes:
    """The status line and headers of ``reply`` (``length`` None: a streamed body)."""
    headers = [("Content-Type", reply.content_type)]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    headers += [("Connection", "close"), *reply.headers]
    data = conn.send(
        h11.Response(status_code=reply.status, headers=headers, reason=_get_reason(reply.status))
    )
    assert data is not None
    return data


def get_body(reply: Reply) -> bytes:
    """The bytes of a non-streamed reply (JSON: compact, one line)."""
    if reply.body is not None:
        return reply.body
    return json.dumps(reply.payload, separators=(",", ":")).encode() + b"\n"


class _Connection:
    """One client connection: read one request through h11, answer it, close."""

    def __init__(
        self,
        server: HttpServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.started = False
        """Something (even an empty line) came: the client gets an answer."""
        self.fed = False
        """Bytes went to h11 (empty lines before the request line do not)."""
        self.method = ""
        self.line_done = False
        """A whole request line came (h11's errors do not say where they are)."""
        self.head_done = False

    async def _receive(self) -> None:
        data = await self.reader.read(READ_CHUNK)
        if not data:
            if not self.started:
                raise _NothingSentError
            if not self.fed:  # only empty lines: h11 saw nothing to answer
                raise HttpError(400, "connection closed before the request line", "request_line")
            self.h11.receive_data(b"")  # the client's end of input
            return
        self.started = True
        if not self.fed:
            # RFC 9112 2.2: ignore empty lines before the request line.
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self.fed = True
        self.line_done = self.line_done or b"\n" in data
        self.h11.receive_data(data)

    async def _next_event(self) -> object:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                # h11's hint is the status: 431 past MAX_HEAD (max_incomplete_event_size).
                where = _get_field_of(exc, line_done=self.line_done, head_done=self.head_done)
                raise HttpError(exc.error_status_hint, str(exc), where) from None
            if event is not h11.NEED_DATA:
                return event
            await self._receive()

    async def read_request(self) -> Request:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise HttpError(400, "connection closed before the request line", "request_line")
        assert isinstance(event, h11.Request)
        self.head_done = True
        self.method = event.method.decode("latin-1")
        method, target, headers = _check_head(event, self.server.max_body)
        path, query = _split_target(target)
        if self.h11.they_are_waiting_for_100_continue:
            self.writer.write(
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.server.max_body:
                    raise HttpError(413, f"body over {self.server.max_body} bytes", "body")
            elif isinstance(event, h11.EndOfMessage):
                return Request(method, path, query, bytes(body), headers)
            else:  # ConnectionClosed mid-body: h11 raises for a short Content-Length
                raise HttpError(400, "connection closed inside the body", "body")

    async def answer(self) -> Reply:
        request: Request | None = None
        try:
            async with asyncio.timeout(self.server.read_timeout_s):
                request = await self.read_request()
            return await self.server.handler(request)
        except TimeoutError:
            if request is not None:  # the handler's own, not the client's
                logs.log_exception(log, "api handler timed out", **_describe(request))
                return Reply(500, {"error": "internal error"})
            return HttpError(408, "request not complete in time", "request").to_reply()
        except HttpError as exc:
            return exc.to_reply()
        except (_NothingSentError, ConnectionError):
            raise
        except StoreError as exc:
            # The node's store failed under the read (the node stops on it): not our
            # bug, and the client is told why.
            logs.error(log, "api request failed: block store", error=str(exc))
            return Reply(503, {"error": f"the node's block store failed: {exc}"})
        except Exception:
            # The catch-all: our bug, never the client's connection's problem.
            logs.log_exception(log, "api request failed", **_describe(request))
            return Reply(500, {"error": "internal error"})

    async def _write(self, data: bytes) -> None:
        # A client that stops reading must not hold the connection (and its slot).
        async with asyncio.timeout(self.server.write_timeout_s):
            self.writer.write(data)
            await self.writer.drain()

    async def send(self, reply: Reply) -> None:
        if reply.stream is not None:  # only GET routes stream
            await self._write(encode_head(self.h11, reply, None))
            async with contextlib.aclosing(reply.stream()) as pieces:
                async for piece in pieces:
                    await self._write(self.h11.send(h11.Data(data=piece)) or b"")
            await self._write(self.h11.send(h11.EndOfMessage()) or b"")
            return
        try:
            body = get_body(reply)
        except (TypeError, ValueError):
            logs.log_exception(log, "api reply not serialisable")
            reply = Reply(500, {"error": "internal error"})
            body = get_body(reply)
        data = encode_head(self.h11, reply, len(body))
        if self.method != "HEAD":  # a HEAD answer is the head alone (RFC 9110 9.3.2)
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self._write(data)

    async def linger(self) -> None:
        """Half-close, then read away the client's leftover input (see module doc)."""
        if self.writer.can_write_eof():
            self.writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(LINGER_S):
                while discarded < LINGER_BYTES:
                    chunk = await self.reader.read(READ_CHUNK)
                    if not chunk:
                        return
                    discarded += len(chunk)


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
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise BindError("the HTTP API (--http)", self.host, self.port, exc) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open += 1
        connection = _Connection(self, reader, writer)
        try:
            if self._open > self.max_connections:
                reply = Reply(503, {"error": "too many connections"}, (("Retry-After", "1"),))
            else:
                reply = await connection.answer()
            await connection.send(reply)
            await connection.linger()
        except (_NothingSentError, ConnectionError, OSError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # ``close`` (or asyncio.run's shutdown) cancelled us. Ended quietly: nobody
            # awaits this task, and Python 3.11's StreamReaderProtocol logs a cancelled
            # handler as an "Exception in callback" (3.12 checks ``cancelled()``).
            pass
        finally:
            self._open -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
