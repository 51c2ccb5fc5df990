"""Routes against a fake node: statuses, fields, auth, and the command error mapping."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from edgechain.api.routes import NodeRoutes
from edgechain.api.server import HttpError, Reply, Request
from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import compute_submitted_app_id, encode_command
from edgechain.chain.model import AppSpec, ChainParams, CommandKind, RuntimeKind, SignedCommand
from edgechain.chain.read_auth import compute_log_read_message
from edgechain.consensus.command_status import CommandState, CommandStatus
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import BlockState, compute_genesis_state
from edgechain.crypto import bls
from edgechain.errors import RejectReason, ValidationError
from edgechain.node import ChainEntry, CommandReceipt, NoOperatorKeyError
from edgechain.orchestrator.fleet import HistoryEvent
from edgechain.orchestrator.registry import AppRecord, AppState, Registry
from edgechain.testing import ADMIN, Identity, make_genesis, make_identity
from edgechain.types import AppId, BlockHash, Slot

TOKEN = "ab" * 32
AUTH = {"authorization": f"Bearer {TOKEN}"}
SPEC = AppSpec(name="web", runtime=RuntimeKind.PROCESS, command=("/bin/true",))


def _app(n: int) -> AppId:
    return AppId(bytes([n]) * 32)


class FakeNode:
    def __init__(self) -> None:
        genesis, idents = make_genesis(3)
        self.params = genesis.params
        records = (
            AppRecord(_app(1), SPEC, idents[0].node, Slot(3), owner=ADMIN.pk),
            AppRecord(_app(2), dataclasses.replace(SPEC, name="db"), state=AppState.STOPPED),
            AppRecord(_app(0x12), dataclasses.replace(SPEC, name="twin")),
            AppRecord(_app(0x13), dataclasses.replace(SPEC, name="twin")),
        )
        self.state: BlockState | None = dataclasses.replace(
            compute_genesis_state(genesis), registry=Registry(records=records)
        )
        node = idents[0].node
        self.history: dict[AppId, list[HistoryEvent]] = {
            _app(1): [
                HistoryEvent(2, BlockHash(b"\x02" * 32), "submit", signer=ADMIN.pk, version=1),
                HistoryEvent(3, BlockHash(b"\x03" * 32), "place", node=node),
            ],
            _app(2): [HistoryEvent(4, BlockHash(b"\x04" * 32), "stop", signer=ADMIN.pk)],
        }
        self.runtime_apps: list[dict[str, Any]] = []
        self.ready = True
        self.operator = True
        self.refuse: RejectReason | None = None
        stop = make_command(ADMIN.sk, "c", 7, CommandKind.STOP, app=_app(1))
        self.commands = {
            b"\x0a" * 32: CommandStatus(
                CommandState.APPLIED, stop, slot=5, block=BlockHash(b"\x0b" * 32)
            ),
            b"\x0c" * 32: CommandStatus(
                CommandState.PENDING, stop, slot=6, reason="command_invalid: x", refused_heads=1
            ),
            b"\x0d" * 32: CommandStatus(CommandState.DROPPED, stop, slot=8, reason="gone"),
        }
        self.submitted: list[object] = []
        self.leaves = 0
        self.now_ms = 1_700_000_000_000
        self.logs = {_app(1): [f"line {i}" for i in range(1, 301)]}

    def is_ready(self) -> bool:
        return self.ready

    def get_status(self, cpu_since_slot: int | None = None) -> dict[str, Any]:
        return {"ok": 1} if cpu_since_slot is None else {"ok": 1, "cpu_since_slot": cpu_since_slot}

    def get_params(self) -> ChainParams | None:
        return self.params

    def get_head_state(self) -> BlockState | None:
        return self.state

    def get_app_history(self, app: AppId) -> list[HistoryEvent]:
        return list(self.history.get(app, []))

    def get_blocks(self, since: int, limit: int) -> list[dict[str, Any]]:
        return [{"since": since, "limit": limit}]

    def get_chain(self) -> list[dict[str, Any]]:
        return []

    def get_runtime_apps(self) -> list[dict[str, Any]]:
        return self.runtime_apps

    def get_migrations(self) -> list[dict[str, Any]]:
        return [{"app": _app(1).hex()[:16], "outcome": "ok"}, {"app": "ffff", "outcome": "x"}]

    def get_app_log(self, app: AppId, lines: int) -> dict[str, Any] | None:
        if app not in self.logs:
            return None
        kept = self.logs[app]
        return {"app_id": app.hex(), "lines": kept[-lines:], "truncated": len(kept) > lines}

    def get_now_ms(self) -> int:
        return self.now_ms

    def get_command_status(self, digest: bytes) -> CommandStatus:
        return self.commands.get(digest, CommandStatus(CommandState.UNKNOWN))

    def get_overview(self) -> dict[str, Any]:
        return {"node_id": "00" * 32, "public_key": "00" * 48, "peers": 0, "rss_mb": 0}

    def get_recent_chain(self, count: int) -> list[ChainEntry]:
        return []

    def get_slot_roles(self) -> tuple[int, Roles | None]:
        return 0, None

    def get_metrics_text(self) -> bytes:
        return b"# HELP edgechain_slot x\n# TYPE edgechain_slot gauge\nedgechain_slot 3.0\n"

    def submit_command(self, command: SignedCommand) -> CommandReceipt:
        if self.refuse is not None:
            raise ValidationError(self.refuse, "refused")
        self.submitted.append(command)
        return CommandReceipt(
            b"\x01" * 32, command.seq, compute_submitted_app_id(command.signer, command.seq)
        )

    def submit_app(self, spec: AppSpec) -> CommandReceipt:
        if not self.operator:
            raise NoOperatorKeyError("none")
        if self.refuse is not None:
            raise ValidationError(self.refuse, "refused")
        self.submitted.append(spec)
        return CommandReceipt(b"\x02" * 32, 7, _app(9))

    def leave(self) -> dict[str, Any]:
        self.leaves += 1
        return {"phase": "draining", "apps_here": []}


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


def call(
    node: FakeNode,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = b"",
    headers: dict[str, str] | None = None,
) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = Request(method, path, query or {}, raw, headers or {})
    try:
        return asyncio.run(NodeRoutes(node, TOKEN).handle(request))
    except HttpError as exc:
        return exc.to_reply()


def error(reply: Reply) -> tuple[int, str | None]:
    assert "error" in reply.payload
    return reply.status, reply.payload.get("field")


def test_health_and_status(node: FakeNode) -> None:
    assert call(node, "GET", "/health").payload == {"ok": True}
    assert call(node, "GET", "/status").payload == {"ok": 1}


def test_unknown_paths_are_404_and_wrong_methods_405(node: FakeNode) -> None:
    assert error(call(node, "GET", "/nope")) == (404, "path")
    assert error(call(node, "GET", "/health/")) == (404, "path")
    assert error(call(node, "GET", "/apps/x/y/z")) == (404, "path")
    assert error(call(node, "GET", "/%ff")) == (400, "path")
    reply = call(node, "DELETE", "/apps")
    assert error(reply) == (405, "method")
    assert dict(reply.headers)["Allow"] == "GET, POST"
    assert error(call(node, "POST", "/status")) == (405, "method")


def test_query_parameters(node: FakeNode) -> None:
    assert call(node, "GET", "/blocks", {"since": "5", "limit": "3"}).payload == [
        {"since": 5, "limit": 3}
    ]
    for bad in ("x", "-1", "1.0", "", "9" * 30):
        assert error(call(node, "GET", "/blocks", {"since": bad})) == (400, "since")
    assert error(call(node, "GET", "/blocks", {"limit": "0"})) == (400, "limit")
    assert error(call(node, "GET", "/blocks", {"colour": "red"})) == (400, "colour")
    assert error(call(node, "GET", "/status", {"since": "1"})) == (400, "since")
    assert call(node, "GET", "/status", {"cpu_since_slot": "0"}).payload == {
        "ok": 1,
        "cpu_since_slot": 0,
    }
    assert call(node, "GET", "/status", {"cpu_since_slot": "120"}).payload["cpu_since_slot"] == 120
    for bad in ("x", "-1", "", "9" * 30):
        assert error(call(node, "GET", "/status", {"cpu_since_slot": bad})) == (
            400,
            "cpu_since_slot",
        )


def test_503_while_starting_and_before_genesis(node: FakeNode) -> None:
    node.ready = False
    assert call(node, "GET", "/health").status == 503
    assert call(node, "GET", "/nope").status == 404  # routing still answers
    node.ready = True
    node.state = None
    for path in ("/nodes", "/apps", "/apps/web", "/operators/" + "00" * 48):
        assert call(node, "GET", path).status == 503, path


def test_nodes_and_operators(node: FakeNode) -> None:
    nodes = call(node, "GET", "/nodes").payload
    assert len(nodes) == 3
    assert set(nodes[0]) == {
        "node_id",
        "status",
        "last_seen_slot",
        "public_key",
        "address",
        "labels",
        "cpu_bp",
        "ram_bp",
        "pressure_bp",
        "rtt_us",
        "state_room_bytes",
        "coordinate_us",
        "report_slot",
        "apps",
    }
    # Genesis validators, seen at slot 0, in the view of the next slot: active.
    assert {n["status"] for n in nodes} == {"active"}
    assert {n["last_seen_slot"] for n in nodes} == {0}
    admin = call(node, "GET", f"/operators/{ADMIN.pk.hex()}").payload
    assert admin == {
        "public_key": ADMIN.pk.hex(),
        "admin": True,
        "operator": True,
        "revoked": False,
        "last_seq": 0,
    }
    assert call(node, "GET", f"/operators/{'11' * 48}").payload["operator"] is False
    for bad in ("zz", "11" * 47, "11" * 49):
        assert error(call(node, "GET", f"/operators/{bad}")) == (400, "public_key")


def test_a_commands_status(node: FakeNode) -> None:
    applied = call(node, "GET", f"/commands/{'0a' * 32}").payload
    assert applied == {
        "command_hash": "0a" * 32,
        "status": "applied",
        "kind": "stop",
        "signer": ADMIN.pk.hex(),
        "seq": 7,
        "slot": 5,
        "block": "0b" * 32,
    }
    pending = call(node, "GET", f"/commands/{'0c' * 32}").payload
    assert pending["status"] == "pending" and pending["reason"] == "command_invalid: x"
    assert pending["refused_heads"] == 1 and "block" not in pending
    dropped = call(node, "GET", f"/commands/{'0d' * 32}").payload
    assert (dropped["status"], dropped["reason"], dropped["slot"]) == ("dropped", "gone", 8)
    assert error(call(node, "GET", f"/commands/{'0e' * 32}")) == (404, "hash")
    for bad in ("zz", "0a" * 31):
        assert error(call(node, "GET", f"/commands/{bad}")) == (400, "hash")
    node.state = None
    assert call(node, "GET", f"/commands/{'0a' * 32}").status == 503


def test_apps_fleet_view(node: FakeNode) -> None:
    apps = call(node, "GET", "/apps").payload
    assert [a["name"] for a in apps] == ["web", "db", "twin", "twin"]
    assert apps[0]["state"] == "running" and apps[1]["state"] == "stopped"
    assert apps[2]["state"] == "queued" and apps[2]["node"] is None
    one = call(node, "GET", "/apps/web").payload
    assert one["app_id"] == _app(1).hex()
    assert one["spec"]["command"] == ["/bin/true"]
    assert call(node, "GET", "/apps/" + _app(2).hex()[:6]).payload["name"] == "db"
    assert error(call(node, "GET", "/apps/nothing")) == (404, "app")
    assert error(call(node, "GET", "/apps/twin")) == (409, "app")
    history = call(node, "GET", "/apps/web/history").payload
    signer, placed_on = ADMIN.pk.hex(), node.history[_app(1)][1].node
    assert placed_on is not None
    assert history == {
        "app_id": _app(1).hex(),
        "events": [
            {"slot": 2, "block": "02" * 32, "kind": "submit", "node": None, "origin": None,
             "signer": signer, "version": 1},
            {"slot": 3, "block": "03" * 32, "kind": "place", "node": placed_on.hex(),
             "origin": None, "signer": None, "version": None},
        ],
        "migrations": [{"app": _app(1).hex()[:16], "outcome": "ok"}],
    }  # fmt: skip
    stopped = call(node, "GET", "/apps/db/history").payload
    assert [e["kind"] for e in stopped["events"]] == ["stop"] and stopped["migrations"] == []
    assert call(node, "GET", "/apps/" + _app(0x12).hex() + "/history").payload["events"] == []


def test_app_views_carry_this_nodes_copy(node: FakeNode) -> None:
    """What the chain cannot say: the answering node's runtime view of its copy (a
    crash loop), on the app's view; null for the apps it holds no copy of."""
    copy = {"app": _app(1).hex(), "node": "aa" * 32, "status": "crash_looping",
            "running": False, "restarts": 4, "last_exit": "exit code 2",
            "next_restart_in_s": 12.5}  # fmt: skip
    node.runtime_apps = [copy]
    apps = call(node, "GET", "/apps").payload
    assert [a["local"] for a in apps] == [copy, None, None, None]
    assert apps[0]["state"] == "running"  # the chain's view is unchanged
    assert call(node, "GET", "/apps/web").payload["local"] == copy
    assert call(node, "GET", "/apps/db").payload["local"] is None


