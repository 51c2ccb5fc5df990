"""The HTTP server on real sockets (port 0): every bad input gets a JSON answer.

Each case sends exact bytes and parses the reply strictly (``http_client``): a
well-formed HTTP/1.1 response with a JSON body, the status the server promises, and the
offending field named.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from edgechain.api.server import (
    MAX_BODY,
    MAX_HEAD,
    MAX_HEADERS,
    MAX_LINE,
    HttpError,
    HttpServer,
    Reply,
    Request,
)

from .http_client import Response, call, exchange, parse_response, request_bytes
from .loop_thread import LoopThread

READ_TIMEOUT_S = 0.5


class BoomError(Exception):
    pass


async def handler(request: Request) -> Reply:
    if request.path == "/boom":
        raise BoomError("handler bug")
    if request.path == "/refuse":
        raise HttpError(409, "no", "thing")
    if request.path == "/huge":
        return Reply(200, ["x" * 1024] * 16 * 1024)
    if request.path == "/unserialisable":
        return Reply(200, {"x": object()})
    return Reply(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "body": request.body.decode("latin-1"),
            "headers": dict(request.headers),
        },
    )


@pytest.fixture
def port() -> Iterator[int]:
    loop = LoopThread()
    server = HttpServer("127.0.0.1", 0, handler, read_timeout_s=READ_TIMEOUT_S, max_connections=8)
    loop.run(server.start())
    try:
        yield server.port
    finally:
        loop.run(server.close())
        loop.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def raw(port: int, data: bytes, **kwargs: bool) -> Response:
    return parse_response(exchange(port, data, **kwargs))


def test_a_good_request_round_trips(port: int) -> None:
    reply = call(port, "POST", "/x?a=1&b=%C3%A9", b'{"k": 1}', {"X-Test": "yes"})
    assert reply.status == 200
    assert reply.body["method"] == "POST"
    assert reply.body["query"] == {"a": "1", "b": "\u00e9"}
    assert reply.body["body"] == '{"k": 1}'
    assert reply.body["headers"]["x-test"] == "yes"
    assert reply.headers["connection"] == "close"


def test_absolute_form_target(port: int) -> None:
    reply = raw(port, b"GET http://host:1/abs?q=2 HTTP/1.1\r\nHost: host:1\r\n\r\n")
    assert (reply.status, reply.body["path"], reply.body["query"]) == (200, "/abs", {"q": "2"})


@pytest.mark.parametrize(
    ("data", "status", "field"),
    [
        (b"GARBAGE\r\n\r\n", 400, "request_line"),
        (b"GET /x\r\n\r\n", 400, "request_line"),
        (b"GET /x HTTP/2.0\r\n\r\n", 400, "version"),
        (b"G(T /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request_line"),
        (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target"),
        (b"GET /x?a=%ff HTTP/1.1\r\nHost: a\r\n\r\n", 400, "query"),
        (b"GET /x?a=1&a=2 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "a"),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400, "headers"),
        (b"GET /x HTTP/1.1\r\n\r\n", 400, "headers"),  # HTTP/1.1 needs Host
        (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "content-length"),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 400, "content-length"),
        (
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
            "content-length",
        ),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, None),
        (
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 1\r\n\r\nx",
            400,
            "transfer-encoding",
        ),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort", 400, "body"),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 400, "body"),
        (b"GET /x HTTP/1.1\r\nHost: a", 400, "headers"),
        (b"GET /x HT", 400, "request_line"),
        (b"\xff\xfe\x00\x01\r\n\r\n", 400, "request_line"),
    ],
)
def test_malformed_requests_get_a_400(
    port: int, data: bytes, status: int, field: str | None
) -> None:
    reply = raw(port, data)
    assert reply.status == status, reply.body
    assert "error" in reply.body
    if field is not None:
        assert reply.body["field"] == field


def test_an_over_long_request_line_is_414(port: int) -> None:
    reply = raw(port, b"GET /" + b"a" * (MAX_LINE + 10) + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (reply.status, reply.body["field"]) == (414, "request_line")


def test_an_over_long_header_is_431(port: int) -> None:
    reply = raw(port, b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n")
    assert (reply.status, reply.body["field"]) == (431, "headers")


def test_too_many_headers_is_431(port: int) -> None:
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    reply = raw(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    assert reply.status == 431


def test_an_oversized_body_is_413_and_the_answer_arrives(port: int) -> None:
    """The client is still sending when the server answers: the answer must survive."""
    body = b"x" * (MAX_BODY + 1)
    reply = raw(port, request_bytes("POST", "/x", body))
    assert (reply.status, reply.body["field"]) == (413, "body")


def test_an_oversized_declared_length_is_413_without_a_body(port: int) -> None:
    reply = raw(port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n")
    assert reply.status == 413


def test_a_chunked_body_is_read(port: int) -> None:
    data = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert (raw(port, data).status, raw(port, data).body["body"]) == (200, "abcde")


def test_an_oversized_chunked_body_is_413(port: int) -> None:
    chunk = b"x" * (64 * 1024)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1)
    )
    data = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    assert (raw(port, data + b"0\r\n\r\n").status, raw(port, data).body["field"]) == (413, "body")


def test_empty_lines_before_the_request_line_are_ignored(port: int) -> None:
    assert raw(port, b"\r\n\r\n" + request_bytes("GET", "/fine")).status == 200
    assert raw(port, b"\r\n\r\n").status == 400


def test_expect_100_continue(port: int) -> None:
    reply = raw(port, request_bytes("POST", "/x", b"abc", {"Expect": "100-continue"}))
    assert (reply.status, reply.body["body"]) == (200, "abc")


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /x HTT",
        b"GET /x HTTP/1.1\r\nHost: a\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab",
    ],
)
def test_a_stalled_client_gets_408_then_the_connection_closes(port: int, partial: bytes) -> None:
    reply = raw(port, partial, half_close=False)
    assert (reply.status, reply.body["field"]) == (408, "request")


def test_a_handler_exception_is_a_logged_500(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edgechain.api"):
        reply = call(port, "GET", "/boom")
    assert reply.status == 500
    assert reply.body == {"error": "internal error"}
    assert any(r.exc_info and isinstance(r.exc_info[1], BoomError) for r in caplog.records)
    # The server keeps serving.
    assert call(port, "GET", "/fine").status == 200


def test_an_unserialisable_reply_is_a_500(port: int) -> None:
    assert call(port, "GET", "/unserialisable").status == 500


def test_http_errors_name_their_field(port: int) -> None:
    reply = call(port, "GET", "/refuse")
    assert (reply.status, reply.body) == (409, {"error": "no", "field": "thing"})


def test_a_silent_client_is_closed_without_harm(port: int) -> None:
    assert exchange(port, b"") == b""
    assert call(port, "GET", "/fine").status == 200


def test_more_connections_than_allowed_get_503() -> None:
    loop = LoopThread()
    server = HttpServer("127.0.0.1", 0, handler, read_timeout_s=30.0, max_connections=4)
    loop.run(server.start())
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        wait_until(lambda: server.open_connections == 4)
        reply = call(server.port, "GET", "/fine")
        assert reply.status == 503
        assert "retry-after" in reply.headers
    finally:
        for sock in idle:
            sock.close()
        loop.run(server.close())
        loop.close()


def test_a_client_that_does_not_read_its_answer_is_dropped() -> None:
    loop = LoopThread()
    server = HttpServer("127.0.0.1", 0, handler, write_timeout_s=0.5)
    loop.run(server.start())
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(request_bytes("GET", "/huge"))
        wait_until(lambda: server.open_connections == 1)  # accepted, answer stuck
        wait_until(lambda: server.open_connections == 0)  # given up on the reader
    finally:
        sock.close()
        loop.run(server.close())
        loop.close()


def test_closing_the_server_under_open_connections_logs_no_error() -> None:
    """A node that stops with clients connected stops quietly: Python 3.11's stream
    server logged each cancelled connection handler as an "Exception in callback"."""
    loop = LoopThread()
    errors: list[dict[str, object]] = []
    loop.loop.set_exception_handler(lambda _loop, context: errors.append(context))
    server = HttpServer("127.0.0.1", 0, handler, read_timeout_s=30.0)
    loop.run(server.start())
    waiting = socket.create_connection(("127.0.0.1", server.port))  # in answer()
    lingering = socket.create_connection(("127.0.0.1", server.port))  # in linger()
    try:
        lingering.sendall(request_bytes("GET", "/fine"))
        assert lingering.recv(65536).startswith(b"HTTP/1.1 200")
        wait_until(lambda: server.open_connections == 2)
        loop.run(server.close())
        loop.run(asyncio.sleep(0.1))  # the handlers' done callbacks run
    finally:
        waiting.close()
        lingering.close()
        loop.close()
    assert errors == []
