"""App spec JSON: the issue's bad inputs, the wire's limits, and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.api.schema import (
    SchemaError,
    app_spec_to_json,
    parse_app_spec,
    parse_query_int,
)
from edgechain.chain.command_encoding import decode_app_spec, encode_app_spec
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import AppPolicy, AppSpec, RuntimeKind

from .strategies import app_specs, json_values, spec_json


def good() -> dict[str, Any]:
    return {"name": "web", "command": ["/bin/true"]}


def field_of(data: object) -> str:
    with pytest.raises(SchemaError) as info:
        parse_app_spec(data)
    return info.value.field


def test_a_minimal_spec() -> None:
    spec = parse_app_spec(good())
    assert spec == AppSpec(name="web", runtime=RuntimeKind.PROCESS, command=("/bin/true",))


def test_a_full_spec() -> None:
    data = {
        "name": "db",
        "runtime": "container",
        "image": "docker.io/library/redis:7",
        "command": ["redis-server"],
        "cpu_bp": 250,
        "ram_bp": 10_000,
        "stateful": True,
        "policy": {
            "pinned": True,
            "pin_node": "ab" * 32,
            "allowed_labels": ["eu", "gpu"],
            "anti_affinity": "db",
            "min_interval_slots": 2**32 - 1,
            "wait_for_state": True,
        },
        "replica_interval_slots": 5,
        "cpu_limit_millicores": 1_500,
        "memory_limit_bytes": 2**30,
        "state_limit_bytes": 2**40,
        "run_as_root": True,
    }
    spec = parse_app_spec(data)
    assert spec.replica_interval_slots == 5
    assert (spec.cpu_limit_millicores, spec.memory_limit_bytes) == (1_500, 2**30)
    assert (spec.state_limit_bytes, spec.run_as_root) == (2**40, True)
    assert spec.policy == AppPolicy(
        True, bytes.fromhex("ab" * 32), ("eu", "gpu"), "db", 2**32 - 1, wait_for_state=True
    )
    assert app_spec_to_json(spec) == data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # The inputs.
        ([], "spec"),
        ({**good(), "policy": []}, "policy"),
        ({**good(), "policy": {"min_interval_slots": -1}}, "policy.min_interval_slots"),
        ({**good(), "replica_interval_slots": 3}, "replica_interval_slots"),  # not stateful
        ({**good(), "policy": {"wait_for_state": True}}, "policy.wait_for_state"),  # the same
        ({**good(), "policy": {"wait_for_state": 1}}, "policy.wait_for_state"),
        ({**good(), "stateful": True, "replica_interval_slots": -1}, "replica_interval_slots"),
        ({**good(), "name": "n" * 5000}, "name"),
        # Shape.
        ("spec", "spec"),
        (None, "spec"),
        ({"command": ["x"]}, "name"),
        ({**good(), "name": 7}, "name"),
        ({**good(), "name": ""}, "name"),
        ({**good(), "name": "   "}, "name"),
        ({**good(), "name": "a\nb"}, "name"),
        ({**good(), "name": "\ud800"}, "name"),
        ({**good(), "nonce": "00"}, "nonce"),
        ({**good(), "zzz": 1, "aaa": 2}, "aaa"),
        ({**good(), "policy": {"pinned": True, "colour": "red"}}, "policy.colour"),
        ({**good(), "runtime": "vm"}, "runtime"),
        ({**good(), "runtime": ["process"]}, "runtime"),
        ({**good(), "runtime": {"a": 1}}, "runtime"),
        ({"name": "x"}, "command"),
        ({"name": "x", "command": []}, "command"),
        ({"name": "x", "command": [""]}, "command[0]"),
        ({"name": "x", "command": "ls -l"}, "command"),
        ({"name": "x", "command": ["ls", 3]}, "command[1]"),
        ({"name": "x", "command": ["ls", "a\x00b"]}, "command[1]"),
        ({"name": "x", "runtime": "container"}, "image"),
        # Numbers: integers in range, never booleans or floats.
        ({**good(), "cpu_bp": 10_001}, "cpu_bp"),
        ({**good(), "cpu_bp": -1}, "cpu_bp"),
        ({**good(), "cpu_bp": 1.5}, "cpu_bp"),
        ({**good(), "cpu_bp": True}, "cpu_bp"),
        ({**good(), "ram_bp": "5"}, "ram_bp"),
        ({**good(), "stateful": 1}, "stateful"),
        ({**good(), "policy": {"min_interval_slots": 2**32}}, "policy.min_interval_slots"),
        # Resource limits (format 5): 0 or within the engines' range; root only in a container.
        ({**good(), "cpu_limit_millicores": 5}, "cpu_limit_millicores"),
        ({**good(), "cpu_limit_millicores": 1_024_001}, "cpu_limit_millicores"),
        ({**good(), "cpu_limit_millicores": 0.5}, "cpu_limit_millicores"),
        ({**good(), "memory_limit_bytes": 4 * 2**20}, "memory_limit_bytes"),
        ({**good(), "memory_limit_bytes": -1}, "memory_limit_bytes"),
        ({**good(), "memory_limit_bytes": "64Mi"}, "memory_limit_bytes"),
        ({**good(), "state_limit_bytes": 2**40 + 1}, "state_limit_bytes"),
        ({**good(), "run_as_root": True}, "run_as_root"),
        ({**good(), "run_as_root": 1}, "run_as_root"),
        ({**good(), "policy": {"pinned": "yes"}}, "policy.pinned"),
        ({**good(), "policy": {"pin_node": "zz"}}, "policy.pin_node"),
        ({**good(), "policy": {"pin_node": "ab" * 31}}, "policy.pin_node"),
        ({**good(), "policy": {"pin_node": "ab" * 5000}}, "policy.pin_node"),
        ({**good(), "policy": {"allowed_labels": "eu"}}, "policy.allowed_labels"),
        ({**good(), "policy": {"allowed_labels": [""]}}, "policy.allowed_labels[0]"),
        # The wire's limits, in UTF-8 bytes.
        ({**good(), "name": "\u00e9" * 129}, "name"),
        ({**good(), "image": "i" * (Limits.MAX_SHORT_STR + 1)}, "image"),
        ({"name": "x", "command": ["a"] * (Limits.MAX_COMMAND_ARGS + 1)}, "command"),
        ({"name": "x", "command": ["a" * (Limits.MAX_ARG_STR + 1)]}, "command[0]"),
        (
            {**good(), "policy": {"allowed_labels": ["l"] * (Limits.MAX_LABELS + 1)}},
            "policy.allowed_labels",
        ),
        (
            {**good(), "policy": {"anti_affinity": "a" * (Limits.MAX_SHORT_STR + 1)}},
            "policy.anti_affinity",
        ),
    ],
)
def test_bad_specs_name_their_field(data: object, field: str) -> None:
    assert field_of(data) == field


def test_limits_are_inclusive() -> None:
    spec = parse_app_spec(
        {
            "name": "n" * Limits.MAX_SHORT_STR,
            "command": ["a" * Limits.MAX_ARG_STR] * Limits.MAX_COMMAND_ARGS,
            "policy": {"allowed_labels": ["l" * Limits.MAX_SHORT_STR] * Limits.MAX_LABELS},
        }
    )
    assert decode_app_spec(encode_app_spec(spec)) == spec


@given(app_specs())
def test_json_round_trip(spec: AppSpec) -> None:
    data = json.loads(json.dumps(app_spec_to_json(spec)))
    assert parse_app_spec(data) == spec


@settings(max_examples=300)
@given(st.one_of(spec_json(), json_values()))
def test_any_json_is_a_spec_the_wire_decodes_or_a_schema_error(data: object) -> None:
    try:
        spec = parse_app_spec(data)
    except SchemaError as exc:
        assert exc.field
        return
    # Whatever the parser accepts, every peer can decode (issue 8: too_long blocks).
    assert decode_app_spec(encode_app_spec(spec)) == spec


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0", True),
        ("42", True),
        ("-1", False),
        ("x", False),
        ("1.5", False),
        ("", False),
        ("\u0661", False),
        ("9" * 40, False),
    ],
)
def test_query_integers(text: str, ok: bool) -> None:
    if ok:
        assert parse_query_int({"since": text}, "since", default=0, low=0, high=10**6) == int(text)
    else:
        with pytest.raises(SchemaError) as info:
            parse_query_int({"since": text}, "since", default=0, low=0, high=10**6)
        assert info.value.field == "since"
