"""Shared helpers of the runtime tests: polling, counters, process census."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgechain.chain.command_encoding import encode_app_spec
from edgechain.chain.model import AppSpec, PlanAction, PlanEntry, RuntimeKind
from edgechain.runtime.app_processes import is_user_task_without_environment
from edgechain.runtime.base import AppRuntime
from edgechain.runtime.precopy import MIN_STATE_BYTES
from edgechain.runtime.samples import get_counter_spec
from edgechain.runtime.transfer import (
    MigrationResult,
    PlanCheck,
    ProgressCallback,
    SpecCheck,
    TransferClient,
    TransferServer,
    TransferTimeouts,
)
from edgechain.types import AppId, BlockHash, NodeId

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02
) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def read_count(state_dir: Path) -> int:
    """The counter app's persisted value (0 when it has not written one yet)."""
    try:
        text = (state_dir / "count").read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text else 0


def wait_count_above(state_dir: Path, value: int, timeout_s: float = 10.0) -> int:
    """Wait until the counter in ``state_dir`` exceeds ``value``; return the new value."""
    wait_until(lambda: read_count(state_dir) > value, timeout_s)
    return read_count(state_dir)


EXEC_RETRIES = 50
"""Reads of an empty argv, 1 ms apart, before a process counts as having none."""


def _read_cmdline(proc: psutil.Process) -> list[str]:
    """``proc``'s argv; read again while it is empty: a root node's app execs its way
    to the app (shell, setpriv, prlimit: ``runtime/spawner.py``), and its argv reads
    empty for about 0.1 ms of each exec, long enough for a test to miss it."""
    for _ in range(EXEC_RETRIES):
        cmdline = proc.cmdline()
        # Kernel threads and zombies have none for good.
        if cmdline or not is_user_task_without_environment(proc.pid):
            return cmdline
        time.sleep(0.001)
    return []


def _is_tagged(proc: psutil.Process, tag: str) -> bool:
    try:
        cmdline = _read_cmdline(proc)
        # The tag ends the argv, or comes just before the counter's rewrite size.
        tail = cmdline[-1:] if not cmdline or not cmdline[-1].isdigit() else cmdline[-2:-1]
        return tail == [tag] and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def get_tagged_processes(tag: str) -> list[psutil.Process]:
    """One process per live instance of the app whose argv ends with ``tag``.

    A shell forks before it execs a command, and the child briefly has the same argv
    (it may even be frozen there by a save). Every instance runs in its own session
    (the process runtime starts each app with setsid; runc gives each container its
    own), so an instance is a session: the session's lowest tagged pid stands for it.
    """
    sessions: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if not _is_tagged(proc, tag):
            continue
        try:
            sid = os.getsid(proc.pid)
        except OSError:
            continue
        if sid not in sessions or proc.pid < sessions[sid].pid:
            sessions[sid] = proc
    return list(sessions.values())


def assert_single_instance(tag: str) -> None:
    """The app tagged ``tag`` runs exactly once on the whole host."""
    assert_instances(tag, 1)


def assert_instances(tag: str, count: int) -> None:
    """The app tagged ``tag`` runs exactly ``count`` times on the whole host: waited for
    (under load an instance may not have exec'd its command yet, or psutil may fail to
    read a process in disk sleep), then held: no late extra copy appears."""
    wait_until(lambda: len(get_tagged_processes(tag)) == count, timeout_s=15.0)
    time.sleep(0.1)
    assert len(get_tagged_processes(tag)) == count


def get_node_id(name: str) -> NodeId:
    return NodeId(name.encode().ljust(32, b"\0")[:32])


def get_block_hash(n: int) -> BlockHash:
    return BlockHash(n.to_bytes(32, "big"))


def get_entry(spec: AppSpec, origin: NodeId, destination: NodeId) -> PlanEntry:
    return PlanEntry(PlanAction.MIGRATE, get_app(spec), origin, destination)


def get_app(spec: AppSpec) -> AppId:
    """A test app id derived from the spec (the chain derives ids from the SUBMIT
    command; here every test spec carries a unique tag, so its hash is unique too)."""
    return AppId(hashlib.sha256(b"test-app" + encode_app_spec(spec)).digest())


def get_counter(pad: int = 0, rewrite_kib: int = 0) -> tuple[AppSpec, str]:
    """A process counter app with a fresh tag (``pad`` bytes of padding state, of which
    it rewrites ``rewrite_kib`` KiB every step), and the tag."""
    tag = f"t-{secrets.token_hex(4)}"
    spec = get_counter_spec(
        RuntimeKind.PROCESS, pad_bytes=pad, interval_s=0.05, tag=tag, rewrite_kib=rewrite_kib
    )
    return spec, tag


