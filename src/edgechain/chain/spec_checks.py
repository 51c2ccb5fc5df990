"""Whether an app spec is one the chain can carry and a runtime can start.

Shared by block validation (``chain/validation.py``), the command rules
(``orchestrator/commands.py``) and the API's schema (``api/schema.py``), which names a
refused field before anything is signed.
"""

from __future__ import annotations

from edgechain.chain.command_encoding import get_spec_encoding_error
from edgechain.chain.model import (
    BASIS_POINTS,
    MAX_CPU_LIMIT_MILLICORES,
    MAX_MEMORY_LIMIT_BYTES,
    MAX_STATE_LIMIT_BYTES,
    MIN_CPU_LIMIT_MILLICORES,
    MIN_MEMORY_LIMIT_BYTES,
    MIN_STATE_LIMIT_BYTES,
    AppSpec,
    RuntimeKind,
)
from edgechain.errors import RejectReason, ValidationError


def is_share(v: int) -> bool:
    """A share in basis points: 0..10000."""
    return 0 <= v <= BASIS_POINTS


def validate_app_spec(spec: AppSpec) -> None:
    """A spec the chain can carry and a runtime can start (the wire's limits included:
    a field the decoder refuses would make the whole block undecodable)."""
    error = get_spec_encoding_error(spec)
    if error is not None:
        raise ValidationError(RejectReason.BAD_SUBMISSION, error)
    if not spec.name:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "empty name")
    if spec.runtime is RuntimeKind.PROCESS and not spec.command:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "process app without a command")
    if spec.runtime is RuntimeKind.CONTAINER and not spec.image:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "container app without an image")
    if not (is_share(spec.cpu_bp) and is_share(spec.ram_bp)):
        raise ValidationError(RejectReason.BAD_SUBMISSION, "resource hint outside [0, 10000]")
    if spec.replica_interval_slots and not spec.stateful:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "replicas of an app without state")
    if spec.policy.wait_for_state and not spec.stateful:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "waiting for the state of no state")
    error = get_spec_limits_error(spec)
    if error is not None:
        raise ValidationError(RejectReason.BAD_SUBMISSION, error)


def _get_range_error(name: str, value: int, low: int, high: int) -> str | None:
    """Why a limit is out of range (0 is always allowed: no limit), or None."""
    if value == 0 or low <= value <= high:
        return None
    return f"{name}: {value} outside [{low}, {high}] (0: no limit)"


def get_spec_limits_error(spec: AppSpec) -> str | None:
    """Why the spec's resource limits or root opt-in are refused (``"field: why"``), or
    None. Shared with the API's schema so a refused field is named before signing.

    The minima are what engines refuse (a limit no node could start would queue the app
    forever); the maxima are sanity bounds well inside the encoding's widths.
    """
    for name, value, low, high in (
        (
            "cpu_limit_millicores",
            spec.cpu_limit_millicores,
            MIN_CPU_LIMIT_MILLICORES,
            MAX_CPU_LIMIT_MILLICORES,
        ),
        (
            "memory_limit_bytes",
            spec.memory_limit_bytes,
            MIN_MEMORY_LIMIT_BYTES,
            MAX_MEMORY_LIMIT_BYTES,
        ),
        ("state_limit_bytes", spec.state_limit_bytes, MIN_STATE_LIMIT_BYTES, MAX_STATE_LIMIT_BYTES),
    ):
        error = _get_range_error(name, value, low, high)
        if error is not None:
            return error
    if spec.run_as_root and spec.runtime is not RuntimeKind.CONTAINER:
        # DESIGN.md: apps never run as root; only a container's own root (an operator's
        # explicit opt-in per node) is allowed.
        return "run_as_root: only a container app may run as root"
    return None
