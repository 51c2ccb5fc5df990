"""The balance lab's figures, report and plot on a synthetic run (no testnet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgechain.lab.balance_report import (
    add_windows,
    compute_ratio,
    count_moves,
    find_slots_to_even,
    format_report,
    pick_bar_slots,
    plot_balance,
    summarize_series,
)


def test_ratio_is_max_over_mean_of_every_node() -> None:
    assert compute_ratio({"a": 40.0, "b": 0.0, "c": 0.0, "d": 0.0}) == 4.0
    assert compute_ratio({"a": 10.0, "b": 12.0}) == 12.0 / 11.0
    assert compute_ratio({"a": 0.0}) is None
    assert compute_ratio({}) is None


def test_even_needs_the_hold_in_a_row_from_slot_zero_on() -> None:
    ratios: list[tuple[int, float | None]] = [
        (-1, 1.0), (0, 4.0), (1, 1.2), (2, 1.3), (3, 1.2), (4, 1.1), (6, 1.25), (7, 2.0),
    ]  # fmt: skip
    assert find_slots_to_even(ratios, 1.25, 3) == 3  # slot 5 was not sampled: 3, 4, 6
    assert find_slots_to_even(ratios, 1.25, 4) is None
    assert find_slots_to_even(ratios, 1.3, 3) == 1
    assert find_slots_to_even([(0, None), (1, 1.0)], 1.25, 1) == 1
    assert find_slots_to_even([(-3, 1.0), (-2, 1.0), (-1, 1.0)], 1.25, 3) is None


def test_moves_count_apps_whose_node_changed() -> None:
    before = {"x": "n0", "y": "n0", "z": None, "gone": "n1"}
    after = {"x": "n1", "y": "n0", "z": "n2", "new": "n3"}
    assert count_moves(before, after) == 1


def test_windows_weigh_each_sample_by_its_span() -> None:
    series: list[dict[str, Any]] = [
        {"span_s": 1.0, "load_pct": {"a": 10.0, "b": 0.0}, "total_pct": {"a": 10.0, "b": 0.0},
         "reported_cpu_bp": {"a": 3_000, "b": None}},
        {"span_s": 3.0, "load_pct": {"a": 2.0, "b": 6.0}, "total_pct": {"a": 4.0, "b": 6.0},
         "reported_cpu_bp": {"a": 3_000, "b": 1_000}},
    ]  # fmt: skip
    add_windows(series, 2)
    assert series[0]["load_avg_pct"] == {"a": 10.0, "b": 0.0}
    assert series[1]["load_avg_pct"] == {"a": 4.0, "b": 4.5}  # (10 + 6) / 4, 18 / 4
    assert series[1]["ratio_avg"] == round(4.5 / 4.25, 3)
    assert series[1]["total_avg_pct"] == {"a": 5.5, "b": 4.5}
    assert series[0]["reported_ratio"] == 1.0  # a node that has not reported is left out
    assert series[1]["reported_ratio"] == 1.5


def test_bar_slots_span_the_run() -> None:
    assert pick_bar_slots([-2, -1, 0, 1, 2]) == [0, 1, 2]
    assert pick_bar_slots(list(range(-2, 31))) == [0, 10, 20, 30]
    assert pick_bar_slots([-1]) == []


def _run(slots: int = 12) -> dict[str, Any]:
    nodes = [f"node-00{i}" for i in range(4)]
    series = []
    for k in range(-2, slots + 1):
        moved = min(max(k, 0), 9)  # one app a slot leaves node-000 for the others
        where = {f"load-{i:02d}": nodes[0] if i >= moved else nodes[1 + i % 3] for i in range(12)}
        apps = {name: [node, 8.0] for name, node in where.items()}
        load = {n: 8.0 * sum(1 for node in where.values() if node == n) for n in nodes}
        series.append({
            "chain_slot": 100 + k, "span_s": 1.0, "load_pct": load,
            "total_pct": {n: v + 20.0 for n, v in load.items()},
            "ratio": compute_ratio(load), "node_process_pct": dict.fromkeys(nodes, 20.0),
            "apps_chain": {n: sum(1 for v in where.values() if v == n) for n in nodes},
            "reported_cpu_bp": dict.fromkeys(nodes, 5_000), "app_load_pct": apps,
        })  # fmt: skip
    return {
        "params": {"nodes": 4, "apps": 12, "cpu_capacity": 0.5, "share_percent": 2,
                   "even_ratio": 1.25, "even_hold": 3, "slot_s": 1.0, "window_slots": 1},
        "host_node": "node-000", "series": series, "max_copies": 1, "error": None,
        "migrations": {"total": 9, "per_slot": {}, "most_moves_of_an_app": 1},
    }  # fmt: skip


def test_summary_report_and_plot(tmp_path: Path) -> None:
    result = _run()
    result.update(summarize_series(result["series"], 100, 1.25, 3, 1))
    assert result["series"][0]["slot"] == -2
    assert result["start"]["ratio_avg"] == 4.0
    assert result["slots_to_even"] == 9  # all 12 apps spread 3 each from slot 9 on
    assert result["slots_to_even_total"] == 8  # the node processes' 20 % each even them sooner
    assert result["end"]["apps_chain"] == {"node-000": 3, "node-001": 3, "node-002": 3,
                                           "node-003": 3}  # fmt: skip
    assert result["reported_cpu_bp_range"] == [5_000, 5_000]
    assert result["slots_to_even_reported"] == 0
    text = format_report(result)
    assert "slots to even" in text and "ERROR" not in text
    plot = tmp_path / "fig" / "balance.png"
    plot_balance(result, plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
