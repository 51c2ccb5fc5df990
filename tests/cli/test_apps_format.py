"""``edgechain apps list`` and ``show``: the chain's view of each app, and what the
app's node says of its copy (a crash loop is known only there)."""

from __future__ import annotations

from typing import Any

from edgechain.cli import apps as cli_apps
from edgechain.cli import apps_format
from edgechain.cli.apps import add_copies
from edgechain.cli.apps_format import describe_copy, format_app, format_apps
from edgechain.runtime import disk_guard, restart_backoff

A, B = "aa" * 32, "bb" * 32
NODE, OTHER = "11" * 32, "22" * 32


def _view(app: str, name: str, node: str | None, local: Any = None) -> dict[str, Any]:
    return {"app_id": app, "name": name, "state": "running", "version": 1, "node": node,
            "runtime": "process", "reported_on": [], "local": local}  # fmt: skip


def _copy(app: str, node: str, status: str, **more: Any) -> dict[str, Any]:
    return {"app": app, "node": node, "status": status, "running": status == "running",
            "restarts": 0, "last_exit": None, "next_restart_in_s": None, **more}  # fmt: skip


def test_the_cli_reads_the_status_the_runtime_writes() -> None:
    assert apps_format.CRASH_LOOPING == restart_backoff.CRASH_LOOPING
    assert apps_format.DISK_FULL == disk_guard.DISK_FULL


def test_an_app_its_node_holds_for_filling_the_disk_says_so() -> None:
    hold = "stopped by its node: the disk had 40 MiB free, under the node's reserve of 64 MiB"
    held = _copy(A, NODE, "disk_full", hold=hold)
    views = [_view(A, "filler", NODE), _view(B, "web", OTHER)]
    add_copies(views, {(A, NODE): held})
    rows = format_apps(views).splitlines()
    assert rows[1].split()[2] == "disk_full"
    assert rows[-1] == f"filler ({A[:12]}) on {NODE[:12]}: disk_full: {hold}"
    assert f"disk_full: {hold}" in format_app(views[0])


def test_an_app_whose_copy_started_without_its_state_says_so() -> None:
    """Its node's runtime view carries the note (``app_starter.StateLoss``): ``apps
    list`` adds a line under the table, ``apps show`` a field; an app that kept its
    state shows neither."""
    lost = "started at slot 271 (recover) without its state: no replica of it reached"
    views = [_view(A, "counter", NODE), _view(B, "web", OTHER)]
    add_copies(
        views,
        {
            (A, NODE): _copy(A, NODE, "running", state_lost=lost),
            (B, OTHER): _copy(B, OTHER, "running"),
        },
    )
    rows = format_apps(views).splitlines()
    assert rows[1].split()[2] == "running"
    assert rows[-1] == f"counter ({A[:12]}) on {NODE[:12]}: {lost}"
    assert rows[-2] == "2 apps"
    assert [" ".join(line.split()) for line in format_app(views[0]).splitlines()][-1] == (
        f"state lost {lost}"
    )
    assert "state lost" not in format_app(views[1])


def test_each_app_gets_the_copy_on_its_own_node() -> None:
    failing = _copy(A, NODE, "crash_looping", restarts=3, last_exit="exit code 2",
                    next_restart_in_s=6.5)  # fmt: skip
    stale = _copy(B, OTHER, "stopped")
    views = [
        _view(A, "flaky", NODE),
        _view(B, "web", NODE, local=stale),  # the answering node's copy is not its node's
        _view("cc" * 32, "queued", None),
        _view("dd" * 32, "own", OTHER, local=_copy("dd" * 32, OTHER, "running")),
    ]
    add_copies(views, {(A, NODE): failing, (B, OTHER): stale})
    assert [v["on_node"] for v in views[:3]] == [failing, None, None]
    assert views[3]["on_node"]["status"] == "running"  # the answering node's own
    text = format_apps(views)
    header, *rows = text.splitlines()
    assert header.split()[2] == "STATE"
    assert rows[0].split()[2] == "crash_looping"  # flaky, sorted by name
    assert [r.split()[2] for r in rows[1:4]] == ["running", "running", "running"]
    assert rows[4] == "4 apps"
    assert rows[5] == (
        f"flaky ({A[:12]}) on {NODE[:12]}: crash_looping: 3 restarts, "
        "last exit: exit code 2, next restart in 6.5 s"
    )
    assert "on its node" in format_app(views[0])
    assert "crash_looping: 3 restarts" in format_app(views[0])
    assert "on its node" not in format_app(_view(A, "flaky", NODE))  # not asked


