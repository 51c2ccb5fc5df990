"""``edgechain status`` and ``edgechain nodes`` text: the CPU figures a node reports."""

from __future__ import annotations

from typing import Any

from edgechain.cli.fleet import format_nodes, format_status


def test_status_shows_the_cpu_share_and_what_it_is_of() -> None:
    base = {"chain_id": "c", "slot": 3, "apps": []}
    text = format_status(
        {**base, "cpu_bp": 4_250, "cpu_capacity": 0.25, "pressure_bp": 0}, "u", None
    )
    assert "42.5% of 0.25 cores" in text
    assert "cpu pressure" in text and "0.0%" in text
    text = format_status(
        {**base, "cpu_bp": 1_000, "cpu_capacity": None, "pressure_bp": 712}, "u", None
    )
    assert "10.0% of the host" in text and "7.1%" in text
    # An older node without the fields: nothing shown, nothing fails.
    assert "cpu use" not in format_status(base, "u", None)


def test_status_shows_the_chains_last_stall_when_there_was_one() -> None:
    base = {"chain_id": "c", "slot": 80, "apps": [], "stall": None}
    assert "stall" not in format_status(base, "u", None)
    stalled = {**base, "stall": {"before_slot": 36, "resumed_slot": 70}}
    assert "no block after slot 36 until 70" in format_status(stalled, "u", None)


def test_status_says_when_only_skip_blocks_come() -> None:
    base = {"chain_id": "c", "slot": 80, "apps": [], "skip_run": None}
    assert "skip blocks only" not in format_status(base, "u", None)
    passing = {**base, "skip_run": {"skip_blocks": 2, "since_slot": 78}}
    assert "skip blocks only" not in format_status(passing, "u", None)
    stuck = {**base, "skip_run": {"skip_blocks": 9, "since_slot": 62}}
    assert "9 in a row since slot 62: no committee reaches a majority" in format_status(
        stuck, "u", None
    )


def test_status_says_why_the_node_cannot_join() -> None:
    base = {"chain_id": "c", "slot": 80, "apps": [], "admission_problem": None}
    assert "cannot join" not in format_status(base, "u", None)
    refused = {**base, "admission_problem": "bad_admission_ticket"}
    assert "cannot join" in format_status(refused, "u", None)
    assert "bad_admission_ticket (its log says what to do)" in format_status(refused, "u", None)


def test_status_names_the_silent_voters_that_hold_finality_back() -> None:
    finality = {"voters": 6, "silent_voters": ["ab" * 32, "cd" * 32], "held_back": False}
    base = {"chain_id": "c", "slot": 80, "apps": [], "finality": finality}
    assert "finality held back" not in format_status(base, "u", None)
    held = {**base, "finality": {**finality, "held_back": True}}
    line = next(x for x in format_status(held, "u", None).splitlines() if "held back" in x)
    assert "2 of 6 voters silent (abababababab, cdcdcdcdcdcd)" in line
    assert "edgechain admin exclude NODE" in line


def test_status_shows_the_watchdog_and_its_restarts() -> None:
    base = {"chain_id": "c", "slot": 80, "apps": []}
    assert "watchdog" not in format_status(base, "u", None)  # an older node
    running = {**base, "watchdog": {"pid": 4242, "restarts": 2}}
    assert "pid 4242, restarted 2 times" in format_status(running, "u", None)
    ended = {**base, "watchdog": {"pid": None, "restarts": 0}}
    assert "not running, restarted 0 times" in format_status(ended, "u", None)


def test_nodes_show_their_reported_pressure_and_rtt() -> None:
    node = {"node_id": "ab" * 32, "status": "active", "cpu_bp": 10_000, "pressure_bp": 2_600}
    node["rtt_us"] = 1_234
    text = format_nodes([node, {"node_id": "cd" * 32, "cpu_bp": None, "pressure_bp": None}])
    header, first, second = text.splitlines()[:3]
    assert "PRESSURE" in header and "RTT" in header
    assert "100.0%" in first and "26.0%" in first and "1.23 ms" in first
    assert second.count("-") >= 3


def test_nodes_show_their_room_for_app_state() -> None:
    """Block format 17: why a node gets no apps (``ROOM``); ``-`` is no limit."""
    nodes: list[dict[str, Any]] = [
        {"node_id": "ab" * 32, "state_room_bytes": 3 * (1 << 30) // 2},
        {"node_id": "cd" * 32, "state_room_bytes": 0},
        {"node_id": "ef" * 32, "state_room_bytes": None},
    ]
    header, *rows = format_nodes(nodes).splitlines()[:4]
    column = header.split().index("ROOM")
    assert [row.split()[column] for row in rows] == ["1.5", "0", "-"]
    assert "1.5 GiB" in rows[0] and "0 KiB" in rows[1]


def test_nodes_show_the_runtimes_they_declared() -> None:
    nodes = [
        {"node_id": "ab" * 32, "labels": ["edgechain.transfer=1", "eu"]},
        {"node_id": "cd" * 32, "labels": ["edgechain.runtime=container"]},
        {"node_id": "ef" * 32, "labels": [
            "edgechain.runtime=container", "edgechain.runtime=container-root"]},
    ]  # fmt: skip
    header, *rows = format_nodes(nodes).splitlines()[:4]
    assert "RUNTIMES" in header
    assert [row.split()[2] for row in rows] == [
        "process",
        "process,container",
        "process,container+root",
    ]
    assert rows[0].split()[3] == "eu"
