"""The paper's abstract with real processes: N nodes running M apps on this machine
(issue 15, "Must show"; ``lab/fleet_claim.py`` says what is run and checked).

    .venv/bin/python benchmarks/fleet_claim.py
    .venv/bin/python benchmarks/fleet_claim.py --nodes 100 --apps 200 --slot-duration 16 \\
        --hold-slots 10 --json docs/results/fleet-claim.json

Run as root from a checkout others may traverse, or anywhere: the run directory goes
under a fresh 0711 directory in the temporary directory (the nodes run their apps as
``nobody``). Prints the figures; exits 1 when the claim did not hold (an error, a skip
block after the join, more than one head, an app not running exactly once, leftover
processes), 2 on bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.fleet_claim import ClaimConfig, run_claim
from edgechain.lab.live_runs import get_source, make_run_base
from edgechain.lab.testnet import format_summary, interrupt_on_termination
from edgechain.lab.testnet_config import VDF_FRACTION_HELP, parse_vdf_fraction


def format_result(result: dict[str, Any]) -> str:
    config = result["config"]
    copies = result.get("copies") or {}
    lines = [
        f"fleet claim: {config['nodes']} nodes, committee {config['committee']}, "
        f"{config['apps']} apps, {config['slot_s']:g} s slots, hold {config['hold_slots']} slots",
        f"  ready (genesis, grant)   {result.get('ready_after_s')} s",
        f"  apps on chain            {result.get('submitted_after_s')} s",
        f"  every app running once   {result.get('all_running_after_s')} s, on "
        f"{result.get('nodes_running_apps')} nodes",
        f"  hold                     {result.get('hold')}",
        f"  most copies of an app    {copies.get('max_unfrozen_copies')} "
        f"({copies.get('samples')} samples)",
        f"  elapsed                  {result['elapsed_s']} s",
        f"  claim held               {result['ok']}",
        *[f"    - {v}" for v in result["violations"]],
    ]
    if result.get("testnet"):
        lines += ["", format_summary(result["testnet"])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--committee", type=int, default=16)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--slot-duration", type=float, default=16.0, metavar="SEC")
    parser.add_argument("--join-interval", type=float, default=1.0, metavar="SEC")
    parser.add_argument("--hold-slots", type=int, default=10,
                        help="slots sampled once every app runs (default 10)")  # fmt: skip
    parser.add_argument("--setup-timeout", type=float, default=3600.0, metavar="SEC")
    parser.add_argument("--dir", type=Path, help="parent of the run directory")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--vdf-fraction", type=parse_vdf_fraction, metavar="FRACTION",
                        help=VDF_FRACTION_HELP)  # fmt: skip
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.nodes < args.committee + 1 or args.apps < 1 or args.hold_slots < 1:
        parser.error("need --nodes >= --committee + 1, --apps >= 1, --hold-slots >= 1")
    started = time.monotonic()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    config = ClaimConfig(
        run_dir=make_run_base("edgechain-fleet-claim-", args.dir) / "run",
        nodes=args.nodes,
        committee=args.committee,
        apps=args.apps,
        slot_s=args.slot_duration,
        join_s=args.join_interval,
        hold_slots=args.hold_slots,
        setup_timeout_s=args.setup_timeout,
        vdf_fraction=args.vdf_fraction,
        log=log,
    )
    log(f"run in {config.run_dir}")
    with interrupt_on_termination():
        result = run_claim(config)
    result["source"] = get_source(Path(__file__).parent)
    print(format_result(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"json: {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
