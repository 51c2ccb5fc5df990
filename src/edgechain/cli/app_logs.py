"""``edgechain apps logs APP``: the end of an app's output, from the nodes that hold it.

An app's output stays on the node that ran it (``runtime/app_log.py``; a container's
with the engine). The client signs one read with its operator key
(``chain/read_auth.py``: the chain, the app, the time) and asks every node of its
config at once (``GET /apps/{app}/log``); each node that holds output of the app
answers. The node the chain places the app on comes last, so its newest lines end the
output; an app that moved shows what each node it ran on kept (``--node`` picks one).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from edgechain.chain.read_auth import (
    DEFAULT_TAIL_LINES,
    KEY_HEADER,
    MAX_TAIL_LINES,
    SIGNATURE_HEADER,
    TIME_HEADER,
    compute_log_read_message,
)
from edgechain.cli.client import ApiError, quote_segment
from edgechain.cli.common import EXIT_USAGE, CliError, short
from edgechain.cli.context import Context
from edgechain.types import AppId


def get_signed_headers(ctx: Context, chain_id: str, app_id: str) -> dict[str, str]:
    """The operator's signed read of ``app_id`` now (``api/log_reads.py``)."""
    from edgechain.crypto import bls  # here: every `apps` command builds this parser

    sk = ctx.operator_key()
    time_ms = int(time.time() * 1000)
    message = compute_log_read_message(chain_id, AppId(bytes.fromhex(app_id)), time_ms)
    return {
        KEY_HEADER: bls.sk_to_pk(sk).hex(),
        TIME_HEADER: str(time_ms),
        SIGNATURE_HEADER: bls.sign(sk, message).hex(),
    }


def order_logs(logs: list[dict[str, Any]], placed_on: str | None) -> list[dict[str, Any]]:
    """Older copies first, the copy that runs now and the chain's node last."""
    return sorted(
        logs,
        key=lambda log: (log.get("node_id") == placed_on, bool(log.get("running"))),
    )


def format_logs(logs: list[dict[str, Any]], placed_on: str | None, lines: int) -> str:
    parts = []
    for log in logs:
        if len(logs) > 1:
            where = "running here" if log.get("running") else "not running here"
            chain = ", where the chain places it" if log.get("node_id") == placed_on else ""
            parts.append(f"==> node {short(str(log.get('node_id')))} ({where}{chain}) <==")
        if log.get("truncated"):
            parts.append(f"[earlier output not shown: --lines {min(4 * lines, MAX_TAIL_LINES)}]")
        parts.extend(str(line) for line in log.get("lines") or [])
    return "\n".join(parts)


def cmd_logs(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    if not 1 <= args.lines <= MAX_TAIL_LINES:
        raise CliError(f"--lines must be in [1, {MAX_TAIL_LINES}]", EXIT_USAGE)
    view = ctx.fleet.get(f"/apps/{quote_segment(args.app)}")
    status = ctx.fleet.get("/status")
    if not isinstance(view, dict) or not isinstance(view.get("app_id"), str):
        raise CliError(f"GET /apps/{args.app} did not answer with an app")
    if not isinstance(status, dict) or not isinstance(status.get("chain_id"), str):
        raise CliError("GET /status did not say the chain id")
    app_id, placed_on = str(view["app_id"]), view.get("node")
    headers = get_signed_headers(ctx, status["chain_id"], app_id)
    answers = ctx.fleet.get_each(f"/apps/{app_id}/log?lines={args.lines}", headers)
    logs = [a for a in answers.values() if isinstance(a, dict)]
    if args.node:
        held = ", ".join(short(str(log.get("node_id"))) for log in logs) or "none"
        logs = [log for log in logs if str(log.get("node_id", "")).startswith(args.node)]
        if not logs:
            raise CliError(f"no output of {short(app_id)} from a node {args.node}* (held: {held})")
    refusals = [
        f"{url}: {answer}"
        for url, answer in answers.items()
        if isinstance(answer, ApiError) and answer.status in (401, 403)
    ]
    if not logs:
        where = f" (the chain places it on {short(str(placed_on))})" if placed_on else ""
        why = "; ".join(refusals) if refusals else "none of its nodes is in your client config"
        raise CliError(f"no output of {view.get('name')} {short(app_id)} found{where}: {why}")
    logs = order_logs(logs, placed_on if isinstance(placed_on, str) else None)
    text = format_logs(logs, placed_on if isinstance(placed_on, str) else None, args.lines)
    ctx.emit({"app_id": app_id, "logs": logs}, text)
    return 0


def add_logs_parser(
    group: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    text = "the end of an app's output, from each node of your config that ran it"
    parser = group.add_parser("logs", parents=[common], help=text, description=text)
    parser.add_argument("app", help="app id, unique id prefix, or unique name")
    parser.add_argument(
        "--lines",
        type=int,
        default=DEFAULT_TAIL_LINES,
        help=f"how many of the last lines, per node (default {DEFAULT_TAIL_LINES})",
    )
    parser.add_argument("--node", help="only the node with this id prefix")
    parser.set_defaults(func=cmd_logs)
