"""``edgechain apps ...``: submit, list, show, stop, start, rm, update, move, history.

APP is an app id, a unique id prefix or a unique name (resolved by the node,
``GET /apps/{APP}``); NODE a node id or a unique prefix of one (``edgechain nodes``).
Every command that changes something is a signed command (``cli/commands.py``) and by
default returns once a block applied it, printing the app as the chain then has it.

``list`` and ``show`` also ask every configured node what its runtime holds
(``GET /runtime/apps``): how the app's copy fares on its node is known only there (an
app that keeps failing is ``crash_looping`` there, with its restarts and last exit,
while the chain still places it: blocks carry no such thing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgechain.cli.app_logs import add_logs_parser
from edgechain.cli.apps_format import format_app, format_apps, format_result
from edgechain.cli.client import ApiError, quote_segment
from edgechain.cli.common import CliError, format_size, format_table, short
from edgechain.cli.context import Context, parse_hex
from edgechain.cli.fleet import get_list, resolve_node_id

if TYPE_CHECKING:
    from edgechain.chain.model import AppSpec
    from edgechain.cli.commands import CommandResult

APP_ID_SIZE = 32


def get_app(ctx: Context, text: str) -> dict[str, Any]:
    """The node's view of one app (with its spec); APP resolved by the node."""
    view = ctx.fleet.get(f"/apps/{quote_segment(text)}")
    if not isinstance(view, dict) or not isinstance(view.get("app_id"), str):
        raise CliError(f"GET /apps/{text} did not answer with an app")
    return view


def get_app_id(ctx: Context, text: str) -> bytes:
    return parse_hex(str(get_app(ctx, text)["app_id"]), APP_ID_SIZE, "app id")


def get_copies(ctx: Context) -> dict[tuple[str, str], dict[str, Any]]:
    """What every configured node's runtime says of its copies, by (app id, node id);
    nothing from a node that does not answer."""
    copies: dict[tuple[str, str], dict[str, Any]] = {}
    for answer in ctx.fleet.get_each("/runtime/apps").values():
        for copy in answer if isinstance(answer, list) else ():
            if isinstance(copy, dict):
                copies[(str(copy.get("app")), str(copy.get("node")))] = copy
    return copies


def add_copies(views: list[dict[str, Any]], copies: Mapping[tuple[str, str], Any]) -> None:
    """Set each view's ``on_node``: its node's copy as that node's runtime sees it (from
    ``copies``, or the answering node's own ``local``); None when no configured node
    that answered holds it there. And ``runs_on``: the nodes the chain's reports list
    it running on (``reported_on``), but for those whose runtime says now that its copy
    there does not run: a report comes every few slots, so a stopped app was listed on
    its node for up to 4 slots after the stop."""
    for view in views:
        node = view.get("node")
        local = view.get("local")
        app = str(view.get("app_id"))
        copy = copies.get((app, str(node))) if node else None
        if copy is None and node and isinstance(local, dict) and local.get("node") == node:
            copy = local
        view["on_node"] = copy
        view["runs_on"] = [
            n
            for n in view.get("reported_on") or []
            if not is_not_running(copy if n == node else copies.get((app, str(n))))
        ]


def is_not_running(copy: Any) -> bool:
    """The node's runtime says its copy does not run (stopped, or waiting to restart);
    False when it says nothing."""
    return isinstance(copy, Mapping) and copy.get("running") is False


def add_waits(ctx: Context, view: dict[str, Any]) -> None:
    """What the app waits for, with the nodes' view (one ``GET /nodes`` for both):
    ``move_wait`` on a view with a pending move, why it waits for disk room as the nodes'
    latest reports give it (``describe_move_wait``), or None; ``state_wait`` on a view
    of an app that waits for its state (``describe_state_wait``)."""
    policy = (view.get("spec") or {}).get("policy") or {}
    if not view.get("move_to") and not policy.get("wait_for_state"):
        return
    nodes = get_list(ctx, "/nodes")
    if view.get("move_to"):
        view["move_wait"] = describe_move_wait(view, nodes)
    if policy.get("wait_for_state"):
        view["state_wait"] = describe_state_wait(view, nodes)


