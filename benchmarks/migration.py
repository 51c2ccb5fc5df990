"""Migration benchmark: save / transmit / resume and downtime beside the paper's Table 3.

For each state size of ``--sizes`` (MB; default the paper's two, §4.2: 15.2 MB, its
median CRIU checkpoint, and 142.2 MB, its median standard export), runs ``--runs``
migrations of the stateful ``counter`` app back and forth between two nodes on
loopback: two transfer endpoints, separate runtime roots, and for containers two
separate Podman API services with separate image stores. The counter's state is an
incompressible pad of that size, and every step (``--interval`` s) it rewrites
``--rewrite-mib-s`` worth of the pad in place, so the state keeps changing while it is
copied. Runtimes:

* ``process``: the process runtime as a node runs it, with iterative pre-copy
  (``runtime/precopy.py``) for states of 8 MiB and more;
* ``process_plain``: the same without pre-copy (freeze, archive, stream, unpack);
* ``container``: the container runtime (no pre-copy: freeze, archive, stream, unpack);
* ``reference_standard``: the reference implementation's standard path with the
  podman CLI, as its shell scripts do (SaveContainer.sh: stop, commit, save to a tar;
  the tar is sent uncompressed over a loopback TCP connection; RunContainer.sh: load,
  run), ``--reference-runs`` times.

Per migration it records save / transmit / resume (the app is frozen or stopped for
all three; with pre-copy, for the final round only), the whole migration including any
pre-copy rounds (``migration_ms``), and the downtime the app saw: from its last step
at the origin to its first step at the destination (``migration_downtime.py``; the
reference path's downtime is its save + transmit + resume, a lower bound). After
every migration the counter must continue at the destination from at least the value
it had at the origin, and keep counting (``counter_continuity_ok``).

    .venv/bin/python benchmarks/migration.py --runs 10 --json runs/migration.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_downtime import DowntimeWatch

from edgechain.chain.command_encoding import encode_app_spec
from edgechain.chain.model import AppSpec, PlanAction, PlanEntry, RuntimeKind
from edgechain.lab.paper.paper_numbers import CRIU_STATE_MB, STANDARD_STATE_MB, TABLE3
from edgechain.runtime.base import AppRuntime
from edgechain.runtime.container import ContainerRuntime
from edgechain.runtime.podman import PodmanService, PodmanUnavailableError
from edgechain.runtime.precopy import MIN_STATE_BYTES
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.samples import SAMPLE_IMAGE, get_counter_spec
from edgechain.runtime.transfer import (
    MigrationOutcome,
    MigrationResult,
    TransferClient,
    TransferServer,
)
from edgechain.types import AppId, BlockHash, NodeId

PAPER_TABLE3_MS = {
    # Paper Table 3 (§4.2), from lab/paper/paper_numbers.py: per segment, in ms.
    row.kind.lower(): {
        f"{r.segment}_ms": {
            "min": r.min_ms, "max": r.max_ms, "median": r.median_ms, "mean": r.mean_ms,
            "sd": r.sd_ms,
        }
        for r in TABLE3
        if r.kind == row.kind
    }
    for row in TABLE3
}  # fmt: skip
PAPER_TABLE3_MEDIAN_MS = {
    kind: {segment: float(figures["median"]) for segment, figures in rows.items()}
    for kind, rows in PAPER_TABLE3_MS.items()
}
PAPER_SIZES_MB = (CRIU_STATE_MB, STANDARD_STATE_MB)
"""The paper's median CRIU state and median standard export (§4.2)."""
GOALS_MS = {"process": 300.0, "container": 1000.0}
"""Downtime goals at the paper's sizes (the container one at 15.2 MB only)."""
SEGMENTS = ("save_ms", "transmit_ms", "resume_ms", "total_ms", "migration_ms", "downtime_ms")
COUNTER_INTERVAL_S = 0.02
CONTINUE_TIMEOUT_S = 10.0