def test_post_apps_needs_the_token_first(node: FakeNode) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN}):
        reply = call(node, "POST", "/apps", body=[], headers=headers)
        assert error(reply) == (401, "authorization")
        assert "WWW-Authenticate" in dict(reply.headers)
    assert node.submitted == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"{", "body"),
        (b"\xff\xfe", "body"),
        (b"[" * 100_000, "body"),
        ([], "body"),
        ({"name": "x", "command": ["a"], "policy": []}, "policy"),
        (
            {"name": "x", "command": ["a"], "policy": {"min_interval_slots": -1}},
            "policy.min_interval_slots",
        ),
        ({"name": "x" * 5000, "command": ["a"]}, "name"),
    ],
)
def test_post_apps_bad_specs(node: FakeNode, body: Any, field: str) -> None:
    assert error(call(node, "POST", "/apps", body=body, headers=AUTH)) == (400, field)


def test_post_leave_needs_the_token_and_no_body(node: FakeNode) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}):
        assert error(call(node, "POST", "/node/leave", headers=headers)) == (401, "authorization")
    assert error(call(node, "POST", "/node/leave", body={"x": 1}, headers=AUTH)) == (400, "body")
    assert node.leaves == 0
    bodies: tuple[Any, ...] = (b"", {})
    for body in bodies:
        reply = call(node, "POST", "/node/leave", body=body, headers=AUTH)
        assert (reply.status, reply.payload["phase"]) == (202, "draining")
    assert node.leaves == 2
    assert error(call(node, "GET", "/node/leave"))[0] == 405