def test_runs_on_drops_a_node_whose_copy_says_it_no_longer_runs() -> None:
    """A report comes every few slots: after ``apps stop`` the chain listed the app on
    its node for up to 4 slots. The node's own runtime view is fresher: a copy there
    that does not run (stopped, or waiting to restart) drops out of RUNS ON; a node
    that said nothing keeps the chain's word. ``reported_on`` itself is the chain's."""
    third = "33" * 32
    view = {**_view(A, "counter", NODE), "state": "stopped", "reported_on": [NODE, OTHER, third]}
    copies = {(A, NODE): _copy(A, NODE, "stopped"), (A, OTHER): _copy(A, OTHER, "running")}
    add_copies([view], copies)
    assert view["runs_on"] == [OTHER, third]
    assert view["reported_on"] == [NODE, OTHER, third]
    row = format_apps([view]).splitlines()[1]
    assert row.split()[-1] == f"{OTHER[:12]},{third[:12]}"
    # The answering node's own copy counts as its node's.
    local = {**_view(A, "counter", NODE, local=_copy(A, NODE, "stopped")), "reported_on": [NODE]}
    add_copies([local], {})
    assert local["runs_on"] == []
    assert format_apps([local]).splitlines()[1].split()[-1] == "-"


def test_describe_copy() -> None:
    assert describe_copy(None) is None
    assert describe_copy(_copy(A, NODE, "running")) == "running"
    assert describe_copy(_copy(A, NODE, "running", restarts=2, last_exit="killed by SIGKILL")) == (
        "running: 2 restarts, last exit: killed by SIGKILL"
    )


def test_a_move_waiting_for_disk_room_says_why() -> None:
    """Block format 17: the planner holds a move back while the destination's room is
    not more than twice the state, or the origin's less than the state."""
    mib = 1 << 20
    view = {**_view(A, "big", NODE), "move_to": OTHER, "state_bytes": 150 * mib}
    nodes = [
        {"node_id": NODE, "state_room_bytes": 200 * mib},
        {"node_id": OTHER, "state_room_bytes": 106 * mib},
    ]
    wait = cli_apps.describe_move_wait(view, nodes)
    assert wait is not None and "room on 222222222222" in wait and "300.0 MiB" in wait
    nodes[1]["state_room_bytes"] = 301 * mib
    assert cli_apps.describe_move_wait(view, nodes) is None
    nodes[0]["state_room_bytes"] = 100 * mib  # the origin cannot write it out
    wait = cli_apps.describe_move_wait(view, nodes)
    assert wait is not None and "room on 111111111111 to write the state out" in wait
    nodes[0]["state_room_bytes"] = None  # not measured: no limit
    assert cli_apps.describe_move_wait(view, nodes) is None
    assert cli_apps.describe_move_wait({**view, "state_bytes": None}, nodes) is None
    text = format_app({**view, "move_wait": "for room on x"})
    assert "150.0 MiB" in text and "move waits" in text and "for room on x" in text


def test_an_app_waiting_for_its_state_says_so() -> None:
    """Block format 18: with ``policy.wait_for_state`` an app whose node is down waits
    for a node holding its state; `apps show` says so while its node is down."""
    view = {**_view(A, "db", NODE), "state_node": OTHER}
    nodes = [{"node_id": NODE, "status": "down"}, {"node_id": OTHER, "status": "down"}]
    wait = cli_apps.describe_state_wait(view, nodes)
    assert wait is not None and "its node 111111111111 is down" in wait
    assert "or 222222222222, which holds its state," in wait and "apps move" in wait
    assert cli_apps.describe_state_wait({**view, "state_node": None}, nodes) is not None
    nodes[0]["status"] = "active"
    assert cli_apps.describe_state_wait(view, nodes) is None
    gone = [{"node_id": OTHER, "status": "active"}]
    left = cli_apps.describe_state_wait(view, gone)
    assert left is not None and "is out of the validator set" in left
    text = format_app({**view, "state_wait": "its node x is down"})
    assert "waits for its state" in text and "its node x is down" in text
    assert "state held on" in text and OTHER in text
