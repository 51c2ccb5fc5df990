"""Per-app network traffic (``runtime/net_traffic.py``; issue 15, item 1): the kernel's
socket table and namespace counters read for real, and a process app's TCP traffic in
its runtime's stats, beside an app that sends nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.net_traffic import (
    TrafficMeter,
    get_socket_inodes,
    is_own_netns,
    read_netns_bytes,
    read_tcp_socket_bytes,
)
from edgechain.runtime.process import ProcessRuntime

from .helpers import get_app, get_counter, wait_until

CHUNK = 16_384


class Sink:
    """A TCP server on 127.0.0.1 that reads and counts everything sent to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(1 << 16):
                self.received += len(data)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    try:
        yield server
    finally:
        server.close()


def test_the_socket_table_counts_each_socket_s_bytes() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            client.sendall(b"x" * 50_000)
            got = 0
            while got < 50_000:
                got += len(accepted.recv(1 << 16))
            inodes = {os.fstat(s.fileno()).st_ino for s in (client, accepted)}
            assert inodes <= get_socket_inodes([os.getpid()])

            def counted() -> bool:
                table = read_tcp_socket_bytes()
                return sorted(table.get(i, -1) for i in inodes) >= [50_000, 50_000]

            wait_until(counted)  # the sender's count waits for the acknowledgement


def test_a_namespace_s_own_interfaces_and_the_meter() -> None:
    assert not is_own_netns(os.getpid())
    assert (read_netns_bytes(os.getpid()) or 0) >= 0
    assert read_netns_bytes(2**22 + 1) is None  # no such process
    meter = TrafficMeter()
    assert meter.get_rate(b"a", 10.0, {1: 1_000}) == 0  # the first sample is the baseline
    # A socket that grew, a new one (counted whole), one closed (gone from the table).
    assert meter.get_rate(b"a", 12.0, {1: 3_000, 2: 500}) == (2_000 + 500) // 2
    assert meter.get_rate(b"a", 13.0, {2: 100}) == 100  # went back: a reused inode
    meter.forget(b"a")
    assert meter.get_rate(b"a", 14.0, {2: 5_000}) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_a_process_in_a_namespace_of_its_own_counts_its_interfaces_only() -> None:
    """A container's case: its namespace holds loopback only (``network_mode`` none),
    so nothing counts, whatever the host's interfaces carry."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        wait_until(lambda: is_own_netns(proc.pid))
        assert read_netns_bytes(proc.pid) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_process_app_s_tcp_traffic_is_in_its_stats(tmp_path: Path, sink: Sink) -> None:
    runtime = ProcessRuntime(tmp_path / "node", stop_grace_s=2.0)
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{sink.port}; "
        f"while :; do head -c {CHUNK} /dev/zero >&3 || exit 1; sleep 0.05; done"
    )
    sender = AppSpec("sender", RuntimeKind.PROCESS, command=("/bin/bash", "-c", script))
    quiet, _ = get_counter()
    try:
        for spec in (sender, quiet):
            runtime.start(get_app(spec), spec)
        wait_until(lambda: sink.received > 0)
        for spec in (sender, quiet):
            runtime.stats(get_app(spec))  # the baseline
        before, started = sink.received, time.monotonic()
        time.sleep(1.0)
        sent = runtime.stats(get_app(sender)).net_bytes_per_s
        observed = (sink.received - before) / (time.monotonic() - started)
        # Bytes the sender's socket had acknowledged, per second: what the sink read
        # over about the same second (a chunk either side of the window).
        assert observed > 0
        assert observed - 3 * CHUNK <= sent <= observed + 3 * CHUNK, (sent, observed)
        assert runtime.stats(get_app(quiet)).net_bytes_per_s == 0
    finally:
        runtime.close()
