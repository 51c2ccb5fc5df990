"""``edgechain chaos``: faults on a live testnet with apps, invariants checked
(``lab/chaos.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgechain.cli.common import CliError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edgechain.lab.chaos_faults import ALL_KINDS
    from edgechain.lab.testnet_config import VDF_FRACTION_HELP, parse_vdf_fraction

    parser = sub.add_parser(
        "chaos",
        help="inject faults into a local testnet with apps and check the invariants (root)",
        description="Run a local testnet (root: one network namespace per node), keep "
        "counter apps running and migrating through the CLI, inject one random fault "
        "after another (kill -9 and restart, SIGSTOP pauses, partitions, one-way loss) "
        "and check after each that the honest heads converge within 5 slots and every "
        "app runs exactly once within K + 3 slots; at the end every stored block is "
        "validated again. Exit status 0 only with no violation.",
    )
    add = parser.add_argument
    add("--nodes", type=int, default=8, help="default 8")
    add("--duration", type=float, default=120.0, metavar="SECONDS",
        help="start faults for this long after setup (default 120)")  # fmt: skip
    add("--seed", type=int, default=1, help="seed of the faults and moves (default 1)")
    add("--json", type=Path, metavar="FILE", help="write the report here")
    add("--slot-duration", type=float, default=2.0, metavar="SEC", help="default 2")
    add("--committee", type=int, default=3, help="default 3")
    add("--apps", type=int, default=None, help="counter apps (default: one per node)")
    add("--kinds", default=",".join(ALL_KINDS),
        help=f"comma-separated fault kinds (default all: {','.join(ALL_KINDS)})")  # fmt: skip
    add("--fault-slots", type=int, default=None, metavar="SLOTS",
        help="every fault lasts this many slots (default: 2-5, drawn)")  # fmt: skip
    add("--faults", type=int, default=None, help="stop after this many faults")
    add("--sequence", default="", metavar="KINDS",
        help="faults of these kinds in this order, round robin (not drawn)")  # fmt: skip
    add("--run-dir", type=Path, default=None, help="default: a fresh directory under /tmp")
    add("--netns-prefix", default="ecc", help="namespace names PREFIX-<i> (default ecc)")
    add("--netns-subnet", type=int, default=7, metavar="K", help="10.213.K.0/24 (default 7)")
    add("--vdf-fraction", type=parse_vdf_fraction, metavar="FRACTION", help=VDF_FRACTION_HELP)
    add("--quiet", action="store_true", help="no log lines on stderr")
    parser.set_defaults(func=cmd_chaos)


def cmd_chaos(args: Any) -> int:
    from edgechain.lab.chaos import ChaosConfig, run_chaos
    from edgechain.lab.chaos_faults import FaultError, check_kinds
    from edgechain.lab.chaos_network import get_unavailable_reason
    from edgechain.lab.netns import get_unavailable_reason as get_netns_reason

    if os.geteuid() != 0:
        raise CliError("edgechain chaos needs root (network namespaces and iptables)")
    reason = get_netns_reason() or get_unavailable_reason()
    if reason is not None:
        raise CliError(f"edgechain chaos cannot run here: {reason}")
    try:
        kinds = check_kinds([k.strip() for k in args.kinds.split(",") if k.strip()])
    except FaultError as exc:
        raise CliError(str(exc)) from None
    sequence = tuple(k.strip() for k in args.sequence.split(",") if k.strip())
    if sequence:
        try:
            kinds = check_kinds(sequence)  # the kinds a run of this sequence prepares for
        except FaultError as exc:
            raise CliError(str(exc)) from None
    if args.nodes < 4 or args.nodes < args.committee + 1:
        raise CliError(f"--nodes must be at least 4 and committee + 1, not {args.nodes}")
    run_dir = args.run_dir
    if run_dir is None:
        base = Path(tempfile.mkdtemp(prefix="edgechain-chaos-"))
        base.chmod(0o711)
        run_dir = base / time.strftime("chaos-%Y%m%d-%H%M%S")
    if run_dir.exists():
        raise CliError(f"run directory {run_dir} exists")
    started = time.monotonic()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    config = ChaosConfig(
        run_dir=run_dir,
        nodes=args.nodes,
        duration_s=args.duration,
        seed=args.seed,
        slot_s=args.slot_duration,
        committee=args.committee,
        apps=args.apps if args.apps is not None else args.nodes,
        kinds=kinds,
        fault_slots=args.fault_slots,
        max_faults=args.faults,
        sequence=sequence,
        netns_prefix=args.netns_prefix,
        netns_subnet=args.netns_subnet,
        vdf_fraction=args.vdf_fraction,
        log=log,
    )
    log(f"run directory {run_dir}")
    report = run_chaos(config)
    text = json.dumps(report, indent=2, sort_keys=False)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(format_report(report))
    return 0 if report["ok"] else 1


def format_report(report: dict[str, Any]) -> str:
    faults = report["faults"]
    slots = report["reconvergence_slots"]
    lines = [
        f"faults: {faults['total']} " + " ".join(f"{k}={v}" for k, v in faults["by_kind"].items()),
        f"heads converged after (slots): median {slots['heads']['median']} "
        f"max {slots['heads']['max']} (limit {report['limits']['heads_converge_slots']})",
        f"apps exactly once after (slots): median {slots['apps_exactly_once']['median']} "
        f"max {slots['apps_exactly_once']['max']} "
        f"(limit {report['limits']['apps_exactly_once_slots']})",
        f"blocks re-validated: {report['chain_audit']['distinct_blocks_checked']}",
    ]
    state = report.get("state")
    if state:
        lines.append(
            f"app copies started: {state['starts']} ({state['starts_unread']} unread), "
            f"from nothing after counting: {len(state['from_nothing'])} "
            f"({state.get('from_nothing_untold', 0)} not told by their node), below their "
            f"highest count: {state['resumed_below_highest']} (most {state['max_count_lost']})"
        )
    lines.append(f"violations: {len(report['violations'])}")
    for violation in report["violations"][:20]:
        lines.append(
            f"  {violation['invariant']} (fault {violation['fault']}): {violation['detail']}"
        )
    return "\n".join(lines)
