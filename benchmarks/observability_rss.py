"""Node memory with the observability API in use (issue 14, "Must show": node RSS in a
50-node testnet before and after the issue).

Runs ``edgechain testnet`` (by default 50 nodes, committee 8, 2 s slots, 60 slots) and,
while it runs, does what an operator's tools do: scrapes every node's ``GET /metrics``
every ``--scrape-interval`` seconds (a Prometheus) and keeps a dashboard's
``GET /events`` stream open on the first node. At the end it prints the testnet
summary's resident memory per node (mean, median, max; psutil, read by the launcher
before it stops the nodes) with the chain's figures, and how many scrapes and events
it made.

    .venv/bin/python benchmarks/observability_rss.py --json runs/rss.json

The figure "before" in the closing note came from the same testnet command run on the
commit before the issue (``git worktree add /tmp/before 81b51ef`` and
``PYTHONPATH=/tmp/before/src``), without scrapes (that code had no ``/metrics``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Watcher:
    """Scrapes every ready node's /metrics and holds node 0's /events open."""

    def __init__(self, run_dir: Path, interval_s: float) -> None:
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.scrapes = 0
        self.failed_scrapes = 0
        self.events = 0
        self.done = threading.Event()

    def get_ports(self) -> list[int]:
        ports = []
        for ready in sorted(self.run_dir.glob("node-*/ready.json")):
            try:
                ports.append(int(json.loads(ready.read_text())["http_port"]))
            except (OSError, ValueError, KeyError):
                continue  # being written
        return ports

    def scrape(self) -> None:
        while not self.done.wait(self.interval_s):
            for port in self.get_ports():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
                        self.scrapes += 1
                except OSError:
                    self.failed_scrapes += 1

    def follow_events(self) -> None:
        while not self.done.is_set():
            ports = self.get_ports()
            if ports:
                try:
                    url = f"http://127.0.0.1:{ports[0]}/events"
                    with urllib.request.urlopen(url, timeout=30) as stream:
                        for line in stream:
                            self.events += line.startswith(b"event:")
                            if self.done.is_set():
                                return
                except OSError:
                    pass
            self.done.wait(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--committee", type=int, default=8)
    parser.add_argument("--slot-duration", type=float, default=2.0)
    parser.add_argument("--slots", type=int, default=60)
    parser.add_argument("--join-interval", type=float, default=0.5)
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="observability-rss-"))
    summary_path = run_dir / "summary-copy.json"
    command = [
        sys.executable, "-m", "edgechain.cli", "testnet", "--quiet",
        "--nodes", str(args.nodes), "--committee", str(args.committee),
        "--slot-duration", f"{args.slot_duration:g}", "--slots", str(args.slots),
        "--join-interval", f"{args.join_interval:g}",
        "--run-dir", str(run_dir / "run"), "--json", str(summary_path),
    ]  # fmt: skip
    watcher = Watcher(run_dir / "run", args.scrape_interval)
    threads = [
        threading.Thread(target=watcher.scrape, daemon=True),
        threading.Thread(target=watcher.follow_events, daemon=True),
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    watcher.done.set()
    if not summary_path.exists():
        print(done.stdout + done.stderr, file=sys.stderr)
        return 1
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    rss = list(summary["rss_mb"]["per_node"].values())
    figures = {
        "nodes": args.nodes,
        "slots": summary["slots"],
        "blocks": summary["blocks"],
        "skip_blocks": summary["skip_blocks"],
        "rss_mb_mean": round(statistics.fmean(rss), 1) if rss else None,
        "rss_mb_median": round(statistics.median(rss), 1) if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_peak_mb_max": summary["rss_peak_mb"]["max"],
        "scrapes": watcher.scrapes,
        "failed_scrapes": watcher.failed_scrapes,
        "events": watcher.events,
        "wall_s": round(time.monotonic() - started, 1),
        "run_dir": str(run_dir / "run"),
    }
    for name, value in figures.items():
        print(f"{name:18} {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
