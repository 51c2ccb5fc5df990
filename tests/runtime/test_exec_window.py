"""A straggler caught in the middle of an ``execve`` is not missed by a kill.

While a process execs, ``/proc/PID/environ`` reads empty for a moment (the old
environment is gone, the new one not set yet). A pass of ``signal_stragglers`` that met
such a process and found nothing else used to be the last one, so an app's process that
left its group and exec'd at that moment survived the kill of a move: the app ran on at
the origin beside its new copy. A pass that meets a user process without an environment
it had not met is now followed by another. The window is microseconds, too short to hit
on purpose, so the test holds a process in it: started with no environment, it is given
the copy's only once the first pass is over.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.runtime import app_processes
from edgechain.runtime.app_processes import (
    STATE_DIR_ENV,
    get_state_dir_value,
    is_user_task_without_environment,
    signal_stragglers,
)

from .helpers import wait_until

LIMIT_S = 10.0


def _read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except OSError:
        return b""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A shell with no environment that, once a line arrives on its stdin, execs into a
    process of the app copy at a state directory under ``tmp_path``."""
    state_dir = get_state_dir_value(str(tmp_path / "apps" / "aa"))
    script = f"read line; exec /usr/bin/env {STATE_DIR_ENV}={state_dir} sleep 30"
    proc = subprocess.Popen(["/usr/bin/env", "-i", "/bin/sh", "-c", script], stdin=subprocess.PIPE)
    try:
        wait_until(lambda: _read(proc.pid, "comm") == b"sh\n", LIMIT_S)
        yield proc, state_dir
    finally:
        proc.kill()
        proc.wait()


def test_a_live_process_without_environment_is_told_from_threads_and_zombies(
    held: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, _ = held
    assert _read(proc.pid, "environ") == b""
    assert is_user_task_without_environment(proc.pid)
    zombie = subprocess.Popen(["true"])
    wait_until(lambda: _read(zombie.pid, "stat").split(b") ")[-1][:1] == b"Z", LIMIT_S)
    assert not is_user_task_without_environment(zombie.pid)
    zombie.wait()
    assert not is_user_task_without_environment(zombie.pid)  # reaped: gone
    if _read(2, "comm") == b"kthreadd\n":  # a host's kernel threads (not in a container)
        assert not is_user_task_without_environment(2)


def test_a_process_that_gets_the_copys_environment_after_a_pass_is_killed(
    held: tuple[subprocess.Popen[bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, state_dir = held
    real = app_processes.find_app_pids
    passes: list[list[int]] = []

    def find_then_exec(wanted: str, unsettled: list[int] | None = None) -> list[int]:
        """The real pass; after the first, the held process execs into the copy."""
        found = real(wanted, unsettled)
        passes.append(list(unsettled or []))
        if len(passes) == 1:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            marker = f"{STATE_DIR_ENV}={state_dir}".encode()
            wait_until(lambda: marker in _read(proc.pid, "environ"), LIMIT_S)
        return found

    monkeypatch.setattr(app_processes, "find_app_pids", find_then_exec)
    assert signal_stragglers(state_dir, None, signal.SIGKILL) == 1
    assert proc.pid in passes[0]  # the first pass met it without an environment
    assert proc.wait(LIMIT_S) == -signal.SIGKILL
