"""A process app's log stays bounded (``runtime/app_log.py``): trimmed in place, from a
line start, while the app keeps writing through its ``O_APPEND`` descriptor."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.chain.read_auth import MAX_TAIL_LINES
from edgechain.runtime.app_log import (
    KEEP_LOG_BYTES,
    MAX_LOG_BYTES,
    MAX_TAIL_BYTES,
    LogTail,
    keep_log,
    read_log_tail,
    trim_log,
)
from edgechain.runtime.base import AppStatus
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.process_launch import LOG_FILE, read_last_output
from edgechain.types import AppId

from .helpers import get_app, wait_until


def test_a_log_past_the_limit_keeps_its_end_from_a_line_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    assert trim_log(log) == 0  # no log yet
    lines = [f"line {i:06d}\n".encode() for i in range(2000)]  # 12 bytes each
    log.write_bytes(b"".join(lines))
    assert trim_log(log, max_bytes=24_000, keep_bytes=1000) == 0  # not past the limit
    assert trim_log(log, max_bytes=20_000, keep_bytes=1000) > 0
    text = log.read_bytes()
    head, _, kept = text.partition(b"\n")
    assert head.startswith(b"[edgechain: ") and head.endswith(b"earlier bytes of this log dropped]")
    assert int(head.split()[1]) == 24_000 - len(kept)
    assert kept.endswith(b"line 001999\n") and kept.startswith(b"line ")
    assert len(kept) <= 1000 and len(kept) % 12 == 0  # whole lines only


def test_a_writer_appending_through_its_descriptor_goes_on_at_the_new_end(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"x" * 50_000 + b"\nlast before\n")
        assert trim_log(log, max_bytes=10_000, keep_bytes=100) > 0
        os.write(fd, b"first after\n")
    finally:
        os.close(fd)
    text = log.read_bytes()
    assert text.endswith(b"\nlast before\nfirst after\n")
    assert len(text) < 200 and b"\0" not in text  # no hole where the old end was


def test_a_chatty_app_keeps_running_with_a_bounded_log(tmp_path: Path) -> None:
    """A real app writes past the limit, then a line every 0.1 s: a usage sample trims
    its log to about ``KEEP_LOG_BYTES``, and what it writes next is still logged."""
    tag = secrets.token_hex(4)
    burst = MAX_LOG_BYTES + 2 * KEEP_LOG_BYTES
    script = f"yes 'chatty {tag}' | head -c {burst}; while :; do echo tick; sleep 0.1; done"
    spec = AppSpec("chatty", RuntimeKind.PROCESS, command=("/bin/sh", "-c", script, tag))
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "rt") as runtime:
        runtime.start(app, spec)
        log = runtime.get_app_dir(app) / LOG_FILE
        wait_until(lambda: log.exists() and log.stat().st_size > burst, timeout_s=60)
        stats = runtime.stats(app)
        assert stats.status is AppStatus.RUNNING
        assert log.stat().st_size < KEEP_LOG_BYTES + 4096
        assert log.read_bytes().startswith(b"[edgechain: ")
        ticks = log.read_bytes().count(b"tick\n")
        wait_until(lambda: log.read_bytes().count(b"tick\n") >= ticks + 3, timeout_s=30)
        assert read_last_output(log) == "tick"
        assert runtime.is_running(app)


def test_the_tail_of_a_log_is_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    assert read_log_tail(log, 5) is None  # no log here
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(1, 11)))
    assert read_log_tail(log, 3) == LogTail(("line 8", "line 9", "line 10"), truncated=True)
    assert read_log_tail(log, 10) == LogTail(tuple(f"line {i}" for i in range(1, 11)), False)
    log.write_bytes(b"no newline at the end")
    assert read_log_tail(log, 5) == LogTail(("no newline at the end",), False)
    log.write_bytes(b"bad \xff byte\n")
    assert read_log_tail(log, 5) == LogTail(("bad \ufffd byte",), False)
    with pytest.raises(ValueError, match="lines"):
        read_log_tail(log, 0)


def test_the_tail_of_a_huge_log_reads_only_its_end(tmp_path: Path) -> None:
    """Bounded whatever the app printed: the last MAX_TAIL_BYTES, from a line start."""
    log = tmp_path / "app.log"
    line = b"x" * 99 + b"\n"
    log.write_bytes(line * (3 * MAX_TAIL_BYTES // len(line)) + b"last\n")
    tail = read_log_tail(log, MAX_TAIL_LINES)
    assert tail is not None and tail.truncated
    assert tail.lines[-1] == "last"
    assert all(len(text) == 99 for text in tail.lines[:-1])  # the cut first line dropped
    assert sum(len(text) + 1 for text in tail.lines) <= MAX_TAIL_BYTES


def test_the_log_of_a_copy_that_left_is_kept_and_goes_on_when_it_returns(
    tmp_path: Path,
) -> None:
    """The node deletes the copy of an app that runs elsewhere now (``remove``): its
    output is still there to read, without the app's directory; when the app starts
    here again its log goes on after it; an app that left the chain takes it along."""
    tag = secrets.token_hex(4)
    script = 'echo "run $(date +%s%N)"; while :; do sleep 0.1; done'
    spec = AppSpec("leaver", RuntimeKind.PROCESS, command=("/bin/sh", "-c", script, tag))
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "apps") as runtime:
        runtime.start(app, spec)
        wait_until(lambda: _count_runs(runtime, app) == 1, timeout_s=30)
        runtime.remove(app)  # moved away: the copy here goes
        assert not runtime.get_app_dir(app).exists()
        assert not runtime.is_running(app)
        assert _count_runs(runtime, app) == 1  # read from the kept log
        runtime.start(app, spec)  # it came back
        wait_until(lambda: _count_runs(runtime, app) == 2, timeout_s=30)
        assert not runtime.get_kept_log(app).exists()  # the app's log again
        runtime.remove(app)
        runtime.discard_log(app)  # removed from the chain
        assert runtime.get_log_tail(app, 10) is None


def _count_runs(runtime: ProcessRuntime, app: AppId) -> int:
    tail = runtime.get_log_tail(app, 100)
    return 0 if tail is None else sum(line.startswith("run ") for line in tail.lines)


def test_only_the_latest_kept_logs_stay(tmp_path: Path) -> None:
    kept_dir = tmp_path / "app-logs"
    for name in ("a", "b", "c"):
        log = tmp_path / f"{name}.app.log"
        log.write_bytes(b"x" * (KEEP_LOG_BYTES + 10) + f"\nlast {name}\n".encode())
        keep_log(log, kept_dir / f"{name}.log", max_kept=2)
        assert not log.exists()
    assert sorted(p.name for p in kept_dir.iterdir()) == ["b.log", "c.log"]
    tail = read_log_tail(kept_dir / "c.log", 1)
    assert tail is not None and tail.lines == ("last c",)
    assert (kept_dir / "c.log").stat().st_size <= KEEP_LOG_BYTES + 64  # trimmed
    keep_log(tmp_path / "none.log", kept_dir / "none.log")  # no log: nothing
    assert not (kept_dir / "none.log").exists()
