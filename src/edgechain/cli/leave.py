"""``edgechain node leave``: ask the node of a data directory to leave, and follow it.

The node's API URL comes from ``<data_dir>/api.json`` (the daemon writes it once it
runs) and the right to ask from ``<data_dir>/api.token``: only someone who can read the
node's data directory may make it leave. The command then follows ``/status`` ``leave``
(node/leaving.py) and prints each phase, until the node stops answering after it left.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from edgechain.api.auth import TOKEN_FILE, TokenError, read_token
from edgechain.chain.attestation import is_one_failure_fatal
from edgechain.chain.finality import is_supermajority
from edgechain.cli.client import (
    ApiError,
    NodeUrl,
    UnreachableError,
    read_local_node_url,
    request_json,
)
from edgechain.cli.common import EXIT_FAILED, EXIT_USAGE, CliError
from edgechain.node.leaving import has_left_since

POLL_S = 0.25
STOP_GRACE_S = 120.0
"""Beyond the drain timeout: time for the exit to reach a block and the node to stop."""


def leave_node(data_dir: Path, drain_timeout_s: float) -> int:
    """Ask, then follow until the node stopped (0) or the wait ran out (1)."""
    try:
        url = read_local_node_url(data_dir)
        token = read_token(data_dir / TOKEN_FILE)
    except (OSError, ValueError, KeyError, TokenError, CliError) as exc:
        print(
            f"edgechain node leave: no running node found in {data_dir} ({exc}); "
            "pass the --data-dir the node runs with",
            file=sys.stderr,
        )
        return EXIT_USAGE
    warning = get_leave_warning(url)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    asked_s = time.time() - 1.0  # file times may be coarse
    try:
        progress = request_json(url, "POST", "/node/leave", {}, token=token)
    except (ApiError, UnreachableError) as exc:
        print(f"edgechain node leave: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"leaving: {describe(progress)}", flush=True)
    deadline = time.monotonic() + drain_timeout_s + STOP_GRACE_S
    last = progress
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        try:
            status = request_json(url, "GET", "/status")
        except UnreachableError:
            if has_left_since(data_dir, asked_s):
                print("left: the exit is in a block and the node stopped", flush=True)
                return 0
            print("edgechain node leave: the node stopped before its exit", file=sys.stderr)
            return EXIT_FAILED
        except ApiError:
            continue  # stopping: the API answers 503 for a moment
        leave = status.get("leave") or {}
        if describe(leave) != describe(last):
            print(f"leaving: {describe(leave)}", flush=True)
        last = leave
    print(f"edgechain node leave: still {describe(last)} after the wait", file=sys.stderr)
    return EXIT_FAILED


def get_leave_warning(url: NodeUrl) -> str | None:
    """What leaving would cost the chain (:func:`compute_leave_warnings`), else None
    (also when the node cannot say)."""
    try:
        status = request_json(url, "GET", "/status")
        chain = request_json(url, "GET", "/dashboard/snapshot").get("node") or {}
    except (ApiError, UnreachableError):
        return None
    return "\n".join(compute_leave_warnings(status, chain)) or None


def compute_leave_warnings(status: dict[str, Any], chain: dict[str, Any]) -> list[str]:
    """Warnings from the node's ``/status`` and its snapshot's ``node``: the validators
    left behind would stop at one failure (``attestation.is_one_failure_fatal``); the
    finality voters left would be two thirds or fewer (``finality_health.py``)."""
    if status.get("is_validator") is not True:
        return []
    warnings = []
    validators, committee = chain.get("validators"), chain.get("committee_size")
    if (
        isinstance(validators, int)
        and isinstance(committee, int)
        and is_one_failure_fatal(validators - 1, committee)
    ):
        warnings.append(
            f"warning: {validators - 1} validators remain after this node, at or below the "
            f"chain's floor of committee + 1 = {committee + 1}: a block then needs every "
            "elected member's vote, so one dead node will stop the chain until it returns "
            '(README, "How many nodes may fail")'
        )
    finality = status.get("finality") or {}
    voters, silent = finality.get("voters"), finality.get("silent_voters")
    if finality.get("is_voter") is True and isinstance(voters, int) and isinstance(silent, list):
        gone = len(silent) + 1
        if not is_supermajority(voters - gone, voters):
            warnings.append(
                f"warning: {gone} of the chain's {voters} finality voters are silent once "
                "this node leaves: nothing finalizes until enough of them return or the "
                "admin excludes them (edgechain admin exclude NODE), and every node's "
                "memory grows with each block meanwhile"
            )
    return warnings


def describe(leave: dict[str, Any]) -> str:
    """One line of a leave's progress."""
    phase = leave.get("phase", "?")
    here = len({*(leave.get("apps_here") or ()), *(leave.get("apps_running_here") or ())})
    text = f"{phase}, {here} app{'s' if here != 1 else ''} here"
    if phase == "draining" and not leave.get("draining_on_chain"):
        text += " (drain not in a block yet)"
    behind = leave.get("apps_left_behind") or ()
    if behind:
        text += f", {len(behind)} left behind"
    return text
