"""Block format 5: an app spec's resource limits and root opt-in, encoded and checked."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgechain.chain.command_encoding import (
    decode_app_spec,
    encode_app_spec,
    get_spec_encoding_error,
)
from edgechain.chain.model import (
    MAX_CPU_LIMIT_MILLICORES,
    MAX_MEMORY_LIMIT_BYTES,
    MAX_STATE_LIMIT_BYTES,
    MIN_CPU_LIMIT_MILLICORES,
    MIN_MEMORY_LIMIT_BYTES,
    MIN_STATE_LIMIT_BYTES,
    AppSpec,
    RuntimeKind,
)
from edgechain.chain.spec_checks import get_spec_limits_error, validate_app_spec
from edgechain.errors import DecodeError, RejectReason, ValidationError

CONTAINER = AppSpec("cache", RuntimeKind.CONTAINER, image="localhost/edgechain-apps:latest")
PROCESS = AppSpec("worker", RuntimeKind.PROCESS, command=("sleep", "60"))
LIMITS_BYTES = 4 + 8 + 8 + 1
"""u32 cpu_limit_millicores, u64 memory_limit_bytes, u64 state_limit_bytes, bool."""


def limited(spec: AppSpec = CONTAINER, **changes: object) -> AppSpec:
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_limits_default_to_none_and_are_keyword_only() -> None:
    assert (CONTAINER.cpu_limit_millicores, CONTAINER.memory_limit_bytes) == (0, 0)
    assert (CONTAINER.state_limit_bytes, CONTAINER.run_as_root) == (0, False)
    with pytest.raises(TypeError):
        AppSpec("x", RuntimeKind.PROCESS, "", (), 0, 0, False, CONTAINER.policy, 0, 500)  # type: ignore[call-arg]


def test_the_limits_end_the_encoding_in_order() -> None:
    spec = limited(
        cpu_limit_millicores=0x01020304,
        memory_limit_bytes=0x0506070809,
        state_limit_bytes=0x0A0B0C0D0E,
        run_as_root=True,
    )
    tail = encode_app_spec(spec)[-LIMITS_BYTES:]
    assert tail == (
        bytes.fromhex("01020304") + (0x0506070809).to_bytes(8, "big")
        + (0x0A0B0C0D0E).to_bytes(8, "big") + b"\x01"
    )  # fmt: skip
    assert encode_app_spec(CONTAINER)[-LIMITS_BYTES:] == bytes(LIMITS_BYTES)


@given(
    cpu=st.integers(0, 2**32 - 1),
    memory=st.integers(0, 2**64 - 1),
    state=st.integers(0, 2**64 - 1),
    root=st.booleans(),
)
def test_round_trip(cpu: int, memory: int, state: int, root: bool) -> None:
    spec = limited(
        cpu_limit_millicores=cpu, memory_limit_bytes=memory, state_limit_bytes=state,
        run_as_root=root,
    )  # fmt: skip
    encoded = encode_app_spec(spec)
    assert get_spec_encoding_error(spec) is None
    assert decode_app_spec(encoded) == spec
    assert encode_app_spec(decode_app_spec(encoded)) == encoded


def test_non_canonical_forms_are_refused() -> None:
    encoded = encode_app_spec(limited(run_as_root=True))
    with pytest.raises(DecodeError):
        decode_app_spec(encoded[:-1] + b"\x02")  # a boolean other than 0 or 1
    with pytest.raises(DecodeError):
        decode_app_spec(encoded + b"\x00")  # trailing bytes
    with pytest.raises(DecodeError):
        decode_app_spec(encoded[:-LIMITS_BYTES])  # a format-4 spec: the limits missing


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_limit_millicores", 2**32), ("memory_limit_bytes", 2**64), ("state_limit_bytes", -1)],
)
def test_values_beyond_the_wire_are_encoding_errors(field: str, value: int) -> None:
    changes: dict[str, Any] = {field: value}
    error = get_spec_encoding_error(dataclasses.replace(CONTAINER, **changes))
    assert error is not None and error.startswith(field)


def test_the_extremes_are_valid() -> None:
    for cpu, memory, state in (
        (MIN_CPU_LIMIT_MILLICORES, MIN_MEMORY_LIMIT_BYTES, MIN_STATE_LIMIT_BYTES),
        (MAX_CPU_LIMIT_MILLICORES, MAX_MEMORY_LIMIT_BYTES, MAX_STATE_LIMIT_BYTES),
    ):
        spec = limited(
            cpu_limit_millicores=cpu, memory_limit_bytes=memory, state_limit_bytes=state,
            run_as_root=True,
        )  # fmt: skip
        validate_app_spec(spec)
    # A process app may carry CPU and memory limits (nothing enforces them there).
    validate_app_spec(limited(PROCESS, cpu_limit_millicores=500, memory_limit_bytes=2**30))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (limited(cpu_limit_millicores=MIN_CPU_LIMIT_MILLICORES - 1), "cpu_limit_millicores"),
        (limited(cpu_limit_millicores=MAX_CPU_LIMIT_MILLICORES + 1), "cpu_limit_millicores"),
        (limited(memory_limit_bytes=4 * 1024 * 1024), "memory_limit_bytes"),
        (limited(memory_limit_bytes=MAX_MEMORY_LIMIT_BYTES + 1), "memory_limit_bytes"),
        (limited(state_limit_bytes=MIN_STATE_LIMIT_BYTES - 1), "state_limit_bytes"),
        (limited(state_limit_bytes=MAX_STATE_LIMIT_BYTES + 1), "state_limit_bytes"),
        (limited(PROCESS, run_as_root=True), "run_as_root"),
    ],
)
def test_validation_refuses(spec: AppSpec, field: str) -> None:
    error = get_spec_limits_error(spec)
    assert error is not None and error.startswith(field)
    with pytest.raises(ValidationError) as info:
        validate_app_spec(spec)
    assert info.value.reason == RejectReason.BAD_SUBMISSION
    assert field in str(info.value)
