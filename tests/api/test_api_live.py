"""The HTTP API of live nodes: every endpoint, a signed submission, and hypothesis-driven
hostile requests.

Two ``NodeService`` objects (a node with its API server, what ``edgechain node`` runs)
on an event loop thread of their own, loopback port 0, 1 s slots, committee of one. The
admin grants node 0's operator key through ``POST /commands``; a local script's
``POST /apps`` (bearer token) is signed by node 0 and lands on chain. Then hypothesis
throws random methods, paths, queries, headers and bodies (random and spec-shaped JSON,
oversized fields, broken lengths, raw garbage) at node 1, whose operator key is never
granted, so nothing a fuzzer composes can run. Every reply must be one well-formed HTTP
response with a JSON body and a 2xx/4xx status, and both nodes must keep producing
blocks afterwards. ``EDGECHAIN_LONG=1`` sends ten times as many requests.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from edgechain.api.server import MAX_BODY
from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import encode_command
from edgechain.chain.model import CommandKind
from edgechain.crypto import bls
from edgechain.telemetry.cpu import Component

from .hostile_requests import http_requests
from .http_client import Response, call, exchange, parse_response, request_bytes
from .live_cluster import ADMIN_SK, CAPACITIES, CHAIN_ID, Cluster, run_cluster, wait_for

LONG = os.environ.get("EDGECHAIN_LONG") == "1"
FUZZ_REQUESTS = 3_000 if LONG else 300


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with run_cluster(2) as started:
        yield started


def _head_slot(cluster: Cluster, index: int) -> int:
    return int(cluster.get(index, "/status")["head_slot"] or 0)


def test_every_endpoint_and_a_signed_submission(cluster: Cluster) -> None:
    operator = cluster.operators[0]
    # The admin grants node 0's operator key on chain.
    grant = make_command(ADMIN_SK, CHAIN_ID, 1, CommandKind.GRANT_OPERATOR, key=operator)
    body = json.dumps({"command": encode_command(grant).hex()}).encode()
    reply = call(cluster.ports[0], "POST", "/commands", body)
    assert reply.status == 202, reply.body
    # A replay of it is refused.
    assert call(cluster.ports[1], "POST", "/commands", body).status in (202, 409)
    wait_for(
        lambda: bool(cluster.get(1, f"/operators/{operator.hex()}")["operator"]),
        30,
        "the grant on chain",
    )
    assert call(cluster.ports[0], "POST", "/commands", body).status == 409

    # A local script submits through node 0 with its token. The label exists nowhere,
    # so the app stays queued and nothing runs on this host.
    spec = {
        "name": "parked",
        "command": ["/nonexistent/app"],
        "policy": {"allowed_labels": ["nowhere"]},
    }
    auth = {"Authorization": f"Bearer {cluster.tokens[0]}"}
    assert call(cluster.ports[0], "POST", "/apps", json.dumps(spec).encode()).status == 401
    reply = call(cluster.ports[0], "POST", "/apps", json.dumps(spec).encode(), auth)
    assert reply.status == 202, reply.body
    app_id, seq = reply.body["app_id"], reply.body["seq"]
    wait_for(
        lambda: cluster.get(1, f"/operators/{operator.hex()}")["last_seq"] >= seq,
        30,
        "the submission on chain",
    )
    # Node 1 has an operator key too, but it was never granted.
    reply = call(
        cluster.ports[1],
        "POST",
        "/apps",
        json.dumps(spec).encode(),
        {"Authorization": f"Bearer {cluster.tokens[1]}"},
    )
    assert (reply.status, reply.body["field"]) == (403, "body")
    assert "command_unknown_signer" in reply.body["error"]

    for index in (0, 1):
        apps = cluster.get(index, "/apps")
        assert [(a["app_id"], a["state"], a["node"]) for a in apps] == [(app_id, "queued", None)]
        one = cluster.get(index, "/apps/parked")
        assert one["spec"]["policy"]["allowed_labels"] == ["nowhere"]
        assert cluster.get(index, f"/apps/{app_id[:8]}")["name"] == "parked"
        history = cluster.get(index, "/apps/parked/history")
        assert [e["kind"] for e in history["events"]] == ["submit"]
        assert history["events"][0]["signer"] == operator.hex()
        nodes = cluster.get(index, "/nodes")
        assert len(nodes) == 2
        assert all(0 <= (n["pressure_bp"] or 0) <= 10_000 for n in nodes)
        status = cluster.get(index, "/status")
        assert status["cpu_capacity"] == CAPACITIES[index]
        assert 0 <= status["cpu_bp"] <= 10_000
        assert 0 <= status["pressure_bp"] <= 10_000
        if CAPACITIES[index] is not None:
            assert status["pressure_bp"] == 0  # host PSI says nothing of its share
            # The cores it offers its apps, and it runs none (the only app is queued):
            # its own protocol work is not part of the total.
            assert status["cpu_bp"] == 0
        assert status["chain_id"] == CHAIN_ID
        assert status["admin_key"] == bls.sk_to_pk(ADMIN_SK).hex()
        assert status["open_admission"] is False
        chain = cluster.get(index, "/chain")
        blocks = cluster.get(index, f"/blocks?since={chain[-1]['slot']}&limit=5")
        assert 1 <= len(blocks) <= 5
        assert cluster.get(index, "/health") == {"ok": True}
        assert cluster.get(index, "/migrations") == []
        assert cluster.get(index, "/runtime/apps") == []
    assert call(cluster.ports[0], "GET", "/apps/nothing").status == 404
    assert call(cluster.ports[0], "GET", "/blocks?since=x").body["field"] == "since"


def _request(method: str, target: str, body: object = None, token: str = "") -> bytes:
    raw = b"" if body is None else json.dumps(body).encode()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return request_bytes(method, target, raw, auth)


def _issue_examples(token: str) -> list[tuple[bytes, int]]:
    """Issue 8's inputs (which used to drop the connection) and one of each status."""
    spec = {"name": "x", "command": ["/nonexistent/x"]}
    return [
        (_request("GET", "/blocks?since=x"), 400),
        (_request("POST", "/apps", [], token), 400),
        (_request("POST", "/apps", {**spec, "policy": []}, token), 400),
        (_request("POST", "/apps", {**spec, "policy": {"min_interval_slots": -1}}, token), 400),
        (_request("POST", "/apps", {**spec, "name": "n" * 5000}, token), 400),
        (_request("POST", "/apps", spec), 401),
        (_request("POST", "/apps", spec, token), 403),  # its operator key is not granted
        (_request("GET", "/nowhere"), 404),
        (_request("DELETE", "/apps"), 405),
        (request_bytes("POST", "/apps", b"x" * (MAX_BODY + 1)), 413),
        (_request("GET", "/status"), 200),
        (_request("POST", "/commands", {"command": "00"}), 400),
        (b"\n", 400),  # empty lines, then EOF: was closed without an answer (hypothesis)
        (b"\r\n\r\n", 400),
    ]


