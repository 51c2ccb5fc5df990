"""``edgechain``: the daemon, local networks, and the fleet client.

One module per command group: ``simulate`` (and ``demo``), ``node``, ``testnet``, ``chaos``,
``experiment`` (``experiment paper``), ``apps``, ``fleet`` (``nodes``, ``blocks``,
``status``, ``command``) and ``admin``. The client commands talk to nodes over HTTP with the client
config (``cli/client.py``) and sign with its keys (``cli/commands.py``); their exit
statuses are in ``cli/common.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

COMMAND_MODULES: dict[str, str] = {
    "simulate": "simulate",
    "demo": "simulate",
    "node": "node",
    "testnet": "testnet",
    "chaos": "chaos",
    "experiment": "experiment",
    "apps": "apps",
    "nodes": "fleet",
    "blocks": "fleet",
    "status": "fleet",
    "command": "fleet",
    "admin": "admin",
}
"""Each command and the ``cli`` module that defines it, in the order ``--help`` lists
them. ``main`` uses it to import only the module a command needs: a testnet starts 100
``edgechain node`` processes, and the whole parser would load the simulator and the
launcher into each (about 0.08 s of CPU and 4 MB of RSS per node, issue 13)."""

_CLIENT_MODULES = frozenset({"apps", "fleet", "admin"})  # they take the common options


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` (a key of :data:`COMMAND_MODULES`) one with
    only that command's module: the same parse of an ``argv`` that starts with it."""
    from edgechain.cli.common import add_client_options

    parser = argparse.ArgumentParser(
        prog="edgechain",
        description="edgechain: the node daemon, local networks, and the fleet client.",
        epilog="client commands (apps, nodes, blocks, status, command, admin) read a client "
        "config: --client FILE or $EDGECHAIN_CLIENT",
    )
    add_client_options(parser, top_level=True)
    common = argparse.ArgumentParser(add_help=False)
    add_client_options(common, top_level=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is None:
        names = list(dict.fromkeys(COMMAND_MODULES.values()))
    else:
        names = [COMMAND_MODULES[command]]
    for name in names:
        module = importlib.import_module(f"edgechain.cli.{name}")
        if name in _CLIENT_MODULES:
            module.add_parsers(sub, common)
        else:
            module.add_parsers(sub)
    return parser


class _QuietParser(argparse.ArgumentParser):
    """Raises on a mistake instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def get_command(arguments: Sequence[str]) -> str | None:
    """The command ``arguments`` name after the top-level options, if it is one of
    :data:`COMMAND_MODULES`; None for ``--help``, a mistake or no command (the whole
    parser then says what is wrong).

    ``main`` builds only that command's parser: a launcher starts 100 ``edgechain node``
    processes, and a script or a live test polls ``edgechain --client F apps list``,
    which with the whole parser imported the simulator, the launcher and the node, about
    0.5 s of CPU a call against about 0.15 s (issue 13).
    """
    from edgechain.cli.common import add_client_options

    top = _QuietParser(add_help=False)
    add_client_options(top, top_level=True)
    top.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        known, _ = top.parse_known_args(arguments)
    except ValueError:  # a bad top-level option: the whole parser reports it
        return None
    rest: list[str] = known.rest
    return rest[0] if rest and rest[0] in COMMAND_MODULES else None


def main(argv: Sequence[str] | None = None) -> int:
    from edgechain.cli.common import CliError

    arguments = list(sys.argv[1:] if argv is None else argv)
    command = get_command(arguments)
    args: Any = build_parser(command).parse_args(arguments)
    try:
        code = int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edgechain apps list | head -1`: the reader left; no traceback, and none from
        # the interpreter flushing stdout at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    if argv is None and command == "node" and args.action == "run":
        exit_without_teardown(code)
    return code


def exit_without_teardown(code: int) -> NoReturn:
    """Exit a stopped node daemon without the interpreter's teardown.

    By now the node has closed its store, its apps and its watchdog, and said "node
    stopped". What is left is the interpreter freeing every object, about 0.08 s of CPU
    per node here: 100 nodes stopping together on two cores did not finish it within
    the launcher's 10 s grace (80 of 100 were SIGKILLed after logging "node stopped",
    issue 13). Only a program run (``argv`` None) does this, never a caller in-process.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
