"""The consensus and report figures of ``edgechain experiment paper``: Figs. 7, 8, 9
and 12 of the paper (§4.1-4.3), drawn from ``result.json``'s ``sim`` section.

matplotlib (Agg) is imported inside the functions only (``get_pyplot``), as in
``lab/balance_report.py``: the node and the simulator never load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgechain.cluster.kmeans import COORDINATE_QUORUM_BP
from edgechain.lab.paper.paper_numbers import FIG12_BOUND_SHARE
from edgechain.telemetry.cpu import compute_percentile

DPI = 100
ROLE_TITLES = {
    "producer": "block producer",
    "committee": "committee member",
    "representative": "cluster representative",
}


def get_pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def set_plain_ticks(axis: Any) -> None:
    """Tick labels as plain numbers (``6``, ``100``), not ``6x10^0``, on a log axis."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # Minor ticks: 2 and 5 of each decade only, or they run into each other.
    axis.set_minor_formatter(
        FuncFormatter(lambda value, _: f"{value:g}" if f"{value:e}"[0] in "25" else "")
    )


def place_legend(ax: Any) -> None:
    """The legend right of the panel, where it hides no data."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def save_figure(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    get_pyplot().close(fig)


def is_live(config: Mapping[str, Any]) -> bool:
    """A run of real node processes (``live_run.py``), not a simulation."""
    return config.get("mode") == "live"


def get_run_label(config: Mapping[str, Any]) -> str:
    if is_live(config):
        return (
            f"{config['nodes']} real node processes on one host, committee "
            f"{config['committee']}, {config['slot_duration_s']:g} s slots"
        )
    return (
        f"{config['nodes']} simulated nodes, committee {config['committee']}, "
        f"{config['slot_duration_s']:g} s slots, seed {config['seed']}"
    )


def get_node_axis_label(config: Mapping[str, Any]) -> str:
    return "node (n3 is node-003)" if is_live(config) else "node (index in the simulation)"


def plot_roles(sim: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Fig. 7: how often each node was elected to each role, one panel per role, with
    the count a uniform draw would give on average."""
    plt = get_pyplot()
    roles = sim["roles"]
    counts: Mapping[str, Sequence[int]] = roles["counts"]
    nodes = len(roles["nodes"])
    slots = int(config["slots_run"])
    expected = {
        "producer": slots / nodes,
        "committee": slots * min(config["committee"], nodes - 1) / nodes,
        "representative": sum(counts["representative"]) / nodes,
    }
    fig, axes = plt.subplots(len(counts), 1, figsize=(11, 2.6 * len(counts)), sharex=True)
    for ax, (role, values) in zip(axes, counts.items(), strict=True):
        ax.bar(range(nodes), values, width=1.0, color="tab:blue", label="times elected")
        ax.axhline(expected[role], color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"mean if uniform ({expected[role]:.2g})")  # fmt: skip
        ax.set_title(f"{ROLE_TITLES.get(role, role)}: "
                     f"{roles['elected_at_least_once'][role]} of {nodes} nodes elected at "
                     "least once", fontsize=10)  # fmt: skip
        ax.set_ylabel("times elected\n(slots)")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel(get_node_axis_label(config))
    fig.suptitle(f"Fig. 7: roles per node over {slots} slots ({get_run_label(config)})")
    save_figure(fig, path)


