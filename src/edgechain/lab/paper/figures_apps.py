"""The orchestration figures of ``edgechain experiment paper`` (paper §4.2): the app
stacks per node (Fig. 11) of the simulated run and of the worst case, the worst case's
max/mean load over the slots for Algorithm 1 and our planner, and the migration times
(Fig. 10) when a ``benchmarks/migration.py`` JSON was given.

matplotlib is imported only when drawing (``figures.get_pyplot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.paper.figures import (
    get_pyplot,
    get_run_label,
    is_live,
    place_legend,
    save_figure,
    set_plain_ticks,
)
from edgechain.lab.paper.migration_table import REFERENCE, SEGMENTS
from edgechain.lab.paper.paper_numbers import TABLE3, get_paper_state_mb

PLANNER_LABELS = {"algorithm1": "paper's Algorithm 1", "edgechain": "our planner"}
PLANNER_COLOURS = {"algorithm1": "tab:orange", "edgechain": "tab:blue"}


def draw_stacks(
    ax: Any, stacks: Mapping[str, Sequence[float]], nodes: Sequence[str], colours: Any
) -> None:
    """One bar per node, one segment per app there; colours go by the app's place in
    its node's stack, so they do not name the same app on two nodes (as in the
    paper's Fig. 11)."""
    depth = max((len(stacks.get(n, ())) for n in nodes), default=0)
    # Thousands of apps on one node (the worst case's start): no white edges, or the
    # bar is all edge.
    edge = 0.2 if depth <= 60 else 0.0
    bottoms = [0.0] * len(nodes)
    for layer in range(depth):
        # Only the nodes with a layer-th app: one rectangle per app, not per node and layer.
        present = [i for i, n in enumerate(nodes) if layer < len(stacks.get(n, ()))]
        heights = [stacks[nodes[i]][layer] for i in present]
        ax.bar(present, heights, bottom=[bottoms[i] for i in present], width=0.85,
               color=colours(layer % 20), edgecolor="white", linewidth=edge)  # fmt: skip
        for i, height in zip(present, heights, strict=True):
            bottoms[i] += height
    step = max(1, len(nodes) // 24)
    ax.set_xticks(range(0, len(nodes), step), list(nodes)[::step], fontsize=7, rotation=90)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_sim_stacks(sim: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Fig. 11 of the simulated run: the apps the chain places on each node at a few
    slots, each at its CPU request."""
    plt = get_pyplot()
    stacks = sim["app_stacks"]
    moments = stacks["moments"]
    nodes = stacks["shown_nodes"]
    fig, axes = plt.subplots(1, len(moments), figsize=(3.4 * len(moments) + 1, 4.2),
                             sharey=True, squeeze=False)  # fmt: skip
    colours = plt.get_cmap("tab20")
    for ax, moment in zip(axes[0], moments, strict=True):
        draw_stacks(ax, stacks["stacks"][str(moment)], nodes, colours)
        queued = stacks["queued"][str(moment)]
        title = f"slot {moment}"
        if is_live(config) and config.get("first_slot") is not None:
            title += f" (run slot {moment - config['first_slot']})"
        ax.set_title(title + (f" ({queued} queued)" if queued else ""), fontsize=9)
        ax.set_xlabel("node")
    axes[0][0].set_ylabel(
        "apps' CPU as reported (% of a node's\ncore; one segment per app)"
        if is_live(config)
        else "apps' CPU (% of one node;\none segment per app)"
    )
    shown = (
        ""
        if len(nodes) == stacks["total_nodes"]
        else (f", the {len(nodes)} most loaded of {stacks['total_nodes']} nodes")
    )
    run = "live run" if is_live(config) else "simulated run"
    fig.suptitle(f"Fig. 11: apps per node in the {run} ({get_run_label(config)}, "
                 f"{config['apps']} apps{shown})", fontsize=10)  # fmt: skip
    save_figure(fig, path)


def plot_worst_case_stacks(worst: Mapping[str, Any], path: Path) -> None:
    """Fig. 11 of the worst case: every app starts on n0; one row per planner."""
    plt = get_pyplot()
    moments = worst["moments"]
    nodes = worst["shown_nodes"]
    planners = list(worst["stacks"])
    fig, axes = plt.subplots(len(planners), len(moments),
                             figsize=(3.4 * len(moments) + 1, 3.6 * len(planners)),
                             squeeze=False)  # fmt: skip
    colours = plt.get_cmap("tab20")
    for row, planner in zip(axes, planners, strict=True):
        for ax, moment in zip(row, moments, strict=True):
            draw_stacks(ax, worst["stacks"][planner][str(moment)], nodes, colours)
            ax.set_title(f"{PLANNER_LABELS.get(planner, planner)}, slot {moment}", fontsize=9)
        row[0].set_ylabel("apps' CPU demand\n(% of one node)")
    for ax in axes[-1]:
        ax.set_xlabel("node")
    shown = (
        ""
        if len(nodes) == worst["nodes"]
        else (f"; the {len(nodes)} most loaded of {worst['nodes']} nodes")
    )
    fig.suptitle(f"Fig. 11 (worst case): {worst['apps']} apps all on n0 at slot 0, "
                 f"{worst['nodes']} nodes{shown}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path)


def plot_worst_case(worst: Mapping[str, Any], path: Path) -> None:
    """§4.2's worst case over the slots: max/mean load for both planners (log scale)
    with the 1.25 bar, and the most loaded node's load beside the mean."""
    plt = get_pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    bar = worst["balanced_ratio"]
    for planner, run in worst["planners"].items():
        # Slot 0 is the start (every app on one node), before the first plan.
        ratios = [
            r if r is not None else float("nan")
            for r in [run["initial_ratio"], *run["ratio_by_slot"]]
        ]
        balanced = run["slots_to_balance"]
        label = (
            f"{PLANNER_LABELS.get(planner, planner)}: "
            + (f"<= {bar} at slot {balanced}" if balanced is not None else f"never <= {bar}")
            + f", {run['migrations']} migrations"
        )
        colour = PLANNER_COLOURS.get(planner)
        top.plot(range(len(ratios)), ratios, color=colour, label=label)
        if balanced is not None:
            top.axvline(balanced, color=colour, linestyle=":", linewidth=1)
        loads = run["max_load_pct_by_slot"]
        bottom.plot(range(len(loads)), loads, color=colour,
                    label=f"most loaded node, {PLANNER_LABELS.get(planner, planner)}")  # fmt: skip
    simulated = worst.get("simulated")
    if simulated and simulated.get("undrain_at") is not None:
        # Slot 0 here: the admin's undrain (every app ran on the first node).
        start = simulated["undrain_at"]
        points = sorted(
            (int(slot) - start, ratio)
            for slot, ratio in simulated["max_over_mean_by_slot"].items()
            if int(slot) >= start
        )
        balanced = simulated["slots_to_balance"]
        label = (
            f"our planner, simulated network ({simulated['nodes']} nodes, {simulated['apps']} "
            "apps, real engines): "
            + (f"<= {bar} at slot {balanced}" if balanced is not None else f"never <= {bar}")
            + f", {simulated['migrations']} migrations"
        )
        top.plot([p[0] for p in points], [p[1] for p in points], color="tab:purple",
                 linestyle="-.", label=label)  # fmt: skip
    top.axhline(bar, color="tab:green", linestyle="--", label=f"max/mean = {bar}")
    top.set_yscale("log")
    top.set_ylim(bottom=1)
    set_plain_ticks(top.yaxis)
    top.set_ylabel("max / mean node load\n(log scale)")
    place_legend(top)
    top.grid(alpha=0.3, which="both")
    top.set_title(
        f"Worst case (§4.2): {worst['apps']} apps of 1.1-7.9 % CPU all on one of "
        f"{worst['nodes']} nodes, seed {worst['seed']}",
        fontsize=10,
    )
    mean = next(iter(worst["planners"].values()))["mean_load_pct"]
    bottom.axhline(mean, color="black", linestyle="--", label=f"mean over nodes ({mean:.1f} %)")
    bottom.set_yscale("log")
    set_plain_ticks(bottom.yaxis)
    bottom.set_ylabel("CPU demand (% of one node,\nlog scale)")
    bottom.set_xlabel("slot (0: before the first plan)")
    place_legend(bottom)
    bottom.grid(alpha=0.3, which="both")
    save_figure(fig, path)


def plot_migration(migration: Mapping[str, Any], path: Path) -> None:
    """Fig. 10: the median of each segment, with min-max whiskers, for our runs (each
    file's state size) and the paper's two paths (log scale)."""
    plt = get_pyplot()
    series: list[tuple[str, list[tuple[float, float, float] | None]]] = []
    labels: dict[tuple[str, str, float | None], dict[str, tuple[float, float, float]]] = {}
    for row in migration["rows"]:
        s = row["stats"]
        key = (row["source"], row["label"], row["state_mb"])
        labels.setdefault(key, {})[row["segment"]] = (s["median_ms"], s["min_ms"], s["max_ms"])
    for (source, label, state_mb), by_segment in labels.items():
        name = "reference impl., standard" if label == REFERENCE else f"ours ({label})"
        size = f", {state_mb:.1f} MB" if state_mb is not None else ""
        series.append((f"{name}{size} [{source}]", [by_segment.get(s) for s in SEGMENTS]))
    for kind in ("CRIU", "Standard"):
        rows = {r.segment: r for r in TABLE3 if r.kind == kind}
        series.append((f"paper, {kind}, {get_paper_state_mb(kind):.1f} MB", [
            (rows[s].median_ms, rows[s].min_ms, rows[s].max_ms) for s in SEGMENTS
        ]))  # fmt: skip
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(series)
    colours = plt.get_cmap("tab10")
    for index, (name, values) in enumerate(series):
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(SEGMENTS))]
        present = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        medians = [v[0] for _, v in present]
        errors = [[v[0] - v[1] for _, v in present], [v[2] - v[0] for _, v in present]]
        ax.bar([x for x, _ in present], medians, width=width, color=colours(index % 10),
               yerr=errors, capsize=2, label=name)  # fmt: skip
    ax.set_xticks(range(len(SEGMENTS)), list(SEGMENTS))
    ax.set_yscale("log")
    set_plain_ticks(ax.yaxis)
    ax.set_ylabel("time (ms, median; whiskers min-max)")
    ax.set_xlabel("migration segment")
    place_legend(ax)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_title(f"Fig. 10 / Table 3: migration times, our runtime ({migration['runtime']}) "
                 "beside the paper", fontsize=10)  # fmt: skip
    save_figure(fig, path)
