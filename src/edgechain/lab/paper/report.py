"""``report.md`` of ``edgechain experiment paper``: the headline table (each of our
numbers beside the paper's, with the section or figure it comes from), one section per
figure, and what the run did not measure or only approximates.

Every number is read from the result dict that is also written as ``result.json``,
so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgechain.cluster.kmeans import COORDINATE_QUORUM_BP
from edgechain.cluster.vivaldi import MAX_STEP_US
from edgechain.lab.paper import paper_numbers as paper
from edgechain.lab.paper.migration_table import format_table3, get_median

MIGRATION_COMMAND = ".venv/bin/python benchmarks/migration.py --json migration.json"


def format_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def format_ms(value: Any) -> str:
    return "-" if value is None else f"{value} ms"


def is_live(result: Mapping[str, Any]) -> bool:
    """A live testnet's result (``live_run.py``): its figures' data is under ``live``."""
    return "live" in result


def get_network_cell(result: Mapping[str, Any]) -> str:
    config = result["config"]
    kind = "real node processes on one host" if is_live(result) else "simulated nodes"
    return (
        f"{config['nodes']} {kind}, committee {config['committee']}, "
        f"{config['slot_duration_s']:g} s slots, {config['slots_run']} slots"
    )


def get_headline(result: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, this run, the paper, where in the paper) rows."""
    data = result["live"] if is_live(result) else result["sim"]  # the same keys
    config, summary, roles = result["config"], data["summary"], data["roles"]
    nodes = config["nodes"]
    elected = roles["elected_at_least_once"]
    worst = result["worst_case"]
    ours, alg1 = worst["planners"]["edgechain"], worst["planners"]["algorithm1"]
    votes, times = summary["votes_per_block"], summary["block_time_ms"]
    rep, prod = summary["report_to_representative_ms"], summary["report_to_producer_ms"]
    bound_ms = round(paper.FIG12_BOUND_SHARE * config["slot_duration_s"] * 1000)
    rows = [
        ("network", get_network_cell(result),
         f"{paper.FIG8_NODES} nodes, committee {paper.FIG8_COMMITTEE}, "
         f"{paper.FIG8_SLOT_S} s slots; {paper.FIG7_SLOTS} slots in Fig. 7", "§4.1"),
        ("nodes elected at least once: producer / committee / representative",
         f"{elected['producer']} / {elected['committee']} / {elected['representative']} "
         f"of {nodes}", "every node into every role (producer with some variance)",
         "§4.1, Fig. 7"),
        ("blocks / skip blocks / empty slots",
         f"{summary['blocks']} / {summary['skip_blocks']} / {summary['empty_slots']}",
         f"every block accepted, {paper.FIG8_SKIP_BLOCKS} skip blocks", "§4.1, Fig. 8"),
        ("votes per block (min / mean / max)",
         f"{votes['min']} / {votes['mean']} / {votes['max']} of {config['committee']}",
         "above the majority threshold in every block", "§4.1, Fig. 8"),
        ("block time after slot start (p50 / max)",
         f"{format_ms(times['p50'])} / {format_ms(times['max'])}",
         "almost no variance", "§4.1, Fig. 8"),
        ("reports due that their slot's block carries",
         f"{format_pct(summary['report_inclusion'])} of {summary['reports_due']}",
         "not given", "§4.3"),
        ("report to representative (p50 / p99)",
         "not measured by real nodes" if is_live(result)
         else f"{format_ms(rep['p50'])} / {format_ms(rep['p99'])}",
         f"within {paper.FIG12_BOUND_S} s (16 s slots)", "§4.3, Fig. 12"),
        ("report to producer (p50 / p99)",
         f"{format_ms(prod['p50'])} / {format_ms(prod['p99'])} "
         f"(bound scaled to our slot: {bound_ms} ms)",
         f"within {paper.FIG12_BOUND_S} s (16 s slots)", "§4.3, Fig. 12"),
        (f"worst case, {worst['apps']} apps on one of {worst['nodes']} nodes: slots until "
         f"max/mean <= {worst['balanced_ratio']}",
         f"our planner {format_slots(ours)}; Algorithm 1 {format_slots(alg1)}",
         "no number: \"a gradual decline\" (Fig. 9)", "§4.2, Figs. 9, 11"),
        ("worst case: migrations spent",
         f"our planner {ours['migrations']} (at most {ours['max_migrations_in_one_slot']} "
         f"a slot); Algorithm 1 {alg1['migrations']}", "not given", "§4.2"),
    ]  # fmt: skip
    rows += get_migration_headline(result.get("migration"))
    return rows


