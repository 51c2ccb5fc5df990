"""``edgechain nodes``, ``edgechain blocks``, ``edgechain status``, ``edgechain command``:
read-only views."""

from __future__ import annotations

import argparse
from typing import Any

from edgechain.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    format_fields,
    format_size,
    format_table,
    short,
)
from edgechain.cli.context import Context, parse_hex

DEFAULT_BLOCKS = 20
NODE_ID_SIZE = 32


def get_list(ctx: Context, path: str) -> list[dict[str, Any]]:
    reply = ctx.fleet.get(path)
    if not isinstance(reply, list) or not all(isinstance(e, dict) for e in reply):
        raise CliError(f"GET {path} did not answer with a list of objects")
    return reply


def match_node_ids(ids: list[str], text: str) -> list[str]:
    """The ids that are ``text`` or, when none is, start with it (a node id or a hex
    prefix of one; anything else is a usage error)."""
    wanted = text.lower().removeprefix("0x")
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise CliError(f"NODE {text!r}: expected a node id or a hex prefix of one", EXIT_USAGE)
    exact = [i for i in ids if i.lower() == wanted]
    return exact or [i for i in ids if i.lower().startswith(wanted)]


def resolve_node(ctx: Context, text: str) -> dict[str, Any]:
    """The validator whose node id is ``text`` or starts with it (unique prefix)."""
    nodes = get_list(ctx, "/nodes")
    matches = match_node_ids([str(n.get("node_id", "")) for n in nodes], text)
    if not matches:
        raise CliError(f"no validator's node id starts with {text!r}", EXIT_FAILED)
    if len(matches) > 1:
        ids = ", ".join(short(i) for i in matches[:5])
        raise CliError(f"node id prefix {text!r} is ambiguous: {ids}", EXIT_USAGE)
    return next(n for n in nodes if str(n.get("node_id", "")) == matches[0])


def resolve_node_id(ctx: Context, text: str) -> bytes:
    """The node id of :func:`resolve_node`'s validator, as bytes."""
    return parse_hex(str(resolve_node(ctx, text)["node_id"]), NODE_ID_SIZE, "node id")


def resolve_excludable_id(ctx: Context, text: str) -> bytes:
    """A validator's node id, else a silent finality voter's (a dead device that skip
    blocks already took out of the validator set: the admin may still exclude it)."""
    try:
        return resolve_node_id(ctx, text)
    except CliError as error:
        if error.exit_code != EXIT_FAILED:
            raise
        status = ctx.fleet.get("/status")
        finality = (status.get("finality") if isinstance(status, dict) else None) or {}
        voters = match_node_ids([str(v) for v in finality.get("silent_voters") or []], text)
        if len(voters) != 1:
            raise CliError(
                f"no validator's nor silent voter's node id starts with {text!r}"
                if not voters
                else f"node id prefix {text!r} is ambiguous among the silent voters",
                EXIT_FAILED if not voters else EXIT_USAGE,
            ) from None
        return parse_hex(voters[0], NODE_ID_SIZE, "node id")


# --- nodes ----------------------------------------------------------------------------


def format_nodes(nodes: list[dict[str, Any]]) -> str:
    rows = [
        (
            short(n.get("node_id")),
            n.get("address"),
            _get_runtimes(n.get("labels") or []),
            ",".join(
                str(label)
                for label in n.get("labels") or []
                if not str(label).startswith("edgechain.")
            )
            or "-",
            n.get("status") or "-",
            n.get("last_seen_slot"),
            _percent(n.get("cpu_bp")),
            _percent(n.get("ram_bp")),
            _percent(n.get("pressure_bp")),
            _get_rtt(n.get("rtt_us")),
            _get_room(n.get("state_room_bytes")),
            n.get("report_slot"),
            len(n.get("apps") or []),
        )
        for n in sorted(nodes, key=lambda n: str(n.get("node_id")))
    ]
    headers = (
        "NODE", "ADDRESS", "RUNTIMES", "LABELS", "STATUS", "SEEN", "CPU", "RAM", "PRESSURE",
        "RTT", "ROOM", "REPORTED", "APPS",
    )  # fmt: skip
    return format_table(headers, rows) + f"\n{len(nodes)} validators"


def _get_room(room: Any) -> str:
    """The app state a node can take in, to a tenth of its unit (``-``: no report or not
    measured, so no limit)."""
    return format_size(room) if isinstance(room, int) else "-"


