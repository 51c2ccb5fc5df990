"""Flat memory under finality and pruning, and catch-up after a restart and a join.

Runs ``edgechain testnet`` (by default 20 nodes, committee 8, 1 s slots, 20 minutes)
with one node killed (kill -9) about 3 minutes before the end and restarted 3 slots
later. Every ``--interval`` seconds it reads every node's ``GET /status`` (head slot,
RSS, finalized slot, blocks in memory). It prints:

- RSS (median and max over nodes) and blocks in memory at the first poll where the
  majority head slot reaches ``--sample-slot`` and at the last complete poll before
  the kill, and their relative difference;
- the restarted node's time from its new process's start to a head slot within 1 of
  the majority's (polled every 0.25 s; the majority of a few reference nodes);
- then a brand-new node's (new key and ticket, joining through node-000), the same
  way, and whether and when it became a validator; it is stopped before the end.

    .venv/bin/python benchmarks/flat_memory.py --json runs/flat-memory.json

Figures are printed, never asserted: the exit code is non-zero only on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.assembly import make_ticket
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore, load_keystore
from edgechain.lab import cluster
from edgechain.lab.testnet_config import DEFAULT_NODE_COMMAND
from edgechain.types import PublicKey

FAST_TICK_S = 0.25
JOINER = "joiner"


@dataclass(frozen=True)
class Sample:
    t: float
    """When the answer arrived (a busy node answers late)."""
    head_slot: int
    rss_mb: float
    finalized_slot: int
    blocks_in_memory: int
    is_validator: bool
    slot: int


@dataclass(frozen=True)
class Tick:
    """One poll: ``full`` polls every node, else only the tracked ones and references."""

    t: float
    full: bool
    samples: dict[str, Sample | None]


def parse_status(status: Any, t: float) -> Sample | None:
    if not isinstance(status, dict) or not isinstance(status.get("head_slot"), int):
        return None
    finality = status.get("finality") or {}
    return Sample(
        t=t,
        head_slot=status["head_slot"],
        rss_mb=float(status.get("rss_mb") or 0.0),
        finalized_slot=int(finality.get("finalized_slot") or 0),
        blocks_in_memory=int(finality.get("blocks_in_memory") or 0),
        is_validator=bool(status.get("is_validator")),
        slot=int(status.get("slot") or 0),
    )


def majority_head(tick: Tick, exclude: Iterable[str] = ()) -> int | None:
    """The highest slot that more than half of the answering nodes have reached."""
    skip = set(exclude)
    heads = sorted(
        (s.head_slot for n, s in tick.samples.items() if s is not None and n not in skip),
        reverse=True,
    )
    return heads[len(heads) // 2] if heads else None


def describe(tick: Tick, names: Sequence[str]) -> dict[str, Any]:
    """Median and max over ``names`` of one poll's RSS and blocks in memory."""
    samples = [s for n in names if (s := tick.samples.get(n)) is not None]
    rss = [s.rss_mb for s in samples]
    blocks = [s.blocks_in_memory for s in samples]
    return {
        "t": round(tick.t, 2),
        "nodes": len(samples),
        "majority_head_slot": majority_head(tick, set(tick.samples) - set(names)),
        "rss_mb_median": round(statistics.median(rss), 1),
        "rss_mb_max": max(rss),
        "blocks_in_memory_median": statistics.median(blocks),
        "blocks_in_memory_max": max(blocks),
        "finalized_slot_median": statistics.median(s.finalized_slot for s in samples),
    }


def pick_points(
    ticks: Sequence[Tick], names: Sequence[str], sample_slot: int, kill_t: float | None
) -> tuple[Tick | None, Tick | None]:
    """The first complete full poll whose majority head reached ``sample_slot``, and the
    last complete full poll before ``kill_t`` (None: the last one)."""
    complete = [
        t
        for t in ticks
        if t.full and all(t.samples.get(n) is not None for n in names)
        and (kill_t is None or t.t < kill_t)
    ]  # fmt: skip
    first = next((t for t in complete if (majority_head(t) or -1) >= sample_slot), None)
    return first, (complete[-1] if complete and first is not None else None)


def relative_change_pct(before: float, after: float) -> float | None:
    return round((after - before) / before * 100, 1) if before else None


def find_sync_s(ticks: Sequence[Tick], node: str, since: float) -> float | None:
    """Seconds from ``since`` to the first answer after it where ``node``'s head slot is
    at least the other nodes' majority head slot (in the same poll) minus 1."""
    for tick in ticks:
        sample = tick.samples.get(node)
        if tick.t < since or sample is None:
            continue
        majority = majority_head(tick, {node, JOINER})
        if majority is not None and sample.head_slot >= majority - 1:
            return round(sample.t - since, 2)
    return None