def format_slots(run: Mapping[str, Any]) -> str:
    balanced = run["slots_to_balance"]
    if balanced is None:
        return f"not within {run['slots']} slots (max/mean {run['final_ratio']:.1f} at the end)"
    return f"{balanced} slots"


def get_migration_headline(migration: Mapping[str, Any] | None) -> list[tuple[str, str, str, str]]:
    criu = {r.segment: r.median_ms for r in paper.TABLE3 if r.kind == "CRIU"}
    if migration is None:
        return [("migration save / transmit / resume (median)", "not measured in this run",
                 f"CRIU {criu['save']:.0f} / {criu['transmit']:.0f} / {criu['resume']:.0f} ms",
                 "§4.2, Table 3")]  # fmt: skip
    runtime = migration["runtime"]
    ours = [get_median(migration, runtime, s) for s in ("save", "transmit", "resume")]
    shown = " / ".join("-" if v is None else f"{v:,.0f}" for v in ours)
    return [(f"migration save / transmit / resume (median, {runtime})", f"{shown} ms",
             f"CRIU {criu['save']:.0f} / {criu['transmit']:.0f} / {criu['resume']:.0f} ms",
             "§4.2, Table 3")]  # fmt: skip


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def get_figure_line(result: Mapping[str, Any], key: str, caption: str) -> str:
    name = result["figures"].get(key)
    return f"![{caption}]({name})" if name else f"({caption}: not drawn)"


def get_migration_section(result: Mapping[str, Any]) -> list[str]:
    migration = result.get("migration")
    if migration is None:
        return [
            "Fig. 10 / Table 3 were **not measured in this run**: this command runs no "
            "migration. Measure them with the migration benchmark (real migrations of a "
            "stateful app between two runtimes on loopback) and pass its JSON:",
            "",
            "```",
            MIGRATION_COMMAND,
            "edgechain experiment paper --sim --migration-json migration.json ...",
            "```",
            "",
            "The paper's Table 3 for reference:",
            "",
            format_table3({"rows": []}),
        ]
    notes = [f"* {n}" for n in migration["notes"]]
    return [
        f"Read from {', '.join(migration['files'])}; our runtime: `{migration['runtime']}`. "
        "SD is `-` where the JSON holds neither per-run samples nor an SD.",
        "",
        format_table3(migration),
        "",
        *notes,
        *([""] if notes else []),
        get_figure_line(result, "fig10", "Fig. 10: migration times"),
    ]


def get_worst_case_table(worst: Mapping[str, Any]) -> str:
    headers = (
        "planner",
        f"slots to max/mean <= {worst['balanced_ratio']}",
        "migrations",
        "most in one slot",
        "final max/mean",
        "back and forth",
    )
    keys = ("slots_to_balance", "migrations", "max_migrations_in_one_slot", "final_ratio",
            "back_and_forth")  # fmt: skip
    rows = [(name, *(str(run[key]) for key in keys)) for name, run in worst["planners"].items()]
    simulated = worst.get("simulated")
    if simulated:
        ratios = list(simulated["max_over_mean_by_slot"].values())
        rows.append(
            (
                f"edgechain, simulated network "
                f"({simulated['nodes']} nodes, {simulated['apps']} apps)",
                str(simulated["slots_to_balance"]),
                str(simulated["migrations"]),
                "-",
                str(ratios[-1] if ratios else "-"),
                "-",
            )
        )
    return format_table(headers, rows)


