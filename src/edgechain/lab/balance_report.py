"""The figures of a balance run (``lab/balance.py``), its readable report and its plot.

The plot follows the paper's figures: the CPU load of every node over the slots with
the mean (Fig. 9), and stacked bars of the apps on each node at a few slots, each
segment one app's measured load (Fig. 11). Loads are the host's measurement of the
nodes' app processes, in % of each node's declared capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BAR_PANELS = 4
"""Fig. 11's panels: slot 0, two slots in between, the last slot."""


def compute_ratio(loads: Mapping[str, float]) -> float | None:
    """max / mean over every node (None when nothing runs anywhere)."""
    if not loads:
        return None
    mean = sum(loads.values()) / len(loads)
    return max(loads.values()) / mean if mean > 0 else None


def find_slots_to_even(
    ratios: Sequence[tuple[int, float | None]], limit: float, hold: int
) -> int | None:
    """The first slot k >= 0 whose ratio and those of the ``hold - 1`` samples after it
    are all at most ``limit`` (``ratios``: (slot, ratio), one sample a slot, in slot
    order; a slot the sampler missed is no sample, not a break in the run)."""
    for index, (slot, _) in enumerate(ratios):
        window = [r for _, r in ratios[index : index + hold]]
        if slot >= 0 and len(window) == hold and all(r is not None and r <= limit for r in window):
            return slot
    return None


