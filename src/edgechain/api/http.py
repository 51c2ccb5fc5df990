"""A small JSON-over-HTTP/1.1 server on asyncio streams (health, status, blocks, apps).

Deliberately tiny: one request per connection, bounded request line, headers and body,
JSON in and out. The routes live in ``node.py``; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LINE = 8 * 1024
MAX_HEADERS = 64
MAX_BODY = 256 * 1024
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_request(reader: asyncio.StreamReader) -> Request:
    line = await reader.readline()
    if not line or len(line) > MAX_LINE:
        raise HttpError(400, "bad request line")
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise HttpError(400, "bad request line") from None
    length = 0
    for _ in range(MAX_HEADERS + 1):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        if len(header) > MAX_LINE:
            raise HttpError(400, "header too long")
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            if not value.strip().isdigit():
                raise HttpError(400, "bad content-length")
            length = int(value.strip())
    else:
        raise HttpError(400, "too many headers")
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Request(method.upper(), parts.path, query, body)


def _response(status: int, payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class HttpServer:
    def __init__(self, host: str, port: int, handler: Handler) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_S)
                status, payload = await self.handler(request)
            except HttpError as exc:
                status, payload = exc.status, {"error": str(exc)}
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(_response(status, payload))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