def test_post_apps_without_operator_key_is_403(node: FakeNode) -> None:
    node.operator = False
    body = {"name": "x", "command": ["a"]}
    assert error(call(node, "POST", "/apps", body=body, headers=AUTH)) == (403, "operator_key")


def test_post_apps_submits(node: FakeNode) -> None:
    reply = call(node, "POST", "/apps", body={"name": "x", "command": ["a"]}, headers=AUTH)
    assert reply.status == 202
    assert reply.payload == {"command_hash": "02" * 32, "seq": 7, "app_id": _app(9).hex()}
    assert node.submitted == [AppSpec(name="x", runtime=RuntimeKind.PROCESS, command=("a",))]


def _command() -> SignedCommand:
    return make_command(ADMIN.sk, "testnet", 5, CommandKind.SUBMIT, spec=SPEC)


def test_post_commands(node: FakeNode) -> None:
    cmd = _command()
    reply = call(node, "POST", "/commands", body={"command": encode_command(cmd).hex()})
    assert reply.status == 202
    assert reply.payload["seq"] == 5
    assert reply.payload["app_id"] == compute_submitted_app_id(ADMIN.pk, 5).hex()
    assert node.submitted == [cmd]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "command"),
        ([], "body"),
        ({"command": 5}, "command"),
        ({"command": "zz"}, "command"),
        ({"command": "00" * 10}, "command"),
        ({"command": "", "extra": 1}, "extra"),
    ],
)
def test_post_commands_bad_input(node: FakeNode, body: Any, field: str) -> None:
    assert error(call(node, "POST", "/commands", body=body)) == (400, field)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (RejectReason.COMMAND_BAD_SIGNATURE, 403),
        (RejectReason.COMMAND_UNKNOWN_SIGNER, 403),
        (RejectReason.COMMAND_REVOKED, 403),
        (RejectReason.COMMAND_NOT_ADMIN, 403),
        (RejectReason.COMMAND_REPLAYED, 409),
        (RejectReason.COMMAND_MALFORMED, 400),
        (RejectReason.COMMAND_INVALID, 422),
        (RejectReason.NO_CHAIN, 503),
        (RejectReason.COMMAND_POOL_FULL, 503),
        (RejectReason.BAD_VDF, 422),  # any other reason
    ],
)
def test_refused_commands_map_to_statuses(
    node: FakeNode, reason: RejectReason, status: int
) -> None:
    node.refuse = reason
    reply = call(node, "POST", "/commands", body={"command": encode_command(_command()).hex()})
    assert reply.status == status
    assert reason in reply.payload["error"]
    spec = {"name": "x", "command": ["a"]}
    assert call(node, "POST", "/apps", body=spec, headers=AUTH).status == status


