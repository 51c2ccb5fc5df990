"""Container apps on real node processes (issue 11, "Must show"): node memory with and
without a container engine, and live container migrations through the CLI.

Starts its own ``edgechain testnet --forever --containers 2`` (4 nodes, the first 2
with a private Podman service each, 1 s slots; ``lab/faults_live.LiveTestnet``),
submits ``--apps`` container counter apps with ``edgechain apps submit`` (all land on
the two engine nodes), moves one of them back and forth ``--moves`` times with
``edgechain apps move`` and reads each migration's save / transmit / resume times from
``apps history``; then reads every node's resident memory from ``GET /status`` (after
the apps ran and moved).

    .venv/bin/python benchmarks/container_node.py --apps 4 --moves 6 --json runs/ct.json

Needs podman, runc and busybox-static (``scripts/system-deps.sh``). Exits 1 when fewer
migrations completed than moves were asked for, or a step failed; 2 on bad options.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.lab.faults_live import LiveError, LiveTestnet, http_get, wait_until

IMAGE = "localhost/edgechain-apps:latest"
READY_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 120.0
ENGINES = 2


def spec_text(index: int) -> str:
    return (
        f"name: boxed-{index}\nruntime: container\nimage: {IMAGE}\n"
        f'command: ["/bin/sh", "/apps/counter/counter.sh", "0", "0.2", "bench-{index}"]\n'
        "cpu_bp: 10\nram_bp: 10\nstateful: true\n"
    )


def is_running_on(net: LiveTestnet, app: str, node: str | None = None) -> bool:
    view = net.cli("apps", "show", app)
    where = view["node"]
    placed = view["state"] == "running" and where is not None and view["reported_on"] == [where]
    return placed and (node is None or where == node)


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    net = LiveTestnet(base / "run", nodes=4, committee=2, slot_s=1.0, containers=ENGINES)
    net.start()
    try:
        net.wait_ready(READY_TIMEOUT_S)
        apps = []
        for index in range(args.apps):
            spec = base / f"app-{index}.yaml"
            spec.write_text(spec_text(index))
            apps.append(net.cli("apps", "submit", str(spec))["app_id"])
        for app in apps:
            wait_until(
                functools.partial(is_running_on, net, app),
                f"{app[:12]} to run",
                STEP_TIMEOUT_S,
                net.check_alive,
            )
        nodes = net.get_nodes()
        engines = [nodes[f"node-{i:03d}"].node_id for i in range(ENGINES)]
        moved = apps[0]
        for _ in range(args.moves):
            here = net.cli("apps", "show", moved)["node"]
            there = next(n for n in engines if n != here)
            net.cli("apps", "move", moved, there[:12])
            wait_until(
                functools.partial(is_running_on, net, moved, there),
                "the move",
                STEP_TIMEOUT_S,
                net.check_alive,
            )
            time.sleep(args.settle)  # the protocol's minimum interval between two moves
        history = net.cli("apps", "history", moved)
        rss = {
            name: {
                "engine": node.node_id in engines,
                "rss_mb": http_get(node.url, "/status")["rss_mb"],
            }
            for name, node in sorted(nodes.items())
        }
    finally:
        net.stop()
    migrations = [m for m in history["migrations"] if m["outcome"] == "completed"]

    def median(key: str) -> float:
        return round(statistics.median(float(m[key]) for m in migrations), 1)

    return {
        "apps": args.apps,
        "moves": args.moves,
        "migrations_completed": len(migrations),
        "median_ms": {k: median(k) for k in ("save_ms", "transmit_ms", "resume_ms")}
        if migrations
        else None,
        "migrations": migrations,
        "rss_mb": rss,
        "rss_with_engine_mb": max(r["rss_mb"] for r in rss.values() if r["engine"]),
        "rss_without_engine_mb": max(r["rss_mb"] for r in rss.values() if not r["engine"]),
        "leftovers": net.leftovers,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--apps", type=int, default=4, help="container apps (default 4)")
    parser.add_argument("--moves", type=int, default=6, help="moves of one app (default 6)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between moves")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.apps < 1 or args.moves < 1:
        parser.error("--apps and --moves must be at least 1")
    # Others may traverse but not list it: the apps run as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="edgechain-ct-"))
    base.chmod(0o711)
    try:
        result = run(args, base)
    except LiveError as exc:
        print(f"container_node: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = result["median_ms"] or {}
    print(
        f"container migrations of the moved app: {result['migrations_completed']} completed "
        f"({args.moves} moves asked); median save {med.get('save_ms')} ms, "
        f"transmit {med.get('transmit_ms')} ms, resume {med.get('resume_ms')} ms"
    )
    print(
        f"node RSS: {result['rss_with_engine_mb']} MB with a container engine, "
        f"{result['rss_without_engine_mb']} MB without (max per kind, {args.apps} apps)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    # At least the operator's moves; balancing may have moved the app once more.
    ok = result["migrations_completed"] >= args.moves and not result["leftovers"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