@dataclass
class Series:
    """Per-run figures of one runtime (or the reference path)."""

    save_ms: list[float] = field(default_factory=list)
    transmit_ms: list[float] = field(default_factory=list)
    resume_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    migration_ms: list[float] = field(default_factory=list)
    downtime_ms: list[float] = field(default_factory=list)
    precopy_rounds: list[int] = field(default_factory=list)
    raw_bytes: list[int] = field(default_factory=list)
    compressed_bytes: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    continuity_ok: bool = True

    def add(
        self, save: float, transmit: float, resume: float, precopy: float, downtime: float | None
    ) -> None:
        self.save_ms.append(save)
        self.transmit_ms.append(transmit)
        self.resume_ms.append(resume)
        self.total_ms.append(save + transmit + resume)
        self.migration_ms.append(precopy + save + transmit + resume)
        if downtime is not None:
            self.downtime_ms.append(downtime)

    def get_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": len(self.total_ms), "failures": self.failures}
        for name in SEGMENTS:
            out[name] = compute_summary(getattr(self, name))
        if self.raw_bytes:
            out["raw_bytes"] = compute_summary([float(v) for v in self.raw_bytes])
            out["compressed_bytes"] = compute_summary([float(v) for v in self.compressed_bytes])
        if self.precopy_rounds:
            out["precopy_rounds"] = compute_summary([float(v) for v in self.precopy_rounds])
        out["counter_continuity_ok"] = self.continuity_ok
        return out


def compute_summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None, "mean": None, "sd": None}
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
        "sd": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
    }