def plot_votes_and_block_times(
    sim: Mapping[str, Any], config: Mapping[str, Any], path: Path
) -> None:
    """Fig. 8: committee votes aggregated in each block, and when each block was first
    accepted, per slot; skip blocks and empty slots marked."""
    plt = get_pyplot()
    series = sim["slots"]
    slots, kinds = series["slot"], series["kind"]
    committee = int(config["committee"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    block_slots = [s for s, k in zip(slots, kinds, strict=True) if k == "block"]
    votes = [v for v, k in zip(series["votes"], kinds, strict=True) if k == "block"]
    top.bar(block_slots, votes, width=0.8, color="tab:blue", label="votes in the block")
    top.axhline(committee, color="black", linewidth=1, label=f"committee size ({committee})")
    top.axhline(committee // 2 + 1, color="tab:red", linestyle="--", linewidth=1,
                label=f"majority needed ({committee // 2 + 1})")  # fmt: skip
    skips = [s for s, k in zip(slots, kinds, strict=True) if k != "block"]
    if skips:
        top.scatter(skips, [0] * len(skips), marker="x", color="tab:red", zorder=3,
                    label="skip block or empty slot")  # fmt: skip
    top.set_ylabel("votes (committee members)")
    top.set_ylim(0, committee * 1.15 + 1)
    place_legend(top)
    top.grid(axis="y", alpha=0.3)
    times = [(s, t) for s, t in zip(slots, series["block_time_ms"], strict=True) if t is not None]
    bottom.plot([s for s, _ in times], [t for _, t in times], marker="o", markersize=3,
                color="tab:green", label="block first accepted")  # fmt: skip
    bottom.axhline(config["slot_duration_s"] * 1000, color="grey", linestyle=":",
                   label="slot length")  # fmt: skip
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("block time (ms after slot start)")
    bottom.set_xlabel("slot")
    place_legend(bottom)
    bottom.grid(alpha=0.3)
    fig.suptitle(f"Fig. 8: vote aggregation and block times ({get_run_label(config)})")
    save_figure(fig, path)


def plot_cpu_load(sim: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Fig. 9: the distribution over the nodes of the CPU load each last reported, per
    slot, as percentile bands (the reports the canonical chain carries)."""
    plt = get_pyplot()
    cpu = sim["cpu_load"]
    slots = cpu["slot"]
    dist: Sequence[Mapping[str, float | None]] = cpu["distribution_pct"]

    def column(name: str) -> list[float]:
        values = (d[name] for d in dist)
        return [float("nan") if v is None else float(v) for v in values]

    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.fill_between(slots, column("min"), column("max"), color="tab:blue", alpha=0.15,
                    label="min - max", step="mid")  # fmt: skip
    ax.fill_between(slots, column("p25"), column("p75"), color="tab:blue", alpha=0.35,
                    label="25th - 75th percentile", step="mid")  # fmt: skip
    ax.step(slots, column("p90"), where="mid", color="tab:purple", linestyle=":",
            label="90th percentile")  # fmt: skip
    ax.step(slots, column("p50"), where="mid", color="tab:blue", label="median")
    ax.step(slots, column("mean"), where="mid", color="black", linestyle="--", label="mean")
    ax.step(slots, column("max"), where="mid", color="tab:red", linewidth=0.8, label="max")
    if is_live(config) and config.get("first_slot") is not None:
        start = "every node undrained" if config.get("start_on_one_node") else "apps on chain"
        ax.axvline(config["first_slot"], color="tab:green", linestyle=":",
                   label=f"run slot 0: {start}")  # fmt: skip
    ax.set_xlabel("slot")
    ax.set_ylabel("node CPU load (% of one node,\nlatest report on chain)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    place_legend(ax)
    note = (
        "the nodes report their apps' measured CPU (% of the 1 core each offers)"
        if is_live(config)
        else "simulated apps report their constant CPU request: the spread changes only "
        "where apps are placed or moved"
    )
    ax.set_title(
        f"Fig. 9: CPU load over the nodes per slot ({get_run_label(config)}, "
        f"{config['apps']} apps)\n{note}",
        fontsize=10,
    )
    save_figure(fig, path)


def plot_reports(sim: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Fig. 12: the CDF of the time from a report's signing to its representative and
    to the block's producer, per-slot p50/p99 to the producer, and each block's
    share of the reports due that it carries."""
    plt = get_pyplot()
    reports = sim["reports"]
    slot_ms = config["slot_duration_s"] * 1000
    bound = FIG12_BOUND_SHARE * slot_ms
    fig = plt.figure(figsize=(11, 9))
    grid = fig.add_gridspec(3, 1, height_ratios=(2.2, 1.4, 1.4), hspace=0.45)
    cdf = fig.add_subplot(grid[0])
    for key, label, colour in (
        ("to_representative_ms", "to representative", "tab:orange"),
        ("to_producer_ms", "to producer", "tab:blue"),
    ):
        values = sorted(reports[key])
        if values:
            shares = [(i + 1) / len(values) * 100 for i in range(len(values))]
            cdf.step(values, shares, where="post", color=colour,
                     label=f"{label} ({len(values)} reports)")  # fmt: skip
    cdf.axvline(bound, color="tab:red", linestyle="--",
                label=f"paper's bound, scaled: {bound:.0f} ms (5.4 s of 16 s)")  # fmt: skip
    cdf.set_xscale("symlog", linthresh=10)
    top = max([bound, *reports["to_representative_ms"], *reports["to_producer_ms"]])
    cdf.set_xlim(0, top * 1.5)
    cdf.set_xticks([t for t in (0, 10, 100, 1_000, 10_000, 100_000) if t <= top * 1.5])
    set_plain_ticks(cdf.xaxis)
    cdf.xaxis.set_minor_formatter("")
    cdf.set_xlabel("time from the report's signing (ms, log scale above 10 ms)")
    cdf.set_ylabel("reports (cumulative %)")
    cdf.set_ylim(0, 101)
    cdf.legend(fontsize=8, loc="lower right")
    cdf.grid(alpha=0.3)
    cdf.set_title(f"Fig. 12: report propagation ({get_run_label(config)})", fontsize=10)
    per_slot = fig.add_subplot(grid[1])
    by_slot = get_percentiles_by_slot(reports["sample_slot"], reports["to_producer_ms"])
    per_slot.plot(list(by_slot), [v[0] for v in by_slot.values()], marker=".", label="p50")
    per_slot.plot(list(by_slot), [v[1] for v in by_slot.values()], marker=".", label="p99")
    per_slot.set_ylabel("to producer (ms)")
    per_slot.set_xlabel("slot of the block carrying the reports")
    per_slot.legend(fontsize=8, loc="upper right")
    per_slot.grid(alpha=0.3)
    inclusion = fig.add_subplot(grid[2], sharex=per_slot)
    shares = [
        100 * included / due if due else float("nan")
        for due, included in zip(reports["block_due"], reports["block_included"], strict=True)
    ]
    inclusion.plot(reports["block_slot"], shares, marker=".", color="tab:green",
                   label="reports due that the block carries")  # fmt: skip
    inclusion.set_ylim(0, 105)
    inclusion.set_ylabel("inclusion (%)")
    inclusion.set_xlabel("slot of the block")
    inclusion.legend(fontsize=8, loc="lower right")
    inclusion.grid(alpha=0.3)
    save_figure(fig, path)


def plot_cluster_latency(sim: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Our addition to §4.3: per slot, the mean one-way delay from a cluster member to
    its representative, with the overlay on network coordinates and, for the same
    validators and seed, on the reference's hash positions."""
    plt = get_pyplot()
    latency = sim["summary"]["cluster_latency"]
    rows = latency["by_slot"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    slots = [row[0] for row in rows]
    ax.plot(slots, [row[2] for row in rows], marker=".", color="tab:gray",
            label="hash positions (the reference implementation)")  # fmt: skip
    ax.plot(slots, [row[1] for row in rows], marker=".", color="tab:blue",
            label="network coordinates (Vivaldi, on the chain)")  # fmt: skip
    since = latency["coordinate_mode_from_slot"]
    if since is not None:
        ax.axvline(since, color="tab:green", linestyle=":",
                   label=f"{COORDINATE_QUORUM_BP // 100} % of validators have a "
                         f"coordinate (slot {since})")  # fmt: skip
    ax.set_xlabel("slot")
    ax.set_ylabel("member to representative, one way (ms, mean)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    place_legend(ax)
    ax.set_title(
        f"Cluster overlay locality, {config['geo_regions']} regions ({get_run_label(config)})",
        fontsize=10,
    )
    save_figure(fig, path)


def get_percentiles_by_slot(
    slots: Sequence[int], values: Sequence[int]
) -> dict[int, tuple[float, float]]:
    """Per slot, (p50, p99) of ``values`` (nearest rank), in slot order."""
    grouped: dict[int, list[int]] = {}
    for slot, value in zip(slots, values, strict=True):
        grouped.setdefault(slot, []).append(value)
    return {
        slot: (compute_percentile(v, 0.5), compute_percentile(v, 0.99))
        for slot, v in sorted(grouped.items())
    }