def test_json_depth_is_bounded_before_parsing() -> None:
    from edgechain.api.routes import MAX_JSON_DEPTH, get_json_depth

    assert get_json_depth(b"[" * 100_000) == MAX_JSON_DEPTH + 1
    assert get_json_depth(b'{"a": "[[[[", "b": [[1]]}') == 3
    assert get_json_depth(b'["\\"[[[", {}]') == 2
    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert get_json_depth(deep) == MAX_JSON_DEPTH


def test_event_streams_are_bounded_in_number_and_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgechain.api import live

    routes = NodeRoutes(FakeNode(), TOKEN)
    request = Request("GET", "/events", {}, b"", {})
    reply = asyncio.run(routes.handle(request))
    assert (reply.status, reply.content_type) == (200, live.EVENT_STREAM)
    monkeypatch.setattr(live, "STREAM_LIFETIME_S", 0.0)
    monkeypatch.setattr(live, "POLL_S", 0.0)

    async def drain() -> list[bytes]:
        assert reply.stream is not None
        return [piece async for piece in reply.stream()]

    # A stream past its lifetime ends after telling the browser when to come back.
    assert asyncio.run(drain()) == [b"retry: 1000\n\n"]
    assert routes.feed.open_streams == 0
    routes.feed.open_streams = live.MAX_STREAMS
    with pytest.raises(HttpError) as refused:
        asyncio.run(routes.handle(request))
    assert refused.value.status == 503