def trace(ticks: Sequence[Tick], node: str, since: float | None, limit: int = 80) -> list[Any]:
    """[seconds since ``since``, ``node``'s head slot (None: no answer), majority head]
    of the polls after ``since`` that include ``node``."""
    return [
        [
            round((s.t if (s := t.samples[node]) else t.t) - since, 2),
            s and s.head_slot,
            majority_head(t, {node, JOINER}),
        ]
        for t in ticks
        if since is not None and t.t >= since and node in t.samples
    ][:limit]


def read_pid(run_dir: Path, name: str) -> tuple[int, int] | None:
    """(pid, http_port) from a node's ready file, None while it is (re)written."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        ready = json.loads((run_dir / name / "ready.json").read_text())
        return int(ready["pid"]), int(ready["http_port"])
    return None


def process_start(pid: int, default: float) -> float:
    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).create_time())
    return default


def start_joiner(run_dir: Path, slot_duration: float) -> subprocess.Popen[bytes]:
    """A new node (fresh key, ticket from the admin key) joining through node-000."""
    manifest = json.loads((run_dir / "testnet.json").read_text())
    admin_sk = load_keystore(run_dir / "admin.key")
    data_dir = (run_dir / JOINER).resolve()
    data_dir.mkdir()
    pk = bls.sk_to_pk(create_keystore(data_dir / "node.key"))
    spec = cluster.NodeSpec(
        index=len(manifest["nodes"]),
        data_dir=data_dir,
        public_key=pk,
        ticket=make_ticket(admin_sk, manifest["chain_id"], pk),
        host="127.0.0.1",
        ports=cluster.NodePorts(0, 0),
    )
    options = cluster.NodeOptions(DEFAULT_NODE_COMMAND, manifest["chain_id"], 0, slot_duration)
    boot = json.loads((run_dir / "node-000" / "ready.json").read_text())
    seeds = cluster.Seeds(
        (f"{manifest['nodes'][0]['host']}:{boot['udp_port']}",),
        PublicKey(bytes.fromhex(manifest["nodes"][0]["public_key"])),
    )
    argv = cluster.build_node_argv(
        spec, options, admin_key=bls.sk_to_pk(admin_sk), seeds=seeds,
        guard=cluster.get_guard_prefix(),
    )  # fmt: skip
    with (data_dir / "stdout.log").open("ab") as out, (data_dir / "stderr.log").open("ab") as err:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=data_dir,
            env=cluster.build_node_env(os.environ), start_new_session=True,
        )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL after ``grace_s``."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)


class Watcher:
    """Polls the testnet while it runs; fills ``ticks`` and the restart/join figures."""

    def __init__(self, run_dir: Path, args: argparse.Namespace, slots: int) -> None:
        self.run_dir, self.args, self.slots = run_dir, args, slots
        self.end_t = float("inf")
        """When the testnet's last slot ends (from the nodes' current slot)."""
        self.names = [f"node-{i:03d}" for i in range(args.nodes)]
        self.ticks: list[Tick] = []
        self.pids: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.victim: str | None = None
        self.kill_t: float | None = None
        self.restart_t: float | None = None
        self.restart_sync_s: float | None = None
        self.joiner: subprocess.Popen[bytes] | None = None
        self.joiner_t: float | None = None
        self.joiner_sync_s: float | None = None
        self.joiner_validator_s: float | None = None

    def get(self, name: str) -> Sample | None:
        with contextlib.suppress(cluster.NodeApiError, KeyError):
            status = cluster.http_get_json("127.0.0.1", self.ports[name], "/status")
            return parse_status(status, time.time())
        return None

    def read_ready(self, names: Iterable[str], now: float) -> None:
        """Ports and pids from the ready files; a pid that died is the killed node, a
        new pid in its ready file its restart."""
        for name in names:
            ready = read_pid(self.run_dir, name)
            if ready is None:
                continue
            pid, self.ports[name] = ready
            old = self.pids.setdefault(name, pid)
            if name == self.victim and pid != old and self.restart_t is None:
                self.restart_t = process_start(pid, now)
        if self.victim is None:
            dead = [n for n, pid in self.pids.items() if n != JOINER and not psutil.pid_exists(pid)]
            if dead:
                self.victim, self.kill_t = dead[0], now

    def joiner_running(self) -> bool:
        return self.joiner is not None and self.joiner.poll() is None

    def tracked(self, now: float) -> list[str]:
        """Nodes polled every FAST_TICK_S: the restarted one (for up to a minute after
        its restart) until it is in sync, then the joiner until it is."""
        tracked = []
        recent = self.restart_t is None or now < self.restart_t + 60
        if self.victim and self.restart_sync_s is None and recent:
            tracked.append(self.victim)
        if self.joiner_running() and self.joiner_sync_s is None:
            tracked.append(JOINER)
        return tracked

    def poll(self, testnet: subprocess.Popen[bytes]) -> None:
        next_full = 0.0
        while testnet.poll() is None:
            now = time.time()
            tracked = self.tracked(now)
            full = now >= next_full
            if full:
                next_full = now + self.args.interval
                names = self.names + ([JOINER] if self.joiner_running() else [])
            else:
                names = tracked + [n for n in self.names if n != self.victim][:3]
            self.read_ready(names, now)
            samples = dict(zip(names, self.pool.map(self.get, names), strict=True))
            self.ticks.append(Tick(now, full, samples))
            slots = [s.slot for s in samples.values() if s is not None]
            if full and slots:
                self.end_t = now + (self.slots - max(slots)) * self.args.slot_duration
            self.follow(now)
            pause = FAST_TICK_S if self.tracked(now) else self.args.interval
            time.sleep(max(0.05, min(pause, next_full - time.time())))

    def follow(self, now: float) -> None:
        """Sync times; start the joiner once the restarted node is in sync, stop it
        once it is a validator in sync, or shortly before the end."""
        if self.victim and self.restart_t is not None and self.restart_sync_s is None:
            self.restart_sync_s = find_sync_s(self.ticks, self.victim, self.restart_t)
        restart_done = self.restart_sync_s is not None or (
            self.restart_t is not None and now > self.restart_t + 60
        )
        if restart_done and self.joiner is None and now < self.end_t - 60:
            self.joiner = start_joiner(self.run_dir, self.args.slot_duration)
            self.joiner_t = process_start(self.joiner.pid, now)
        if not self.joiner_running() or self.joiner is None or self.joiner_t is None:
            return
        if self.joiner_sync_s is None:
            self.joiner_sync_s = find_sync_s(self.ticks, JOINER, self.joiner_t)
        sample = self.ticks[-1].samples.get(JOINER)
        if sample is not None and sample.is_validator and self.joiner_validator_s is None:
            self.joiner_validator_s = round(now - self.joiner_t, 1)
        if now > self.end_t - 20 or (self.joiner_validator_s and self.joiner_sync_s):
            stop_process(self.joiner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--committee", type=int, default=8)
    parser.add_argument("--slot-duration", type=float, default=1.0)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--sample-slot", type=int, default=200)
    parser.add_argument("--kill-before-end", type=float, default=180.0, help="seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or Path(f"runs/flat-memory-{time.strftime('%Y%m%d-%H%M%S')}")
    slots = round(args.minutes * 60 / args.slot_duration)
    kill_at = slots - round(args.kill_before_end / args.slot_duration)
    summary_path = run_dir / "summary.json"
    command = [
        sys.executable, "-m", "edgechain.cli", "testnet", "--quiet",
        "--nodes", str(args.nodes), "--committee", str(args.committee),
        "--slot-duration", f"{args.slot_duration:g}", "--slots", str(slots),
        "--kill", "1", "--kill-at", str(kill_at), "--restart-after", "3",
        "--seed", str(args.seed), "--run-dir", str(run_dir),
    ]  # fmt: skip
    started = time.time()
    testnet = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    watcher = Watcher(run_dir, args, slots)
    try:
        watcher.poll(testnet)
        testnet.wait()
    finally:
        if watcher.joiner is not None:
            stop_process(watcher.joiner)
        if testnet.poll() is None:
            testnet.send_signal(signal.SIGINT)  # the launcher stops its nodes
            with contextlib.suppress(subprocess.TimeoutExpired):
                testnet.wait(timeout=60)
            testnet.kill()
        watcher.pool.shutdown(cancel_futures=True)
    first, before_kill = pick_points(watcher.ticks, watcher.names, args.sample_slot, watcher.kill_t)
    if first is None or before_kill is None:
        print(f"no complete poll at slot {args.sample_slot} (testnet: {testnet.returncode})")
        return 1
    points = {
        "sample": describe(first, watcher.names),
        "before_kill": describe(before_kill, watcher.names),
    }
    a, b = points["sample"], points["before_kill"]
    config = {**vars(args), "run_dir": str(run_dir), "json": str(args.json)}
    figures: dict[str, Any] = {
        "config": {**config, "slots": slots, "kill_at": kill_at},
        "testnet_summary": str(summary_path),
        "testnet_returncode": testnet.returncode,
        "wall_s": round(time.time() - started, 1),
        "polls": len(watcher.ticks),
        "full_polls": sum(t.full for t in watcher.ticks),
        "points": points,
        "restart_trace": trace(watcher.ticks, watcher.victim or "", watcher.restart_t),
        "joiner_trace": trace(watcher.ticks, JOINER, watcher.joiner_t),
    }
    results = {
        "rss_median_change_pct": relative_change_pct(a["rss_mb_median"], b["rss_mb_median"]),
        "rss_max_change_pct": relative_change_pct(a["rss_mb_max"], b["rss_mb_max"]),
        "restarted_node": watcher.victim,
        "restart_to_sync_s": watcher.restart_sync_s,
        "joiner_to_sync_s": watcher.joiner_sync_s,
        "joiner_to_validator_s": watcher.joiner_validator_s,
    }
    figures.update(results)
    for key in list(a)[2:]:
        print(f"{key:24}{a[key]:>12}{b[key]:>12}")
    for key, value in results.items():
        print(f"{key:24}{value}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if testnet.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