def _get_rtt(rtt_us: Any) -> str:
    """A reported RTT (``node/rtt.py``) in milliseconds; ``-`` without one yet."""
    if not isinstance(rtt_us, int) or rtt_us <= 0:
        return "-"
    return f"{rtt_us / 1000:.2f} ms"


def _get_runtimes(labels: list[Any]) -> str:
    """What the node runs, from the labels it declared (``orchestrator/policy.py``)."""
    from edgechain.orchestrator.policy import CONTAINER_ENGINE_LABEL, ROOT_CONTAINERS_LABEL

    if CONTAINER_ENGINE_LABEL not in labels:
        return "process"
    root = "+root" if ROOT_CONTAINERS_LABEL in labels else ""
    return f"process,container{root}"


def _percent(basis_points: Any) -> str:
    if not isinstance(basis_points, int):
        return "-"
    return f"{basis_points / 100:.1f}%"


def cmd_nodes(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    nodes = get_list(ctx, "/nodes")
    ctx.emit(nodes, format_nodes(nodes))
    return 0


# --- blocks ---------------------------------------------------------------------------


def format_blocks(blocks: list[dict[str, Any]]) -> str:
    rows = []
    for b in sorted(blocks, key=lambda b: (int(b.get("slot") or 0), str(b.get("hash")))):
        skip = bool(b.get("skip"))
        who = b.get("excluded") if skip else b.get("producer")
        commands = b.get("commands")
        rows.append(
            (
                b.get("slot"),
                "skip" if skip else "block",
                short(b.get("hash")),
                ("excludes " if skip else "") + short(who),
                b.get("signers"),
                len(commands) if isinstance(commands, list) else commands,
            )
        )
    headers = ("SLOT", "KIND", "HASH", "PRODUCER", "SIGNERS", "COMMANDS")
    return format_table(headers, rows)


def cmd_blocks(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    since = args.since
    if since is None:
        status = ctx.fleet.get("/status")
        head = status.get("head_slot") if isinstance(status, dict) else None
        since = max(0, (head if isinstance(head, int) else 0) - args.limit + 1)
    blocks = get_list(ctx, f"/blocks?since={since}&limit={args.limit}")
    ctx.emit(blocks, format_blocks(blocks))
    return 0


# --- status ---------------------------------------------------------------------------

STATUS_FIELDS = (
    "chain_id",
    "node_id",
    "genesis",
    "slot",
    "head_slot",
    "head",
    "role",
    "is_validator",
    "status",
    "validators",
    "peers",
    "admin_key",
    "open_admission",
    "blocks_accepted",
    "skip_blocks_accepted",
)


SKIP_RUN_NOTE = 3
"""Skip blocks in a row at the head from which ``status`` says so: one or two come from
a slow or dead producer and pass."""


def format_status(status: dict[str, Any], url: str, operator: dict[str, Any] | None) -> str:
    pairs: list[tuple[str, Any]] = [("node", url)]
    for name in STATUS_FIELDS:
        if name in status:
            value = status[name]
            pairs.append((name, short(value, 16) if name in ("head", "admin_key") else value))
    cpu = status.get("cpu_bp")
    if isinstance(cpu, int):
        # Shares of the node's declared cores when it has them (--cpu-capacity).
        capacity = status.get("cpu_capacity")
        of = f"of {capacity:g} cores" if isinstance(capacity, int | float) else "of the host"
        pairs.append(("cpu use", f"{_percent(cpu)} {of}"))
    pressure = status.get("pressure_bp")
    if isinstance(pressure, int):
        pairs.append(("cpu pressure", _percent(pressure)))
    apps = status.get("apps")
    if isinstance(apps, list):
        pairs.append(("apps here", len(apps)))
    stall = status.get("stall")
    if isinstance(stall, dict):
        # Slots with no block at all count as no node's silence (liveness.py).
        before, resumed = stall.get("before_slot"), stall.get("resumed_slot")
        pairs.append(("last chain stall", f"no block after slot {before} until {resumed}"))
    run = status.get("skip_run")
    if isinstance(run, dict) and int(run.get("skip_blocks") or 0) >= SKIP_RUN_NOTE:
        # Skip blocks carry no reports: every node looks silent, and apps get fenced.
        pairs.append(
            (
                "skip blocks only",
                f"{run.get('skip_blocks')} in a row since slot {run.get('since_slot')}: no "
                "committee reaches a majority for a block (a dead validator at the "
                'chain\'s floor? README, "How many nodes may fail")',
            )
        )
    finality = status.get("finality")
    if isinstance(finality, dict) and finality.get("held_back"):
        # More than a third of the voters are silent: nothing finalizes, memory grows.
        silent = finality.get("silent_voters") or []
        pairs.append(
            (
                "finality held back",
                f"{len(silent)} of {finality.get('voters')} voters silent "
                f"({', '.join(short(str(n)) for n in silent[:8])}); if those devices are "
                "gone for good: edgechain admin exclude NODE, for each",
            )
        )
    problem = status.get("admission_problem")
    if problem:
        # The chain would refuse this node's inclusion request (consensus/joining.py).
        pairs.append(("cannot join", f"{problem} (its log says what to do)"))
    frozen = status.get("frozen_apps")
    if isinstance(frozen, list) and frozen:
        # The watchdog froze them: this node's lease ran out (it lost the chain).
        pairs.append(("frozen by the watchdog", ", ".join(short(str(a)) for a in frozen)))
    watchdog = status.get("watchdog")
    if isinstance(watchdog, dict):
        # The process that fences this node's apps; the node starts it again if it ends.
        pid, restarts = watchdog.get("pid"), watchdog.get("restarts")
        running = f"pid {pid}" if pid is not None else "not running"
        pairs.append(("watchdog", f"{running}, restarted {restarts} times"))
    cgroups = status.get("app_cgroups")
    if isinstance(cgroups, dict):
        # Without a cgroup, an app process that clears its environment and leaves its
        # session is found by nothing (runtime/app_cgroups.py).
        held = cgroups.get("held")
        pairs.append(("app cgroups", "yes" if held else f"no ({cgroups.get('why_not')})"))
    if operator is not None:
        role = (
            "admin"
            if operator.get("admin")
            else ("operator" if operator.get("operator") else "not an operator")
        )
        pairs.append(("your key", f"{short(operator.get('public_key'), 16)} ({role})"))
        pairs.append(("your last seq", operator.get("last_seq")))
    return format_fields(pairs)


def cmd_status(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    status = ctx.fleet.get("/status")
    if not isinstance(status, dict):
        raise CliError("GET /status did not answer with an object")
    url = str(ctx.fleet.urls[ctx.fleet.preferred])
    operator = None
    if ctx.config.key is not None:
        from edgechain.crypto import bls

        public_key = bytes(bls.sk_to_pk(ctx.operator_key())).hex()
        operator = ctx.fleet.get(f"/operators/{public_key}")
    ctx.emit(
        {"node": url, "status": status, "operator": operator},
        format_status(status, url, operator if isinstance(operator, dict) else None),
    )
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """Where a command stands (``GET /commands/{hash}``): one sent with ``--no-wait``."""
    from edgechain.cli.commands import get_command_status

    ctx = Context.from_args(args)
    digest = parse_hex(args.hash, COMMAND_HASH_SIZE, "command hash").hex()
    status = get_command_status(ctx.fleet, digest)
    if not status or not isinstance(status.get("status"), str):
        raise CliError(
            f"no node knows command {short(digest)}: no block of its head chain in memory "
            "carries it, and it is neither pending nor dropped there",
            EXIT_FAILED,
        )
    pairs = [(key, status[key]) for key in COMMAND_FIELDS if key in status]
    ctx.emit(status, format_fields(pairs))
    return 0


COMMAND_HASH_SIZE = 32
COMMAND_FIELDS = ("command_hash", "status", "kind", "signer", "seq", "slot", "block", "reason",
                  "refused_heads")  # fmt: skip


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    nodes = sub.add_parser(
        "nodes", parents=[common], help="the validators: address, load, apps reported"
    )
    nodes.set_defaults(func=cmd_nodes)
    blocks = sub.add_parser(
        "blocks", parents=[common], help="recent blocks as one node accepted them"
    )
    blocks.add_argument(
        "--since", type=int, metavar="SLOT", help="from this slot (default: the last --limit slots)"
    )
    blocks.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_BLOCKS,
        help=f"at most this many (default {DEFAULT_BLOCKS})",
    )
    blocks.set_defaults(func=cmd_blocks)
    status = sub.add_parser(
        "status", parents=[common], help="the first answering node's status, and your key's"
    )
    status.set_defaults(func=cmd_status)
    command = sub.add_parser(
        "command",
        parents=[common],
        help="where a signed command stands: applied, pending or dropped, and why",
    )
    command.add_argument("hash", help="the command's hash (the output's command_hash)")
    command.set_defaults(func=cmd_command)
