"""How ``edgechain apps list`` and ``show`` print apps: the chain's view of each app and
what the app's node says of its copy (``GET /runtime/apps``): a crash loop, a hold, a
start without the app's state are known only there."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgechain.cli.common import format_fields, format_size, format_table, short

if TYPE_CHECKING:
    from edgechain.cli.commands import CommandResult

CRASH_LOOPING = "crash_looping"
"""The status ``GET /runtime/apps`` gives an app that failed on its node and waits to be
restarted (``runtime/restart_backoff.CRASH_LOOPING``; not imported: the runtime package
would double the CLI's start-up time)."""
DISK_FULL = "disk_full"
"""The status of an app its node holds stopped for filling the node's disk
(``runtime/disk_guard.DISK_FULL``)."""
FENCED = "fenced"
"""The status of an app its node holds stopped because the chain has not seen the node
for F slots (``runtime/lease_renewal.FENCED``)."""
LOCAL_TROUBLES = (CRASH_LOOPING, DISK_FULL, FENCED)
"""Statuses that say the chain places an app on a node that does not run it."""


def describe_copy(copy: Any) -> str | None:
    """``crash_looping: 3 restarts, last exit: exit code 2, next restart in 8 s``"""
    if not isinstance(copy, Mapping):
        return None
    if copy.get("hold"):
        return f"{copy.get('status')}: {copy.get('hold')}"
    parts = []
    restarts, last_exit = copy.get("restarts"), copy.get("last_exit")
    if last_exit:
        parts += [f"{restarts} restarts", f"last exit: {last_exit}"]
    wait = copy.get("next_restart_in_s")
    if isinstance(wait, int | float):
        parts.append(f"next restart in {wait:g} s")
    return str(copy.get("status")) + (": " + ", ".join(parts) if parts else "")


def _get_trouble(view: Mapping[str, Any]) -> str | None:
    """``crash_looping`` or ``disk_full`` when the app's node says so, else None."""
    copy = view.get("on_node")
    status = copy.get("status") if isinstance(copy, Mapping) else None
    return status if status in LOCAL_TROUBLES else None


def get_state_lost(view: Mapping[str, Any]) -> str | None:
    """How the app's copy on its node started without its state, as that node says."""
    copy = view.get("on_node")
    lost = copy.get("state_lost") if isinstance(copy, Mapping) else None
    return lost if isinstance(lost, str) and lost else None


def format_apps(apps: list[dict[str, Any]]) -> str:
    ordered = sorted(apps, key=lambda a: (str(a.get("name")), str(a.get("app_id"))))
    rows = [
        (
            short(a.get("app_id")),
            a.get("name"),
            _get_trouble(a) or a.get("state"),
            a.get("version"),
            short(a.get("node")),
            a.get("runtime"),
            a.get("created_slot"),
            a.get("last_move_slot"),
            ",".join(short(n) for n in a.get("runs_on", a.get("reported_on")) or []) or "-",
        )
        for a in ordered
    ]
    headers = ("APP", "NAME", "STATE", "VER", "NODE", "RUNTIME", "CREATED", "MOVED", "RUNS ON")
    # The chain places these on a node that keeps failing to run them: say why.
    failing = [
        f"{a.get('name')} ({short(a.get('app_id'))}) on {short(a.get('node'))}: "
        f"{describe_copy(a.get('on_node'))}"
        for a in ordered
        if _get_trouble(a)
    ]
    # An app that lost its state must not pass for one that kept it.
    lost = [
        f"{a.get('name')} ({short(a.get('app_id'))}) on {short(a.get('node'))}: {note}"
        for a in ordered
        if (note := get_state_lost(a))
    ]
    return "\n".join([format_table(headers, rows), f"{len(apps)} apps", *failing, *lost])


def format_bytes(value: int) -> str:
    """``64 MiB`` for whole binary units, else the exact byte count."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"


def get_limit_fields(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The spec's resource limits and root opt-in, as people write them; only those set
    (0 and false mean no limit)."""
    pairs: list[tuple[str, Any]] = []
    cpu = spec.get("cpu_limit_millicores")
    if isinstance(cpu, int) and cpu > 0:
        pairs.append(("spec.cpu_limit", f"{cpu / 1000:g} cores ({cpu}m)"))
    for key, label in (
        ("memory_limit_bytes", "memory_limit"),
        ("state_limit_bytes", "state_limit"),
    ):
        value = spec.get(key)
        if isinstance(value, int) and value > 0:
            pairs.append((f"spec.{label}", format_bytes(value)))
    if spec.get("run_as_root") is True:
        pairs.append(("spec.run_as_root", "yes (only on nodes whose operator allows it)"))
    return pairs


def format_app(view: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [
        ("app", view.get("app_id")),
        ("name", view.get("name")),
        ("state", view.get("state")),
        ("version", view.get("version")),
        ("node", view.get("node")),
        ("moving to", view.get("move_to")),
        ("replica node", view.get("replica_node")),
        ("runtime", view.get("runtime")),
        ("owner", short(view.get("owner"), 16)),
        ("created at slot", view.get("created_slot")),
        ("last moved at slot", view.get("last_move_slot")),
        ("reported running on", ", ".join(short(n) for n in view.get("reported_on") or []) or "-"),
    ]
    if view.get("state_node"):
        pairs.append(("state held on", view["state_node"]))
    size = view.get("state_bytes")
    if isinstance(size, int):
        pairs.append(("state size", format_size(size)))
    if view.get("move_wait"):
        pairs.append(("move waits", view["move_wait"]))
    if view.get("state_wait"):
        pairs.append(("waits for its state", view["state_wait"]))
    if "on_node" in view:
        pairs.append(("on its node", describe_copy(view.get("on_node")) or "unknown"))
    if lost := get_state_lost(view):
        pairs.append(("state lost", lost))
    spec = view.get("spec")
    if isinstance(spec, dict):
        for name in ("image", "command", "cpu_bp", "ram_bp", "stateful", "replica_interval_slots"):
            value = spec.get(name)
            if value in (None, "", []):
                continue
            if name == "command" and isinstance(value, list):
                value = shlex.join(str(v) for v in value)
            pairs.append((f"spec.{name}", value))
        pairs += get_limit_fields(spec)
        policy = spec.get("policy")
        if isinstance(policy, dict):
            # Only what differs from the defaults (no pin, no labels, no interval).
            chosen = {k: v for k, v in policy.items() if v not in (False, "", [], 0, None)}
            pairs.append(("spec.policy", json.dumps(chosen) if chosen else "default"))
    return format_fields(pairs)


def format_result(result: CommandResult, view: dict[str, Any] | None) -> str:
    line = result.describe(result.kind)
    if view is None:
        return line
    return line + "\n" + format_app(view)
