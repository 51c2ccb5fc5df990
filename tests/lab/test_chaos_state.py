"""The chaos run's state continuity (``lab/chaos_state.py``), on a run directory laid
out as the nodes lay theirs out: app logs, state counts, replica stores."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from edgechain.lab.chaos_faults import KILL, PARTITION_HALVES, Fault
from edgechain.lab.chaos_state import StateWatch, get_state_violations
from edgechain.lab.faults_live import Instance, LiveTestnet
from edgechain.runtime.replica import META_FILE, REPLICAS_DIR

APP = "ab" * 32


def _copy(run: Path, node: str, pid: int, started_from: int, count: int) -> Instance:
    """A running copy on ``node`` that logged its start and has counted to ``count``."""
    app_dir = run / node / "apps" / APP
    (app_dir / "state").mkdir(parents=True, exist_ok=True)
    with (app_dir / "app.log").open("a") as log:
        log.write(f"counter: starting from {started_from}\n")
    (app_dir / "state" / "count").write_text(str(count))
    return Instance(pid, node, APP, "tag", False, time.time() - 1.0)


def _replica(run: Path, node: str, count: int) -> None:
    app_dir = run / node / REPLICAS_DIR / APP
    app_dir.mkdir(parents=True)
    data = str(count).encode()
    with tarfile.open(app_dir / "7-x.tar", "w") as tar:
        member = tarfile.TarInfo("state/count")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    (app_dir / META_FILE).write_text(json.dumps({"archive": "7-x.tar", "slot": 7}))


def _watch(run: Path) -> StateWatch:
    return StateWatch(cast(LiveTestnet, SimpleNamespace(run_dir=run)))


def test_a_copy_resumed_from_its_state_is_no_violation(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    first = watch.observe([_copy(tmp_path, "node-001", 10, 0, 40)])
    assert [(s.started_from, s.highest_before, s.is_from_nothing) for s in first] == [
        (0, 0, False)  # the app's first copy
    ]
    moved = watch.observe([_copy(tmp_path, "node-002", 11, 38, 39)])
    assert [(s.node, s.started_from, s.highest_before, s.count_lost) for s in moved] == [
        ("node-002", 38, 40, 2)
    ]
    assert watch.observe([_copy(tmp_path, "node-002", 11, 38, 45)]) == []  # known copy
    assert get_state_violations(watch.starts, None) == []
    report = watch.to_json()
    assert (report["starts"], report["resumed_below_highest"], report["max_count_lost"]) == (
        2, 1, 2
    )  # fmt: skip
    assert report["from_nothing"] == []


def test_a_start_from_nothing_while_a_replica_was_held_is_state_lost(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    watch.observe([_copy(tmp_path, "node-001", 10, 0, 40)])
    _replica(tmp_path, "node-003", 36)
    (lost,) = watch.observe([_copy(tmp_path, "node-002", 11, 0, 1)])
    assert lost.is_from_nothing and lost.replicas == (("node-003", 36),)
    kill = Fault(1, KILL, 3, (1,))
    (violation,) = get_state_violations([lost], kill)
    assert violation["held_by"] == ["node-003"] and violation["highest_before"] == 40
    # Not when the only replica was on the failed node, nor under a network fault.
    assert get_state_violations([lost], Fault(1, KILL, 3, (3,))) == []
    assert get_state_violations([lost], Fault(1, PARTITION_HALVES, 3, (0, 1))) == []
    assert watch.to_json()["from_nothing"][0]["replicas"] == [["node-003", 36]]


def test_a_start_from_nothing_is_matched_with_its_node_telling_of_it(tmp_path: Path) -> None:
    """Session 64: a node logs a start that lost the app's state; the report says, for
    each start from nothing, whether its node told of it, and counts the silent ones.
    Another app's warning, or another node's, does not count."""
    watch = _watch(tmp_path)
    watch.observe([_copy(tmp_path, "node-001", 10, 0, 40)])
    watch.observe([_copy(tmp_path, "node-002", 11, 0, 1)])
    report = watch.to_json()
    assert [s["told"] for s in report["from_nothing"]] == [False]
    assert report["from_nothing_untold"] == 1

    def event(app: str) -> str:
        return json.dumps(
            {"level": "warning", "msg": "app started without its state", "app": app[:16]}
        )

    other = "cd" * 32
    (tmp_path / "node-001" / "stderr.log").write_text(event(APP) + "\n")  # not that node
    (tmp_path / "node-002" / "stderr.log").write_text(
        f'{{"msg": "app started", "app": "{APP[:16]}"}}\n{event(other)}\nnot json\n'
    )
    assert watch.to_json()["from_nothing_untold"] == 1
    # Its node's log, kept apart after a full disk replaced the data directory.
    kept = tmp_path / "node-002-logs"
    kept.mkdir()
    (kept / "stderr.log").write_text(event(APP) + "\n")
    report = watch.to_json()
    assert [s["told"] for s in report["from_nothing"]] == [True]
    assert report["from_nothing_untold"] == 0


def test_a_copy_whose_start_line_never_shows_is_given_up(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    silent = Instance(12, "node-004", APP, "tag", False, time.time())  # no log at all
    assert watch.observe([silent]) == []
    assert watch.to_json()["starts"] == 0
