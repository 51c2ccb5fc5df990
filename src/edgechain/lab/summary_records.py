"""The records a testnet summary is computed from, and their parsing.

The nodes' HTTP answers (``/blocks``, ``/chain``, ``/status``) parsed into small frozen
records (JSON of another shape is a :class:`RecordError`), and what the launcher itself
knows (when each node process ran, which nodes it killed). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class RecordError(ValueError):
    """A node answered with JSON that does not have the documented shape."""


@dataclass(frozen=True)
class BlockRecord:
    """One entry of a node's ``GET /blocks``: a block it accepted, and when."""

    hash: str
    slot: int
    skip: bool
    signers: int
    producer: str | None
    excluded: str | None
    accepted_ms: int
    reports_due: int | None = None
    reports_due_carried: int | None = None
    report_to_producer_ms: tuple[int, ...] | None = None
    """The block's report figures (``node/report_times.py``; null when not measured)."""


@dataclass(frozen=True)
class ChainEntry:
    """One entry of a node's ``GET /chain`` (canonical chain, genesis exclusive)."""

    hash: str
    slot: int
    skip: bool


@dataclass(frozen=True)
class CanonicalBlock:
    """A canonical chain entry joined with who produced it or whom it excluded."""

    hash: str
    slot: int
    skip: bool
    producer: str | None
    excluded: str | None


@dataclass(frozen=True)
class Interval:
    """Wall-clock span (ms since epoch) one incarnation of a node process ran."""

    start_ms: int
    end_ms: int | None = None
    """None: still running when the data was collected."""

    def contains(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms and (self.end_ms is None or t_ms <= self.end_ms)


@dataclass(frozen=True)
class HeadObservation:
    """A node's head slot and validator count seen together in one ``/status``."""

    head_slot: int
    validators: int


@dataclass(frozen=True)
class KillRecord:
    """A node the launcher killed with SIGKILL (and possibly restarted)."""

    name: str
    node_id: str
    kill_slot: int
    kill_ms: int
    restart_slot: int | None = None
    restart_ms: int | None = None


# --- parsing --------------------------------------------------------------------------


def _field(entry: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordError(f"field {name!r} missing or not {kind}: {value!r}")
    return value


def _count(value: Any) -> int:
    """``signers`` as a number: the node sends a count, a list is accepted as well."""
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise RecordError(f"field 'signers' is not a count or a list: {value!r}")
    return len(value) if isinstance(value, list) else value


def parse_block_records(data: Any) -> list[BlockRecord]:
    if not isinstance(data, list):
        raise RecordError("GET /blocks did not return a list")
    return [
        BlockRecord(
            hash=_field(entry, "hash", str),
            slot=_field(entry, "slot", int),
            skip=_field(entry, "skip", bool),
            signers=_count(entry.get("signers")),
            producer=_field(entry, "producer", (str, type(None))),
            excluded=_field(entry, "excluded", (str, type(None))),
            accepted_ms=_field(entry, "accepted_ms", int),
            reports_due=_optional_count(entry, "reports_due"),
            reports_due_carried=_optional_count(entry, "reports_due_carried"),
            report_to_producer_ms=_optional_counts(entry, "report_to_producer_ms"),
        )
        for entry in data
    ]


def _optional_count(entry: Mapping[str, Any], name: str) -> int | None:
    value = entry.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecordError(f"field {name!r} is not a count or null: {value!r}")
    return value


def _optional_counts(entry: Mapping[str, Any], name: str) -> tuple[int, ...] | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or any(
        isinstance(v, bool) or not isinstance(v, int) for v in value
    ):
        raise RecordError(f"field {name!r} is not a list of counts or null: {value!r}")
    return tuple(value)


def parse_chain(data: Any) -> list[ChainEntry]:
    if not isinstance(data, list):
        raise RecordError("GET /chain did not return a list")
    return [
        ChainEntry(
            hash=_field(entry, "hash", str),
            slot=_field(entry, "slot", int),
            skip=_field(entry, "skip", bool),
        )
        for entry in data
    ]


def count_validators(value: Any) -> int:
    """``/status`` ``validators``: a count (a list of ids is accepted as well)."""
    return len(value) if isinstance(value, list) else int(value or 0)
