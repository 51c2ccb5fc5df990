"""``edgechain simulate`` and ``edgechain demo``: simulated networks on a virtual clock."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from edgechain.sim.app_load import LOAD_REQUEST, LOADS, TRANSFER_FIXED, TRANSFERS
from edgechain.sim.apps import AppModelConfig
from edgechain.sim.runner import SCENARIOS, SimConfig, SimResult, Simulation


def _parse_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        values = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in ms, got {text!r}") from None
    if values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError(f"bad latency range {text!r}")
    return values


class ProgressBar:
    """A one-line progress bar on stderr (silent when stderr is not a terminal)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(total, 1)
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {done}/{total} slots  {elapsed:6.1f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def get_peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def format_report_lines(s: dict[str, Any]) -> list[str]:
    """Report inclusion and travel times (``sim/report_metrics.py``)."""
    if s.get("report_inclusion") is None:
        return []
    rep, prod = s["report_to_representative_ms"], s["report_to_producer_ms"]
    return [
        f"  reports         {s['report_inclusion']:.2%} of {s['reports_due']} due were in "
        "their slot's block",
        f"  report travel   to representative p50 {rep['p50']} ms  p99 {rep['p99']} ms; "
        f"to producer p50 {prod['p50']} ms  p99 {prod['p99']} ms",
    ]


def format_cluster_latency(s: dict[str, Any]) -> list[str]:
    """With a geography: member-to-representative delay, our overlay and hash positions
    (both over the slots clustered on coordinates; sim/coordinates.py)."""
    latency = s.get("cluster_latency")
    if latency is None:
        return []
    ours, hashed = latency["overlay"], latency["hash_positions"]
    since = latency["coordinate_mode_from_slot"]
    return [
        f"  cluster hop     coordinates p50 {ours['p50_ms']} ms mean {ours['mean_ms']} ms; "
        f"hash positions p50 {hashed['p50_ms']} ms mean {hashed['mean_ms']} ms "
        f"(one way, slots {since}-{s['slots_run'] if 'slots_run' in s else s['slots']})"
    ]


def format_summary(result: SimResult) -> str:
    s = result.summary
    votes = s["votes_per_block"]
    times = s["block_time_ms"]
    lines = [
        f"nodes {s['nodes']}, committee {s['committee']}, {s['slots']} slots of "
        f"{s['slot_duration_ms'] / 1000:g} s, seed {s['seed']}, faults: {s['faults']}",
        f"  blocks          {s['blocks']}",
        f"  skip blocks     {s['skip_blocks']}",
        f"  empty slots     {s['empty_slots']}",
        f"  votes per block min {votes['min']}  mean {votes['mean']}  max {votes['max']}",
        f"  block time      p50 {times['p50']} ms  max {times['max']} ms (after slot start)",
        f"  forks resolved  {s['forks_resolved']}",
        f"  distinct heads  {s['distinct_heads']}",
        f"  validators      {s['validators_at_end']} at the end",
        f"  peer errors     {s['peer_errors'] or 'none'}",
        f"  messages        {s['messages']}",
        *format_report_lines(s),
        *format_cluster_latency(s),
        f"  wall time       {s['wall_seconds']} s",
        *(
            [f"  peak RSS        {s['peak_rss_mb']} MB (the whole simulation)"]
            if "peak_rss_mb" in s
            else []
        ),
        *(
            [f"  stopped         by --max-wall after {s['slots_run']} of {s['slots']} slots"]
            if s.get("slots_run", s["slots"]) < s["slots"]
            else []
        ),
    ]
    apps = s.get("apps")
    if apps is not None:
        copies, worst = apps["max_copies_seen"], apps["recovered_within_slots"]
        lines.append(
            f"  apps            {apps['submitted']} submitted, max copies {copies}, "
            f"{apps['recovered']} recovered (worst {worst} slots), {apps['unrecovered']} not"
        )
        case = apps.get("worst_case")
        if case is not None:
            lines.append(
                f"  worst case      undrain from slot {case['undrain_at']}, max/mean <= 1.25 "
                f"after {case['slots_to_balance']} slots, {case['migrations']} migrations"
            )
    if s["violations"]:
        lines.append(f"  VIOLATIONS ({len(s['violations'])}):")
        lines += [f"    - {v}" for v in s["violations"][:20]]
    else:
        lines.append("  violations      none")
    return "\n".join(lines)


def cmd_simulate(args: argparse.Namespace) -> int:
    config = SimConfig(
        nodes=args.nodes,
        committee=args.committee,
        slots=args.slots,
        slot_duration_ms=int(args.slot_duration * 1000),
        latency_ms=args.latency,
        seed=args.seed,
        faults=args.faults,
        send_reports=not args.no_reports,
        trace=not args.no_trace,
        overlay=args.overlay,
        preset_genesis=args.preset_genesis,
        apps=args.apps,
        geo_regions=args.geo_regions,
        app_model=AppModelConfig(
            load=args.app_load, transfer=args.app_transfer, worst_case=args.worst_case
        ),
    )
    progress = ProgressBar("simulate", enabled=sys.stderr.isatty() and not args.quiet)
    result = Simulation(config, progress=progress).run(max_wall_seconds=args.max_wall)
    # The harness's peak: the run's records (every block, the auditor's states) as well
    # as every simulated node.
    result.summary["peak_rss_mb"] = round(get_peak_rss_bytes() / 2**20, 1)
    print(format_summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1) + "\n")
        print(f"  json            {args.json}")
    return 1 if result.summary["violations"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A short, readable simulated run with one crashed producer per ten slots."""
    print("edgechain demo: 16 simulated nodes, committee 6, 2 s slots, one crashed producer\n")
    config = SimConfig(nodes=16, committee=6, slots=24, seed=args.seed, faults="crash-producers")
    result = Simulation(config, progress=ProgressBar("demo", sys.stderr.isatty())).run()
    print(format_summary(result))
    print("\n slot  producer  kind   votes  block time")
    for record in result.slots:
        block_time = record["block_time_ms"]
        shown = f"{block_time} ms" if block_time is not None else "-"
        print(
            f" {record['slot']:>4}  node {record['producer']!s:>3}  {record['kind']:<5}  "
            f"{record['votes']:>5}  {shown}"
        )
    return 1 if result.summary["violations"] else 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="run a deterministic network simulation")
    sim.add_argument("--nodes", type=int, default=20, help="number of nodes (default 20)")
    sim.add_argument("--committee", type=int, default=8, help="committee size (default 8)")
    sim.add_argument("--slots", type=int, default=30, help="slots to run (default 30)")
    sim.add_argument("--slot-duration", type=float, default=2.0, help="seconds (default 2)")
    sim.add_argument("--latency", type=_parse_range, default=(0, 5), help="MIN-MAX ms")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same run (default 1)")
    sim.add_argument(
        "--geo-regions",
        type=int,
        default=0,
        metavar="N",
        help="0: every link has the --latency delay (default); N > 0: nodes in N regions "
        "on a map, delay by distance (sim/geography.py) plus --latency as jitter",
    )
    sim.add_argument("--faults", choices=SCENARIOS, default="none", help="fault scenario")
    sim.add_argument("--apps", type=int, default=0, help="apps to submit and audit (exactly once)")
    sim.add_argument(
        "--app-load",
        choices=LOADS,
        default=LOAD_REQUEST,
        help="request: each app uses its CPU request; mixed: steady 1.1-7.9 %% demands; "
        "varying: those demands steady, diurnal or bursty (sim/app_load.py)",
    )
    sim.add_argument(
        "--app-transfer",
        choices=TRANSFERS,
        default=TRANSFER_FIXED,
        help="fixed: 1 s a migration; modelled: pre-copy and frozen times from the app's "
        "state size, fitted to docs/results/migration.md",
    )
    sim.add_argument(
        "--worst-case",
        action="store_true",
        help="the paper's worst case: every app starts on the first node (the others "
        "drained), then the others are undrained",
    )
    sim.add_argument("--json", metavar="FILE", help="also write the result here")
    sim.add_argument("--no-reports", action="store_true", help="nodes send no resource reports")
    sim.add_argument("--no-trace", action="store_true", help="skip the network trace digest")
    sim.add_argument(
        "--overlay",
        choices=("gossip", "broadcast"),
        default="gossip",
        help="gossip: real DHT + gossip objects per node; broadcast: direct to all",
    )
    sim.add_argument(
        "--preset-genesis", action="store_true", help="start from a genesis holding every node"
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--max-wall",
        type=float,
        metavar="SECONDS",
        help="stop once this much wall time has passed (reports the slots completed)",
    )
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="a short, readable simulated run")
    demo.add_argument("--seed", type=int, default=7, help="default 7")
    demo.set_defaults(func=cmd_demo)
