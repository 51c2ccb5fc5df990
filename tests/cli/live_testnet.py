"""A real ``edgechain testnet --forever`` and the CLI pointed at it, for the live tests.

``nodes`` node processes (4 by default), committee 2, 1 s slots of which the VDF takes
5 %, in ``run_dir``; the
launcher writes ``RUN/client.toml`` once genesis is reached and the operator key is
granted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EDGECHAIN = str(Path(sys.executable).parent / "edgechain")
SLOT_S = 1.0
VDF_FRACTION = 0.05
"""Of a slot, the producer's VDF (the node's default 0.25). These tests are about apps:
proving was about 70 % of a 3-node testnet's CPU at 1 s slots, and two such testnets
run beside the suite's other modules (``tests/conftest.py``)."""
POLL_S = 0.3


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 30) -> None:
    """A node the test started by hand: SIGTERM, then SIGKILL to its process group if it
    is still there after ``grace_s`` (it runs in a session of its own)."""
    if proc is None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class PausedNodes:
    """Node processes a test paused (SIGSTOP). :meth:`release`, in the test's ``finally``
    before the testnet stops, continues those still paused: a stopped process cannot
    take the launcher's SIGTERM."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def pause(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.pids.append(pid)

    def resume(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)
        self.pids.remove(pid)

    def resume_all(self) -> None:
        for pid in list(self.pids):
            self.resume(pid)

    def release(self) -> None:
        """Continue every node still paused; one gone since is skipped."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.pids.clear()


def replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """A node's command line with ``flag``'s value replaced (a node started by hand)."""
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


class LiveTestnet:
    """A running ``edgechain testnet`` and the CLI pointed at it."""

    def __init__(self, run_dir: Path, extra_args: tuple[str, ...] = (), nodes: int = 4) -> None:
        self.run_dir = run_dir
        self.extra_args = extra_args
        """More ``edgechain testnet`` flags (``--containers 3``)."""
        self.nodes = nodes
        self.app: str | None = None
        """The test app's id once submitted."""
        self.client = run_dir / "client.toml"
        self.launcher: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [EDGECHAIN, "testnet", "--forever", "--quiet", "--nodes", str(self.nodes),
                "--committee", "2", "--slot-duration", f"{SLOT_S:g}", "--join-interval", "0.3",
                "--vdf-fraction", f"{VDF_FRACTION:g}", "--run-dir", str(self.run_dir),
                *self.extra_args]  # fmt: skip
        self.launcher = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> tuple[int | None, str]:
        """Ctrl-C the launcher (it stops every node); its exit status and what it printed
        (nothing when stopped before)."""
        launcher = self.launcher
        if launcher is None:
            return None, ""
        if launcher.stdout is None or launcher.stdout.closed:
            return launcher.returncode, ""
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        try:
            output, _ = launcher.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            output, _ = launcher.communicate()
        return launcher.returncode, output.decode(errors="replace")

    def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout: float, step: float = POLL_S
    ) -> None:
        """Poll ``predicate`` every ``step`` s while the testnet runs; on a timeout,
        fail with what :meth:`describe` says of the fleet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.launcher is not None and self.launcher.poll() is None, "testnet died"
            if predicate():
                return
            time.sleep(step)
        raise AssertionError(f"timed out waiting for {what}: {self.describe()}")

    def describe(self) -> str:
        """What a timed-out wait reports: the copies the test sees, and the test app's
        history from the chain."""
        history = self.cli("apps", "history", self.app) if self.app else None
        return f"{self.describe_copies()}, history {history}"

    def describe_copies(self) -> str:
        return ""

    def cli(self, *argv: str) -> Any:
        """``edgechain --client RUN/client.toml ARGV --json``; fails the test on error."""
        done = self.run_cli(argv)
        assert done.returncode == 0, f"edgechain {' '.join(argv)}: {done.stderr}"
        return json.loads(done.stdout)

    def cli_refused(self, *argv: str) -> str:
        """What ``edgechain ... ARGV`` says on standard error as it fails (exit 1)."""
        done = self.run_cli(argv)
        assert done.returncode == 1, f"edgechain {' '.join(argv)}: {done.returncode}"
        return done.stderr

    def run_cli(self, argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        """``edgechain ... ARGV --json`` as it ran, for a test that reads a refusal."""
        return subprocess.run(
            [EDGECHAIN, "--client", str(self.client), *argv, "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
