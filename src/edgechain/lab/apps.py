"""Where each app ran and how it moved, for the testnet summary (pure, like summary.py).

Inputs are what the launcher collected at the end: the fleet view (``GET /apps``) and
each app's history (``GET /apps/{id}/history``, each asked of another node in turn:
they hold the same finalized history), and every node's
``GET /migrations`` (timings are measured by the origin of each migration). Node ids
are shown as the launcher's node names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgechain.cli.apps import is_same_app

PATH_EVENTS = ("place", "migrate", "recover")
"""History events that put the app on a node."""


def _name(names: Mapping[str, str], node: Any) -> str | None:
    if not isinstance(node, str) or not node:
        return None
    return names.get(node, node[:12])


def _total_ms(entry: Mapping[str, Any]) -> float | None:
    parts = [entry.get(k) for k in ("save_ms", "transmit_ms", "resume_ms")]
    numbers = [p for p in parts if isinstance(p, int | float) and not isinstance(p, bool)]
    return round(sum(numbers), 1) if numbers else None


def summarize_app(
    view: Mapping[str, Any],
    events: Sequence[Any] | None,
    migrations: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
) -> dict[str, Any]:
    """``events``: the app's history from a node (None: no node answered with one)."""
    app_id = str(view.get("app_id", ""))
    shown_events = []
    for event in events or ():
        if not isinstance(event, Mapping):
            continue
        shown = {"slot": event.get("slot"), "kind": event.get("kind")}
        for key in ("node", "origin"):
            if event.get(key):
                shown[key] = _name(names, event.get(key))
        if event.get("version") is not None:
            shown["version"] = event.get("version")
        shown_events.append(shown)
    timings = [
        {
            "slot": m.get("slot"),
            "to": _name(names, _expand(m.get("to"), names)),
            "outcome": m.get("outcome"),
            "total_ms": _total_ms(m),
            "raw_bytes": m.get("raw_bytes"),
        }
        for m in migrations
        if is_same_app(m, app_id)
    ]
    return {
        "app_id": app_id,
        "name": view.get("name"),
        "state": view.get("state"),
        "version": view.get("version"),
        "node": _name(names, view.get("node")),
        "path": [e["node"] for e in shown_events if e["kind"] in PATH_EVENTS and "node" in e],
        "events": shown_events,
        "history_collected": events is not None,
        "migrations": sorted(timings, key=lambda t: int(t["slot"] or 0)),
    }


def _expand(node: Any, names: Mapping[str, str]) -> Any:
    """A shortened node id (migration results carry 16 hex digits) as the full one."""
    if not isinstance(node, str) or len(node) < 8:
        return node
    matches = [n for n in names if n.startswith(node.lower())]
    return matches[0] if len(matches) == 1 else node


def summarize_apps(
    apps: Sequence[Any] | None,
    histories: Mapping[str, Any],
    migrations: Mapping[str, Any],
    names: Mapping[str, str],
) -> list[dict[str, Any]] | None:
    """Per app at the end of the run; None if the fleet view could not be collected.

    ``histories``: app id -> ``GET /apps/{id}/history`` answer; ``migrations``: node
    name -> ``GET /migrations`` answer (None where the node did not answer).
    """
    if apps is None:
        return None
    results = [
        m
        for answer in migrations.values()
        if isinstance(answer, list)
        for m in answer
        if isinstance(m, Mapping)
    ]
    summaries = []
    for view in apps:
        if not isinstance(view, Mapping):
            continue
        history = histories.get(str(view.get("app_id")))
        events = history.get("events") if isinstance(history, Mapping) else None
        summaries.append(
            summarize_app(view, events if isinstance(events, list) else None, results, names)
        )
    return sorted(summaries, key=lambda s: (str(s["name"]), s["app_id"]))


def format_app_line(app: Mapping[str, Any], name_width: int = 0) -> str:
    """``counter  1a2b3c4d5e6f  running on node-003 v1: node-001 @5 -> node-003 @21 (340 ms)``"""
    steps = []
    for event in app["events"]:
        if event["kind"] in PATH_EVENTS and event.get("node"):
            steps.append(f"{event['node']} @{event['slot']}")
        elif event["kind"] in ("move", "stop", "start", "update", "node_left", "replica"):
            steps.append(f"[{event['kind']} @{event['slot']}]")
    completed = [m["total_ms"] for m in app["migrations"] if m.get("outcome") == "completed"]
    timing = f" (migrations {', '.join(f'{t} ms' for t in completed)})" if completed else ""
    where = f"on {app['node']}" if app["node"] else ""
    # Without a history answer nothing is known of its path, which is not "never placed".
    unknown = "never placed" if app.get("history_collected", True) else "history not collected"
    return (
        f"{app['name']!s:<{name_width}}  {str(app['app_id'])[:12]}  "
        f"{app['state']} {where} v{app['version']}: " + (" -> ".join(steps) or unknown) + timing
    )
