"""Testnet measurements: the issue's runs of real node processes on this machine.

Scenarios (each one ``edgechain testnet`` run; the CLI equivalent is printed):

    base    --nodes 50 --committee 16 --slot-duration 2 --slots 300
    netns   the same with --netns (one network namespace per node; root)
    kill    the same, kill -9 of 5 random non-bootstrap nodes at a third of the run,
            restarted 10 slots later

    .venv/bin/python benchmarks/testnet.py                      # all three, full size
    .venv/bin/python benchmarks/testnet.py --slots 60 --only base,kill --json runs/tn.json

One line per scenario: slots, skip blocks (after the last join), distinct heads, RSS and
CPU per node, block propagation p50/p99, report inclusion and time to the producer
(p50/p99); the JSON holds every summary in full.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.testnet import format_reports_line, interrupt_on_termination
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.lab.testnet_launcher import run_testnet

SCENARIOS = ("base", "netns", "kill")
KILLED_NODES = 5
RESTART_AFTER_SLOTS = 10


def make_config(scenario: str, args: argparse.Namespace, run_dir: Path) -> LaunchConfig:
    kill = scenario == "kill"
    return LaunchConfig(
        nodes=args.nodes,
        committee=args.committee,
        slot_duration=args.slot_duration,
        slots=args.slots,
        join_interval=args.join_interval,
        run_dir=run_dir,
        netns=scenario == "netns",
        kill=min(KILLED_NODES, args.nodes - 1) if kill else 0,
        kill_at=max(1, args.slots // 3) if kill else None,
        restart_after=RESTART_AFTER_SLOTS,
        seed=args.seed,
        progress=not args.quiet,
    )


def describe_cli(config: LaunchConfig) -> str:
    argv = [
        "edgechain",
        "testnet",
        "--nodes",
        str(config.nodes),
        "--committee",
        str(config.committee),
        "--slot-duration",
        f"{config.slot_duration:g}",
        "--slots",
        str(config.slots),
        "--join-interval",
        f"{config.join_interval:g}",
    ]
    if config.netns:
        argv.append("--netns")
    if config.kill:
        argv += [
            "--kill",
            str(config.kill),
            "--kill-at",
            str(config.kill_at),
            "--restart-after",
            str(config.restart_after),
        ]
    return shlex.join(argv)


def format_line(scenario: str, s: dict[str, Any]) -> str:
    prop = s["block_propagation_ms"] or {}
    line = (
        f"{scenario:<6} nodes {s['nodes']} slots {s['slots']} blocks {s['blocks']} "
        f"skips {s['skip_blocks']} (after join {s['skip_blocks_after_join']}) "
        f"missing {s['missing_slots']} heads {s['distinct_heads']} | "
        f"rss mean {s['rss_mb']['mean']} max {s['rss_mb']['max']} MB | "
        f"cpu mean {s['cpu_seconds']['mean']} max {s['cpu_seconds']['max']} s | "
        f"propagation p50 {prop.get('p50')} p99 {prop.get('p99')} ms | "
        + format_reports_line(s.get("reports") or {}).strip()
    )
    if s["source_changed"]:
        line += "\n       WARNING: edgechain sources changed during the run"
    if s["crashes"]:
        line += f"\n       crashes: {[c['name'] for c in s['crashes']]}"
    for kill in s["kills"]:
        line += (
            f"\n       killed {kill['name']} at {kill['kill_slot']}: elected while down "
            f"{kill['elected_while_down']}, restarted {kill['restart_slot']}, "
            f"resynced {kill['resynced']}"
        )
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--committee", type=int, default=16)
    parser.add_argument("--slot-duration", type=float, default=2.0)
    parser.add_argument("--slots", type=int, default=300)
    parser.add_argument("--join-interval", type=float, default=1.0)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent of the run dirs")
    parser.add_argument("--json", type=Path, help="write every summary here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.only.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {}
    for scenario in scenarios:
        config = make_config(scenario, args, args.out / f"testnet-{stamp}-{scenario}")
        print(f"# {scenario}: {describe_cli(config)}", flush=True)
        with interrupt_on_termination():  # Ctrl-C / SIGTERM: the launcher cleans up
            summary = run_testnet(config)
        results[scenario] = summary
        print(format_line(scenario, summary), flush=True)
        if summary["interrupted"]:
            break
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(s["ok"] for s in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
