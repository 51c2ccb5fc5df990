"""``report.md`` of the live form of ``edgechain experiment paper`` (``live_run.py``):
the simulated form's tables and figure lines (``report.py``) around what a run of real
node processes measured, checked, and where each number comes from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgechain.lab.paper.migration_table import format_table3
from edgechain.lab.paper.report import (
    format_ms,
    format_table,
    get_figure_line,
    get_headline,
    get_migration_section,
    get_simulated_worst_case_lines,
    get_worst_case_table,
)


def get_checks_lines(result: Mapping[str, Any]) -> list[str]:
    """What the live run checked about the apps and the stop, and how."""
    checks, roles = result["checks"], result["live"]["roles"]
    copies, end = checks["copies"], checks["not_once_at_end"]
    return [
        f"* Copies (`lab/exactly_once_watch.Observer`): the host's process table, "
        f"{copies['samples']} samples about a second apart: at most "
        f"**{copies['max_unfrozen_copies']}** unfrozen copy of an app at one moment "
        f"({len(copies['doubles'])} confirmed doubles). A copy living shorter than the "
        "gap between two samples would be missed.",
        f"* Samples in which some app did not run exactly once (migration downtime, "
        f"apps not started yet): {checks['samples_not_all_once']}.",
        "* At the end, every app once where the chain places it: "
        + ("yes." if not end else f"**no**: {'; '.join(end)}."),
        f"* Processes left after the stop: {len(checks['leftover_processes'])}; launcher "
        f"exit code {checks['launcher_exit_code']}.",
        f"* Producers: {roles['producers_checked']} canonical blocks, "
        f"{roles['producers_not_elected']} not made by the elected producer.",
    ]


def get_live_migration_lines(result: Mapping[str, Any]) -> list[str]:
    attempts = result["live"]["migrations"]
    lines = ["No node migrated an app in this run (the planner moved none)."]
    if attempts:
        headers = ("slot", "app", "from", "to", "outcome", "save", "transmit", "resume",
                   "state bytes")  # fmt: skip
        rows = [(str(m["slot"]), str(m["app"]), str(m["from"]), str(m["to"]),
                 str(m["outcome"]), *(format_ms(m[f"{k}_ms"]) for k in ("save", "transmit",
                 "resume")), str(m["raw_bytes"])) for m in attempts]  # fmt: skip
        lines = [f"The migrations the nodes made ({len(attempts)} attempts, each timed by its "
                 "origin, `GET /migrations`):", "", format_table(headers, rows)]  # fmt: skip
    if result.get("migration") is None:
        return [*lines, "", "Table 3 for reference:", "", format_table3({"rows": []})]
    return [*lines, "", *get_migration_section(result)]


def get_live_setup(result: Mapping[str, Any]) -> str:
    config = result["config"]
    shares = config["app_shares_pct"]
    start = (
        "drained every node but node-000, submitted the apps, and sent the undrain of the "
        f"others at chain slot {config['undrain_sent_slot']}, once all ran there; its slot "
        "0 is the one the chain showed every node active in"
        if config["start_on_one_node"]
        else "submitted the apps and let the planner place them; its slot 0 is the one "
        "they were all on chain in"
    )
    return (
        f"Real node processes on this host ({config['host_cpus']} CPUs, shared with whatever "
        f"else runs here): `edgechain testnet` of {config['nodes']} nodes, committee "
        f"{config['committee']}, {config['slot_duration_s']:g} s slots, process runtime, "
        f"SQLite; each node offers its apps {config['cpu_capacity']:g} core. "
        f"{config['apps']} `cpu-load` apps, each burning {min(shares)}-{max(shares)} % of "
        f"a core (drawn from seed {config['seed']}) and requesting that share. The run "
        f"{start} (chain slot {config['first_slot']}), and ran {config['slots']} slots "
        f"from there; the figures cover chain slots 1-{config['slots_run']} (the join and "
        f"the submissions included). Testnet directory: `{config['testnet_dir']}`."
    )


def get_live_figure_sections(result: Mapping[str, Any]) -> list[str]:
    """Figs. 7, 8, 9, 11 and 12 of a live run: each with where its numbers come from."""
    data = result["live"]
    cpu, sources = data["cpu_load"], data["app_stacks"]["load_sources"]
    samples = data["summary"]["report_to_producer_ms"]["samples"]
    sections = [
        ("Fig. 7: roles per node", "fig7", "No API names a slot's committee or "
         "representatives: they are computed as the chain defines them from each slot's "
         "parent state (Algorithm 2, `consensus/roles.py`; the relay's k-means, "
         "`cluster/kmeans.py`)."),
        ("Fig. 8: votes per block and block times", "fig8", "Block time: the earliest "
         "acceptance any node's `/blocks` lists, from the slot's start (the nodes share "
         "this host's clock)."),
        ("Fig. 9: CPU load over the nodes", "fig9", "Each node's latest `cpu_bp` carried by "
         f"the canonical chain, per slot ({cpu['reports_carried']} reports; "
         f"{cpu['reports_changed']} differed from the node's previous one): the CPU its "
         "apps' processes used, in % of the core it offers (its own process left out, "
         'ARCHITECTURE.md "What a node reports").'),
        ("Fig. 11: apps per node at a few moments", "fig11_sim", "`/dashboard/snapshot` at "
         f"{len(data['app_stacks']['moments'])} moments: where the chain places each app, "
         "at the share its node's latest report lists for it "
         f"({sources['reported']} segments) or, before such a report, its request "
         f"({sources['request']} segments)."),
        ("Fig. 12: report propagation", "fig12", f"{samples} reports with a time to the "
         "producer of the block carrying them, as that producer measured it (from the "
         "report's timestamp to its first arrival there; its own report counts 0 ms, as "
         "in the simulator and the testnet summary). Real nodes do not measure a report's "
         "time to its representative."),
    ]  # fmt: skip
    lines = []
    for title, key, text in sections:
        lines += [f"## {title}", "", text, "", get_figure_line(result, key, title), ""]
    return lines


def write_live_report(result: Mapping[str, Any]) -> str:
    """``report.md`` of a live run."""
    config, data, worst = result["config"], result["live"], result["worst_case"]
    summary, net = data["summary"], result["testnet"]
    causes = [f"slot {c.get('slot')}: {c.get('cause')}" for c in net.get("skip_causes") or []]
    lines = [
        "# The paper's evaluation (§4), reproduced on a live testnet",
        "",
        f"Command: `{config['command']}`",
        "",
        get_live_setup(result),
        "",
        "Every number comes from the real nodes: their HTTP APIs (`/chain`, `/blocks`, "
        "`/dashboard/snapshot`, `/migrations`) and, for the roles and the reports' "
        f"`cpu_bp`, the canonical chain replayed out of {data['reference_node']}'s store "
        f"after the stop. Violations: {len(summary['violations'])}.",
        "",
        "## What was checked",
        "",
        *get_checks_lines(result),
        "",
        "## Headline: this run beside the paper",
        "",
        format_table(("what", "this run", "paper", "where"), get_headline(result)),
        "",
        f"The testnet's own summary: join slot {net.get('join_slot')}, "
        f"{net.get('skip_blocks_after_join')} skip blocks after it"
        + (f" ({'; '.join(causes)})" if causes else "")
        + f", {net.get('distinct_heads')} head(s) at the end.",
        "",
        *get_live_figure_sections(result),
        "## Fig. 10 / Table 3: migration times",
        "",
        *get_live_migration_lines(result),
        "",
        "## Worst case (§4.2): every app on one node, planner model",
        "",
        "Not a network run: both planners on `lab/planner_model.py` "
        f"({worst['apps']} apps on one of {worst['nodes']} nodes). "
        + " ".join(get_simulated_worst_case_lines(worst)),
        "",
        get_worst_case_table(worst),
        "",
        get_figure_line(result, "worst_case", "worst case: max/mean over slots"),
        "",
        get_figure_line(result, "fig11_worst_case", "Fig. 11: apps per node, worst case"),
        "",
        "## What differs from the paper's setup",
        "",
        "* Every node on one host, sharing its CPUs and its clock, no artificial delay; "
        "the paper ran containers on eight hosts with 0-5 ms added per packet.",
        "* The apps are `cpu-load` shell loops of steady load; the paper's had varied "
        "loads. A node reports its apps' measured CPU, so Fig. 9 moves with "
        "measurement noise as well as with placements.",
    ]
    return "\n".join(lines) + "\n"
