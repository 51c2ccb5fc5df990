"""JSON <-> chain objects for the HTTP API, checked field by field.

Every error is a :class:`SchemaError` naming the field (``policy.min_interval_slots``,
``command[3]``), which the API answers as a 400. A spec is checked against the wire's
limits here (``chain/encoding_limits.Limits``), before it is signed or gossiped: issue 8
found a 5000-character name that the node accepted and its peers could not decode.
Strings are counted in UTF-8 bytes, as the encoding counts them, and must encode (a
JSON ``"\\ud800"`` escape gives a Python string that does not).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from edgechain.chain.command_encoding import get_spec_encoding_error
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import (
    BASIS_POINTS,
    MAX_CPU_LIMIT_MILLICORES,
    MAX_MEMORY_LIMIT_BYTES,
    MAX_STATE_LIMIT_BYTES,
    AppPolicy,
    AppSpec,
    RuntimeKind,
)
from edgechain.chain.spec_checks import get_spec_limits_error
from edgechain.types import HASH_SIZE

U32_MAX = 2**32 - 1

SPEC_KEYS = frozenset(
    {
        "name",
        "runtime",
        "image",
        "command",
        "cpu_bp",
        "ram_bp",
        "stateful",
        "policy",
        "replica_interval_slots",
        "cpu_limit_millicores",
        "memory_limit_bytes",
        "state_limit_bytes",
        "run_as_root",
    }
)
POLICY_KEYS = frozenset(
    {
        "pinned",
        "pin_node",
        "allowed_labels",
        "anti_affinity",
        "min_interval_slots",
        "wait_for_state",
    }
)
RUNTIMES = {"process": RuntimeKind.PROCESS, "container": RuntimeKind.CONTAINER}


class SchemaError(ValueError):
    """``field`` of the input is wrong; ``message`` says how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def get_object(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise SchemaError(where, f"expected a JSON object, got {_kind(data)}")
    return data


def check_keys(data: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        names = ", ".join(repr(k[:64]) for k in unknown[:8])
        raise SchemaError(_join(prefix, unknown[0][:64] or '""'), f"unknown key(s) {names}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def get_str(
    value: object, field: str, *, max_bytes: int, required: bool = False, name_like: bool = False
) -> str:
    """A string of at most ``max_bytes`` UTF-8 bytes, never with NUL; ``name_like``
    strings (names, labels: shown in tables and logs) have no control characters."""
    if not isinstance(value, str):
        raise SchemaError(field, f"expected a string, got {_kind(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SchemaError(field, "not valid Unicode (lone surrogate)") from None
    if size > max_bytes:
        raise SchemaError(field, f"{size} bytes, at most {max_bytes} allowed")
    if required and not value:
        raise SchemaError(field, "must not be empty")
    if "\x00" in value:
        raise SchemaError(field, "contains a NUL character")
    if name_like and any(unicodedata.category(c) == "Cc" for c in value):
        raise SchemaError(field, "contains a control character")
    return value


def get_int(value: object, field: str, *, low: int, high: int) -> int:
    # bool is an int in Python, never in a spec.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(field, f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise SchemaError(field, f"{value} outside [{low}, {high}]")
    return value


def get_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(field, f"expected true or false, got {_kind(value)}")
    return value


def get_list(value: object, field: str, *, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise SchemaError(field, f"expected an array, got {_kind(value)}")
    if len(value) > max_items:
        raise SchemaError(field, f"{len(value)} items, at most {max_items} allowed")
    return value


def get_hex(value: object, field: str, *, sizes: tuple[int, ...]) -> bytes:
    """Hex text of one of ``sizes`` bytes (0 allows the empty string)."""
    if not isinstance(value, str):
        raise SchemaError(field, f"expected a hex string, got {_kind(value)}")
    if len(value) > 2 * max(sizes):
        raise SchemaError(field, f"longer than {max(sizes)} bytes")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise SchemaError(field, "not hexadecimal") from None
    if len(raw) not in sizes:
        wanted = " or ".join(str(s) for s in sizes)
        raise SchemaError(field, f"{len(raw)} bytes, expected {wanted}")
    return raw


def parse_app_policy(data: object, prefix: str = "policy") -> AppPolicy:
    obj = get_object(data, prefix)
    check_keys(obj, POLICY_KEYS, prefix)
    labels_field = _join(prefix, "allowed_labels")
    labels = get_list(obj.get("allowed_labels", []), labels_field, max_items=Limits.MAX_LABELS)
    return AppPolicy(
        pinned=get_bool(obj.get("pinned", False), _join(prefix, "pinned")),
        pin_node=get_hex(obj.get("pin_node", ""), _join(prefix, "pin_node"), sizes=(0, HASH_SIZE)),
        allowed_labels=tuple(
            get_str(
                label,
                f"{labels_field}[{i}]",
                max_bytes=Limits.MAX_SHORT_STR,
                required=True,
                name_like=True,
            )
            for i, label in enumerate(labels)
        ),
        anti_affinity=get_str(
            obj.get("anti_affinity", ""),
            _join(prefix, "anti_affinity"),
            max_bytes=Limits.MAX_SHORT_STR,
            name_like=True,
        ),
        min_interval_slots=get_int(
            obj.get("min_interval_slots", 0),
            _join(prefix, "min_interval_slots"),
            low=0,
            high=U32_MAX,
        ),
        wait_for_state=get_bool(obj.get("wait_for_state", False), _join(prefix, "wait_for_state")),
    )


def parse_app_spec(data: object, prefix: str = "") -> AppSpec:
    """An :class:`AppSpec` from its JSON form; :class:`SchemaError` on any bad field.

    Checks the shape, the wire's limits and what ``validate_app_spec`` would refuse
    (empty name, a process without a command, a container without an image, resource
    hints outside [0, 10000], resource limits out of range, a process running as root),
    so that a refused spec names its field.
    """
    obj = get_object(data, prefix or "spec")
    check_keys(obj, SPEC_KEYS, prefix)
    if "name" not in obj:
        raise SchemaError(_join(prefix, "name"), "missing")
    name = get_str(
        obj["name"], _join(prefix, "name"), max_bytes=Limits.MAX_SHORT_STR, name_like=True
    )
    if not name.strip():
        raise SchemaError(_join(prefix, "name"), "must not be empty")
    runtime_text = obj.get("runtime", "process")
    if not isinstance(runtime_text, str) or runtime_text not in RUNTIMES:
        raise SchemaError(_join(prefix, "runtime"), 'expected "process" or "container"')
    runtime = RUNTIMES[runtime_text]
    image = get_str(
        obj.get("image", ""), _join(prefix, "image"), max_bytes=Limits.MAX_SHORT_STR, name_like=True
    )
    command_field = _join(prefix, "command")
    args = get_list(obj.get("command", []), command_field, max_items=Limits.MAX_COMMAND_ARGS)
    command = tuple(
        get_str(arg, f"{command_field}[{i}]", max_bytes=Limits.MAX_ARG_STR)
        for i, arg in enumerate(args)
    )
    if runtime is RuntimeKind.PROCESS and not command:
        raise SchemaError(command_field, "a process app needs a command")
    if runtime is RuntimeKind.PROCESS and not command[0]:
        raise SchemaError(f"{command_field}[0]", "must not be empty")
    if runtime is RuntimeKind.CONTAINER and not image:
        raise SchemaError(_join(prefix, "image"), "a container app needs an image")
    spec = AppSpec(
        name=name,
        runtime=runtime,
        image=image,
        command=command,
        cpu_bp=get_int(obj.get("cpu_bp", 0), _join(prefix, "cpu_bp"), low=0, high=BASIS_POINTS),
        ram_bp=get_int(obj.get("ram_bp", 0), _join(prefix, "ram_bp"), low=0, high=BASIS_POINTS),
        stateful=get_bool(obj.get("stateful", False), _join(prefix, "stateful")),
        policy=parse_app_policy(obj.get("policy", {}), _join(prefix, "policy")),
        replica_interval_slots=get_int(
            obj.get("replica_interval_slots", 0),
            _join(prefix, "replica_interval_slots"),
            low=0,
            high=U32_MAX,
        ),
        cpu_limit_millicores=get_int(
            obj.get("cpu_limit_millicores", 0),
            _join(prefix, "cpu_limit_millicores"),
            low=0,
            high=MAX_CPU_LIMIT_MILLICORES,
        ),
        memory_limit_bytes=get_int(
            obj.get("memory_limit_bytes", 0),
            _join(prefix, "memory_limit_bytes"),
            low=0,
            high=MAX_MEMORY_LIMIT_BYTES,
        ),
        state_limit_bytes=get_int(
            obj.get("state_limit_bytes", 0),
            _join(prefix, "state_limit_bytes"),
            low=0,
            high=MAX_STATE_LIMIT_BYTES,
        ),
        run_as_root=get_bool(obj.get("run_as_root", False), _join(prefix, "run_as_root")),
    )
    if spec.replica_interval_slots and not spec.stateful:
        raise SchemaError(_join(prefix, "replica_interval_slots"), "replicas need a stateful app")
    if spec.policy.wait_for_state and not spec.stateful:
        raise SchemaError(
            _join(_join(prefix, "policy"), "wait_for_state"), "only a stateful app has a state"
        )
    # The chain's own checks of the same limits, in case the two ever drift apart.
    problem = get_spec_encoding_error(spec) or get_spec_limits_error(spec)
    if problem is not None:
        field, _, message = problem.partition(": ")
        raise SchemaError(_join(prefix, field), message)
    return spec


def app_policy_to_json(policy: AppPolicy) -> dict[str, Any]:
    return {
        "pinned": policy.pinned,
        "pin_node": policy.pin_node.hex(),
        "allowed_labels": list(policy.allowed_labels),
        "anti_affinity": policy.anti_affinity,
        "min_interval_slots": policy.min_interval_slots,
        "wait_for_state": policy.wait_for_state,
    }


def app_spec_to_json(spec: AppSpec) -> dict[str, Any]:
    """The JSON form :func:`parse_app_spec` reads back to an equal spec."""
    return {
        "name": spec.name,
        "runtime": spec.runtime.name.lower(),
        "image": spec.image,
        "command": list(spec.command),
        "cpu_bp": spec.cpu_bp,
        "ram_bp": spec.ram_bp,
        "stateful": spec.stateful,
        "policy": app_policy_to_json(spec.policy),
        "replica_interval_slots": spec.replica_interval_slots,
        "cpu_limit_millicores": spec.cpu_limit_millicores,
        "memory_limit_bytes": spec.memory_limit_bytes,
        "state_limit_bytes": spec.state_limit_bytes,
        "run_as_root": spec.run_as_root,
    }


def parse_query_int(
    query: Mapping[str, str], name: str, *, default: int, low: int, high: int
) -> int:
    """An integer query parameter in [low, high]; SchemaError naming it otherwise."""
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise SchemaError(name, f"expected an integer >= {low}, got {text[:32]!r}")
    return get_int(int(text), name, low=low, high=high)


def check_query(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise SchemaError(unknown[0][:64] or '""', "unknown query parameter")