def test_hostile_requests_get_json_answers_and_the_node_keeps_producing(
    cluster: Cluster,
) -> None:
    victim = 1
    port, token = cluster.ports[victim], cluster.tokens[victim]
    statuses: Counter[int] = Counter()
    fields: Counter[str] = Counter()

    def check(data: bytes) -> Response:
        head = data.startswith(b"HEAD ")
        reply = parse_response(exchange(port, data), to_head=head)
        statuses[reply.status] += 1
        assert 200 <= reply.status < 500, (data[:300], reply)
        if reply.status >= 400 and not head:
            assert isinstance(reply.body, dict) and reply.body.get("error"), reply
            fields[f"{reply.status} {reply.body.get('field')}"] += 1
        return reply

    before = _head_slot(cluster, victim)
    for data, status in _issue_examples(token):
        assert check(data).status == status, data[:200]

    @settings(
        max_examples=FUZZ_REQUESTS,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(http_requests(token))
    def one_request(data: bytes) -> None:
        check(data)

    one_request()
    after = _head_slot(cluster, victim)
    print(
        json.dumps(
            {
                "requests": sum(statuses.values()),
                "statuses": dict(sorted(statuses.items())),
                "fields": dict(fields.most_common(12)),
                "head_slot": [before, after],
            }
        )
    )
    assert sum(statuses.values()) >= FUZZ_REQUESTS
    # Both nodes go on producing: the head moves two more slots on each.
    for index in (0, 1):

        def moved(i: int = index) -> bool:
            return _head_slot(cluster, i) >= after + 2

        wait_for(moved, 30, f"node {index} producing")
    status = cluster.get(victim, "/status")
    assert status["is_validator"] and status["validators"] == 2


def _read_events(port: int, count: int, timeout: float = 30.0) -> tuple[dict[str, str], list[str]]:
    """Open ``GET /events``: its response headers and its first ``count`` messages (each
    message's lines, chunked transfer coding removed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes("GET", "/events", headers={"Accept": "text/event-stream"}))
        data = b""
        deadline = time.monotonic() + timeout
        while data.partition(b"\r\n\r\n")[2].count(b"\n\n") < count:
            assert time.monotonic() < deadline, f"no {count} events: {data[:300]!r}"
            chunk = sock.recv(65536)
            assert chunk, f"the stream closed: {data[:300]!r}"
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in head.decode().split("\r\n")[1:])
    )
    assert headers["transfer-encoding"] == "chunked", headers
    text = b""
    while body:  # chunks: a hex size line, the data, CRLF
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        text, body = text + body[:size], body[size + 2 :]
    return headers, text.decode().split("\n\n")[:count]


def test_metrics_events_and_the_dashboard_on_a_live_node(cluster: Cluster) -> None:
    port = cluster.ports[0]
    # /metrics parses with prometheus-client's own parser and counts what happened.
    reply = call(port, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body)
        for s in family.samples
    }
    assert samples[("edgechain_blocks_accepted_total", (("kind", "block"),))] >= 2
    assert samples[("edgechain_head_slot", ())] >= 2
    assert samples[("edgechain_validators", ())] == 2
    assert samples[("edgechain_block_votes_count", ())] >= 1
    # (In-process nodes share one CPU meter slot: only the labels are checked here.)
    for component in Component:
        assert ("edgechain_cpu_seconds_total", (("component", component.value),)) in samples
    assert samples[("process_resident_memory_bytes", ())] > 0
    # /events: the first snapshot comes at once, and it is the node's head.
    headers, (retry, event) = _read_events(port, 2)
    assert headers["content-type"] == "text/event-stream"
    assert retry == "retry: 1000"  # the browser reconnects after this (streams are bounded)
    fields = dict(line.partition(": ")[::2] for line in event.split("\n"))
    assert fields["event"] == "snapshot"
    snapshot = json.loads(fields["data"])
    assert snapshot["node"]["head_slot"] >= 2
    assert len(snapshot["nodes"]) == 2
    # The dashboard's page and files; an unknown file is a JSON 404.
    page = call(port, "GET", "/dashboard")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert call(port, "GET", "/").body == page.body
    assert call(port, "GET", "/dashboard/nothing.js").status == 404
    assert call(port, "GET", "/dashboard/snapshot").body["node"]["id"]
    assert call(port, "GET", "/openapi.json").body["openapi"].startswith("3.")


def test_reports_carry_the_measured_rtt(cluster: Cluster) -> None:
    """Each node pings random validators (node/rtt.py); its reports, hence every node's
    ``/nodes``, carry the smoothed RTT (paper Table 2), and ``/metrics`` shows it."""

    def measured() -> bool:
        statuses = [cluster.get(i, "/status") for i in (0, 1)]
        return all(s["rtt_samples"] >= 1 and s["rtt_us"] > 0 for s in statuses)

    wait_for(measured, 60, "an answered RTT probe on each node")

    def reported() -> bool:
        return all(n["rtt_us"] and n["rtt_us"] > 0 for n in cluster.get(1, "/nodes"))

    wait_for(reported, 60, "reports with an RTT from both nodes")

    # Each answer from a validator is also a Vivaldi sample (cluster/vivaldi.py): the
    # two nodes push apart from the origin, and the chain's copies follow the reports.
    def placed() -> bool:
        nodes = cluster.get(1, "/nodes")
        return all(n["coordinate_us"] not in (None, [0, 0]) for n in nodes)

    wait_for(placed, 60, "reported network coordinates off the origin on the chain")
    metrics = call(cluster.ports[0], "GET", "/metrics").body
    (rtt,) = (
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "edgechain_rtt_seconds"
    )
    assert 0 < rtt < 5
