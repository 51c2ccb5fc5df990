"""hypothesis strategies for whole HTTP requests as bytes: mostly plausible, often broken.

Weighted so that most requests reach the routes (known paths and methods, a correct
``Content-Length``, the node's token half of the time) and the rest break one layer:
the request line, the headers, the length, the body, or everything (raw bytes).
"""

from __future__ import annotations

import json
from typing import TypeVar
from urllib.parse import quote

from hypothesis import strategies as st

from edgechain.api.schema import app_spec_to_json
from edgechain.api.server import MAX_BODY, MAX_LINE

from .strategies import app_specs, json_values, spec_json

T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Draw from one of ``choices`` with probability proportional to its weight."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> T:
        n = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if n < weight:
                return draw(strategy)
            n -= weight
        raise AssertionError("unreachable")

    return pick()


TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!~"
ENDPOINTS = [
    "/health", "/status", "/blocks", "/chain", "/nodes", "/apps", "/migrations",
    "/runtime/apps", "/commands", "/apps/parked", "/apps/parked/history",
]  # fmt: skip

methods = weighted(
    (10, st.sampled_from(["GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])),
    (1, st.text(TOKEN_CHARS, min_size=1, max_size=12)),
    (1, st.text(max_size=6)),
)
segments = st.one_of(
    st.sampled_from(["parked", "nothing", "ab", "abcd", "0" * 64, "%ff", "%00", "..", ""]),
    st.text(max_size=20).map(lambda s: quote(s, safe="")),
    st.binary(max_size=50).map(bytes.hex),
    st.just("x" * 3000),
)
paths = weighted(
    (10, st.sampled_from(ENDPOINTS)),
    (3, segments.map(lambda s: f"/apps/{s}")),
    (1, segments.map(lambda s: f"/apps/{s}/history")),
    (2, segments.map(lambda s: f"/operators/{s}")),
    (1, st.lists(segments, max_size=5).map(lambda s: "/" + "/".join(s))),
    (
        1,
        st.sampled_from(
            ["/", "*", "", "//", "/apps/", "/status/", "http://127.0.0.1/status",
             "http://[::1", "/%", "/\u00e9", "/blocks#frag", "/" + "a" * (MAX_LINE + 100)]
        ),
    ),
)  # fmt: skip
routes = weighted(
    # The real routes, the ones that parse bodies most often.
    (3, st.sampled_from([("GET", p) for p in ENDPOINTS if p != "/commands"])),
    (4, st.just(("POST", "/apps"))),
    (2, st.just(("POST", "/commands"))),
    (1, st.tuples(st.just("GET"), paths)),
    (2, st.tuples(methods, paths)),
)
query_values = st.one_of(
    st.integers(-5, 2**70).map(str),
    st.text(max_size=10).map(lambda s: quote(s, safe="")),
    st.sampled_from(["", "x", "1.5", "%ff", "-0", "0x10", "\u0661", "9" * 5000]),
)
queries = weighted(
    (6, st.just("")),
    (
        4,
        st.dictionaries(
            st.sampled_from(["since", "limit", "since", "limit", "x", "", "since[]"]),
            query_values,
            max_size=3,
        ).map(lambda q: "&".join(f"{k}={v}" for k, v in q.items())),
    ),
    (1, st.sampled_from(["since=1&since=2", "&".join(f"k{i}=1" for i in range(40))])),
    (1, st.text(max_size=30).map(lambda s: quote(s, safe="=&"))),
)
versions = weighted((12, st.just("HTTP/1.1")), (1, st.sampled_from(["HTTP/1.0", "HTTP/2", "x"])))
extra_headers = weighted(
    (6, st.just([])),
    (
        2,
        st.lists(
            st.tuples(
                st.text(TOKEN_CHARS, min_size=1, max_size=10),
                st.text(st.characters(exclude_characters="\r\n"), max_size=20),
            ),
            max_size=2,
        ),
    ),
    (1, st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=2)),
    (1, st.just([("Expect", "100-continue")])),
)


def _oversized(extra: int) -> bytes:
    return b'{"name": "' + b"n" * (MAX_BODY + extra) + b'"}'


bodies = weighted(
    (3, st.just(b"")),
    (6, spec_json().map(lambda d: json.dumps(d).encode())),
    (2, app_specs().map(lambda spec: json.dumps(app_spec_to_json(spec)).encode())),
    (2, json_values().map(lambda d: json.dumps(d).encode())),
    (2, st.binary(max_size=400).map(lambda b: json.dumps({"command": b.hex()}).encode())),
    (1, st.binary(max_size=200)),
    (1, st.integers(1, 50_000).map(lambda n: b"[" * n)),
    (1, st.integers(-100, 100).map(_oversized)),
)


@st.composite
def http_requests(draw: st.DrawFn, token: str) -> bytes:
    """One request's bytes, for a node whose API token is ``token``."""
    if draw(st.integers(0, 29)) == 0:
        return draw(st.binary(min_size=1, max_size=300))
    method, path = draw(routes)
    query = draw(queries)
    target = f"{path}?{query}" if query else path
    body = draw(bodies)
    headers = [("Host", "127.0.0.1")]
    auth = draw(st.sampled_from(["token"] * 8 + ["none"] * 3 + ["wrong", "basic", "huge"]))
    if auth == "token":
        headers.append(("Authorization", f"Bearer {token}"))
    elif auth == "wrong":
        headers.append(("Authorization", "Bearer " + "0" * 64))
    elif auth == "basic":
        headers.append(("Authorization", "Basic dXNlcjpwYXNz"))
    elif auth == "huge":
        headers.append(("Authorization", "Bearer " + "a" * (MAX_LINE + 10)))
    length = draw(
        st.sampled_from(["exact"] * 20 + ["short", "long", "garbage", "none", "chunked", "twice"])
    )
    if length == "exact":
        headers.append(("Content-Length", str(len(body))))
    elif length == "short":
        headers.append(("Content-Length", str(max(0, len(body) - 3))))
    elif length == "long":
        headers.append(("Content-Length", str(len(body) + 7)))
    elif length == "garbage":
        headers.append(("Content-Length", draw(st.sampled_from(["-1", "x", "1e3", "", "9" * 40]))))
    elif length == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    elif length == "twice":
        headers += [("Content-Length", str(len(body))), ("Content-Length", "1")]
    headers += draw(extra_headers)
    head = f"{method} {target} {draw(versions)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body
