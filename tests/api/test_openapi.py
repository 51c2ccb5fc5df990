"""The OpenAPI document (``api/openapi.py``): a valid OpenAPI 3.1 document, the router's
routes exactly, and response schemas that the routes' real answers satisfy.

The answers come from the routes in front of ``test_routes``' fake node (its chain state
is real: a genesis state with a registry), with realistic data where the fake's is a
placeholder (status, blocks, migrations, runtime apps), built from the node's own
types where they exist. The app spec schema is checked against ``parse_app_spec`` both
ways with hypothesis: every valid spec matches it, and whatever matches it parses
(bar what JSON Schema cannot say: UTF-8 byte lengths, lone surrogates, 1.0 as an
integer).

The dashboard's snapshot schema is checked against ``compute_snapshot`` of a real world
(``test_snapshot.World``: blocks, skip blocks, reports, apps in every state, every shown
plan action, a measured migration).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from edgechain.api.openapi import get_openapi_document
from edgechain.api.routes import MAX_BLOCKS, NodeRoutes
from edgechain.api.schema import (
    POLICY_KEYS,
    SPEC_KEYS,
    SchemaError,
    app_spec_to_json,
    parse_app_spec,
)
from edgechain.api.server import Reply
from edgechain.api.snapshot import RESULT_KEYS, compute_snapshot
from edgechain.chain.assembly import make_command
from edgechain.chain.model import (
    AppSpec,
    CommandKind,
    PlanAction,
    PlanEntry,
    RuntimeKind,
    SignedCommand,
    SkipBlock,
)
from edgechain.consensus.roles import Role
from edgechain.network.gossip import GossipStats
from edgechain.network.transport import TransportStats
from edgechain.node.events import AcceptedBlock
from edgechain.runtime.usage_sampler import AppView as RuntimeAppView
from edgechain.runtime.usage_sampler import render_views
from edgechain.telemetry.cpu import Component, SlotCpuLog
from edgechain.testing import ADMIN
from edgechain.types import AppId

from .strategies import app_specs, spec_json
from .test_routes import AUTH, TOKEN, FakeNode, _app, call
from .test_snapshot import World, short

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

DOCUMENT = get_openapi_document()


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def _routed(node: FakeNode) -> dict[tuple[str, str], frozenset[str]]:
    """The router's (method, path template) and the query parameters each reads."""
    routes = NodeRoutes(node, TOKEN).router.routes
    return {(r.method, "/" + "/".join(r.pattern)): r.query for r in routes}


def _operation(method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]
    return operation


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = DOCUMENT
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def _validator(schema: dict[str, Any]) -> OAS31Validator:
    # The components ride along, so "#/components/..." references resolve.
    return OAS31Validator({**schema, "components": DOCUMENT["components"]})


@functools.cache
def _component(name: str) -> OAS31Validator:
    return _validator({"$ref": f"#/components/schemas/{name}"})