def get_simulated_worst_case_lines(worst: Mapping[str, Any]) -> list[str]:
    simulated = worst.get("simulated")
    if not simulated:
        return ["The worst case was not run on the simulated network (`--worst-sim-slots 0`)."]
    costs = simulated.get("migration_costs_ms") or {}
    downtime = costs.get("downtime_ms") or {}
    return [
        f"The same worst case on the **simulated network** ({simulated['nodes']} real "
        f"engines, committee {simulated['committee']}, 2 s slots, {simulated['slots']} "
        "slots; `sim/app_worst_case.py`): the admin drains every node but the first, "
        f"submits {simulated['apps']} apps of the same mixed loads (steady, "
        "`--app-load mixed`), and undrains the others once all run on the first; the "
        "chain's planner then spreads them, with migrations timed from "
        "`docs/results/migration.md` (`--app-transfer modelled`). From the undrain "
        f"command (slot {simulated['undrain_at']}): max/mean <= 1.25 after "
        f"**{simulated['slots_to_balance']} slots**, {simulated['migrations']} migrations, "
        f"downtime p50 {downtime.get('p50')} ms, max {downtime.get('max')} ms; at most "
        f"{simulated['max_copies_seen']} copy of any app; violations: "
        f"{len(simulated['violations'])}.",
    ]


def get_overlay_section(result: Mapping[str, Any]) -> list[str]:
    """With ``--geo-regions``: how near each member's representative is (our addition)."""
    latency = result["sim"]["summary"].get("cluster_latency")
    if latency is None:
        return []
    ours, hashed = latency["overlay"], latency["hash_positions"]
    rows = [
        ("network coordinates", ours),
        ("hash positions (reference), same validators and seeds", hashed),
    ]
    return [
        "## Cluster overlay locality (not in the paper)",
        "",
        f"Nodes in {result['config']['geo_regions']} regions, one-way delay 1 ms + 10 µs/km "
        "(`sim/geography.py`). Each node's Vivaldi coordinate comes from RTT samples to "
        "random validators (`cluster/vivaldi.py`); the chain moves its copy by at most "
        f"{MAX_STEP_US // 1000} ms per report, and k-means clusters on the copies once "
        f"{COORDINATE_QUORUM_BP // 100} % of the "
        f"validators have one (from slot {latency['coordinate_mode_from_slot']}). The "
        "representative is still drawn from the slot's seed among the members. Delay "
        "from each member to its representative, over the "
        f"{latency['coordinate_mode_slots']} slots clustered on coordinates:",
        "",
        format_table(
            ("overlay", "mean", "p50", "p99", "member-slots"),
            [
                (
                    name,
                    format_ms(v["mean_ms"]),
                    format_ms(v["p50_ms"]),
                    format_ms(v["p99_ms"]),
                    str(v["count"]),
                )
                for name, v in rows
            ],
        ),
        "",
        get_figure_line(result, "overlay", "cluster overlay locality"),
        "",
    ]


