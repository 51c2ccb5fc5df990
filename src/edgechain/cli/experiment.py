"""``edgechain experiment paper``: the paper's §4 evaluation (Figs. 7-12, Table 3)
reproduced with this system (``lab/paper/``). With ``--sim`` the figures come from a
simulated network; without it from a local testnet of real node processes
(``cli/experiment_live.py``, ``lab/paper/live_run.py``). The worst case comes from the
planner model, and Table 3 from a ``benchmarks/migration.py --json`` file when given
(and, live, from the run's own migrations)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.cli.common import EXIT_USAGE, CliError

MIN_NODES = 4


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    experiment = sub.add_parser(
        "experiment", help="reproduce the paper's evaluation figures (edgechain experiment paper)"
    )
    kinds = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    paper = kinds.add_parser(
        "paper",
        help="the paper's §4 figures (7-12) and Table 3, on a live local testnet or in "
        "simulation (--sim)",
        description="Run a local testnet of real node processes (default) or a simulated "
        "network (--sim), and the planners' worst case, and write into the run directory "
        "report.md (each number beside the paper's), result.json (every number the "
        "figures are drawn from) and the figures as PNG. Live: the apps run with the "
        "process runtime, and Table 3 / Fig. 10 show the run's own migrations; both "
        "forms add --migration-json files (benchmarks/migration.py --json).",
    )
    add = paper.add_argument
    add("--sim", action="store_true",
        help="simulate the network instead of running real node processes")  # fmt: skip
    add("--nodes", type=int, default=None, help="nodes (default: 100 --sim, 5 live)")
    add("--apps", type=int, default=None, help="apps submitted (default: 200 --sim, 10 live)")
    add("--slots", type=int, default=None,
        help="slots to simulate (default 60); live: slots run once the apps are on chain, "
             "or with --start-on-one-node once every node is undrained (default 30)")  # fmt: skip
    add("--slot-duration", type=float, default=None, metavar="SECONDS", help="default 2")
    add("--committee", type=int, default=None, help="committee size (default: 32 --sim, 3 live)")
    add("--seed", type=int, default=1,
        help="--sim: same seed, same figures and numbers; live: draws the apps' CPU loads "
             "(default 1)")  # fmt: skip
    add("--runtime", choices=("process", "container"), default="process",
        help="the app runtime whose migration times Table 3 shows (default process); "
             "live: only process is supported")  # fmt: skip
    add("--out", type=Path, default=None, metavar="DIR",
        help="run directory (default: runs/paper-<time>); must be new or empty")  # fmt: skip
    add("--migration-json", type=Path, action="append", default=[], metavar="FILE",
        help="benchmarks/migration.py --json output; repeat for more state sizes")  # fmt: skip
    add("--geo-regions", type=int, default=0, metavar="N",
        help="--sim: nodes in N regions, delay by distance (sim/geography.py), and the "
             "overlay clustered on network coordinates measured against hash positions "
             "(default 0: the paper's uniform 0-5 ms)")  # fmt: skip
    add("--preset-genesis", action="store_true",
        help="--sim: start from a genesis holding every node (skip the join phase)")  # fmt: skip
    add("--worst-nodes", type=int, default=None, help="worst-case nodes (default --nodes)")
    add("--worst-apps", type=int, default=None,
        help="worst-case apps, all on one node (default two per worst-case node)")  # fmt: skip
    add("--worst-slots", type=int, default=None,
        help="worst-case slots (default 60 up to 100 nodes, else 80)")  # fmt: skip
    add("--worst-sim-nodes", type=int, default=100,
        help="the worst case again on the simulated network: nodes (two apps each; "
             "default 100)")  # fmt: skip
    add("--worst-sim-slots", type=int, default=None,
        help="its slots (default: 40 --sim, 0 live; 0: not run)")  # fmt: skip
    add("--max-wall", type=float, default=None, metavar="SECONDS",
        help="--sim: stop simulating after this much wall time (the figures cover what "
             "ran)")  # fmt: skip
    add("--start-on-one-node", action="store_true",
        help="live: drain every node but node-000, submit the apps there, and undrain the "
             "others once all run on it (§4.2's worst case on real nodes)")  # fmt: skip
    add("--setup-timeout", type=float, default=None, metavar="SECONDS",
        help="live: the longest wait for each setup step (genesis, joins, submissions; "
             "default 300)")  # fmt: skip
    add("--quiet", action="store_true", help="no progress on stderr")
    paper.set_defaults(func=cmd_paper)


SIM_DEFAULTS = {"nodes": 100, "apps": 200, "slots": 60, "slot_duration": 2.0, "committee": 32,
                "worst_sim_slots": 40}  # fmt: skip
LIVE_DEFAULTS = {"nodes": 5, "apps": 10, "slots": 30, "slot_duration": 2.0, "committee": 3,
                 "worst_sim_slots": 0, "setup_timeout": 300.0}  # fmt: skip


def set_defaults(args: Any) -> None:
    """The defaults of the form asked for (a simulation is larger than a testnet this
    host can run)."""
    for name, value in (SIM_DEFAULTS if args.sim else LIVE_DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_args(args: Any) -> None:
    """The simulated form's arguments (the live form's: ``experiment_live.check_live_args``)."""
    if args.start_on_one_node or args.setup_timeout is not None:
        raise CliError("--start-on-one-node and --setup-timeout are for the live form "
                       "(without --sim)", EXIT_USAGE)  # fmt: skip
    check_common_args(args)
    if args.geo_regions < 0:
        raise CliError("--geo-regions must be 0 or more", EXIT_USAGE)


def check_common_args(args: Any) -> None:
    if args.nodes < MIN_NODES or args.committee < 1 or args.committee >= args.nodes:
        raise CliError(f"need --nodes >= {MIN_NODES} and 1 <= --committee < --nodes", EXIT_USAGE)
    if args.apps < 1 or args.slots < 2 or args.slot_duration <= 0:
        raise CliError("need --apps >= 1, --slots >= 2 and --slot-duration > 0", EXIT_USAGE)
    for value, name in ((args.worst_nodes, "--worst-nodes"), (args.worst_apps, "--worst-apps"),
                        (args.worst_slots, "--worst-slots")):  # fmt: skip
        if value is not None and value < 1:
            raise CliError(f"{name} must be at least 1", EXIT_USAGE)
    if args.worst_sim_slots < 0 or (args.worst_sim_slots and args.worst_sim_nodes < MIN_NODES):
        raise CliError(
            f"need --worst-sim-slots >= 0 and --worst-sim-nodes >= {MIN_NODES}", EXIT_USAGE
        )
    for path in args.migration_json:
        if not path.is_file():
            raise CliError(f"--migration-json {path}: no such file", EXIT_USAGE)
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        raise CliError(f"run directory {args.out} is not empty", EXIT_USAGE)


def get_out(args: Any) -> Path:
    out: Path = args.out or Path("runs") / time.strftime("paper-%Y%m%d-%H%M%S")
    return out


def get_command_line(args: Any, out: Path) -> str:
    """The command as parsed (every option spelled out), for the report."""
    return join_command_line(
        ["--sim"],
        (
            ("--nodes", args.nodes), ("--committee", args.committee), ("--slots", args.slots),
            ("--slot-duration", f"{args.slot_duration:g}"), ("--apps", args.apps),
            ("--seed", args.seed), ("--runtime", args.runtime),
            ("--geo-regions", args.geo_regions or None),
            ("--worst-nodes", args.worst_nodes), ("--worst-apps", args.worst_apps),
            ("--worst-slots", args.worst_slots), ("--worst-sim-nodes", args.worst_sim_nodes),
            ("--worst-sim-slots", args.worst_sim_slots), ("--max-wall", args.max_wall),
        ),
        ["--preset-genesis"] if args.preset_genesis else [],
        args.migration_json,
        out,
    )  # fmt: skip


def join_command_line(
    head: list[str],
    options: Sequence[tuple[str, object]],
    flags: list[str],
    migration_json: Sequence[Path],
    out: Path,
) -> str:
    """``edgechain experiment paper`` with ``head``, each option whose value is not None,
    the ``flags``, every ``--migration-json`` and ``--out``, quoted for a shell."""
    words = ["edgechain", "experiment", "paper", *head]
    for option, value in options:
        if value is not None:
            words += [option, str(value)]
    words += flags
    for path in migration_json:
        words += ["--migration-json", str(path)]
    return shlex.join([*words, "--out", str(out)])


def get_logger(quiet: bool) -> Any:
    """Progress lines on stderr, each with the time since the start."""
    started = time.monotonic()

    def log(message: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def cmd_paper(args: Any) -> int:
    set_defaults(args)
    if not args.sim:
        from edgechain.cli.experiment_live import cmd_live

        return cmd_live(args)
    return cmd_sim(args)


def cmd_sim(args: Any) -> int:
    from edgechain.cli.simulate import ProgressBar
    from edgechain.lab.paper.migration_table import MigrationJsonError
    from edgechain.lab.paper.run import PaperConfig, run_paper

    check_args(args)
    out = get_out(args)
    log = get_logger(args.quiet)
    config = PaperConfig(
        out=out,
        nodes=args.nodes,
        apps=args.apps,
        slots=args.slots,
        slot_duration_s=args.slot_duration,
        committee=args.committee,
        seed=args.seed,
        runtime=args.runtime,
        preset_genesis=args.preset_genesis,
        geo_regions=args.geo_regions,
        worst_nodes=args.worst_nodes,
        worst_apps=args.worst_apps,
        worst_slots=args.worst_slots,
        worst_sim_nodes=args.worst_sim_nodes,
        worst_sim_slots=args.worst_sim_slots,
        migration_json=tuple(args.migration_json),
        max_wall_s=args.max_wall,
        command=get_command_line(args, out),
    )
    progress = ProgressBar("simulate", enabled=sys.stderr.isatty() and not args.quiet)
    try:
        result = run_paper(config, progress=progress, log=log)
    except MigrationJsonError as exc:
        raise CliError(f"--migration-json: {exc}", EXIT_USAGE) from None
    print(format_summary(result, out))
    return 1 if result["sim"]["summary"]["violations"] else 0


def format_summary(result: dict[str, Any], out: Path) -> str:
    summary = result["sim"]["summary"]
    prod = summary["report_to_producer_ms"]
    worst = result["worst_case"]
    lines = [
        f"run directory   {out}",
        f"blocks          {summary['blocks']} (skip {summary['skip_blocks']}, "
        f"empty {summary['empty_slots']}) in {result['config']['slots_run']} slots",
        f"reports         {summary['report_inclusion']} included; to producer "
        f"p50 {prod['p50']} ms, p99 {prod['p99']} ms",
    ]
    for name, run in worst["planners"].items():
        lines.append(
            f"worst case      {name}: max/mean <= {worst['balanced_ratio']} at slot "
            f"{run['slots_to_balance']}, {run['migrations']} migrations"
        )
    lines.append(f"figures         {', '.join(result['figures'].values())}")
    lines.append(f"violations      {len(summary['violations']) or 'none'}")
    return "\n".join(lines)