def count_moves(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> int:
    """Apps whose node changed (an app new or gone on either side is no move)."""
    return sum(
        1
        for app, node in after.items()
        if app in before and before[app] is not None and node is not None and node != before[app]
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def add_windows(series: list[dict[str, Any]], window: int) -> None:
    """Each sample's loads over the last ``window`` samples (the CPU used over their
    spans), in place: ``load_avg_pct``, ``ratio_avg``, the same of the apps plus the
    node process (``total_avg_pct``, ``total_ratio_avg``), and the max/mean of the
    ``cpu_bp`` the nodes last reported (``reported_ratio``: what the planner sees)."""
    for index, entry in enumerate(series):
        recent = series[max(0, index - window + 1) : index + 1]
        span = sum(e["span_s"] for e in recent) or 1.0
        for key, out, ratio in (("load_pct", "load_avg_pct", "ratio_avg"),
                                ("total_pct", "total_avg_pct", "total_ratio_avg")):  # fmt: skip
            loads = {
                node: round(sum(e[key].get(node, 0.0) * e["span_s"] for e in recent) / span, 1)
                for node in entry[key]
            }
            entry[out] = loads
            entry[ratio] = _round(compute_ratio(loads))
        entry["mean_avg_pct"] = (
            round(sum(entry["load_avg_pct"].values()) / len(entry["load_avg_pct"]), 1)
            if entry["load_avg_pct"]
            else None
        )
        reported = {
            n: float(bp) for n, bp in entry["reported_cpu_bp"].items() if isinstance(bp, int)
        }
        entry["reported_ratio"] = _round(compute_ratio(reported))


def summarize_series(
    series: list[dict[str, Any]], slot0: int | None, limit: float, hold: int, window: int
) -> dict[str, Any]:
    """Slots relative to slot 0 and the loads over ``window`` slots (set in ``series``
    in place), ``slots_to_even`` of the apps' load (``slots_to_even_total``: apps and
    node process; ``slots_to_even_reported``: the ``cpu_bp`` the nodes reported), the
    figures at slot 0 and at the end, the range of the reported ``cpu_bp``."""
    if slot0 is not None:
        for entry in series:
            entry["slot"] = entry["chain_slot"] - slot0
    add_windows(series, window)
    measured = [e for e in series if "slot" in e]
    apps = [(int(e["slot"]), e["ratio_avg"]) for e in measured]
    totals = [(int(e["slot"]), e["total_ratio_avg"]) for e in measured]
    reported = [(int(e["slot"]), e["reported_ratio"]) for e in measured]
    out: dict[str, Any] = {
        "slot0_chain_slot": slot0,
        "slots_to_even": find_slots_to_even(apps, limit, hold),
        "slots_to_even_total": find_slots_to_even(totals, limit, hold),
        "slots_to_even_reported": find_slots_to_even(reported, limit, hold),
        "start": None,
        "end": None,
    }
    shown = ("slot", "load_avg_pct", "mean_avg_pct", "ratio_avg", "total_avg_pct",
             "total_ratio_avg", "reported_ratio", "apps_chain")  # fmt: skip
    at = {e["slot"]: e for e in measured}
    for key, chosen in (("start", at.get(0)), ("end", measured[-1] if measured else None)):
        if chosen is not None:
            out[key] = {k: chosen[k] for k in shown}
    bps = [bp for e in series for bp in e["reported_cpu_bp"].values() if isinstance(bp, int)]
    out["reported_cpu_bp_range"] = [min(bps), max(bps)] if bps else None
    return out


def _loads(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    loads = " ".join(f"{n[-3:]}:{v:g}" for n, v in sorted(entry["load_avg_pct"].items()))
    return (
        f"{loads} (mean {entry['mean_avg_pct']}, max/mean {entry['ratio_avg']}; with the "
        f"node processes {entry['total_ratio_avg']}; reported {entry['reported_ratio']})"
    )


def format_report(result: Mapping[str, Any]) -> str:
    """A readable summary of one run."""
    p = result.get("params") or {}
    migrations = result.get("migrations") or {}
    end = result.get("end") or {}
    lines = [
        f"balance: {p.get('nodes')} nodes of {p.get('cpu_capacity')} cores, {p.get('apps')} "
        f"cpu-load apps of {p.get('share_percent')} % of a core (request cpu_bp "
        f"{p.get('request_cpu_bp')}), slot {p.get('slot_s')} s, all submitted to "
        f"{result.get('host_node')}",
        f"  ready after {result.get('ready_after_s')} s, all on one node after "
        f"{result.get('all_on_host_after_s')} s; undrain sent in chain slot "
        f"{result.get('slot0_chain_slot')} (slot 0), applied by slot "
        f"{result.get('undrained_slot')}",
        f"  app load, % of capacity over {p.get('window_slots')} slots, at slot 0: "
        f"{_loads(result.get('start'))}",
        f"  at the end (slot {end.get('slot')}): {_loads(end)}",
        f"  slots to even (max/mean <= {p.get('even_ratio')} for {p.get('even_hold')} slots): "
        f"{result.get('slots_to_even')} (apps), {result.get('slots_to_even_total')} (apps "
        f"and node processes), {result.get('slots_to_even_reported')} (as reported)",
        f"  apps per node at the end: {result.get('apps_per_node_end')}",
        f"  migrations: {migrations.get('total')} (per slot {migrations.get('per_slot')}), "
        f"at most {migrations.get('most_moves_of_an_app')} of one app",
        f"  max unfrozen copies of an app: {result.get('max_copies')}; reported cpu_bp range "
        f"{result.get('reported_cpu_bp_range')}",
        f"  {result.get('elapsed_s')} s in all; run dir {result.get('run_dir')}",
    ]
    if result.get("final_problems"):
        lines.append(f"  NOT SETTLED at the end: {result['final_problems']}")
    if result.get("leftover_processes"):
        lines.append(f"  LEFTOVER PROCESSES: {result['leftover_processes']}")
    if result.get("error"):
        lines.append(f"  ERROR: {result['error']}")
    return "\n".join(lines)


def pick_bar_slots(slots: Sequence[int], panels: int = BAR_PANELS) -> list[int]:
    """Slot 0, the last slot and evenly spaced slots between (each one measured)."""
    measured = sorted(s for s in slots if s >= 0)
    if not measured:
        return []
    if len(measured) <= panels:
        return measured
    step = (len(measured) - 1) / (panels - 1)
    return sorted({measured[round(i * step)] for i in range(panels)})


def plot_balance(result: Mapping[str, Any], path: Path) -> None:
    """Fig. 9 (load per node over slots, with the mean) above Fig. 11 (stacked app
    loads per node at a few slots), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [e for e in result.get("series") or [] if "slot" in e]
    p = result.get("params") or {}
    nodes = sorted({n for e in series for n in e["load_avg_pct"]})
    bar_slots = pick_bar_slots([int(e["slot"]) for e in series])
    fig = plt.figure(figsize=(12, 10))
    grid = fig.add_gridspec(3, max(1, len(bar_slots)), height_ratios=(3, 1.4, 2), hspace=0.45)
    top = fig.add_subplot(grid[0, :])
    slots = [e["slot"] for e in series]
    colours = plt.get_cmap("tab10")
    for index, node in enumerate(nodes):
        top.plot(slots, [e["load_avg_pct"].get(node, 0) for e in series], label=node,
                 color=colours(index % 10), linewidth=1.2)  # fmt: skip
    top.plot(slots, [e["mean_avg_pct"] for e in series], label="mean", color="black",
             linewidth=2.2, linestyle="--")  # fmt: skip
    top.axvline(0, color="grey", linewidth=0.8)
    top.annotate("undrain", (0, 1), xycoords=("data", "axes fraction"), fontsize=8,
                 xytext=(3, -12), textcoords="offset points")  # fmt: skip
    even = result.get("slots_to_even")
    if even is not None:
        top.axvline(even, color="green", linewidth=0.8, linestyle=":")
        top.annotate(f"even (max/mean <= {p.get('even_ratio')})", (even, 1),
                     xycoords=("data", "axes fraction"), fontsize=8, color="green",
                     xytext=(3, -24), textcoords="offset points")  # fmt: skip
    top.set_xlabel("slot (0: the other nodes undrained)")
    top.set_ylabel(
        f"app CPU load, % of {p.get('cpu_capacity')} cores\n(over {p.get('window_slots')} slots)"
    )
    top.set_title(
        f"{p.get('apps')} cpu-load apps ({p.get('share_percent')} % of a core each) submitted "
        f"to {result.get('host_node')}: measured app load per node"
    )
    top.legend(fontsize=8, ncol=5, loc="upper right")
    top.grid(alpha=0.3)
    _plot_ratios(fig.add_subplot(grid[1, :], sharex=top), series, p)
    by_slot = {e["slot"]: e for e in series}
    for column, slot in enumerate(bar_slots):
        ax = fig.add_subplot(grid[2, column])
        _stack_apps(ax, by_slot[slot], nodes, colours)
        ax.set_title(f"slot {slot}", fontsize=9)
        ax.set_xticks(range(len(nodes)), [n[-3:] for n in nodes], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        if column == 0:
            ax.set_ylabel("app load, % of capacity", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_ratios(ax: Any, series: list[Mapping[str, Any]], p: Mapping[str, Any]) -> None:
    """max/mean over the nodes: the apps' load, with the node processes, as reported."""
    slots = [e["slot"] for e in series]
    lines = (
        ("ratio_avg", "apps (host)", "-"),
        ("total_ratio_avg", "apps + node process (host)", "--"),
        ("reported_ratio", "reported cpu_bp (planner's view)", ":"),
    )
    for key, label, style in lines:
        ax.plot(slots, [e[key] for e in series], label=label, linestyle=style, linewidth=1.4)
    ax.axhline(p.get("even_ratio") or 1.25, color="green", linewidth=0.8)
    ax.set_ylim(0.9, 3.0)
    ax.set_ylabel("max / mean", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)


def _stack_apps(ax: Any, entry: Mapping[str, Any], nodes: list[str], colours: Any) -> None:
    """One bar per node, one segment per app running there (its measured load)."""
    bottoms = dict.fromkeys(nodes, 0.0)
    for index, (_, (node, load)) in enumerate(sorted(entry["app_load_pct"].items())):
        if node not in bottoms:
            continue
        ax.bar(nodes.index(node), load, bottom=bottoms[node], color=colours(index % 10),
               edgecolor="white", linewidth=0.4)  # fmt: skip
        bottoms[node] += load
