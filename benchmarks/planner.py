"""Planner benchmark: the paper's Algorithm 1 against our planner, slot by slot.

The model lives in ``edgechain.lab.planner_model`` (shared with ``edgechain experiment
paper``); this file is its command line and table, and re-exports the model's names.

What is modelled (the fleet, the two start points, the report modes, the one-block
lag of reports, the two planners) and what is recorded per slot (max / mean of the
true demand; ``slots_to_balance``: the first slot at most 1.25) is the model module's
docstring. Figures only, nothing asserted.

    .venv/bin/python benchmarks/planner.py --nodes 100 --apps 200 --json runs/planner.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.planner_model import (
    APP_RAM_BP,
    BALANCED_RATIO,
    DEMAND_RANGE_BP,
    DUMMY_SIGNATURE,
    HAS_PRESSURE,
    PLANNERS,
    REPORT_FIELDS,
    REPORT_MODES,
    STARTS,
    Fleet,
    Planner,
    Scenario,
    ScenarioRun,
    Tally,
    build_fleet,
    compute_demands,
    compute_node_report,
    compute_pressure,
    compute_ratio,
    compute_reports,
    compute_request,
    compute_true_loads,
    get_app_id,
    get_apps_by_node,
    get_default_max_migrations,
    get_default_slots,
    get_node_id,
    get_planner,
    get_slots_to_balance,
    get_spec,
    get_summary,
    run_scenario,
)

__all__ = [
    "APP_RAM_BP",
    "BALANCED_RATIO",
    "DEMAND_RANGE_BP",
    "DUMMY_SIGNATURE",
    "HAS_PRESSURE",
    "PLANNERS",
    "REPORT_FIELDS",
    "REPORT_MODES",
    "SIZES",
    "STARTS",
    "Fleet",
    "Planner",
    "Scenario",
    "ScenarioRun",
    "Tally",
    "build_fleet",
    "compute_demands",
    "compute_node_report",
    "compute_pressure",
    "compute_ratio",
    "compute_reports",
    "compute_request",
    "compute_true_loads",
    "get_app_id",
    "get_apps_by_node",
    "get_default_max_migrations",
    "get_default_slots",
    "get_node_id",
    "get_planner",
    "get_slots_to_balance",
    "get_spec",
    "get_summary",
    "main",
    "run_scenario",
]

SIZES = ((100, 200), (1000, 2000))
"""The fleet sizes run when ``--nodes`` is not given."""


# --- command line ---------------------------------------------------------------------------


def get_scenarios(args: argparse.Namespace) -> list[Scenario]:
    sizes = SIZES if args.nodes is None else ((args.nodes, args.apps or 2 * args.nodes),)
    starts = STARTS if args.start is None else (args.start,)
    modes = REPORT_MODES if args.reports is None else (args.reports,)
    planners = PLANNERS if args.planner is None else (args.planner,)
    return [
        Scenario(
            nodes=nodes,
            apps=apps,
            start=start,
            reports=mode,
            planner=planner,
            slots=args.slots or get_default_slots(nodes),
            seed=args.seed,
            requests=args.requests,
        )
        for (nodes, apps), start, mode, planner in itertools.product(sizes, starts, modes, planners)
    ]


def get_label(scenario: Scenario) -> str:
    return (
        f"{scenario.nodes} nodes / {scenario.apps} apps, {scenario.start}, "
        f"{scenario.reports} reports, {scenario.planner}"
    )


def get_machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


COLUMNS = (
    ("nodes", 6),
    ("apps", 6),
    ("start", 10),
    ("reports", 10),
    ("planner", 11),
    ("slots_to_balance", 9),
    ("migrations", 6),
    ("placements", 7),
    ("initial_ratio", 8),
    ("ratio_after_placement", 8),
    ("final_ratio", 8),
    ("back_and_forth", 6),
    ("max_migrations_in_one_slot", 6),
    ("plan_ms_p50", 9),
    ("plan_ms_max", 9),
)
HEADERS = (
    "nodes",
    "apps",
    "start",
    "reports",
    "planner",
    "balanced",
    "moves",
    "places",
    "ratio0",
    "placed",
    "final",
    "b&f",
    "max/s",
    "ms p50",
    "ms max",
)


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_row(cells: Sequence[str]) -> str:
    """The first column left-aligned, the others right-aligned, in COLUMNS' widths."""
    widths = [width for _, width in COLUMNS]
    first = f"{cells[0]:<{widths[0]}}"
    return first + "".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))


def print_table(summaries: Sequence[dict[str, Any]]) -> None:
    pressure = "yes" if HAS_PRESSURE else "no (ResourceReport has no such field)"
    print(
        "\nPlanner benchmark: max/mean of the true CPU demand per node. ratio0: before the"
        "\nfirst plan; placed: after slot 1 (submitted); final: after the last slot;"
        f"\nbalanced: first slot with ratio <= {BALANCED_RATIO}; b&f: moves back to a node"
        f"\nthe app was on before; max/s: most moves in one slot.\n"
        f"pressure_bp in saturated reports: {pressure}\n"
    )
    print(format_row(HEADERS))
    for summary in summaries:
        print(format_row([format_value(summary[key]) for key, _ in COLUMNS]))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, help="run this fleet size only")
    parser.add_argument("--apps", type=int, help="apps of that fleet (default 2 * --nodes)")
    parser.add_argument("--planner", choices=PLANNERS, help="default: both")
    parser.add_argument("--start", choices=STARTS, help="default: both")
    parser.add_argument("--reports", choices=REPORT_MODES, help="default: both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--requests",
        choices=("rounded", "none"),
        default="rounded",
        help="apps declare their demand to the whole percent (default), or nothing",
    )
    parser.add_argument("--slots", type=int, help="default 60 up to 100 nodes, else 80")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.apps is not None and args.nodes is None:
        parser.error("--apps needs --nodes")
    if (args.nodes is not None and args.nodes < 1) or (args.apps is not None and args.apps < 1):
        parser.error("--nodes and --apps must be at least 1")
    if args.slots is not None and args.slots < 1:
        parser.error("--slots must be at least 1")
    summaries = []
    for scenario in get_scenarios(args):
        started = time.perf_counter()
        summaries.append(run_scenario(scenario).summary)
        elapsed = time.perf_counter() - started
        print(f"{get_label(scenario)}: {elapsed:.1f} s", file=sys.stderr)
    print_table(summaries)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"scenarios": summaries, "machine": get_machine()}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
