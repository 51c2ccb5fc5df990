"""``edgechain``: the daemon, local networks, and the fleet client.

One module per command group: ``simulate`` (and ``demo``), ``node``, ``testnet``, ``chaos``,
``experiment`` (``experiment paper``), ``apps``, ``fleet`` (``nodes``, ``blocks``,
``status``) and ``admin``. The client commands talk to nodes over HTTP with the client
config (``cli/client.py``) and sign with its keys (``cli/commands.py``); their exit
statuses are in ``cli/common.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    from edgechain.cli import admin, apps, chaos, experiment, fleet, node, simulate, testnet
    from edgechain.cli.common import add_client_options

    parser = argparse.ArgumentParser(
        prog="edgechain",
        description="edgechain: the node daemon, local networks, and the fleet client.",
        epilog="client commands (apps, nodes, blocks, status, admin) read a client config: "
        "--client FILE or $EDGECHAIN_CLIENT",
    )
    add_client_options(parser, top_level=True)
    common = argparse.ArgumentParser(add_help=False)
    add_client_options(common, top_level=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate.add_parsers(sub)
    node.add_parsers(sub)
    testnet.add_parsers(sub)
    chaos.add_parsers(sub)
    experiment.add_parsers(sub)
    apps.add_parsers(sub, common)
    fleet.add_parsers(sub, common)
    admin.add_parsers(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from edgechain.cli.common import CliError

    args: Any = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
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


if __name__ == "__main__":
    sys.exit(main())
