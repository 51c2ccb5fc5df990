"""What every client command shares: errors and exit statuses, common options, output.

Exit statuses of the client commands (``apps``, ``nodes``, ``blocks``, ``status``,
``admin``):

* 0: done (a signed command: applied on chain, unless ``--no-wait``);
* 1: the network refused or did not do it: an API error (HTTP 4xx/5xx, printed as
  ``error: ...``), or a command not applied within ``--timeout``;
* 2: the request never got there: bad arguments, an unreadable client config, key or
  spec file, or no configured node answering.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_TIMEOUT_S = 60.0
"""How long a signed command may take to be applied (a few slots, with margin)."""
DEFAULT_HTTP_TIMEOUT_S = 5.0
"""How long one request waits for a node before the client tries the next one."""


class CliError(Exception):
    """A client command failed; ``main`` prints ``error: <message>`` and exits."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``--client``, ``--json``, ``--timeout``, ``--http-timeout``, ``--no-wait``.

    Accepted before the command (``edgechain --client F apps list``) and after it
    (``edgechain apps list --client F``). The sub-command copies default to SUPPRESS,
    so they do not overwrite a value given before the command.
    """

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--client",
        metavar="FILE",
        default=default(None),
        help="client config (TOML: node URLs and key files); default: $EDGECHAIN_CLIENT, "
        "else ./client.toml",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON for scripts instead of tables",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SEC",
        default=default(DEFAULT_TIMEOUT_S),
        help=f"wait this long for a signed command to be applied (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--http-timeout",
        type=float,
        metavar="SEC",
        default=default(DEFAULT_HTTP_TIMEOUT_S),
        help="wait this long for one node's answer before trying the next configured node "
        f"(default {DEFAULT_HTTP_TIMEOUT_S:g}; raise it for nodes on a saturated host)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        default=default(False),
        help="return once a node accepted a signed command, without waiting for a block",
    )


def print_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, indent=1, sort_keys=True) + "\n")


def short(value: Any, size: int = 12) -> str:
    """A hex id cut to ``size`` digits (``-`` for none)."""
    if value is None or value == "":
        return "-"
    text = str(value)
    return text[:size]


def format_size(value: int) -> str:
    """A byte count to a tenth of its binary unit: ``1.5 GiB``, ``66.2 MiB``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value // 1024} KiB"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; ``-`` for None."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def format_fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines with the names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {'-' if v is None else v}" for name, v in pairs)
