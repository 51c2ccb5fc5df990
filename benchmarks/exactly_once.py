"""Every app runs exactly once, measured on real node processes (issue 9, "Must show").

Each run starts its own ``edgechain testnet --forever`` (6 nodes, committee 3, 1 s
slots by default), submits N stateful counter apps through the CLI to one node, then
kills -9 the node hosting the most apps (with its apps: a device dying), and afterwards
SIGSTOPs for ``--pause`` seconds the live node hosting the most apps. The process table
is sampled every 100 ms throughout (``lab/exactly_once.py`` explains what is measured,
``lab/exactly_once_report.py`` the bounds checked).

    .venv/bin/python benchmarks/exactly_once.py
    .venv/bin/python benchmarks/exactly_once.py --apps 6 --runs 3 --json runs/eo.json

Run as root from a checkout others may traverse, or anywhere: run directories go under a
fresh 0711 directory in the temporary directory (the nodes run their apps as ``nobody``).
Prints one report per run; exits 1 when any run broke a bound, 2 on bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.exactly_once import ExactlyOnceConfig, run_exactly_once
from edgechain.lab.exactly_once_report import format_report, get_stale_over_one_slot
from edgechain.lab.live_runs import get_source, make_run_base
from edgechain.lab.testnet import interrupt_on_termination


def summarize_runs(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The worst figure of each kind over all runs."""

    def values(scenario: str, key: str) -> list[float]:
        found = []
        for result in results:
            for entry in (result.get(scenario) or {}).get("apps", ()):
                value = entry.get(key)
                if isinstance(value, int | float):
                    found.append(float(value))
        return found

    def spread(numbers: list[float]) -> dict[str, float | None]:
        if not numbers:
            return {"min": None, "max": None, "mean": None}
        mean = round(sum(numbers) / len(numbers), 2)
        return {"min": min(numbers), "max": max(numbers), "mean": mean}

    return {
        "runs": len(results),
        "ok_runs": sum(1 for r in results if r.get("ok")),
        "kill_recovered_after_slots": spread(values("kill", "recovered_after_slots")),
        "kill_behind_count_at_kill": spread(values("kill", "behind_count_at_kill")),
        "pause_frozen_after_slots": spread(values("pause", "frozen_after_slots")),
        "pause_frozen_vs_lease_end_s": spread(values("pause", "frozen_vs_lease_end_s")),
        "pause_ran_elsewhere_after_slots": spread(values("pause", "ran_elsewhere_after_slots")),
        "pause_stale_gone_after_cont_slots": spread(values("pause", "stale_gone_after_cont_slots")),
        "max_unfrozen_copies": max(
            ((r.get("copies") or {}).get("max_unfrozen_copies") or 0 for r in results), default=0
        ),
        "stale_over_one_slot": [get_stale_over_one_slot(r) for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--committee", type=int, default=3)
    parser.add_argument("--apps", type=int, default=12)
    parser.add_argument("--slot", type=float, default=1.0, help="slot duration (s)")
    parser.add_argument("--replica-every", type=int, default=3, help="R (slots)")
    parser.add_argument("--pause", type=float, default=20.0, help="SIGSTOP length (s)")
    parser.add_argument("--counter-interval", type=float, default=0.5, help="seconds per count")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="parent of the run directories")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.nodes < args.committee + 2 or args.apps < 1 or args.runs < 1:
        parser.error("need --nodes >= --committee + 2 (two faults), --apps >= 1, --runs >= 1")
    base = make_run_base("edgechain-exactly-once-", args.dir)
    started = time.monotonic()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []
    try:
        with interrupt_on_termination():
            for index in range(args.runs):
                config = ExactlyOnceConfig(
                    run_dir=base / f"run-{index + 1}",
                    nodes=args.nodes,
                    committee=args.committee,
                    apps=args.apps,
                    slot_s=args.slot,
                    replica_every=args.replica_every,
                    pause_s=args.pause,
                    counter_interval_s=args.counter_interval,
                    log=log,
                )
                log(f"run {index + 1}/{args.runs} in {config.run_dir}")
                result = run_exactly_once(config)
                results.append(result)
                print(format_report(result), flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # each run cleaned up after itself
    output = {
        "source": get_source(Path(__file__).parent),
        "runs": results,
        "summary": summarize_runs(results),
    }
    print(json.dumps(output["summary"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(output, indent=1) + "\n")
        print(f"json: {args.json}")
    return 0 if results and all(r["ok"] for r in results) and len(results) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
