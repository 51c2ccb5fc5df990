"""Container apps on real node processes (issue 11, "Must show"): node memory with and
without a container engine, and live container migrations through the CLI.

Starts its own ``edgechain testnet --forever --containers K`` (4 nodes, K = 2 with a
private Podman service each, 1 s slots), submits ``--apps`` container counter apps
with ``edgechain apps submit`` (all land on the two engine nodes), moves one of them
back and forth ``--moves`` times with ``edgechain apps move`` and reads each
migration's save / transmit / resume times from ``apps history``; then reads every
node's resident memory from ``GET /status`` (after the apps ran and moved).

    .venv/bin/python benchmarks/container_node.py --apps 4 --moves 6 --json runs/ct.json

Needs podman, runc and busybox-static (``scripts/system-deps.sh``). Exits 1 when a
migration did not complete or a step timed out, 2 on bad options.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EDGECHAIN = str(Path(sys.executable).parent / "edgechain")
IMAGE = "localhost/edgechain-apps:latest"
STEP_TIMEOUT_S = 120.0


class Testnet:
    def __init__(self, base: Path, engines: int) -> None:
        self.run_dir = base / "run"
        argv = [EDGECHAIN, "testnet", "--forever", "--quiet", "--nodes", "4",
                "--committee", "2", "--slot-duration", "1", "--join-interval", "0.3",
                "--containers", str(engines), "--run-dir", str(self.run_dir)]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    def cli(self, *argv: str) -> Any:
        done = subprocess.run(
            [EDGECHAIN, "--client", str(self.run_dir / "client.toml"), *argv, "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"edgechain {' '.join(argv)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = json.loads((self.run_dir / "testnet.json").read_text())[
            "nodes"
        ]
        return nodes

    def status(self, name: str) -> dict[str, Any]:
        port = json.loads((self.run_dir / name / "ready.json").read_text())["http_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as reply:
            status: dict[str, Any] = json.load(reply)
        return status

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the testnet exited")
            if predicate():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()


def spec_text(index: int) -> str:
    return (
        f"name: boxed-{index}\nruntime: container\nimage: {IMAGE}\n"
        f'command: ["/bin/sh", "/apps/counter/counter.sh", "0", "0.2", "bench-{index}"]\n'
        "cpu_bp: 10\nram_bp: 10\nstateful: true\n"
    )


def is_running_on(net: Testnet, app: str, node: str | None = None) -> bool:
    view = net.cli("apps", "show", app)
    where = view["node"]
    placed = view["state"] == "running" and where is not None and view["reported_on"] == [where]
    return placed and (node is None or where == node)


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="edgechain-ct-"))
    base.chmod(0o711)
    net = Testnet(base, engines=2)
    try:
        net.wait_for((net.run_dir / "client.toml").exists, "genesis")
        apps = []
        for index in range(args.apps):
            spec = base / f"app-{index}.yaml"
            spec.write_text(spec_text(index))
            apps.append(net.cli("apps", "submit", str(spec))["app_id"])
        for app in apps:
            net.wait_for(functools.partial(is_running_on, net, app), f"{app[:12]} to run")
        engines = [n["node_id"] for n in net.nodes() if n["container_engine"]]
        moved = apps[0]
        for _ in range(args.moves):
            here = net.cli("apps", "show", moved)["node"]
            there = next(n for n in engines if n != here)
            net.cli("apps", "move", moved, there[:12])
            net.wait_for(functools.partial(is_running_on, net, moved, there), "the move")
            time.sleep(args.settle)  # the protocol's minimum interval between two moves
        history = net.cli("apps", "history", moved)
        migrations = [m for m in history["migrations"] if m["outcome"] == "completed"]
        rss = {
            n["name"]: {
                "engine": bool(n["container_engine"]),
                "rss_mb": net.status(n["name"])["rss_mb"],
            }
            for n in net.nodes()
        }
    finally:
        net.stop()
        shutil.rmtree(base, ignore_errors=True)
    with_engine = [r["rss_mb"] for r in rss.values() if r["engine"]]
    without = [r["rss_mb"] for r in rss.values() if not r["engine"]]

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
        "rss_with_engine_mb": max(with_engine),
        "rss_without_engine_mb": max(without),
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
    try:
        result = run(args)
    except RuntimeError as exc:
        print(f"container_node: {exc}", file=sys.stderr)
        return 1
    med = result["median_ms"] or {}
    print(
        f"container migrations of the moved app: {result['migrations_completed']} completed "
        f"({args.moves} moves asked); "
        f"median save {med.get('save_ms')} ms, transmit {med.get('transmit_ms')} ms, "
        f"resume {med.get('resume_ms')} ms"
    )
    print(
        f"node RSS: {result['rss_with_engine_mb']} MB with a container engine, "
        f"{result['rss_without_engine_mb']} MB without (max per kind, {args.apps} apps)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    # At least the operator's moves; balancing may have moved the app once more.
    return 0 if result["migrations_completed"] >= args.moves else 1


if __name__ == "__main__":
    raise SystemExit(main())