def get_free_closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DestinationProcess:
    """A destination node in its own OS process (``dest_node.py``), so it can be killed."""

    def __init__(self, root: Path, node_id: NodeId, *, hang_in_restore: bool = False) -> None:
        self.root = root
        self.port_file = root / "port"
        self.restoring_marker = root / "restoring"
        args = [
            sys.executable,
            str(HERE / "dest_node.py"),
            "--root",
            str(root),
            "--node-id",
            bytes(node_id).hex(),
            "--port-file",
            str(self.port_file),
        ]
        if hang_in_restore:
            args += ["--hang-in-restore", str(self.restoring_marker)]
        root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(args, start_new_session=True, cwd=REPO)
        wait_until(lambda: self.port_file.exists() and self.port_file.read_text().strip() != "")
        self.port = int(self.port_file.read_text())

    def kill(self) -> None:
        """SIGKILL the node (and only it: its apps must die by themselves)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, sig: signal.Signals = signal.SIGSTOP) -> None:
        os.kill(self.proc.pid, sig)

    def cleanup(self) -> None:
        """Kill the node's whole process group, whatever state the test left it in.

        SIGKILL alone, no SIGCONT first: a stopped node must not get to run again.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


# --- nodes: a runtime with its transfer server and client -----------------------------


def accept_all(block_hash: BlockHash, entry: PlanEntry) -> bool:
    del block_hash, entry
    return True


@dataclass
class Node:
    """One test node: a runtime, its transfer server (port 0) and client."""

    name: str
    node_id: NodeId
    runtime: AppRuntime
    server: TransferServer
    client: TransferClient

    @property
    def port(self) -> int:
        return self.server.port

    async def migrate_to(
        self,
        other: Node,
        spec: AppSpec,
        block: int,
        *,
        port: int | None = None,
        on_progress: ProgressCallback | None = None,
        may_resume: Callable[[], bool] = lambda: True,
    ) -> MigrationResult:
        """Migrate ``spec`` from this node to ``other`` (or to ``port``, e.g. a proxy)."""
        entry = get_entry(spec, self.node_id, other.node_id)
        return await self.client.migrate(
            get_block_hash(block),
            entry,
            spec,
            "127.0.0.1",
            other.port if port is None else port,
            on_progress=on_progress,
            may_resume=may_resume,
        )


@contextlib.asynccontextmanager
async def open_nodes(
    runtimes: Sequence[AppRuntime],
    work: Path,
    *,
    is_planned: PlanCheck = accept_all,
    timeouts: TransferTimeouts | None = None,
    is_spec_current: SpecCheck | None = None,
    precopy_min_bytes: int | None = MIN_STATE_BYTES,
) -> AsyncIterator[list[Node]]:
    """Start a transfer server and client per runtime; close the servers after."""
    nodes = []
    try:
        for index, runtime in enumerate(runtimes):
            name = chr(ord("a") + index)
            node_id = get_node_id(name)
            server = TransferServer(
                runtime,
                node_id,
                is_planned,
                work / f"transfer-{name}",
                timeouts=timeouts,
                is_spec_current=is_spec_current,
            )
            await server.start("127.0.0.1", 0)
            client = TransferClient(runtime, timeouts=timeouts, precopy_min_bytes=precopy_min_bytes)
            nodes.append(Node(name, node_id, runtime, server, client))
        yield nodes
    finally:
        for node in nodes:
            await node.server.close()


class TamperProxy:
    """A loopback TCP proxy in front of a destination, to damage one connection.

    ``flip_at``: XOR the byte at that offset of the origin-to-destination stream.
    ``cut_reply_after``: forward only that many bytes of the destination's replies,
    then close both sides (a DONE lost on the way back). Only the first connection is
    damaged; later ones (the origin's re-send probe) pass through untouched.
    """

    def __init__(
        self, target_port: int, *, flip_at: int | None = None, cut_reply_after: int | None = None
    ) -> None:
        self.target_port = target_port
        self.flip_at = flip_at
        self.cut_reply_after = cut_reply_after
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        damaged = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        flip = self.flip_at if damaged else None
        cut = self.cut_reply_after if damaged else None
        forward = asyncio.ensure_future(self._pump(reader, up_writer, flip, None, writer))
        backward = asyncio.ensure_future(self._pump(up_reader, writer, None, cut, up_writer))
        self._tasks.update((forward, backward))
        await asyncio.gather(forward, backward, return_exceptions=True)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        flip_at: int | None,
        cut_after: int | None,
        other: asyncio.StreamWriter,
    ) -> None:
        offset = 0
        try:
            while data := await source.read(65536):
                if flip_at is not None and offset <= flip_at < offset + len(data):
                    buf = bytearray(data)
                    buf[flip_at - offset] ^= 0xFF
                    data = bytes(buf)
                if cut_after is not None and offset + len(data) >= cut_after:
                    sink.write(data[: cut_after - offset])
                    await sink.drain()
                    break
                sink.write(data)
                await sink.drain()
                offset += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
            if cut_after is not None:
                other.close()