def describe_state_wait(view: Mapping[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    """Why an app whose policy is ``wait_for_state`` is not running: its node is down
    and the planner recovers it only where its state is (``orchestrator/placement.py``);
    None when its node is not down."""
    node = view.get("node")
    statuses = {n.get("node_id"): n.get("status") for n in nodes}
    status = statuses.get(node, "out of the validator set")
    if not node or status not in ("down", "out of the validator set"):
        return None
    holder = view.get("state_node")
    where = f" or {short(holder)}, which holds its state," if holder else ""
    return (
        f"its node {short(node)} is {status}: once it is down the app resumes when that "
        f"node{where} is back (policy wait_for_state); `edgechain apps move` starts it "
        "elsewhere from an empty state"
    )


def describe_move_wait(view: Mapping[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    """Why the planner holds a pending move back for room (``orchestrator/plan_state.py``:
    the destination needs more room than twice the state, the origin room to write it
    out once), from the rooms ``GET /nodes`` gives; None when the rooms allow it (or are
    unknown: another reason holds it, or the planner takes it at the next block)."""
    size, target, origin = view.get("state_bytes"), view.get("move_to"), view.get("node")
    if not isinstance(size, int):
        return None
    from edgechain.orchestrator.load import TRANSFER_ROOM_FACTOR, can_write_out, is_room_enough

    rooms = {
        n.get("node_id"): room if isinstance(room := n.get("state_room_bytes"), int) else None
        for n in nodes
    }
    room = rooms.get(target)
    if room is not None and not is_room_enough(room, size, TRANSFER_ROOM_FACTOR):
        return (
            f"for room on {short(target)}: it can take {format_size(room)}, the move lands "
            f"{format_size(TRANSFER_ROOM_FACTOR * size)} (the state twice over)"
        )
    room = rooms.get(origin)
    if room is not None and not can_write_out(room, size):
        return (
            f"for room on {short(origin)} to write the state out: {format_size(room)} "
            f"for {format_size(size)}"
        )
    return None


def _report(ctx: Context, result: CommandResult, app: str | None) -> None:
    """Print the result, and the app as the chain now has it (None: it is gone)."""
    view = None
    text = None
    if app is not None and result.applied:
        try:
            view = get_app(ctx, app)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # Another operator's REMOVE came in a later block: the command applied.
            text = f"{result.describe(result.kind)}\n(the app has been removed since)"
        else:
            add_waits(ctx, view)
    value = result.to_json()
    if view is not None:
        value["app"] = view
    ctx.emit(value, text or format_result(result, view))


# --- commands -------------------------------------------------------------------------


def warn_without_replicas(specs: Sequence[AppSpec]) -> None:
    """A stateful app without replicas loses its state with its node (replicas are an
    opt-in, ``replica_interval_slots``): said on standard error, the command goes on."""
    for spec in specs:
        if spec.stateful and not spec.replica_interval_slots:
            print(
                f"note: {spec.name!r} is stateful without replicas: if its node dies it "
                "starts again elsewhere from an empty state (set replica_interval_slots "
                "to keep a replica on another node)",
                file=sys.stderr,
            )


# The commands that sign import the signing side (chain.model, BLS, the spec checks)
# themselves: `apps list` and `apps show`, what scripts poll, start in about half the
# CPU without it.


def cmd_submit(args: argparse.Namespace) -> int:
    from edgechain.chain.model import CommandKind
    from edgechain.cli.commands import send_submits
    from edgechain.cli.specfile import load_spec

    paths: list[str] = args.spec
    specs = [load_spec(path) for path in paths]  # every file checked before any is sent
    warn_without_replicas(specs)
    ctx = Context.from_args(args)
    if len(specs) == 1:
        result = ctx.send(ctx.operator_key(), CommandKind.SUBMIT, spec=specs[0])
        _report(ctx, result, result.app_id)
        return 0
    results = send_submits(ctx.fleet, ctx.operator_key(), specs, wait=ctx.wait, timeout=ctx.timeout)
    pairs = list(zip(results, specs, strict=True))
    value = [dict(r.to_json(), name=spec.name) for r, spec in pairs]
    lines = [r.describe(f"submit {spec.name} (app {short(r.app_id)})") for r, spec in pairs]
    refused = [spec.name for r, spec in pairs if r.refusal is not None]
    done = f"{len(results) - len(refused)} of " if refused else ""
    ctx.emit(value, "\n".join([*lines, f"{done}{len(results)} apps submitted"]))
    if refused:
        raise CliError(f"the chain did not apply the submission of {', '.join(refused)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    apps = get_list(ctx, "/apps")
    add_copies(apps, get_copies(ctx))
    ctx.emit(apps, format_apps(apps))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    view = get_app(ctx, args.app)
    add_copies([view], get_copies(ctx))
    add_waits(ctx, view)
    ctx.emit(view, format_app(view))
    return 0


def _simple(kind_name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from edgechain.chain.model import CommandKind

        kind = CommandKind[kind_name]
        ctx = Context.from_args(args)
        app = get_app_id(ctx, args.app)
        result = ctx.send(ctx.operator_key(), kind, app=app)
        _report(ctx, result, None if kind is CommandKind.REMOVE else app.hex())
        return 0

    return run


def cmd_update(args: argparse.Namespace) -> int:
    from edgechain.chain.model import CommandKind
    from edgechain.cli.specfile import load_spec

    spec = load_spec(args.spec)
    warn_without_replicas([spec])
    ctx = Context.from_args(args)
    app = get_app_id(ctx, args.app)
    result = ctx.send(ctx.operator_key(), CommandKind.UPDATE, app=app, spec=spec)
    _report(ctx, result, app.hex())
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from edgechain.chain.model import CommandKind

    ctx = Context.from_args(args)
    app = get_app_id(ctx, args.app)
    node = resolve_node_id(ctx, args.node)
    result = ctx.send(ctx.operator_key(), CommandKind.MOVE, app=app, node=node)
    _report(ctx, result, app.hex())
    return 0


# --- history --------------------------------------------------------------------------


def is_same_app(entry: Mapping[str, Any], app_id: str) -> bool:
    """Migration results may carry a shortened id (``app``) or the full one."""
    value = entry.get("app_id", entry.get("app"))
    return isinstance(value, str) and len(value) >= 8 and app_id.startswith(value.lower())


def merge_migrations(
    app_id: str, own: list[Any], answers: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Migration results for ``app_id`` from every node (deduplicated, by slot), and the
    URLs of nodes that could not tell."""
    merged: dict[str, dict[str, Any]] = {}
    missing = []
    sources: list[tuple[str, Any]] = [("", own), *answers.items()]
    for url, answer in sources:
        if not isinstance(answer, list):
            missing.append(url)
            continue
        for entry in answer:
            if isinstance(entry, dict) and is_same_app(entry, app_id):
                key = repr(sorted((k, repr(v)) for k, v in entry.items() if k != "reported_by"))
                merged.setdefault(key, {**entry, "reported_by": url} if url else dict(entry))
    ordered = sorted(
        merged.values(), key=lambda e: (int(e.get("slot") or 0), int(e.get("attempt") or 0))
    )
    return ordered, [u for u in missing if u]


def _describe_event(event: dict[str, Any]) -> str:
    details = []
    for name, value in event.items():
        if name in ("slot", "kind", "event", "type", "block") or value is None:
            continue
        # Node ids, keys: 12 hex digits tell them apart in a table.
        shown = short(value) if isinstance(value, str) and len(value) > 16 else value
        details.append(f"{name}={shown}")
    return " ".join(details)


def format_history(app_id: str, events: list[Any], migrations: list[dict[str, Any]]) -> str:
    rows = [
        (e.get("slot"), e.get("kind", e.get("event", e.get("type"))), _describe_event(e))
        for e in events
        if isinstance(e, dict)
    ]
    lines = [f"app {app_id}", format_table(("SLOT", "EVENT", "DETAILS"), rows)]
    if migrations:
        lines.append("")
        lines.append(
            format_table(
                ("SLOT", "TO", "OUTCOME", "PRE-COPY", "SAVE", "TRANSMIT", "RESUME", "STATE BYTES"),
                [
                    (
                        m.get("slot"),
                        short(m.get("to", m.get("destination"))),
                        m.get("outcome"),
                        _precopy(m),
                        _ms(m.get("save_ms")),
                        _ms(m.get("transmit_ms")),
                        _ms(m.get("resume_ms")),
                        m.get("raw_bytes"),
                    )
                    for m in migrations
                ],
            )
        )
    return "\n".join(lines)


def _precopy(migration: dict[str, Any]) -> str:
    """Rounds sent while the app ran, and how long they took (``-``: none)."""
    rounds = migration.get("precopy_rounds")
    if not isinstance(rounds, int) or rounds == 0:
        return "-"
    return f"{rounds} in {_ms(migration.get('precopy_ms'))}"


def _ms(value: Any) -> str:
    return f"{value} ms" if isinstance(value, int | float) else "-"


def cmd_history(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    app_id = str(get_app(ctx, args.app)["app_id"])
    reply = ctx.fleet.get(f"/apps/{app_id}/history")
    if not isinstance(reply, dict):
        raise CliError(f"GET /apps/{app_id}/history did not answer with an object")
    events = reply.get("events") if isinstance(reply.get("events"), list) else []
    own = reply.get("migrations") if isinstance(reply.get("migrations"), list) else []
    migrations, missing = merge_migrations(app_id, own or [], ctx.fleet.get_each("/migrations"))
    value = {
        "app_id": app_id,
        "events": events,
        "migrations": migrations,
        "nodes_not_answering": missing,
    }
    text = format_history(app_id, events or [], migrations)
    if missing:
        text += f"\n(no migration timings from {', '.join(missing)})"
    ctx.emit(value, text)
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    apps = sub.add_parser("apps", help="manage the fleet's apps (signed with your operator key)")
    group = apps.add_subparsers(dest="apps_command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Any, *arguments: tuple[str, str]) -> None:
        parser = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        for argument, argument_help in arguments:
            parser.add_argument(argument, help=argument_help)
        parser.set_defaults(func=func)

    app = ("app", "app id, unique id prefix, or unique name")
    spec = ("spec", "app spec file: YAML, or JSON if it ends in .json ('-': stdin)")
    submit = group.add_parser(
        "submit",
        parents=[common],
        help="submit new apps (placed by the planner)",
        description="Submit one app per spec file, signed with consecutive sequence "
        "numbers in one call (the chain applies them in order, several per block).",
    )
    submit.add_argument("spec", nargs="+", help=spec[1] + "; several: one app each")
    submit.set_defaults(func=cmd_submit)
    add("list", "every app of the fleet, with its node", cmd_list)
    add("show", "one app, with its spec", cmd_show, app)
    add(
        "stop",
        "stop an app where it is (it keeps its node and state)",
        _simple("STOP"),
        app,
    )
    add("start", "run a stopped app again", _simple("START"), app)
    add("rm", "remove an app and delete its state", _simple("REMOVE"), app)
    add("update", "a new spec version (same id, same node, state kept)", cmd_update, app, spec)
    add(
        "move",
        "migrate an app to a named node (within its policy; balancing leaves it there 64 slots)",
        cmd_move,
        app,
        ("node", "node id or unique prefix (see `edgechain nodes`)"),
    )
    add(
        "history", "placements, moves and stops from the chain; migration timings", cmd_history, app
    )
    add_logs_parser(group, common)
