"""lab/skip_causes.py on hand-written node log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgechain.lab.skip_causes import (
    Cause,
    compute_skip_causes,
    is_starved,
    parse_events,
    read_log_lines,
)


def line(msg: str, **fields: Any) -> str:
    return json.dumps({"t": 1.0, "level": "info", "msg": msg, **fields})


def proof(msg: str, slot: int, compute: int, cpu: int, queued: int = 0, delivery: int = 0) -> str:
    return line(
        msg, slot=slot, ms=compute + queued + delivery, queued_ms=queued, compute_ms=compute,
        cpu_ms=cpu, delivery_ms=delivery, nice=-20, group_nice=-20,
    )  # fmt: skip


def test_starved_is_less_than_two_thirds_of_the_wall_time_on_cpu() -> None:
    assert not is_starved(300, 290)
    assert not is_starved(300, 200)  # exactly 2/3
    assert is_starved(300, 199)
    assert is_starved(900, 250)


def test_each_cause_is_told_apart() -> None:
    logs = {
        "node-000": [
            line("vdf started", slot=3, iterations=100),
            proof("vdf dropped", 3, compute=700, cpu=240),  # off the CPU: starved
            line("vdf started", slot=4, iterations=100),
            proof("vdf dropped", 4, compute=700, cpu=690),  # had the CPU: too slow
            line("vote sent", slot=5),
        ],
        "node-001": [
            line("vdf started", slot=5, iterations=100),
            proof("vdf done", 5, compute=200, cpu=199),
            line("candidate sent", slot=5, to=3),
            line("skip vote sent", slot=3),
            line("skip vote sent", slot=5),
            line("vdf started", slot=7, iterations=100),
            "Traceback (most recent call last): not JSON, passed over",
            line("vdf started", slot=8, iterations=100),
            proof("vdf done", 8, compute=200, cpu=199, queued=150, delivery=300),
        ],
        "node-002": [line("skip vote sent", slot=3), line("block accepted", slot=3)],
    }
    causes = {c.slot: c for c in compute_skip_causes([3, 4, 5, 6, 7, 8], logs)}

    assert causes[3].cause is Cause.VDF_STARVED
    assert (causes[3].producer, causes[3].vdf_compute_ms, causes[3].vdf_cpu_ms) == (
        "node-000", 700, 240
    )  # fmt: skip
    assert (causes[3].votes, causes[3].skip_votes) == (0, 2)
    assert causes[4].cause is Cause.VDF_LATE
    assert causes[5].cause is Cause.NOT_ATTESTED
    assert (causes[5].votes, causes[5].skip_votes) == (1, 1)
    assert causes[6].cause is Cause.PRODUCER_SILENT and causes[6].producer is None
    assert causes[7].cause is Cause.VDF_UNFINISHED
    # Computed with the CPU, then waited for the event loop longer than it took.
    assert causes[8].cause is Cause.VDF_STARVED
    assert causes[3].to_json()["cause"] == "vdf_starved"
    assert list(causes) == [3, 4, 5, 6, 7, 8]


def test_only_the_asked_slots_and_events_are_kept() -> None:
    lines = [
        line("vote sent", slot=2),
        line("vote sent", slot=9),
        line("api listening", slot=2),
        json.dumps(["not", "an", "object", "slot"]),
    ]
    assert [e["slot"] for e in parse_events(lines, frozenset({2}))] == [2]


def test_a_node_that_never_started_has_no_lines(tmp_path: Path) -> None:
    assert read_log_lines(tmp_path / "missing.log") == []
    (tmp_path / "stderr.log").write_bytes(b'{"msg": "vote sent", "slot": 1}\n\xff\n')
    assert len(read_log_lines(tmp_path / "stderr.log")) == 2
