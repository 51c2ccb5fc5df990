"""A raw HTTP/1.1 client for the API tests: send exact bytes, parse the answer strictly."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any
    """The parsed JSON body (a text body as ``str``: ``TEXT_TYPES``)."""


TEXT_TYPES = ("text/html", "text/css", "application/javascript", "text/plain", "image/svg+xml")
"""What a 200 may be besides JSON (every error is JSON)."""


class MalformedResponseError(AssertionError):
    """The server's bytes are not one well-formed HTTP response with a JSON body."""


def parse_response(data: bytes, *, to_head: bool = False) -> Response:
    """One complete response (the server closes after it): status, headers, JSON body
    (or a text body of a 200); ``to_head``: the answer to a HEAD request, which has none."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise MalformedResponseError(f"no end of headers in {data[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, _reason = rest.partition(" ")
    if version != "HTTP/1.1" or not (code.isdigit() and len(code) == 3):
        raise MalformedResponseError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise MalformedResponseError(f"bad header {line!r}")
        headers[name.strip().lower()] = value.strip()
    if int(code) == 100:  # interim answer: the real one follows
        return parse_response(body, to_head=to_head)
    if to_head and not body:
        # A HEAD answer is the head alone (a request the server could not parse is
        # not known to be a HEAD: it gets a whole JSON answer, checked below).
        return Response(int(code), headers, None)
    content_type = headers.get("content-type", "")
    if int(headers.get("content-length", "-1")) != len(body):
        raise MalformedResponseError(
            f"content-length {headers.get('content-length')} != {len(body)}"
        )
    if int(code) == 200 and content_type.startswith(TEXT_TYPES):
        return Response(200, headers, body.decode())  # the dashboard's files, /metrics
    if content_type != "application/json":
        raise MalformedResponseError(f"content-type {content_type!r}")
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedResponseError(f"body is not JSON: {body[:200]!r}") from None
    return Response(int(code), headers, payload)


def exchange(port: int, data: bytes, *, half_close: bool = True, timeout: float = 15.0) -> bytes:
    """Send ``data`` to 127.0.0.1:``port`` and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def request_bytes(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{name}: {value}" for name, value in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def call(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Response:
    return parse_response(exchange(port, request_bytes(method, target, body, headers)))
