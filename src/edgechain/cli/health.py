"""``edgechain node health``: exit 0 when the node of a data directory answers ``/health``.

For container health checks (``deploy/Containerfile``): the node's API URL comes from
``<data_dir>/api.json``, which the daemon writes once it serves, so the check follows
whatever ``--http`` address the node was given (environment, TOML file or flag).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgechain.cli.client import ApiError, UnreachableError, read_local_node_url, request_json
from edgechain.cli.common import EXIT_FAILED, CliError


def check_health(data_dir: Path) -> int:
    """0 when the node answers ``GET /health`` with ``ok``, else 1 (and why, on stderr)."""
    try:
        url = read_local_node_url(data_dir)
    except (OSError, ValueError, KeyError, CliError) as exc:
        print(f"edgechain node health: no node serving in {data_dir} ({exc})", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer = request_json(url, "GET", "/health")
    except (ApiError, UnreachableError) as exc:
        print(f"edgechain node health: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        print(f"edgechain node health: unhealthy: {answer}", file=sys.stderr)
        return EXIT_FAILED
    print("ok")
    return 0
