"""The planner balances, measured on real node processes (issue 10, "Must show").

Starts its own ``edgechain testnet --forever --cpu-capacity C`` (8 nodes, committee 3,
2 s slots by default), drains every node but the first, submits N ``cpu-load`` apps
through the CLI (all land on that node: the paper's worst case, §4.2), undrains the
others and samples every slot the CPU each node's apps use, read from the host's
process table (``lab/balance.py`` explains what is measured and when it is "even").

    .venv/bin/python benchmarks/balance_live.py
    .venv/bin/python benchmarks/balance_live.py --nodes 8 --apps 40 --cpu-capacity 0.5 \\
        --slot-duration 2 --slots 30 --json runs/balance.json --plot runs/balance.png
    .venv/bin/python benchmarks/balance_live.py --from-json runs/balance.json --plot b.png

Run as root from a checkout others may traverse, or anywhere: run directories go under a
fresh 0711 directory in the temporary directory (the nodes run their apps as ``nobody``).
Prints the report; exits 1 when the run failed (an error, not settled at the end, a
second copy of an app, or leftover processes), 2 on bad options. Not evening out within
the run is a figure (``slots_to_even`` null), not a failure of the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgechain.lab.balance import BalanceConfig, run_balance
from edgechain.lab.balance_report import format_report, plot_balance, summarize_series
from edgechain.lab.live_runs import get_source, make_run_base
from edgechain.lab.testnet import interrupt_on_termination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--committee", type=int, default=3)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--cpu-capacity", type=float, default=0.5, metavar="CORES",
                        help="every node's declared cores (default 0.5)")  # fmt: skip
    parser.add_argument("--share", type=int, default=2, metavar="PERCENT",
                        help="each app's share of one core (default 2)")  # fmt: skip
    parser.add_argument("--period", type=int, default=500, metavar="MS",
                        help="cpu-load's duty cycle (default 500)")  # fmt: skip
    parser.add_argument("--slot-duration", type=float, default=2.0, metavar="SEC")
    parser.add_argument("--slots", type=int, default=30, help="slots measured after the undrain")
    parser.add_argument("--dir", type=Path, help="parent of the run directory")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="write the figure (PNG) here")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="no run: print the report and draw --plot from this JSON")  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        params = result["params"]
        even = (params["even_ratio"], params["even_hold"], params["window_slots"])
        result.update(summarize_series(result["series"], result["slot0_chain_slot"], *even))
        print(format_report(result))
        if args.plot:
            plot_balance(result, args.plot)
            print(f"plot: {args.plot}")
        return 0
    if args.nodes < args.committee + 1 or args.apps < 1 or args.slots < 1:
        parser.error("need --nodes >= --committee + 1, --apps >= 1, --slots >= 1")
    if not 0 < args.cpu_capacity < float("inf") or not 1 <= args.share <= 100:
        parser.error("need --cpu-capacity > 0 and 1 <= --share <= 100")
    started = time.monotonic()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    config = BalanceConfig(
        run_dir=make_run_base("edgechain-balance-", args.dir) / "run",
        nodes=args.nodes,
        committee=args.committee,
        apps=args.apps,
        cpu_capacity=args.cpu_capacity,
        share_percent=args.share,
        period_ms=args.period,
        slot_s=args.slot_duration,
        slots=args.slots,
        log=log,
    )
    log(f"run in {config.run_dir}")
    with interrupt_on_termination():
        # Ctrl-C stops the testnet (run_balance's cleanup) and ends the run with an error.
        result = run_balance(config)
    result["source"] = get_source(Path(__file__).parent)
    print(format_report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"json: {args.json}")
    if args.plot and result.get("series"):
        plot_balance(result, args.plot)
        print(f"plot: {args.plot}")
    failed = (
        result["error"]
        or result.get("final_problems")
        or result.get("max_copies") != 1
        or result["leftover_processes"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
