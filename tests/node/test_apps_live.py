"""Real nodes run real apps: an accepted plan places a stateful app, and a later plan
migrates it to another node, where its counter continues; it never runs twice.

Four ``Node`` objects in one event loop (as in ``test_node_live.py``), 1 s slots, the
process runtime. All four share this host, so their host measurements are replaced by
simulated devices (an idle background each); the apps' own usage is measured for real.
The app is the ``counter`` sample with a ``cpu-load`` child in its process group, so
its measured score is large enough for the planner to move it. Once it runs, its node's
simulated background is raised: the planner must move it away.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil

from edgechain.api.http import Request
from edgechain.consensus.engine import LocalUsage
from edgechain.node import Node
from edgechain.runtime.samples import get_apps_dir

from .test_node_live import _configs, _status, _wait_for

IDLE = LocalUsage(cpu_bp=200, ram_bp=500, disk_bp=1_000)
BUSY = LocalUsage(cpu_bp=6_000, ram_bp=500, disk_bp=1_000)
TAG = "apps-live-test"


def _app_spec_json() -> bytes:
    apps = get_apps_dir()
    script = (
        f"/bin/sh '{apps}/cpu-load/cpu-load.sh' 30 100 & "
        f"exec /bin/sh '{apps}/counter/counter.sh' 0 0.1 {TAG}"
    )
    spec = {
        "name": "counter",
        "runtime": "process",
        "command": ["/bin/sh", "-c", script],
        "cpu_bp": 10,
        "ram_bp": 10,
        "stateful": True,
        "nonce": TAG.encode().hex(),
    }
    return json.dumps(spec).encode()


def _simulate_device(node: Node, usage: LocalUsage) -> None:
    """This host is shared by all four nodes: report a device of our choosing."""
    node._measure_usage = lambda: usage  # type: ignore[method-assign]
    if node.apps is not None:
        node.apps.set_host_usage(usage)


def _running_on(nodes: list[Node], app: str) -> list[int]:
    return [
        i
        for i, n in enumerate(nodes)
        if n.apps is not None and any(v.app == app and v.running for v in n.apps.views)
    ]


def _read_count(node: Node, app: str) -> int:
    path = node.config.data_dir / "apps" / app / "state" / "count"
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return -1


def _counter_processes(*, include_frozen: bool = True) -> list[psutil.Process]:
    """The test app's running copies, one per process group (each copy's group leader).

    The origin's copy is frozen (SIGSTOP) while the destination restores it, which is
    not running it twice. The shell forks for every ``mv`` and ``sleep``, and the child
    carries the shell's command line until it execs, so only group leaders count.
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if not (any("counter.sh" in part for part in cmdline) and TAG in cmdline):
            continue
        try:
            if os.getpgid(proc.pid) != proc.pid:
                continue
        except ProcessLookupError:
            continue
        if include_frozen or proc.info["status"] != psutil.STATUS_STOPPED:
            found.append(proc)
    return found


async def _run(tmp: Path) -> dict[str, Any]:
    nodes = [Node(c) for c in _configs(tmp, 4)]
    for node in nodes:
        _simulate_device(node, IDLE)
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(nodes[0].run(stop))]
    await asyncio.sleep(0.5)
    tasks += [asyncio.ensure_future(n.run(stop)) for n in nodes[1:]]
    max_copies = 0
    try:

        async def all_validators() -> bool:
            if any(n.engine is None for n in nodes):
                return False
            statuses = [await _status(n) for n in nodes]
            return all(s["validators"] == 4 for s in statuses)

        assert await _wait_for(all_validators, 40), [await _status(n) for n in nodes]
        code, body = await nodes[1]._on_http(Request("POST", "/apps", {}, _app_spec_json()))
        assert code == 201, body
        app = str(body["app_id"])

        async def placed() -> bool:
            return len(_running_on(nodes, app)) == 1

        assert await _wait_for(placed, 40), "the app was not placed and started"
        origin = _running_on(nodes, app)[0]
        placed_at = time.monotonic()

        async def counting() -> bool:
            return _read_count(nodes[origin], app) >= 5

        assert await _wait_for(counting, 20)
        count_before = _read_count(nodes[origin], app)
        _simulate_device(nodes[origin], BUSY)

        async def migrated() -> bool:
            nonlocal max_copies
            running = _running_on(nodes, app)
            max_copies = max(max_copies, len(_counter_processes(include_frozen=False)))
            return len(running) == 1 and running[0] != origin

        origin_apps = nodes[origin].apps
        assert origin_apps is not None
        assert await _wait_for(migrated, 60), {
            "running_on": _running_on(nodes, app),
            "results": list(origin_apps.results),
        }
        destination = _running_on(nodes, app)[0]
        moved_at = time.monotonic()
        await asyncio.sleep(1.5)
        count_after = _read_count(nodes[destination], app)
        app_log = nodes[destination].config.data_dir / "apps" / app / "app.log"
        starts = [
            int(line.rsplit(" ", 1)[1])
            for line in app_log.read_text().splitlines()
            if line.startswith("counter: starting from")
        ]
        _, apps_route = await nodes[destination]._on_http(Request("GET", "/apps", {}, b""))
        status = await _status(nodes[destination])
        return {
            "app": app,
            "origin": origin,
            "destination": destination,
            "count_before": count_before,
            "count_after": count_after,
            "destination_starts": starts,
            "origin_dir_left": (nodes[origin].config.data_dir / "apps" / app).exists(),
            "results": list(origin_apps.results),
            "apps_route": apps_route,
            "status_apps": status["apps"],
            "processes": len(_counter_processes()),
            "max_copies": max_copies,
            "seconds_to_migrate": round(moved_at - placed_at, 1),
        }
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)


def test_apps_are_placed_and_migrated_live(tmp_path: Path) -> None:
    result = asyncio.run(_run(tmp_path))
    print(json.dumps(result, default=str))
    app = result["app"]
    assert result["destination"] != result["origin"]
    # The counter continued from the origin's state: never from zero, never backwards.
    assert result["count_after"] > result["count_before"] > 0
    [started_from] = result["destination_starts"]
    assert started_from >= result["count_before"]
    assert not result["origin_dir_left"]
    completed = [r for r in result["results"] if r["outcome"] == "completed"]
    assert len(completed) == 1, result["results"]
    assert completed[0]["raw_bytes"] > 0 and completed[0]["compressed_bytes"] > 0
    # Exactly one copy ever ran at a time (the process table, polled every 0.2 s).
    assert result["max_copies"] == 1
    assert result["processes"] == 1
    assert any(a["app"] == app and a["running"] for a in result["apps_route"])
    assert {"app": app, "name": "counter", "running": True} in result["status_apps"]
    # Every node closed its runtime: no app process outlives its node.
    assert _counter_processes() == []
