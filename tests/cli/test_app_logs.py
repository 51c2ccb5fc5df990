"""``edgechain apps logs`` text: which node's output comes first, and what it says."""

from __future__ import annotations

from edgechain.cli.app_logs import format_logs, order_logs


def test_the_node_the_chain_places_the_app_on_comes_last() -> None:
    placed = "cc" * 32
    logs = [
        {"node_id": placed, "running": True, "lines": ["new"], "truncated": False},
        {"node_id": "aa" * 32, "running": False, "lines": ["old 1", "old 2"], "truncated": True},
    ]
    ordered = order_logs(logs, placed)
    assert [log["node_id"] for log in ordered] == ["aa" * 32, placed]
    text = format_logs(ordered, placed, 2).splitlines()
    assert text == [
        "==> node aaaaaaaaaaaa (not running here) <==",
        "[earlier output not shown: --lines 8]",
        "old 1",
        "old 2",
        "==> node cccccccccccc (running here, where the chain places it) <==",
        "new",
    ]


def test_one_nodes_output_is_printed_bare() -> None:
    logs = [{"node_id": "aa" * 32, "running": True, "lines": ["x", "y"], "truncated": False}]
    assert format_logs(logs, "aa" * 32, 100) == "x\ny"