def _media(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def check_answer(method: str, path: str, reply: Reply) -> None:
    """``reply`` is a status the operation documents, of a documented content type,
    with a body its schema allows."""
    responses = _operation(method, path)["responses"]
    assert str(reply.status) in responses, (method, path, reply)
    content = _resolve(responses[str(reply.status)])["content"]
    documented = {_media(media): media for media in content}
    assert _media(reply.content_type) in documented, (method, path, reply.content_type)
    schema = content[documented[_media(reply.content_type)]]["schema"]
    if reply.stream is not None:
        assert schema == {"type": "string"}
    elif reply.body is not None:
        _validator(schema).validate(reply.body.decode())
    else:
        _validator(schema).validate(reply.payload)


# --- the document ----------------------------------------------------------------------


def test_the_document_is_valid_openapi_and_json() -> None:
    validate_spec(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")
    assert json.loads(json.dumps(DOCUMENT)) == DOCUMENT
    assert get_openapi_document() is DOCUMENT  # built once


def test_every_route_is_documented_and_every_operation_routed() -> None:
    routed = _routed(FakeNode())
    documented = _documented()
    assert set(routed) - documented == set(), "routes missing from api/openapi.py"
    assert documented - set(routed) == set(), "operations that are no route"
    for (method, path), query in routed.items():
        parameters = [_resolve(p) for p in _operation(method, path).get("parameters", [])]
        assert {p["name"] for p in parameters if p["in"] == "query"} == set(query), path
        names = {p["name"] for p in parameters if p["in"] == "path"}
        assert names == {s[1:-1] for s in path.split("/") if s.startswith("{")}, path


def test_every_operation_documents_its_errors_and_ids_are_unique() -> None:
    ids = []
    for method, path in _documented():
        operation = _operation(method, path)
        ids.append(operation["operationId"])
        responses = operation["responses"]
        assert {"400", "503"} <= set(responses), (method, path)
        assert any(s.startswith("2") for s in responses), (method, path)
    assert len(ids) == len(set(ids))
    post_apps = _operation("POST", "/apps")
    assert post_apps["security"] == [{"bearer": []}]
    assert {"401", "403"} <= set(post_apps["responses"])
    blocks = {p["name"]: p["schema"] for p in _operation("GET", "/blocks")["parameters"]}
    assert blocks["limit"]["maximum"] == MAX_BLOCKS


def test_the_spec_schema_names_the_parsers_keys() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert set(schemas["AppSpecIn"]["properties"]) == SPEC_KEYS
    assert set(schemas["AppSpec"]["properties"]) == SPEC_KEYS
    assert set(schemas["AppPolicyIn"]["properties"]) == POLICY_KEYS
    assert set(schemas["AppPolicy"]["properties"]) == POLICY_KEYS


# --- answers of the routes -----------------------------------------------------------


class RealisticNode(FakeNode):
    """The fake, with node data shaped as the node's queries shape it."""

    def get_status(self, cpu_since_slot: int | None = None) -> dict[str, Any]:
        log = SlotCpuLog()
        totals = dict.fromkeys(Component, 0)
        log.record(1, False, totals, 0)
        log.record(2, True, {c: 1_500_000 for c in Component}, 30_000_000)
        return {
            "node_id": "11" * 32,
            "public_key": ADMIN.pk.hex(),
            "chain_id": "testnet",
            "admin_key": ADMIN.pk.hex(),
            "open_admission": False,
            "genesis": True,
            "slot": 12,
            "slot_duration_ms": 1000,
            "head": "22" * 32,
            "head_slot": 11,
            "role": Role.COMMITTEE.value,
            "is_validator": True,
            "admission_problem": None,
            "validators": 3,
            "peers": 2,
            "leave": {
                "phase": "draining",
                "started_ms": 1_700_000_000_000,
                "draining_on_chain": True,
                "apps_here": ["44" * 32],
                "apps_running_here": ["44" * 32],
                "apps_left_behind": [],
            },
            "seeds": [
                {"address": "seed-0:7000", "node_id": "33" * 32, "reached_at": "10.0.0.2:7000"},
                {"address": "seed-1:7000", "node_id": None, "reached_at": None},
            ],
            "rtt_us": 180,
            "rtt_samples": 3,
            "coordinate_us": [-1_200, 3_400],
            "dht_sessions": {"keys_derived": 2, "macs_verified": 40},
            "dht_timeout_ms": 2_000,
            "blocks_accepted": 11,
            "skip_blocks_accepted": 1,
            "reorgs": 0,
            "finality": {
                "justified_epoch": 2,
                "finalized_epoch": 1,
                "finalized": "33" * 32,
                "finalized_slot": 8,
                "epoch_length": 8,
                "blocks_in_memory": 11,
                "blocks_pruned": 0,
                "stale_blocks_ignored": 0,
                "voters": 4,
                "is_voter": True,
                "silent_voters": [],
                "held_back": False,
                "checkpoint_sync": {
                    "following": False,
                    "installs": 1,
                    "failures": 0,
                    "blocks_followed": 367,
                    "anchor_slot": 383,
                },
            },
            "peer_errors": {"bad_vote": 2},
            "decode_errors": {},
            "transport": vars(TransportStats(datagrams_in=5)),
            "gossip": vars(GossipStats(delivered=3, heartbeats_skipped=2)),
            "rss_mb": 41.5,
            "cpu_seconds": 1.25,
            "cpu_per_slot": log.summarize(cpu_since_slot),
            "cpu_capacity": None,
            "cpu_bp": 120,
            "pressure_bp": 0,
            "operator_key": None,
            "apps": [{"app": _app(1).hex(), "name": "web", "running": True}],
            "runtimes": ["process"],
            "container_engine": None,
            "status": "active",
            "stall": {"before_slot": 36, "resumed_slot": 70},
            "skip_run": {"skip_blocks": 4, "since_slot": 71},
            "frozen_apps": [],
            "watchdog": {"pid": 4242, "restarts": 1},
            "app_cgroups": {"held": False, "why_not": "the node is not root"},
            "transfer_refusals": {"not_planned": 1},
            "clock_offset_ms": -250,
            "hostile": {"behaviours": ["invalid-vdf"], "acts": {"invalid-vdf": 1}, "verdicts": {}},
        }

    def get_blocks(self, since: int, limit: int) -> list[dict[str, Any]]:
        blocks = [
            AcceptedBlock("33" * 32, 1, False, 2, "11" * 32, None, 1_700_000_000_000),
            AcceptedBlock("44" * 32, 2, True, 2, None, "11" * 32, 1_700_000_001_000),
        ]
        return [vars(b) for b in blocks if b.slot >= since][:limit]

    def get_chain(self) -> list[dict[str, Any]]:
        return [{"hash": "33" * 32, "slot": 1, "skip": False}]

    def get_migrations(self) -> list[dict[str, Any]]:
        return [
            {
                "app": _app(1).hex()[:16],
                "name": "web",
                "slot": 9,
                "to": "55" * 8,
                "attempt": 0,
                "outcome": "completed",
                "reason": "",
                "save_ms": 12.5,
                "transmit_ms": 3.0,
                "resume_ms": 40.1,
                "raw_bytes": 4096,
                "compressed_bytes": 512,
                "live": True,
                "precopy_rounds": 2,
                "precopy_ms": 830.5,
                "precopy_bytes": 150_000_000,
            }
        ]

    def get_app_log(self, app: AppId, lines: int) -> dict[str, Any] | None:
        found = super().get_app_log(app, lines)
        if found is None:
            return None
        return {**found, "node_id": "22" * 32, "running": True}

    def get_runtime_apps(self) -> list[dict[str, Any]]:
        views = [
            RuntimeAppView(_app(1).hex(), "web", True, "running", 300, 20, 4096, 1),
            RuntimeAppView(_app(2).hex(), "db", False, "stopped"),
            RuntimeAppView(
                _app(3).hex(),
                "flaky",
                False,
                "crash_looping",
                version=2,
                restarts=3,
                last_exit="exit code 2",
                next_restart_in_s=7.5,
            ),
        ]
        return render_views(views, bytes(range(32)))


def test_answers_match_the_response_schemas() -> None:
    node = RealisticNode()
    web = _app(1).hex()
    cases = [
        ("/health", "/health", {}),
        ("/status", "/status", {}),
        ("/blocks", "/blocks", {}),
        ("/blocks", "/blocks", {"since": "2", "limit": "1"}),
        ("/blocks", "/blocks", {"since": "x"}),
        ("/blocks", "/blocks", {"colour": "red"}),
        ("/chain", "/chain", {}),
        ("/nodes", "/nodes", {}),
        ("/apps", "/apps", {}),
        ("/apps/{app}", "/apps/web", {}),
        ("/apps/{app}", f"/apps/{web}", {}),
        ("/apps/{app}", "/apps/nothing", {}),
        ("/apps/{app}", "/apps/twin", {}),
        ("/apps/{app}/history", "/apps/web/history", {}),
        ("/apps/{app}/log", "/apps/web/log", {}),
        ("/apps/{app}/log", "/apps/db/log", {}),
        ("/apps/{app}/log", "/apps/nothing/log", {}),
        ("/apps/{app}/log", "/apps/twin/log", {}),
        ("/apps/{app}/log", "/apps/web/log", {"lines": "0"}),
        ("/migrations", "/migrations", {}),
        ("/runtime/apps", "/runtime/apps", {}),
        ("/operators/{public_key}", f"/operators/{ADMIN.pk.hex()}", {}),
        ("/operators/{public_key}", "/operators/zz", {}),
        ("/commands/{hash}", f"/commands/{'0a' * 32}", {}),
        ("/commands/{hash}", f"/commands/{'0c' * 32}", {}),
        ("/commands/{hash}", f"/commands/{'0d' * 32}", {}),
        ("/commands/{hash}", f"/commands/{'0e' * 32}", {}),
        ("/commands/{hash}", "/commands/zz", {}),
    ]
    for template, path, query in cases:
        check_answer("GET", template, call(node, "GET", path, query))
    for headers in ({}, AUTH):  # the log: refused unsigned, then read as a local caller
        check_answer("GET", "/apps/{app}/log", call(node, "GET", "/apps/web/log", {}, b"", headers))
    # Before genesis, and while starting.
    node.state = None
    for template in ("/nodes", "/apps", "/dashboard/snapshot"):
        check_answer("GET", template, call(node, "GET", template))
    node.ready = False
    check_answer("GET", "/status", call(node, "GET", "/status"))


def test_observability_answers_match_the_document() -> None:
    node = RealisticNode()
    routed = _routed(node)
    cases = [
        ("/openapi.json", "/openapi.json"),
        ("/metrics", "/metrics"),
        ("/events", "/events"),
        ("/dashboard/snapshot", "/dashboard/snapshot"),
        ("/", "/"),
        ("/dashboard", "/dashboard"),
        ("/dashboard/{asset}", "/dashboard/app.js"),
        ("/dashboard/{asset}", "/dashboard/style.css"),
        ("/dashboard/{asset}", "/dashboard/favicon.svg"),
        ("/dashboard/{asset}", "/dashboard/index.html"),
        ("/dashboard/{asset}", "/dashboard/nothing.js"),
    ]
    for template, path in cases:
        assert ("GET", template) in routed
        reply = call(node, "GET", path)
        check_answer("GET", template, reply)
        if template == "/openapi.json":
            assert reply.payload == DOCUMENT


def test_the_fleet_answers_carry_what_the_tests_expect() -> None:
    # The fake's registry has a running, a stopped and two queued apps: each shape.
    apps = call(RealisticNode(), "GET", "/apps").payload
    assert {a["state"] for a in apps} == {"running", "stopped", "queued"}
    _component("AppView").validate(apps[0])
    assert not _component("AppView").is_valid({**apps[0], "extra": 1})  # closed objects
    assert not _component("Status").is_valid({**RealisticNode().get_status(), "slot": None})


def test_writes_match_the_schemas() -> None:
    node = RealisticNode()
    spec: dict[str, Any] = {"name": "x", "command": ["a"]}
    bodies: list[Any] = [{"command": "00"}, {"command": 5}, []]
    for headers, body in (
        (AUTH, spec),
        ({}, spec),
        (AUTH, {**spec, "policy": []}),
    ):
        check_answer("POST", "/apps", call(node, "POST", "/apps", body=body, headers=headers))
    node.operator = False
    check_answer("POST", "/apps", call(node, "POST", "/apps", body=spec, headers=AUTH))
    for body in bodies:
        check_answer("POST", "/commands", call(node, "POST", "/commands", body=body))


# --- the dashboard's snapshot ----------------------------------------------------------


def _admin_command(world: World, kind: CommandKind, app: bytes, node: bytes = b"") -> SignedCommand:
    world.seq += 1
    return make_command(ADMIN.sk, world.params.chain_id, world.seq, kind, app=app, node=node)


def _snapshot_world() -> World:
    """5 validators, committee 2: apps placed, reported, migrated (measured by this node,
    twice), recovered from the node a skip block excluded, stopped, moved, removed and
    one left queued; a block this node never logged, a node draining. The initial
    difficulty is a genesis parameter chosen so that the skip block excludes db's node."""
    w = World(5, 2, initial_difficulty=8)
    (web, submit_web), (db, submit_db), (cache, submit_cache), (gone, submit_gone) = (
        w.submit(name) for name in ("web", "db", "cache", "gone")
    )
    _, submit_idle = w.submit("idle")
    n = [i.node for i in w.idents]
    w.add(commands=[submit_web, submit_db, submit_cache, submit_gone, submit_idle])
    place = [(web, n[1]), (db, n[3]), (cache, n[4]), (gone, n[1])]
    w.add(plan=[PlanEntry(PlanAction.PLACE, app, b"", to) for app, to in place])
    w.add(reports=[w.report(1, 2500, [(web, 1200), (gone, 10)]), w.report(3, 800, [(db, 300)])])
    skip = w.chain.blocks[w.add(skip=True, votes=1)]
    # Deterministic seeds (block format 21: difficulty 8; 20: 2; 19: 10; 18: 1; 17: 19; 16: 1;
    # 15: 3; 14: 1; 13: 9): the skip block excludes db's node.
    assert isinstance(skip, SkipBlock) and skip.excluded == n[3]
    w.add(plan=[PlanEntry(PlanAction.MIGRATE, web, n[1], n[2])], record=False)
    migrate_slot = w.chain.get_head_state().slot
    w.add(
        plan=[
            PlanEntry(PlanAction.RECOVER, db, n[3], n[0]),
            PlanEntry(PlanAction.REPLICA, cache, n[4], n[0]),
        ],
        commands=[
            _admin_command(w, CommandKind.STOP, cache),
            _admin_command(w, CommandKind.MOVE, web, n[4]),
            _admin_command(w, CommandKind.REMOVE, gone),
            _admin_command(w, CommandKind.DRAIN_NODE, b"", n[4]),
        ],
    )
    for attempt, outcome in enumerate(("failed", "completed")):
        w.results.append(
            {
                "app": short(web),
                "name": "web",
                "slot": migrate_slot,
                "to": short(n[2]),
                "attempt": attempt,
                "outcome": outcome,
                "reason": "",
                "save_ms": 12.5,
                "transmit_ms": 40.0,
                "resume_ms": 7.2,
                "raw_bytes": 9000,
                "compressed_bytes": 3000,
                "live": attempt == 1,
            }
        )
    return w


def test_a_real_snapshot_matches_its_schema() -> None:
    world = _snapshot_world()
    snapshot = _component("DashboardSnapshot")
    snap = compute_snapshot(world)
    snapshot.validate(snap)
    # The world shows what the schema describes: skip blocks, a block not logged,
    # reports, every app state, every shown action, a measurement, a gone app.
    assert any(b["skip"] for b in snap["blocks"])
    assert None in {b["accepted_ms"] for b in snap["blocks"]}
    assert {v["status"] for v in snap["nodes"]} == {"active", "draining"}
    assert {v["cpu_bp"] is None for v in snap["nodes"]} == {True, False}
    assert {a["state"] for a in snap["apps"]} == {"running", "queued", "stopped"}
    assert any(a["move_to"] is not None for a in snap["apps"])
    migrations = snap["migrations"]
    assert {m["action"] for m in migrations} == {"place", "migrate", "recover"}
    assert None in {m["name"] for m in migrations}
    measured = [m for m in migrations if "outcome" in m]
    assert len(measured) == 1 and measured[0]["attempts"] == 2 and measured[0]["live"]
    assert set(measured[0]) - set(migrations[0]) == {*RESULT_KEYS, "attempts", "bytes"}
    # Unmeasured, within the limits, and before genesis.
    world.results.clear()
    snapshot.validate(compute_snapshot(world))
    snapshot.validate(compute_snapshot(world, max_blocks=1, max_migrations=1))
    world.engine = None
    snapshot.validate(compute_snapshot(world))


def test_the_snapshot_schema_is_closed_and_exact() -> None:
    snap = compute_snapshot(_snapshot_world())
    assert _component("DashboardSnapshot").is_valid(snap)
    migration = next(m for m in snap["migrations"] if "outcome" in m)
    place = next(m for m in snap["migrations"] if m["action"] == "place")
    partial = {k: v for k, v in migration.items() if k != "save_ms"}
    wrong = [
        {**snap, "extra": 1},
        {**snap, "node": {**snap["node"], "slot": None}},
        {**snap, "node": {**snap["node"], "id": "00" * 32}},  # a whole id, not a prefix
        {**snap, "node": {**snap["node"], "role": "leader"}},
        {**snap, "blocks": [{**snap["blocks"][0], "hash": "AB" * 8}]},
        {**snap, "nodes": [{**snap["nodes"][0], "status": "gone"}]},
        {**snap, "apps": [{**snap["apps"][0], "state": "paused"}]},
        {**snap, "migrations": [{**place, "action": "replica"}]},
        {**snap, "migrations": [{**place, "outcome": migration["outcome"]}]},
        {**snap, "migrations": [partial]},  # measured keys come all together
        {**snap, "migrations": [{**place, **migration, "action": "place"}]},  # a move only
        {**snap, "migrations": [{**migration, "outcome": "ok"}]},
    ]
    for data in wrong:
        assert not _component("DashboardSnapshot").is_valid(data), data


# --- the app spec schema against the parser --------------------------------------------

UNSAYABLE = ("bytes, at most", "lone surrogate", "expected an integer, got a number")
"""What ``parse_app_spec`` refuses that a JSON Schema cannot: UTF-8 byte lengths,
lone surrogates, and 1.0 (an integer to JSON Schema)."""


def _spec_valid(data: object) -> bool:
    return bool(_component("AppSpecIn").is_valid(data))


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({"name": "web", "command": ["/bin/true"]}, True),
        ({"name": "img", "runtime": "container", "image": "busybox"}, True),
        ({"name": "img", "runtime": "container", "image": "b", "run_as_root": True}, True),
        ({"name": "web", "command": ["a"], "stateful": True, "replica_interval_slots": 5}, True),
        ({"name": "web", "command": ["a"], "memory_limit_bytes": 0}, True),
        ({"name": "web", "command": ["a"], "cpu_limit_millicores": 10}, True),
        ({"name": "web", "command": ["a"], "policy": {"pin_node": "AB" * 32}}, True),
        ({"name": "web"}, False),
        ({"name": " ", "command": ["a"]}, False),
        ({"name": "a\nb", "command": ["a"]}, False),
        ({"name": "web", "command": [""]}, False),
        ({"name": "web", "command": ["a\x00"]}, False),
        ({"name": "web", "command": ["a"], "run_as_root": True}, False),
        ({"name": "img", "runtime": "container"}, False),
        ({"name": "img", "runtime": "vm", "image": "x"}, False),
        ({"name": "web", "command": ["a"], "replica_interval_slots": 5}, False),
        ({"name": "web", "command": ["a"], "cpu_limit_millicores": 5}, False),
        ({"name": "web", "command": ["a"], "memory_limit_bytes": 2**20}, False),
        ({"name": "web", "command": ["a"], "cpu_bp": 10_001}, False),
        ({"name": "web", "command": ["a"], "stateful": 1}, False),
        ({"name": "web", "command": ["a"], "policy": {"pin_node": "ab"}}, False),
        ({"name": "web", "command": ["a"], "policy": {"allowed_labels": [""]}}, False),
        ({"name": "web", "command": ["a"], "policy": {"colour": 1}}, False),
        ({"name": "web", "command": ["a"], "policy": {"wait_for_state": True}}, False),
        (
            {"name": "db", "command": ["a"], "stateful": True, "policy": {"wait_for_state": True}},
            True,
        ),
        ({"name": "web", "command": ["a"], "colour": 1}, False),
        ({"name": "web", "command": ["a"] * 65}, False),
        # A final newline: Python's ``$`` matched before it (openapi_helpers.END).
        ({"name": "web\n", "command": ["/bin/true"]}, False),
        ({"name": "web", "command": ["a"], "policy": {"anti_affinity": "g\n"}}, False),
    ],
)
def test_the_spec_schema_agrees_with_the_parser(data: dict[str, Any], valid: bool) -> None:
    assert _spec_valid(data) is valid
    try:
        parse_app_spec(data)
    except SchemaError:
        assert not valid
    else:
        assert valid


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app_specs())
def test_every_valid_spec_matches_the_schema(spec: AppSpec) -> None:
    data = app_spec_to_json(spec)
    _component("AppSpecIn").validate(data)
    _component("AppSpec").validate(data)


@st.composite
def near_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec's JSON with keys left out (defaults) and one key perhaps replaced
    by a plausible or hostile value."""
    data = app_spec_to_json(draw(app_specs()))
    for key in draw(st.sets(st.sampled_from(sorted(SPEC_KEYS - {"name"})))):
        del data[key]
    other = draw(spec_json())
    if isinstance(other, dict) and other:
        key = draw(st.sampled_from(sorted(other)))
        data[key] = other[key]
    return data


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(near_specs(), spec_json()))
def test_the_schema_allows_what_parses_and_nothing_else(data: Any) -> None:
    valid = _spec_valid(data)
    try:
        parse_app_spec(data)
    except SchemaError as exc:
        assert not valid or any(s in exc.message for s in UNSAYABLE), (data, exc)
    else:
        assert valid, data


def test_a_process_spec_round_trips_through_both() -> None:
    spec = AppSpec(name="web", runtime=RuntimeKind.PROCESS, command=("/bin/true",))
    data = app_spec_to_json(dataclasses.replace(spec, cpu_bp=5))
    assert _spec_valid(data)
    assert parse_app_spec(data) == dataclasses.replace(spec, cpu_bp=5)
