"""An app that keeps failing, on a real testnet, seen through the CLI and the process
table.

``edgechain testnet --forever`` with 3 node processes (committee 2, 1 s slots: the
fewest a genesis takes); the app is submitted with ``edgechain apps submit``. It runs a
second, then execs a script its user cannot read (a mode-000 directory: the trial's
checkout in a mode-700 one), so ``sh`` exits 2. Each start is a new process group on the
host, seen by a thread watching the process table; the gaps between them must grow
(1 s, 2 s, 4 s of backoff after each failure, plus its second of running),
while ``edgechain apps list`` says ``crash_looping``, with the restarts and the exit
code, instead of ``running``. A STOP while it waits acts at once and drops the
backoff; a START runs it at once, counting from the start again. Stopping the testnet
leaves no process of the app behind.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from .live_testnet import EDGECHAIN, LiveTestnet

SETUP_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 90.0
RUN_S = 1.0
"""How long each start of the app runs before it fails."""
POLL_S = 0.1
PASS_S = 0.5
"""Slack for the node's reconcile pass stamping the times it compares."""

pytestmark = pytest.mark.xdist_group("testnet-light")


class CrashNet(LiveTestnet):
    """The testnet, and the starts of the failing app seen on this host."""

    def __init__(self, run_dir: Path, tag: str) -> None:
        super().__init__(run_dir, nodes=3)
        self.tag = tag
        self.starts: dict[int, float] = {}
        """Group leader pid -> creation time of every start seen."""
        self._lock = threading.Lock()

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Look at the process table every ``POLL_S`` meanwhile (each start lives only
        ``RUN_S``, and a CLI call waiting for a block takes longer)."""
        done = threading.Event()

        def run() -> None:
            while not done.wait(POLL_S):
                self.watch()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def poll(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        """``wait_for`` at a finer step."""
        self.wait_for(predicate, what, timeout, step=POLL_S)

    def count_starts(self) -> int:
        with self._lock:
            return len(self.starts)

    def watch(self) -> list[int]:
        """Record the app's starts now on the process table; their leaders' pids."""
        leaders = []
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            if self.tag not in (proc.info["cmdline"] or ()):
                continue
            try:
                if os.getpgid(proc.pid) != proc.pid:
                    continue  # the sleep the app's shell forked
            except ProcessLookupError:
                continue
            leaders.append(proc.pid)
            with self._lock:
                self.starts.setdefault(proc.pid, proc.info["create_time"])
        return leaders

    def gaps(self) -> list[float]:
        with self._lock:
            times = sorted(self.starts.values())
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def describe_copies(self) -> str:
        return f"gaps {self.gaps()}, list {self.cli('apps', 'list')}"

    def on_node(self) -> dict[str, Any]:
        """What ``apps show`` says of the copy on the app's node (``{}``: nothing)."""
        assert self.app is not None
        copy = self.cli("apps", "show", self.app).get("on_node")
        return copy if isinstance(copy, dict) else {}


def _spec_yaml(path: Path, script: Path, tag: str) -> None:
    command = f"sleep {RUN_S:g}; exec /bin/sh {script}"
    path.write_text(
        "name: crashloop\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "-c", "{command}", "{tag}"]\n'
        "cpu_bp: 10\n"
        "ram_bp: 10\n"
    )


def test_a_failing_app_backs_off_and_is_listed_crash_looping(run_dir: Path) -> None:
    private = run_dir.parent / "private"
    private.mkdir()
    script = private / "app.sh"
    script.write_text("echo never\n")
    private.chmod(0o000)  # nobody, and a node that is not root, cannot read it
    tag = f"crashloop-{os.getpid()}-{time.monotonic_ns()}"
    spec = run_dir.parent / "crashloop.yaml"
    _spec_yaml(spec, script, tag)
    net = CrashNet(run_dir, tag)
    net.start()
    try:
        with net.watching():
            net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
            net.app = net.cli("apps", "submit", str(spec))["app_id"]

            # Four starts: after the first three failures it waited 1, 2 and 4 s. Each gap
            # holds its run, the wait, and up to a pass (~1 s) to notice the exit; PASS_S
            # for when a pass's clock reading comes before the exit or the start it stamps.
            net.poll(lambda: net.count_starts() >= 4, "four starts of the app", STEP_TIMEOUT_S)
            gaps = net.gaps()[:3]
            waits = (1, 2, 4)
            assert all(gap >= RUN_S + w - PASS_S for gap, w in zip(gaps, waits, strict=True)), gaps
            assert gaps[2] > gaps[0] + 1.0, gaps  # 4 s of backoff against 1 s
            assert all(gap < RUN_S + w + 6 for gap, w in zip(gaps, waits, strict=True)), gaps

            # The fleet list says it keeps failing, and why, not "running".
            listed: dict[str, Any] = {}

            def listed_failing() -> bool:
                [view] = [a for a in net.cli("apps", "list") if a["app_id"] == net.app]
                listed.update(view["on_node"] or {})
                return view["state"] == "running" and listed.get("status") == "crash_looping"

            net.poll(listed_failing, "the list to say crash_looping", STEP_TIMEOUT_S)
            # Why, too: the shell's last words, from the app's log on its node.
            last_exit = listed["last_exit"]
            assert last_exit.startswith("exit code 2: ") and listed["restarts"] >= 3, listed
            assert "Permission denied" in last_exit or "an't open" in last_exit, listed
            assert listed["running"] is False and listed["next_restart_in_s"] is not None
            table = subprocess.run(
                [EDGECHAIN, "--client", str(net.client), "apps", "list"],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout  # fmt: skip
            assert "crash_looping" in table and "last exit: exit code 2" in table, table

            # STOP while it waits: applied, the node drops its backoff and starts nothing.
            assert net.cli("apps", "stop", net.app)["applied"]
            net.poll(
                lambda: net.on_node().get("status") == "stopped",
                "the node to drop it",
                STEP_TIMEOUT_S,
            )
            copy = net.on_node()
            assert copy["restarts"] == 0 and copy["last_exit"] is None, copy
            assert copy["next_restart_in_s"] is None, copy
            assert net.watch() == []
            starts_before = net.count_starts()

            # START: it runs at once, and its next failure waits 1 s again, not 8 or more.
            assert net.cli("apps", "start", net.app)["applied"]
            net.poll(
                lambda: net.count_starts() >= starts_before + 2, "two more starts", STEP_TIMEOUT_S
            )
            restarted_after = net.gaps()[starts_before]
            assert restarted_after < RUN_S + 1 + 6, net.gaps()
    finally:
        code, output = net.stop()
        private.chmod(0o700)
    assert code == 0, output
    assert "crashloop" in output and "never placed" not in output, output
    # Every process the node started for the app ended with the testnet.
    deadline = time.monotonic() + 30
    while net.watch() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert net.watch() == []