def _signed(signer: Identity, app: AppId, time_ms: int) -> dict[str, str]:
    """The headers ``edgechain apps logs`` sends (chain/read_auth.py)."""
    message = compute_log_read_message("testnet", app, time_ms)
    return {
        "x-edgechain-key": signer.pk.hex(),
        "x-edgechain-time": str(time_ms),
        "x-edgechain-signature": bls.sign(signer.sk, message).hex(),
    }


def test_an_apps_output_is_read_by_its_operators_only(node: FakeNode) -> None:
    path, now = f"/apps/{_app(1).hex()}/log", node.now_ms
    assert error(call(node, "GET", path)) == (401, "x-edgechain-key")
    assert call(node, "GET", path, headers=AUTH).payload["lines"][-1] == "line 300"  # local
    reply = call(node, "GET", "/apps/web/log", {"lines": "3"}, headers=_signed(ADMIN, _app(1), now))
    assert reply.status == 200, reply.payload
    assert reply.payload["lines"] == ["line 298", "line 299", "line 300"]
    assert reply.payload["truncated"] is True
    assert (
        len(call(node, "GET", path, headers=_signed(ADMIN, _app(1), now)).payload["lines"]) == 100
    )
    # 60 s either way of the node's clock; then refused, naming the header.
    assert call(node, "GET", path, headers=_signed(ADMIN, _app(1), now - 60_000)).status == 200
    stale = _signed(ADMIN, _app(1), now - 60_001)
    assert error(call(node, "GET", path, headers=stale)) == (401, "x-edgechain-time")
    ahead = _signed(ADMIN, _app(1), now + 60_001)
    assert error(call(node, "GET", path, headers=ahead)) == (401, "x-edgechain-time")
    # A key the chain does not know, a signature for another app, a bad header.
    outsider = _signed(make_identity(7), _app(1), now)
    assert error(call(node, "GET", path, headers=outsider)) == (403, "x-edgechain-key")
    other_app = _signed(ADMIN, _app(2), now)
    assert error(call(node, "GET", path, headers=other_app)) == (401, "x-edgechain-signature")
    short = {**_signed(ADMIN, _app(1), now), "x-edgechain-key": "abcd"}
    assert error(call(node, "GET", path, headers=short)) == (401, "x-edgechain-key")
    no_time = {**_signed(ADMIN, _app(1), now), "x-edgechain-time": "soon"}
    assert error(call(node, "GET", path, headers=no_time)) == (401, "x-edgechain-time")
    # No output here, a bad line count.
    quiet = f"/apps/{_app(2).hex()}/log"
    assert error(call(node, "GET", quiet, headers=_signed(ADMIN, _app(2), now))) == (404, "app")
    assert error(call(node, "GET", path, {"lines": "0"}, headers=AUTH)) == (400, "lines")
    assert error(call(node, "GET", path, {"lines": "10001"}, headers=AUTH)) == (400, "lines")