def read_count(state_dir: Path) -> int:
    """The counter app's persisted value in ``state_dir`` (0 before its first write)."""
    try:
        return int((state_dir / "count").read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# --- our migrations ---------------------------------------------------------------------


@dataclass
class BenchNode:
    node_id: NodeId
    runtime: ProcessRuntime | ContainerRuntime
    server: TransferServer
    client: TransferClient


def accept_all(block_hash: BlockHash, entry: PlanEntry) -> bool:
    del block_hash, entry
    return True


async def run_ours(
    label: str,
    runtimes: tuple[AppRuntime, AppRuntime],
    spec: AppSpec,
    work: Path,
    runs: int,
    *,
    precopy: bool = True,
) -> Series:
    """``runs`` migrations of ``spec`` alternating between the two runtimes."""
    series = Series()
    nodes = []
    for index, runtime in enumerate(runtimes):
        node_id = NodeId(bytes([index + 1]) * 32)
        # Each node's transfer dir beside its runtime root, as in a node's data dir.
        server = TransferServer(runtime, node_id, accept_all, work / f"{label}-transfer-{index}")
        await server.start("127.0.0.1", 0)
        client = TransferClient(runtime, precopy_min_bytes=None if not precopy else MIN_STATE_BYTES)
        nodes.append(BenchNode(node_id, runtime, server, client))  # type: ignore[arg-type]
    app = AppId(hashlib.sha256(b"bench-app" + encode_app_spec(spec)).digest())
    origin = nodes[0]
    origin.runtime.start(app, spec)
    state = origin.runtime.get_state_dir(app)
    if not wait_for(lambda: (state / "pad").exists() and read_count(state) > 0, 60):
        raise RuntimeError(f"{label}: the counter never started")
    try:
        for run in range(runs):
            src, dst = nodes[run % 2], nodes[(run + 1) % 2]
            time.sleep(0.2)  # let the app run between migrations, as in a real slot
            before = read_count(src.runtime.get_state_dir(app))
            entry = PlanEntry(PlanAction.MIGRATE, app, src.node_id, dst.node_id)
            block = BlockHash(secrets.token_bytes(32))
            dst_state = dst.runtime.get_state_dir(app)
            counts = (src.runtime.get_state_dir(app) / "count", dst_state / "count")
            with DowntimeWatch(*counts) as watch:
                result: MigrationResult = await src.client.migrate(
                    block, entry, spec, "127.0.0.1", dst.server.port
                )
                if result.outcome is not MigrationOutcome.COMPLETED:
                    series.failures.append(f"run {run}: {result.outcome.value} {result.reason}")
                    series.continuity_ok = False
                    break
                first = read_count(dst_state)
                continued = await asyncio.to_thread(
                    wait_for, watch.has_progressed, CONTINUE_TIMEOUT_S
                )
            series.add(
                result.save_ms,
                result.transmit_ms,
                result.resume_ms,
                result.precopy_ms,
                watch.get_downtime_ms(),
            )
            series.precopy_rounds.append(result.precopy_rounds)
            series.raw_bytes.append(result.raw_bytes)
            series.compressed_bytes.append(result.compressed_bytes + result.precopy_bytes)
            if first < before or not continued:
                series.continuity_ok = False
                series.failures.append(f"run {run}: counter {before} -> {first}, {continued=}")
        return series
    finally:
        for node in nodes:
            await node.server.close()
            node.runtime.remove(app)


# --- the reference implementation's standard path --------------------------------------


def copy_over_loopback(source: Path, target: Path) -> None:
    """Send a file through a loopback TCP connection, uncompressed (the tar's copy)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def receive() -> None:
            conn, _ = listener.accept()
            with conn, target.open("wb") as sink:
                while data := conn.recv(1 << 20):
                    sink.write(data)

        receiver = threading.Thread(target=receive)
        receiver.start()
        with socket.create_connection(("127.0.0.1", port)) as conn, source.open("rb") as src:
            conn.sendfile(src)
        receiver.join()


def podman(service: PodmanService, *args: str) -> str:
    return service.run_cli(*args).stdout.strip()


def run_reference(
    services: tuple[PodmanService, PodmanService], work: Path, runs: int, spec: AppSpec
) -> Series:
    """Stop, commit, save; copy; load, run: the reference's standard migration of the
    container app ``spec``."""
    series = Series()
    argv = list(spec.command)
    # The state lives inside the container's file system: commit carries it.
    run_args = ["run", "-d", "--network", "none", "-e", "EDGECHAIN_STATE_DIR=/state"]
    container = podman(services[0], *run_args, SAMPLE_IMAGE, *argv)

    def count(service: PodmanService, name: str) -> int:
        try:
            return int(podman(service, "exec", name, "cat", "/state/count") or 0)
        except PodmanUnavailableError:
            return 0

    if not wait_for(lambda: count(services[0], container) > 0, 60):
        raise RuntimeError("reference: the counter never started")
    wait_for(lambda: podman(services[0], "exec", container, "ls", "/state").find("pad") >= 0, 60)
    images: list[list[str]] = [[], []]
    try:
        for run in range(runs):
            src, dst = run % 2, (run + 1) % 2
            time.sleep(0.2)
            before = count(services[src], container)
            tar_src = work / f"ref-{run}-src.tar"
            tar_dst = work / f"ref-{run}-dst.tar"
            start = time.perf_counter()
            podman(services[src], "stop", container)
            image = podman(services[src], "commit", "-q", container)
            podman(services[src], "save", "-o", str(tar_src), image)
            save_ms = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            copy_over_loopback(tar_src, tar_dst)
            transmit_ms = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            loaded = podman(services[dst], "load", "-q", "-i", str(tar_dst))
            image_ref = loaded.rsplit(":", 1)[-1].strip() if "sha256:" in loaded else image
            new_container = podman(services[dst], *run_args, image_ref, *argv)
            resume_ms = (time.perf_counter() - start) * 1000
            # Stopped first and started last: the downtime is at least all three.
            series.add(save_ms, transmit_ms, resume_ms, 0.0, save_ms + transmit_ms + resume_ms)
            series.raw_bytes.append(tar_src.stat().st_size)
            series.compressed_bytes.append(tar_src.stat().st_size)
            # The origin deletes its copy; keep the destination's image for the way back.
            podman(services[src], "rm", "-f", container)
            for old in [*images[src], image]:
                subprocess.run(
                    [*services[src].get_cli_args(), "rmi", "-f", old],
                    env=services[src].get_env(),
                    capture_output=True,
                    check=False,
                )
            images[src] = []
            images[dst].append(image_ref)
            tar_src.unlink()
            tar_dst.unlink()
            container = new_container
            first = count(services[dst], container)
            continued = wait_for(lambda: count(services[dst], container) > first, 10)  # noqa: B023
            if first < before or not continued:
                series.continuity_ok = False
                series.failures.append(f"run {run}: counter {before} -> {first}, {continued=}")
        return series
    finally:
        for service in services:
            subprocess.run(
                [*service.get_cli_args(), "rm", "-f", "--all"],
                env=service.get_env(),
                capture_output=True,
                check=False,
            )


# --- report -----------------------------------------------------------------------------


def format_cell(summary: dict[str, Any] | None, segment: str) -> str:
    if not summary or segment not in summary or summary[segment]["median"] is None:
        return "-"
    s = summary[segment]
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


COLUMNS = ("process", "process_plain", "container", "reference_standard")


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nMigrations of a counter app rewriting {report['rewrite_bytes_per_s'] / 2**20:g} MiB/s"
        f" of its state; {report['runs']} runs per runtime and size."
    )
    print("ms as median (min-max); save/transmit/resume: the app frozen or stopped.")
    print("Paper Table 3 medians: CRIU at 15.2 MB, standard at 142.2 MB.")
    for size in report["sizes"]:
        print(f"\n{size['state_bytes'] / 1e6:.1f} MB of state")
        header = f"{'segment':<12}" + "".join(f"{c:>22}" for c in COLUMNS)
        print(header + f"{'paper CRIU':>12}{'paper std':>11}")
        for segment in SEGMENTS:
            row = f"{segment.removesuffix('_ms'):<12}"
            row += "".join(f"{format_cell(size.get(c), segment):>22}" for c in COLUMNS)
            criu = PAPER_TABLE3_MEDIAN_MS["criu"].get(segment)
            std = PAPER_TABLE3_MEDIAN_MS["standard"].get(segment)
            if segment in ("total_ms", "migration_ms", "downtime_ms"):
                criu = sum(PAPER_TABLE3_MEDIAN_MS["criu"].values())
                std = sum(PAPER_TABLE3_MEDIAN_MS["standard"].values())
            print(row + f"{criu or 0:>12.0f}{std or 0:>11.0f}")
        for label in COLUMNS:
            section = size.get(label) or {}
            if section.get("skipped"):
                print(f"{label}: skipped ({section['skipped']})")
            for failure in section.get("failures", []):
                print(f"{label}: {failure}")
        for name, value in size["ratio"].items():
            print(f"ratio {name}: {value}")
    print()
    for name, ok in report["goals"].items():
        print(f"goal {name}: {'met' if ok else 'NOT met'}")
    print(f"counter continuity: {'ok' if report['counter_continuity_ok'] else 'BROKEN'}")


def get_ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    try:
        mine = float(ours["downtime_ms"]["median"])  # type: ignore[index]
        reference = float(theirs["total_ms"]["median"])  # type: ignore[index]
        return round(mine / reference, 4)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def get_specs(kind: RuntimeKind, state_bytes: int, args: argparse.Namespace, tag: str) -> AppSpec:
    rewrite_kib = round(args.rewrite_mib_s * 1024 * args.interval)
    return get_counter_spec(
        kind, pad_bytes=state_bytes, interval_s=args.interval, tag=tag, rewrite_kib=rewrite_kib
    )


async def run_size(args: argparse.Namespace, work: Path, state_bytes: int) -> dict[str, Any]:
    """Every runtime at one state size."""
    report: dict[str, Any] = {"state_bytes": state_bytes}
    tag = f"bench-{secrets.token_hex(4)}"
    process_spec = get_specs(RuntimeKind.PROCESS, state_bytes, args, tag)
    for label, precopy in (("process", True), ("process_plain", False)):
        rts = (ProcessRuntime(work / f"{label}-a"), ProcessRuntime(work / f"{label}-b"))
        try:
            series = await run_ours(label, rts, process_spec, work, args.runs, precopy=precopy)
            report[label] = series.get_summary()
        finally:
            for runtime in rts:
                runtime.close()

    services = (
        PodmanService(work / "podman-a", storage_driver=args.storage_driver),
        PodmanService(work / "podman-b", storage_driver=args.storage_driver),
    )
    try:
        if args.no_podman:
            raise PodmanUnavailableError("--no-podman")
        for service in services:
            service.start()
            service.import_sample_image()
        container_rts = tuple(
            ContainerRuntime(
                work / f"ctr-{name}",
                client=service.get_client(),
                node_tag=f"bench{name}",
                network_mode="none",
            )
            for name, service in zip("ab", services, strict=True)
        )
        container_spec = get_specs(RuntimeKind.CONTAINER, state_bytes, args, tag)
        try:
            pair = (container_rts[0], container_rts[1])
            series = await run_ours("container", pair, container_spec, work, args.runs)
            report["container"] = series.get_summary()
        finally:
            for container_rt in container_rts:
                container_rt.close()
        runs = args.reference_runs or args.runs
        reference = run_reference(services, work, runs, container_spec)
        report["reference_standard"] = reference.get_summary()
    except PodmanUnavailableError as exc:
        report.setdefault("container", {"skipped": str(exc)})
        report["reference_standard"] = {"skipped": str(exc)}
    finally:
        for service in services:
            service.destroy()
    reference_summary = report.get("reference_standard")
    report["ratio"] = {
        f"{name}_downtime_vs_reference_standard": get_ratio(report.get(name), reference_summary)
        for name in ("process", "process_plain", "container")
    }
    return report


async def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "runs": args.runs,
        "counter_interval_s": args.interval,
        "rewrite_bytes_per_s": round(args.rewrite_mib_s * 2**20),
        "storage_driver": args.storage_driver,
        "sizes": [await run_size(args, work, round(mb * 1e6)) for mb in args.sizes],
        "paper_table3_ms": PAPER_TABLE3_MS,
    }
    sections = [
        size.get(k) or {}
        for size in report["sizes"]
        for k in ("process", "process_plain", "container", "reference_standard")
    ]
    report["counter_continuity_ok"] = all(
        s.get("counter_continuity_ok", True) and not s.get("failures")
        for s in sections
        if not s.get("skipped")
    )
    goals: dict[str, bool] = {}
    for size in report["sizes"]:
        mb = size["state_bytes"] / 1e6
        for name, limit in GOALS_MS.items():
            if name == "container" and mb > 20:
                continue
            median = ((size.get(name) or {}).get("downtime_ms") or {}).get("median")
            if median is not None:
                goals[f"{name}_{mb:.1f}MB_downtime_median_le_{limit:.0f}ms"] = median <= limit
        for key, ratio in size["ratio"].items():
            if ratio is not None:
                goals[f"{key.split('_downtime')[0]}_{mb:.1f}MB_faster_than_standard"] = ratio < 1
    report["goals"] = goals
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="migrations per runtime and size")
    parser.add_argument(
        "--reference-runs", type=int, default=0, help="standard-path runs (default: --runs)"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [float(v) for v in text.split(",")],
        default=list(PAPER_SIZES_MB),
        help="state sizes in MB, comma-separated (default: the paper's 15.2,142.2)",
    )
    parser.add_argument(
        "--rewrite-mib-s",
        type=float,
        default=4.0,
        help="MiB/s of its state the counter rewrites while it runs (default 4)",
    )
    parser.add_argument(
        "--interval", type=float, default=COUNTER_INTERVAL_S, help="counter step (s)"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--no-podman", action="store_true", help="process runtime only")
    parser.add_argument(
        "--storage-driver",
        default="overlay",
        help="podman storage driver of both nodes (overlay, as a real node would; vfs)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="ecbench-", dir="/tmp"))
    # As root the runtimes run apps as an unprivileged user, which must pass through.
    work.chmod(0o711)
    try:
        report = asyncio.run(run_all(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["counter_continuity_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
