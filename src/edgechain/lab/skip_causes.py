"""Why a testnet slot ended in a skip block, read from the nodes' own logs.

A skip block means the slot's committee saw no attested candidate by 2/3 of the slot
(``consensus/committee.py``). On a real host that has two different kinds of cause:

* the host's: the producer's VDF thread did not get the CPU (another process had it), so
  its proof came too late. The protocol is doing what it must;
* the protocol's: the producer never started, its VDF was too slow for its difficulty
  while it had the CPU, or a candidate was sent and still not attested.

The testnet summary lists one :class:`SkipCause` per skip slot, so a skip in a test or a
run is explained by what the nodes logged ("vdf started", "vdf done", "vdf dropped",
"candidate sent", "vote sent", "skip vote sent": ``node/vdf_worker.py`` and
``node/events.py``) instead of guessed at. Parsing is pure; reading the files is
:func:`read_log_lines`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

# A VDF thread that was on the CPU for less than 2/3 of its wall time was starved: an
# unloaded evaluation is CPU-bound, so its CPU time is its wall time (node/vdf_worker.py
# measures both in the thread).
STARVED_CPU_SHARE_NUM = 2
STARVED_CPU_SHARE_DEN = 3

_EVENTS = frozenset(
    {"vdf started", "vdf done", "vdf dropped", "candidate sent", "vote sent", "skip vote sent"}
)


class Cause(Enum):
    PRODUCER_SILENT = "producer_silent"  # no node started the slot's VDF
    VDF_STARVED = "vdf_starved"  # the proof came late because the host had the CPU
    VDF_LATE = "vdf_late"  # the proof came late while its thread had the CPU
    VDF_UNFINISHED = "vdf_unfinished"  # started, and no result or drop was logged
    NOT_ATTESTED = "not_attested"  # a candidate went out and no majority attested it


@dataclass(frozen=True)
class SkipCause:
    slot: int
    cause: Cause
    producer: str | None  # the node that started the slot's VDF
    vdf_compute_ms: int | None
    vdf_cpu_ms: int | None
    votes: int  # committee members that logged a vote for the slot
    skip_votes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "cause": self.cause.value,
            "producer": self.producer,
            "vdf_compute_ms": self.vdf_compute_ms,
            "vdf_cpu_ms": self.vdf_cpu_ms,
            "votes": self.votes,
            "skip_votes": self.skip_votes,
        }


def is_starved(compute_ms: int, cpu_ms: int) -> bool:
    """True if the VDF thread had the CPU for less than 2/3 of its wall time."""
    return cpu_ms * STARVED_CPU_SHARE_DEN < compute_ms * STARVED_CPU_SHARE_NUM


def parse_events(lines: Iterable[str], slots: frozenset[int]) -> list[dict[str, Any]]:
    """The slot events among a node's JSON log lines, for ``slots`` only; lines that are
    not JSON objects (a crash's traceback) are passed over."""
    events = []
    for line in lines:
        if '"slot"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") in _EVENTS and entry.get("slot") in slots:
            events.append(entry)
    return events


def compute_skip_causes(
    skip_slots: Iterable[int], logs: Mapping[str, Iterable[str]]
) -> list[SkipCause]:
    """One cause per skip slot, from every node's log lines (``logs``: node name to its
    ``stderr.log`` lines)."""
    slots = frozenset(skip_slots)
    per_slot: dict[int, list[tuple[str, dict[str, Any]]]] = {s: [] for s in slots}
    for name in sorted(logs):
        for event in parse_events(logs[name], slots):
            per_slot[event["slot"]].append((name, event))
    return [_classify(slot, per_slot[slot]) for slot in sorted(slots)]


def _classify(slot: int, events: list[tuple[str, dict[str, Any]]]) -> SkipCause:
    producer: str | None = None
    proof: dict[str, Any] | None = None
    sent = False
    votes = skip_votes = 0
    for name, event in events:
        msg = event["msg"]
        if msg == "vdf started":
            producer = name
        elif msg in ("vdf done", "vdf dropped") and name == producer:
            proof = event
        elif msg == "candidate sent" and name == producer:
            sent = True
        elif msg == "vote sent":
            votes += 1
        elif msg == "skip vote sent":
            skip_votes += 1
    compute = _int(proof, "compute_ms")
    cpu = _int(proof, "cpu_ms")
    waited = (_int(proof, "queued_ms") or 0) + (_int(proof, "delivery_ms") or 0)
    if producer is None:
        cause = Cause.PRODUCER_SILENT
    elif sent:
        cause = Cause.NOT_ATTESTED
    elif compute is None or cpu is None:
        cause = Cause.VDF_UNFINISHED
    elif is_starved(compute, cpu) or waited >= compute:
        # The thread was off the CPU, or the proof waited for a busy event loop (to
        # start, or to be handed over) longer than it took to compute.
        cause = Cause.VDF_STARVED
    else:
        cause = Cause.VDF_LATE
    return SkipCause(slot, cause, producer, compute, cpu, votes, skip_votes)


def _int(event: Mapping[str, Any] | None, key: str) -> int | None:
    value = None if event is None else event.get(key)
    return value if isinstance(value, int) else None


def read_log_lines(path: Path) -> list[str]:
    """A node's log lines; none if the file is missing (the node never started)."""
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


__all__ = [
    "Cause",
    "SkipCause",
    "compute_skip_causes",
    "is_starved",
    "parse_events",
    "read_log_lines",
]
