"""What a node's app manager pays each second per process app it holds: one round of the
reconcile's listing (``list`` and each app's ``get_release``), the usage sampler's
(``list``, ``get_release`` and ``stats``), and an ``is_running`` for each app, in the
real process runtime, over N idle apps (``sleep`` loops) started in a temporary data
directory. Prints the thread CPU and wall time of a round, per round and per app.

Figures only, nothing asserted. Session 59's A/B of the same work in a live testnet
(6 nodes, 200 idle apps) is in ARCHITECTURE.md ("What a node reports").

    .venv/bin/python benchmarks/app_sampling.py --apps 40 --rounds 20 --json sampling.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.process import ProcessRuntime
from edgechain.types import AppId

WARM_ROUNDS = 3
"""Rounds not measured: each app's first ``stats`` sets its CPU baseline."""


def get_app(index: int, tag: str) -> tuple[AppId, AppSpec]:
    app = AppId(hashlib.sha256(f"{tag}-{index}".encode()).digest())
    command = ("/bin/sh", "-c", "while :; do sleep 5; done", f"{tag}-{index}")
    return app, AppSpec(f"idle-{index}", RuntimeKind.PROCESS, command=command)


def run_round(runtime: ProcessRuntime, apps: list[AppId]) -> None:
    """The runtime calls of one second of a node's app manager (module docstring)."""
    for _ in range(2):  # the reconcile's listing, then the sampler's
        for info in runtime.list():
            runtime.get_release(info.app)
    for app in apps:
        runtime.stats(app)
        runtime.is_running(app)


def measure(apps: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgechain-sampling-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the app user (as root: nobody) reaches its state directory
        runtime = ProcessRuntime(root / "node")
        started: list[AppId] = []
        tag = f"sampling-{time.monotonic_ns()}"
        try:
            for index in range(apps):
                app, spec = get_app(index, tag)
                runtime.start(app, spec, version=1)
                started.append(app)
            for _ in range(WARM_ROUNDS):
                run_round(runtime, started)
            cpu, wall = [], []
            for _ in range(rounds):
                cpu_start, wall_start = time.thread_time(), time.perf_counter()
                run_round(runtime, started)
                cpu.append((time.thread_time() - cpu_start) * 1000)
                wall.append((time.perf_counter() - wall_start) * 1000)
        finally:
            for app in started:
                runtime.stop(app)
            runtime.close()
    cpu_ms = statistics.median(cpu)
    return {
        "apps": apps,
        "rounds": rounds,
        "cpu_ms_per_round": round(cpu_ms, 2),
        "wall_ms_per_round": round(statistics.median(wall), 2),
        "cpu_ms_per_app": round(cpu_ms / max(1, apps), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    result = measure(args.apps, args.rounds)
    print(
        f"{result['apps']} idle process apps, median of {result['rounds']} rounds: "
        f"{result['cpu_ms_per_round']} ms CPU a round ({result['wall_ms_per_round']} ms "
        f"wall), {result['cpu_ms_per_app']} ms CPU per app"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
