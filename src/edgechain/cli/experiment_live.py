"""``edgechain experiment paper`` without ``--sim``: the paper's figures from a local
testnet of real node processes (``lab/paper/live_run.py``): its argument checks, its
command line for the report, and its summary on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgechain.cli.common import EXIT_USAGE, CliError
from edgechain.cli.experiment import check_common_args, get_logger, get_out, join_command_line

MIN_SLOT_S = 0.5
"""Below this a slot cannot hold the producer's VDF and the committee's votes on one
host (the testnets here run at 1 s and more)."""
SIM_ONLY = (("--geo-regions", "geo_regions", 0), ("--preset-genesis", "preset_genesis", False),
            ("--max-wall", "max_wall", None))  # fmt: skip
"""Options that only a simulation has (name, attribute, its unset value)."""


def check_live_args(args: Any) -> None:
    if args.runtime != "process":
        raise CliError(
            "the live form runs its apps with the process runtime only: --runtime "
            f"{args.runtime} needs a Podman service per node, which it does not start "
            "(use --sim, or --migration-json from benchmarks/migration.py for container "
            "migration times)",
            EXIT_USAGE,
        )
    for option, name, unset in SIM_ONLY:
        if getattr(args, name) != unset:
            raise CliError(f"{option} is for the simulated form (--sim)", EXIT_USAGE)
    check_common_args(args)
    if args.slot_duration < MIN_SLOT_S:
        raise CliError(f"--slot-duration must be at least {MIN_SLOT_S:g} s live", EXIT_USAGE)
    if args.setup_timeout <= 0:
        raise CliError("--setup-timeout must be positive", EXIT_USAGE)


def get_live_command_line(args: Any, out: Path) -> str:
    """The command as parsed (every option spelled out), for the report."""
    return join_command_line(
        [],
        (
            ("--nodes", args.nodes), ("--committee", args.committee), ("--slots", args.slots),
            ("--slot-duration", f"{args.slot_duration:g}"), ("--apps", args.apps),
            ("--seed", args.seed), ("--runtime", args.runtime),
            ("--worst-nodes", args.worst_nodes), ("--worst-apps", args.worst_apps),
            ("--worst-slots", args.worst_slots),
            ("--worst-sim-nodes", args.worst_sim_nodes if args.worst_sim_slots else None),
            ("--worst-sim-slots", args.worst_sim_slots or None),
            ("--setup-timeout", f"{args.setup_timeout:g}"),
        ),
        ["--start-on-one-node"] if args.start_on_one_node else [],
        args.migration_json,
        out,
    )  # fmt: skip


def cmd_live(args: Any) -> int:
    from edgechain.lab.faults_live import LiveError
    from edgechain.lab.paper.live_config import LiveConfig
    from edgechain.lab.paper.live_run import run_live_paper
    from edgechain.lab.paper.migration_table import MigrationJsonError

    check_live_args(args)
    out = get_out(args)
    config = LiveConfig(
        out=out,
        nodes=args.nodes,
        committee=args.committee,
        apps=args.apps,
        slots=args.slots,
        slot_duration_s=args.slot_duration,
        seed=args.seed,
        runtime=args.runtime,
        start_on_one_node=args.start_on_one_node,
        worst_nodes=args.worst_nodes,
        worst_apps=args.worst_apps,
        worst_slots=args.worst_slots,
        worst_sim_nodes=args.worst_sim_nodes,
        worst_sim_slots=args.worst_sim_slots,
        migration_json=tuple(args.migration_json),
        setup_timeout_s=args.setup_timeout,
        command=get_live_command_line(args, out),
    )
    try:
        result = run_live_paper(config, get_logger(args.quiet))
    except MigrationJsonError as exc:
        raise CliError(f"--migration-json: {exc}", EXIT_USAGE) from None
    except LiveError as exc:
        raise CliError(f"the live run failed (the testnet is stopped): {exc}", 1) from None
    print(format_live_summary(result, out))
    return 1 if result["live"]["summary"]["violations"] else 0


def format_live_summary(result: dict[str, Any], out: Path) -> str:
    summary, checks = result["live"]["summary"], result["checks"]
    prod = summary["report_to_producer_ms"]
    migrations = result["live"]["migrations"]
    completed = sum(1 for m in migrations if m["outcome"] == "completed")
    return "\n".join(
        [
            f"run directory   {out}",
            f"blocks          {summary['blocks']} (skip {summary['skip_blocks']}, "
            f"empty {summary['empty_slots']}) in {result['config']['slots_run']} slots",
            f"votes           {summary['votes_per_block']['min']}-"
            f"{summary['votes_per_block']['max']} of {result['config']['committee']}",
            f"reports         {summary['report_inclusion']} included; to producer "
            f"p50 {prod['p50']} ms, p99 {prod['p99']} ms",
            f"migrations      {completed} completed of {len(migrations)} attempts",
            f"copies          at most {checks['copies']['max_unfrozen_copies']} of an app at "
            f"once ({checks['copies']['samples']} samples); left behind "
            f"{len(checks['leftover_processes'])}",
            f"figures         {', '.join(result['figures'].values())}",
            f"violations      {len(summary['violations']) or 'none'}",
        ]
    )