def write_report(result: Mapping[str, Any]) -> str:
    """The whole ``report.md`` of a simulated run (a live one's: ``report_live.py``)."""
    config, summary = result["config"], result["sim"]["summary"]
    worst = result["worst_case"]
    cpu = result["sim"]["cpu_load"]
    stopped = config["slots_run"] < config["slots"]
    lines = [
        "# The paper's evaluation (§4), reproduced in simulation",
        "",
        f"Command: `{config['command']}`",
        "",
        f"Simulated: {config['nodes']} nodes, committee {config['committee']}, "
        f"{config['slots_run']} of {config['slots']} slots of {config['slot_duration_s']:g} s, "
        f"{config['apps']} apps, latency {config['latency_ms'][0]}-{config['latency_ms'][1]} "
        f"ms a message, seed {config['seed']}, "
        + ("genesis holding every node" if config["preset_genesis"] else "nodes joining")
        + f". Runtime recorded for the migration table: `{config['runtime']}`. "
        f"Violations of the simulator's invariants: {len(summary['violations'])}.",
        *(["", f"**Stopped by --max-wall after {config['slots_run']} slots.**"] if stopped else []),
        "",
        "## Headline: this run beside the paper",
        "",
        format_table(("what", "this run", "paper", "where"), get_headline(result)),
        "",
        "## Fig. 7: roles per node",
        "",
        get_figure_line(result, "fig7", "Fig. 7: roles per node"),
        "",
        "## Fig. 8: votes per block and block times",
        "",
        get_figure_line(result, "fig8", "Fig. 8: votes and block times"),
        "",
        "## Fig. 9: CPU load over the nodes",
        "",
        "Each node's latest `cpu_bp` carried by the canonical chain, per slot "
        f"({cpu['reports_carried']} reports; {cpu['reports_changed']} differed from the "
        "node's previous one). **The simulator's apps have no time-varying load**: a node "
        "reports each app it runs at the app's declared CPU request (`sim/apps.py`), so "
        "the spread changes only where apps are placed or moved, and the simulated run "
        "places apps largest first on the least loaded nodes (LPT) rather than on one "
        "node. The paper's dynamic (Fig. 9: every app submitted to one node, then "
        "spread out) is the worst case below.",
        "",
        get_figure_line(result, "fig9", "Fig. 9: CPU load distribution"),
        "",
        "## Worst case (§4.2): every app on one node",
        "",
        f"{worst['apps']} apps of 1.1-7.9 % CPU (seeded), all running on one of "
        f"{worst['nodes']} nodes at slot 0, {worst['slots']} slots, saturated reports one "
        "block late (`lab/planner_model.py`, the model of `benchmarks/planner.py`; in "
        "memory, for both planners).",
        "",
        *get_simulated_worst_case_lines(worst),
        "",
        get_worst_case_table(worst),
        "",
        get_figure_line(result, "worst_case", "worst case: max/mean over slots"),
        "",
        "## Fig. 11: apps per node at a few slots",
        "",
        get_figure_line(result, "fig11_sim", "Fig. 11: apps per node, simulated run"),
        "",
        get_figure_line(result, "fig11_worst_case", "Fig. 11: apps per node, worst case"),
        "",
        "## Fig. 12: report propagation",
        "",
        f"{summary['report_to_producer_ms']['samples']} reports carried; times from the "
        "report's signing (its timestamp) to its first delivery to another node (its "
        "representative) and to the producer of the block that carries it. A node signs "
        "its report for slot t during slot t - 1 (once it has the head for t - 1), and a "
        "representative whose cluster is incomplete forwards at the start of t plus half "
        "the VDF target (`consensus/reports.py`): the tail of 'to producer' is that wait, "
        "a share of the slot, not network time. The paper's bound is "
        f"{paper.FIG12_BOUND_S} s of a 16 s slot; the figure scales it to ours.",
        "",
        get_figure_line(result, "fig12", "Fig. 12: report propagation"),
        "",
        *get_overlay_section(result),
        "## Fig. 10 / Table 3: migration times",
        "",
        *get_migration_section(result),
        "",
        "## What differs from the paper's setup",
        "",
        "* Simulated nodes on a virtual clock (`sim/runner.py`): real consensus engines, "
        "DHT and gossip objects, real VDF proofs at a reduced iteration count, a seeded "
        "network; not containers on eight hosts. Wall time says nothing about a real "
        "node.",
        "* Fig. 9 and Fig. 11 of the simulated run show constant app loads (above). The "
        "worst case runs on the planner model for both planners, and on the simulated "
        "network for ours (the chain's planner cannot be swapped for Algorithm 1).",
        "* Fig. 10 / Table 3 come only from a `--migration-json` file of real migrations.",
    ]
    return "\n".join(lines) + "\n"
