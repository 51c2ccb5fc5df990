"""``edgechain testnet``: a whole network of real node processes on one machine.

Paper §4 testbed, locally: node 0 is the bootstrap node (``--genesis``), known to all by
address and public key; the others start one every ``--join-interval`` seconds (the
paper used 10 s), join through it, and the bootstrap creates genesis once
``committee + 1`` inclusion requests are in. The launcher:

* creates the run directory: ``admin.key`` (the network admin key), ``operator.key``
  (an operator key, granted on chain right after genesis), ``testnet.json``
  (manifest: every node's public key and id), ``launcher.log`` and one ``node-NNN/``
  per node holding its ``node.key`` (created here, so the launcher knows every public
  key and signs every admission ticket), ``chain.db``, ``ready.json``,
  ``stdout.log`` and ``stderr.log``;
* starts the nodes (optionally one network namespace each, ``--netns``), shows one
  live progress line on stderr, kills and restarts nodes on request (``--kill``);
* once genesis is reached and every node is up, grants ``operator.key`` with the admin
  key (a signed GRANT_OPERATOR, as ``edgechain admin grant`` sends it) and then writes
  ``client.toml`` (every node's URL, ``key = "operator.key"``, ``admin_key =
  "admin.key"``): ``edgechain --client RUN/client.toml apps ...`` works from then on;
* after ``--slots`` slots past genesis (``--slots 0`` / ``--forever``: until Ctrl-C or
  SIGTERM) collects every node's ``/status``, ``/chain``, ``/blocks``, the fleet's apps
  with their history (``/apps``, ``/apps/{id}/history``) and every node's
  ``/migrations``, stops every node (SIGTERM, SIGKILL after a grace), and writes the
  summary (``summary.json`` in the run directory, and ``--json FILE``).

No node outlives the launcher: each runs in its own process group which is signalled
as a whole; ``stop_all`` runs from ``finally`` and ``atexit``; and where ``setpriv``
exists each node is started with a parent-death signal (SIGKILL), which covers the
launcher itself being killed with SIGKILL.

Summary JSON (figures computed by :mod:`edgechain.lab.summary`)::

    ok                      genesis reached by every node, one head, no node crashed
    source_changed          the edgechain sources changed during the run (an
                            editable install edited meanwhile: nodes may differ)
    nodes, committee, slot_duration, slots (slots past genesis when stopped),
      cpu_capacity (every node's declared cores, default 1; null: shares of the whole host),
      containers (how many nodes, the first ones, have a container engine)
    genesis, genesis_after_s (launch to genesis), join_slot (head slot whose state
      first held all nodes), validators_at_end
    blocks, skip_blocks, skip_slots, missing_slots, skip_blocks_after_join
    distinct_heads          distinct canonical tips at the final slot among answering
                            nodes with genesis (live_heads: distinct /status heads at
                            collection); nodes_without_genesis: names of the others
    block_propagation_ms    {p50, p99, max, mean, samples}: per block and node, the
                            node's accepted_ms minus the block's earliest accepted_ms,
                            counted only if the node was running at that moment;
                            block_propagation_ms_after_join: only blocks after join_slot
    signers_per_block       {p50, ...} over canonical non-skip blocks
    reports                 after join_slot (lab/report_summary.py): inclusion (due
                            reports the canonical blocks carry), due, blocks_measured,
                            to_producer_ms {p50, p99, max, samples}: report timestamp
                            to first arrival at the block's producer
    rss_mb, rss_peak_mb, cpu_seconds   {per_node: {name: value}, max, mean, min, total}
    cpu_per_slot            {on_duty, off_duty}: per component (telemetry/cpu.py), ms
                            of CPU per slot, median over nodes of each node's median
                            and of its p99 (max_p99: the worst node), and
                            measured_share (components / process CPU);
                            cpu_per_slot_after_join: the same over the slots after
                            join_slot only (null when the run never joined)
    rtt_ms                  {per_node, max, mean, min, total}: each node's smoothed RTT
                            to random validators at the end (node/rtt.py, paper Table 2)
    peer_errors, decode_errors         summed over nodes
    kills                   per killed node: kill_slot, restart_slot, down_slots;
                            elected_while_down {slot: outcome} for the slots it was
                            elected producer of (kill slot and down slots, elected from
                            the chain by lab.elections), elected_slots_skipped (all
                            became skip blocks excluding it), skip_blocks_excluding_it,
                            blocks_it_produced_while_down (should be none), resynced
                            (its tip at the final slot = the majority tip)
    unexplained_skip_slots  skip blocks after join not excluding a node that was down
    skip_causes             per skip slot, from the nodes' logs (lab/skip_causes.py):
                            producer_silent, vdf_starved (its VDF thread was off the
                            CPU), vdf_late, vdf_unfinished or not_attested; the VDF's
                            wall and CPU ms, votes and skip votes logged
    skip_excluded_lag       per skip block: the node it excluded and how long after the
                            first node that node accepted the skip block's parent
                            (parent_late_ms; null: never), lab/skip_lag.py
    crashes                 node processes that exited without being told to
    left                    [{name, slot}]: nodes that exited 0 on their own, having
                            left the network (``edgechain node leave``)
    exit_codes              {name: code} of nodes that did not exit 0 on SIGTERM
    stop_sigkilled          nodes that ignored SIGTERM for the whole grace period
    until_interrupted       ``--slots 0``: the run was meant to end at Ctrl-C
    client                  {config, operator_key, granted, error}: the client config
    apps                    per app on chain at the end: name, state, node (name), and
                            its history from the chain (placements, moves, stops ...
                            with their slots, node ids as names) with the migration
                            timings the nodes reported
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from edgechain.errors import LocalError
from edgechain.lab.apps import format_app_line
from edgechain.lab.cluster import STOP_GRACE_S
from edgechain.lab.skip_lag import ExcludedLag, count_behind
from edgechain.lab.testnet_config import (
    DEFAULT_CHAIN_ID,
    DEFAULT_CPU_CAPACITY,
    DEFAULT_NODE_COMMAND,
    VDF_FRACTION_HELP,
    LaunchConfig,
    default_run_dir,
    parse_vdf_fraction,
)
from edgechain.lab.testnet_launcher import Launcher
from edgechain.telemetry.cpu import count_merged_slots, format_cpu_table


def _parse_cpu_capacity(text: str) -> float | None:
    if text == "host":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a number of CPU cores or 'host'"
        ) from None


def add_testnet_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``testnet`` to an ``edgechain`` sub-command set; it runs :func:`cmd_testnet`."""
    parser = subparsers.add_parser(
        "testnet",
        help="run a network of real node processes on this machine",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_testnet_arguments(parser)
    parser.set_defaults(func=cmd_testnet)
    return parser


def add_testnet_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--nodes", type=int, default=5, help="number of nodes (default 5)")
    add("--committee", type=int, default=3, help="committee size (default 3)")
    add("--slot-duration", type=float, default=2.0, metavar="SEC", help="default 2")
    add(
        "--epoch-length",
        type=int,
        default=None,
        metavar="SLOTS",
        help="genesis: slots per finality epoch (default 8)",
    )
    add(
        "--down-after-slots",
        type=int,
        default=None,
        metavar="SLOTS",
        help="genesis: silent this long, a node is down and its apps move (default 12); "
        "every node reports every min(this / 3, epoch length / 2) slots, so longer "
        "values mean fewer reports a block and a slower recovery",
    )
    add("--vdf-fraction", type=parse_vdf_fraction, metavar="FRACTION", help=VDF_FRACTION_HELP)
    add(
        "--slots",
        type=int,
        default=30,
        help="stop this many slots after genesis (default 30; 0: run until Ctrl-C)",
    )
    add("--forever", action="store_true", help="run until Ctrl-C (same as --slots 0)")
    add(
        "--join-interval",
        type=float,
        default=1.0,
        metavar="SEC",
        help="seconds between node starts (default 1; the paper used 10)",
    )
    add("--run-dir", type=Path, help="default runs/testnet-<timestamp>")
    add("--json", type=Path, metavar="FILE", help="also write the summary here")
    add("--netns", action="store_true", help="one network namespace per node (root)")
    add("--netns-prefix", default="ec", help="namespace names PREFIX-<i> (default ec)")
    add("--netns-subnet", type=int, default=0, metavar="K", help="use 10.213.K.0/24")
    add("--base-port", type=int, help="node i: UDP/TCP base+2i, HTTP base+2i+1 (default: any)")
    add("--chain-id", default=DEFAULT_CHAIN_ID)
    add("--open-admission", action="store_true", help="no admin key or tickets")
    add(
        "--cpu-capacity",
        type=_parse_cpu_capacity,
        default=DEFAULT_CPU_CAPACITY,
        metavar="CORES|host",
        help="every node offers its apps this many CPU cores (edgechain node --cpu-capacity; "
        f"default {DEFAULT_CPU_CAPACITY:g}); 'host': each reports shares of the whole host, "
        "which every node of one host shares",
    )
    add(
        "--containers",
        type=int,
        nargs="?",
        const=-1,
        default=0,
        metavar="N",
        help="give the first N nodes (all without N) a private Podman service with the "
        "sample image, so they run container apps (needs podman, runc, busybox-static)",
    )
    add("--kill", type=int, default=0, metavar="N", help="kill -9 N random non-bootstrap nodes")
    add("--kill-at", type=int, metavar="SLOT", help="slot at which to kill them")
    add(
        "--restart-after",
        type=int,
        default=5,
        metavar="SLOTS",
        help="restart killed nodes this many slots later (default 5; <0: never)",
    )
    add("--seed", type=int, help="seed of the choice of nodes to kill")
    add(
        "--hostile",
        type=_parse_hostile,
        action="append",
        default=[],
        metavar="INDEX:BEHAVIOURS",
        help="run node INDEX with hostile behaviours (comma-separated, see "
        "edgechain/hostile.py), e.g. 2:forged-votes; repeatable",
    )
    add("--stop-grace", type=float, default=STOP_GRACE_S, metavar="SEC")
    add("--genesis-timeout", type=float, metavar="SEC")
    add(
        "--node-command",
        default=shlex.join(DEFAULT_NODE_COMMAND),
        help="command that runs one node (default: this python -m edgechain.cli node)",
    )
    add("--quiet", action="store_true", help="no progress line")


def _parse_hostile(text: str) -> tuple[int, str]:
    from edgechain.hostile import HostileConfigError, parse_behaviours

    index, _, behaviours = text.partition(":")
    try:
        return int(index), ",".join(parse_behaviours(behaviours))
    except (ValueError, HostileConfigError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    return LaunchConfig(
        nodes=args.nodes,
        committee=args.committee,
        slot_duration=args.slot_duration,
        slots=0 if args.forever else args.slots,
        run_dir=args.run_dir or default_run_dir(),
        join_interval=args.join_interval,
        json_path=args.json,
        netns=args.netns,
        netns_prefix=args.netns_prefix,
        netns_subnet=args.netns_subnet,
        base_port=args.base_port,
        chain_id=args.chain_id,
        open_admission=args.open_admission,
        cpu_capacity=args.cpu_capacity,
        containers=args.nodes if args.containers == -1 else args.containers,
        epoch_length=args.epoch_length,
        down_after_slots=args.down_after_slots,
        vdf_fraction=args.vdf_fraction,
        kill=args.kill,
        kill_at=args.kill_at,
        restart_after=args.restart_after if args.restart_after >= 0 else None,
        seed=args.seed,
        hostile=tuple(args.hostile),
        stop_grace=args.stop_grace,
        genesis_timeout=args.genesis_timeout,
        node_command=tuple(shlex.split(args.node_command)),
        progress=not args.quiet,
    )


def format_reports_line(reports: Mapping[str, Any]) -> str:
    if reports.get("inclusion") is None:
        return "  reports           -"
    to_producer = reports["to_producer_ms"]
    return (
        f"  reports           {reports['inclusion']:.2%} of {reports['due']} due carried; "
        f"to producer p50 {to_producer['p50']} ms, p99 {to_producer['p99']} ms"
    )


def format_behind_line(summary: Mapping[str, Any]) -> str:
    """How many skip blocks excluded a producer that was behind the chain."""
    lags = [
        ExcludedLag(e["slot"], e["excluded"], e["parent_late_ms"])
        for e in summary.get("skip_excluded_lag") or []
    ]
    behind = count_behind(lags, round(float(summary["slot_duration"]) * 1000))
    return (
        f"  skips, behind     {behind} of {len(lags)} excluded a producer that got its "
        "parent > 1 slot after the first node"
    )


AFTER_JOIN_SHOWN_BELOW = 0.9
"""The table after the join is printed when it covers less than this share of the
node-slots of the whole run's (the JSON summary always holds it)."""


def get_shown_after_join_table(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The CPU table after the join when it is worth printing beside the whole run's:
    when the join took a part of the slots measured (at 100 nodes, most of a 150-slot
    run). A 5-node join ends in a slot or two, and the table would be the same again."""
    after = summary.get("cpu_per_slot_after_join")
    whole = count_merged_slots(summary.get("cpu_per_slot") or {})
    if not after or count_merged_slots(after) >= AFTER_JOIN_SHOWN_BELOW * whole:
        return None
    return after  # type: ignore[no-any-return]


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few readable lines for the terminal (the JSON has everything)."""

    def dist(key: str, unit: str) -> str:
        d = summary.get(key)
        return f"p50 {d['p50']} {unit}, p99 {d['p99']} {unit}" if d else "-"

    rss, cpu = summary["rss_mb"], summary["cpu_seconds"]
    rtt = summary.get("rtt_ms") or {}
    lines = [
        f"testnet: {summary['nodes']} nodes, committee {summary['committee']}, "
        f"{summary['slots']} slots of {summary['slot_duration']:g} s, reports every "
        f"{summary['report_interval_slots']} slots"
        + (
            ("  (until Ctrl-C)" if summary.get("until_interrupted") else "  (interrupted)")
            if summary["interrupted"]
            else ""
        ),
        f"  genesis           {'after ' + str(summary['genesis_after_s']) + ' s' if summary['genesis'] else 'NO'}",  # noqa: E501
        f"  join slot         {summary['join_slot']}",
        f"  blocks / skips    {summary['blocks']} / {summary['skip_blocks']} "
        f"(after join: {summary['skip_blocks_after_join']})",
        format_behind_line(summary),
        f"  distinct heads    {summary['distinct_heads']} "
        f"({summary['nodes_answering']} nodes answering)",
        f"  propagation       {dist('block_propagation_ms', 'ms')}",
        f"  rss per node      mean {rss['mean']} MB, max {rss['max']} MB",
        f"  cpu per node      mean {cpu['mean']} s, max {cpu['max']} s",
        f"  rtt per node      mean {rtt.get('mean')} ms, max {rtt.get('max')} ms",
        format_reports_line(summary.get("reports") or {}),
        *format_cpu_table(summary.get("cpu_per_slot") or {}),
    ]
    after = get_shown_after_join_table(summary)
    if after is not None:
        lines += format_cpu_table(after, f"after slot {summary['join_slot']}")
    for kill in summary["kills"]:
        lines.append(
            f"  killed {kill['name']} at slot {kill['kill_slot']}: skip blocks excluding it "
            f"{kill['skip_blocks_excluding_it']}, restarted at {kill['restart_slot']}, "
            f"resynced {kill['resynced']}"
        )
    client = summary.get("client")
    if client and client.get("config"):
        granted = "operator key granted" if client["granted"] else "operator key NOT granted"
        lines.append(f"  client config     {client['config']} ({granted})")
    apps = summary.get("apps")
    if apps:
        lines.append(f"  apps              {len(apps)} on chain at the end:")
        width = max(len(str(app["name"])) for app in apps)
        lines += [f"    {format_app_line(app, width)}" for app in apps]
    if summary["crashes"]:
        lines.append(f"  CRASHES           {[c['name'] for c in summary['crashes']]}")
    if summary["failure"]:
        lines.append(f"  FAILURE           {summary['failure']}")
    lines.append(f"  run dir           {summary['run_dir']}")
    return "\n".join(lines)


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so cleanup runs.

    SIGINT too: a launcher started in the background by a non-interactive shell
    inherits SIGINT ignored, and Ctrl-C / ``kill -INT`` must still stop it cleanly.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_testnet(args: argparse.Namespace) -> int:
    """Exit 0: the network worked (genesis, one head, no crash); 1: it did not; 130:
    interrupted before ``--slots`` (with ``--slots 0`` an interruption is the end: 0 or
    1); 2: bad options or the launcher could not start it."""
    try:
        config = config_from_args(args)
        with interrupt_on_termination():
            summary = Launcher(config).run()
    except LocalError as exc:  # LaunchError, NetnsError, KeystoreError
        print(f"edgechain testnet: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        print(f"  json              {args.json}")
    if summary["interrupted"] and config.slots:
        return 130
    # --slots 0: Ctrl-C is the planned end of the run, not an interruption of it.
    return 0 if summary["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgechain.lab.testnet`` (same options as ``edgechain testnet``)."""
    parser = argparse.ArgumentParser(prog="edgechain testnet", description=__doc__)
    add_testnet_arguments(parser)
    return cmd_testnet(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
