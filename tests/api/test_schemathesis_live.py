"""schemathesis against a live node's ``/openapi.json``: no 5xx, no answer off the schema.

Two live nodes in this process (``tests/api/live_cluster.py``: ``NodeService``, what
``edgechain node`` runs, serving HTTP on loopback; committee 1, 1 s slots). The admin
grants a new operator key, which submits one app through ``POST /commands`` (allowed
only on a label no node has: it stays queued and nothing runs), so the fleet answers
carry a real app. Then schemathesis loads node 0's ``/openapi.json`` and sends every
operation its examples, its coverage cases and at most :data:`MAX_EXAMPLES` generated
requests (valid and invalid, seeded), checking each answer: not a server error, a
documented status, a documented content type, a body that matches the response schema.
The real app's own answers (by name, by id prefix, its history) are checked the same
way.

``POST /apps`` gets the node's API token (``<data_dir>/api.token``), so the spec checks
behind the token run too. The nodes' own operator keys are never granted, so a spec
that passes them is refused with a 403 and nothing a generator composes reaches the
chain; ``POST /commands`` only takes commands signed by a granted key, which no
generator forges. ``GET /events`` (an endless stream) is left out and checked by hand:
its first event is a snapshot; so is ``POST /node/leave`` (the node would leave).

Not in the serialized testnet group: the nodes are in-process and light (it used to
start an ``edgechain testnet`` of its own, ~20 s of the suite's critical path).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgechain.api.openapi import get_openapi_document
from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import compute_submitted_app_id, encode_command
from edgechain.chain.model import AppPolicy, AppSpec, CommandKind, RuntimeKind
from edgechain.crypto import bls

from .live_cluster import ADMIN_SK, CHAIN_ID, run_cluster, wait_for

SETUP_TIMEOUT_S = 120.0
"""Generous: on a busy 2-core host the nodes' start, genesis and the grant can take a
while."""
MAX_EXAMPLES = 25
"""Generated requests per operation (besides its examples and coverage cases)."""
SEED = 20_250_601
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
LEFT_OUT = {("GET", "/events"), ("POST", "/node/leave")}
"""Operations schemathesis does not send: an endless stream (checked by hand), and the
node's leave (it would leave the network and stop; tests/cli/test_leave_live.py leaves
for real, and tests/api/test_routes.py checks its answers)."""
APP = AppSpec(
    name="openapi-parked",
    runtime=RuntimeKind.PROCESS,
    command=("/nonexistent/openapi-live", "--flag"),
    cpu_bp=50,
    memory_limit_bytes=64 * 2**20,
    policy=AppPolicy(allowed_labels=("nowhere",), anti_affinity="group"),
)
"""Placed on no node: no node carries its label."""


@dataclass(frozen=True)
class LiveNode:
    url: str
    token: str
    app_id: str
    operator: str
    """The granted operator key (hex) that submitted the app."""


def http(url: str, body: Any = None) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET (a POST of JSON ``body``), errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def get_json(url: str) -> Any:
    status, _, body = http(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def _submit_app(url: str) -> tuple[str, str]:
    """Grant a new operator key (the admin's command), then submit :data:`APP` with it:
    the app's id and the key. The nodes' own operator keys stay ungranted, so a
    generated ``POST /apps`` with the token is refused (403) and runs nothing."""
    sk = bls.keygen(b"openapi-live-operator".ljust(32, b"."))
    pk = bls.sk_to_pk(sk)
    grant = make_command(ADMIN_SK, CHAIN_ID, 1, CommandKind.GRANT_OPERATOR, key=pk)
    status, _, body = http(f"{url}/commands", {"command": encode_command(grant).hex()})
    assert status == 202, body
    wait_for(
        lambda: bool(get_json(f"{url}/operators/{pk.hex()}")["operator"]),
        SETUP_TIMEOUT_S,
        "the grant on chain",
    )
    command = make_command(sk, CHAIN_ID, 1, CommandKind.SUBMIT, spec=APP)
    status, _, body = http(f"{url}/commands", {"command": encode_command(command).hex()})
    assert status == 202, body
    app_id = compute_submitted_app_id(pk, 1).hex()
    assert json.loads(body)["app_id"] == app_id
    return app_id, pk.hex()


@pytest.fixture(scope="module")
def live_node() -> Iterator[LiveNode]:
    # Two live nodes in this process (tests/api/live_cluster.py), real HTTP on loopback.
    with run_cluster(2) as cluster:
        url = f"http://127.0.0.1:{cluster.ports[0]}"
        app_id, operator = _submit_app(url)

        def listed() -> bool:
            return [a["app_id"] for a in get_json(f"{url}/apps")] == [app_id]

        wait_for(listed, SETUP_TIMEOUT_S, "the app on chain")
        yield LiveNode(url, cluster.tokens[0], app_id, operator)


def _config(node: LiveNode) -> schemathesis.Config:
    left_out = set(LEFT_OUT)
    print(f"schemathesis leaves out {sorted(left_out)}")
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": node.url,
            "request-timeout": 10,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "mode": "all",
            },
            "phases": {"stateful": {"enabled": False}},
            "auth": {"openapi": {"bearer": {"bearer": node.token}}},
            # By name: an entry's include-method and include-path each match alone.
            "operations": [
                {"include-name": f"{method} {path}", "enabled": False}
                for method, path in sorted(left_out)
            ],
        }
    )


@pytest.fixture(scope="module")
def live_schema(live_node: LiveNode) -> Any:
    config = _config(live_node)
    url = f"{live_node.url}/openapi.json"
    status, content_type, body = http(url)
    if status == 404:
        return schemathesis.openapi.from_dict(get_openapi_document(), config=config)
    assert (status, content_type.partition(";")[0]) == (200, "application/json")
    assert json.loads(body) == get_openapi_document(), "the node serves another document"
    return schemathesis.openapi.from_url(url, config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas name each operation's subtest by rewriting the
    test item's ``_nodeid``, which pytest 9 items no longer have."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
def test_every_operation_answers_by_the_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=CHECKS)


def test_a_real_app_answers_by_the_schema(live_node: LiveNode, live_schema: Any) -> None:
    app, name = live_node.app_id, APP.name
    requests = [
        ("/apps", {}),
        ("/apps/{app}", {"app": name}),
        ("/apps/{app}", {"app": app[:8]}),
        ("/apps/{app}", {"app": app}),
        ("/apps/{app}/history", {"app": name}),
        ("/operators/{public_key}", {"public_key": live_node.operator}),
    ]
    answers = []
    for path, parameters in requests:
        case = live_schema[path]["GET"].Case(path_parameters=parameters)
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 200, (path, parameters, response.text)
        answers.append(response.json())
    apps, by_name, by_prefix, by_id, history, operator = answers
    assert apps[0]["state"] == "queued" and apps[0]["node"] is None
    assert by_name == by_prefix == by_id
    assert by_name["spec"]["policy"]["allowed_labels"] == ["nowhere"]
    assert [e["kind"] for e in history["events"]] == ["submit"]
    assert operator["operator"] is True and operator["last_seq"] >= 1


def test_the_event_stream_sends_a_snapshot_first(live_node: LiveNode) -> None:
    url = f"{live_node.url}/events"
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
    lines: list[str] = []
    with urllib.request.urlopen(request, timeout=15) as reply:
        assert reply.status == 200
        assert reply.headers.get("Content-Type", "").startswith("text/event-stream")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = reply.readline().decode().rstrip("\r\n")
            if not line and any(s.startswith("data:") for s in lines):
                break  # the blank line that ends the first event
            if line and not line.startswith(":"):  # not a comment (keepalive)
                lines.append(line)
    fields = [(k, v.removeprefix(" ")) for k, _, v in (s.partition(":") for s in lines)]
    # First the reconnection delay (streams end after a while: api/live.py), then the
    # snapshot.
    assert fields[:2] == [("retry", "1000"), ("event", "snapshot")], lines
    snapshot = json.loads("\n".join(v for k, v in fields if k == "data"))
    assert isinstance(snapshot, dict) and snapshot, lines
