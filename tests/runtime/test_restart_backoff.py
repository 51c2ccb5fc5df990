"""Restarts of an app that keeps failing: the backoff rule (pure, ``now`` given), then
``AppManager.reconcile`` driving a real ``ProcessRuntime`` over the small fake chain of
``test_lifecycle``: growing waits between starts, the node's view says
``crash_looping`` with the restarts and the exit code, failures are logged rate-limited,
and a STOP or an UPDATE while it waits acts at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.orchestrator.registry import AppState
from edgechain.runtime.manager import AppManager
from edgechain.runtime.process_launch import read_last_output
from edgechain.runtime.restart_backoff import (
    BASE_DELAY_S,
    CRASH_LOOPING,
    LAST_OUTPUT_CHARS,
    MAX_DELAY_S,
    RestartBackoff,
    compute_restart_delay,
    describe_exit,
)
from edgechain.telemetry import logs
from edgechain.types import AppId

from .helpers import get_app, wait_until
from .test_lifecycle import ME, FakeChain, _pids, _place

APP = AppId(b"\x01" * 32)
OTHER_APP = AppId(b"\x02" * 32)

# --- the rule -------------------------------------------------------------------------


def test_compute_restart_delay_doubles_from_the_base_up_to_the_cap() -> None:
    assert compute_restart_delay(0) == 0.0
    assert compute_restart_delay(-3) == 0.0
    delays = [compute_restart_delay(n) for n in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert (BASE_DELAY_S, MAX_DELAY_S) == (1.0, 60.0)
    assert compute_restart_delay(10_000) == MAX_DELAY_S  # no overflow, however many
    assert [compute_restart_delay(n, base_s=0.5, max_s=3.0) for n in range(1, 6)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]


def test_describe_exit() -> None:
    assert describe_exit(2) == "exit code 2"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"
    assert describe_exit(None) == "exited (status unknown)"
    assert describe_exit(2, "sh: 0: cannot open x: Permission denied") == (
        "exit code 2: sh: 0: cannot open x: Permission denied"
    )
    assert describe_exit(-signal.SIGKILL, "") == "killed by SIGKILL"


def test_backoff_waits_grow_and_a_stable_run_forgives() -> None:
    backoff = RestartBackoff(base_s=1.0, max_s=8.0, stable_after_s=30.0, log_interval_s=0.0)
    assert backoff.get_wait(APP, 0.0) == 0.0 and backoff.get_status(APP, 0.0) is None
    now = 100.0
    assert backoff.on_started(APP, now) == 0  # a first start is no restart
    waits = []
    for _ in range(5):
        now += 0.5  # it runs half a second, then exits on its own
        assert backoff.is_started(APP, before=now)
        failure = backoff.on_failed(APP, now, "exit code 2")
        assert failure is not None
        waits.append(failure.delay_s)
        assert not backoff.is_started(APP, before=now + 1)  # its end is counted once
        assert backoff.get_wait(APP, now) == failure.delay_s
        status = backoff.get_status(APP, now + 0.25)
        assert status is not None and status.last_exit == "exit code 2"
        assert status.next_restart_in_s == round(failure.delay_s - 0.25, 1)
        now += failure.delay_s
        assert backoff.get_wait(APP, now) == 0.0
        backoff.on_started(APP, now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    status = backoff.get_status(APP, now)
    assert status is not None
    assert (status.failures, status.restarts, status.next_restart_in_s) == (5, 5, None)
    # Up, but not long enough: still counted. Up long enough: forgiven, and a later
    # failure waits the base again.
    backoff.on_running(APP, now + 29.0)
    assert backoff.get_status(APP, now + 29.0) is not None
    backoff.on_running(APP, now + 30.0)
    assert backoff.get_status(APP, now + 30.0) is None
    assert backoff.is_started(APP, before=now + 31.0)  # its next end is still seen
    failure = backoff.on_failed(APP, now + 40.0, "killed by SIGKILL")
    assert failure is not None and (failure.failures, failure.delay_s) == (1, 1.0)


def test_a_start_this_listing_may_not_have_seen_is_not_taken_for_an_exit() -> None:
    backoff = RestartBackoff()
    backoff.on_started(APP, 10.0)
    assert not backoff.is_started(APP, before=10.0)  # listed before (or as) it started
    assert backoff.is_started(APP, before=10.1)
    assert not backoff.is_started(OTHER_APP, before=99.0)  # never started here


def test_failure_logs_are_rate_limited_and_count_what_they_stand_for() -> None:
    backoff = RestartBackoff(base_s=1.0, max_s=60.0, log_interval_s=30.0)
    logged = []
    for now in (0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 70.0):
        failure = backoff.on_failed(APP, now, "exit code 1")
        if failure is not None:
            logged.append((now, failure.failures, failure.unlogged))
    assert logged == [(0.0, 1, 0), (31.0, 6, 4), (63.0, 7, 0)]


def test_forget_and_retain_drop_the_wait() -> None:
    backoff = RestartBackoff()
    backoff.on_failed(APP, 0.0, "exit code 1")
    backoff.on_failed(OTHER_APP, 0.0, "exit code 1")
    assert backoff.get_wait(APP, 0.5) > 0
    backoff.forget(APP)  # stopped on purpose: a START runs at once
    assert backoff.get_wait(APP, 0.5) == 0.0 and backoff.get_status(APP, 0.5) is None
    backoff.retain([APP])
    assert backoff.get_status(OTHER_APP, 0.5) is None


# --- reconcile on a real runtime ---------------------------------------------------------


def _failing(tag: str, run_s: float = 0.1, code: int = 3) -> AppSpec:
    """An app that runs ``run_s`` and exits with ``code`` (``tag``: its $0)."""
    command = ("/bin/sh", "-c", f"sleep {run_s}; exit {code}", tag)
    return AppSpec(name=f"failing-{tag}", runtime=RuntimeKind.PROCESS, command=command)


def _round(apps: AppManager) -> None:
    """What the node's tick runs about once a second: reconcile, then sample."""

    async def both() -> None:
        await apps.reconcile()
        await apps.usage.measure()

    asyncio.run(both())


def _view(apps: AppManager, app: AppId) -> dict[str, object]:
    [view] = [v for v in apps.get_views() if v["app"] == bytes(app).hex()]
    return view


def _fields(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    return [logs.get_fields(r) for r in caplog.records if r.getMessage() == message]


def test_a_failing_app_is_restarted_with_growing_waits_and_shown_crash_looping(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    apps.restarts.base_s, apps.restarts.max_s = 0.3, 1.2
    apps.restarts.log_interval_s = 0.0  # every failure logged: the waits are read there
    tag = f"bo-{secrets.token_hex(4)}"
    spec = _failing(tag)
    app = get_app(spec)
    _place(chain, app, spec)

    def started() -> list[float]:
        return [r.created for r in caplog.records if r.getMessage() == "app started"]

    def five_starts() -> bool:
        _round(apps)
        return len(started()) >= 5

    wait_until(five_starts, timeout_s=30.0, step_s=0.05)
    failed = _fields(caplog, "app failed")
    assert [f["restart_in_s"] for f in failed[:4]] == [0.3, 0.6, 1.2, 1.2]
    assert all(f["reason"] == "exit code 3" for f in failed)
    assert [f["failures"] for f in failed[:4]] == [1, 2, 3, 4]
    times = started()
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # A restart never comes before its wait is over (each gap also holds the 0.1 s run).
    assert all(gap >= wait for gap, wait in zip(gaps, [0.3, 0.6, 1.2, 1.2], strict=False))
    assert [f.get("restarts") for f in _fields(caplog, "app started")][:3] == [None, 1, 2]

    # While it waits, the node's view of its copy says so, with why. (One view read
    # once: a view read again a moment later may be of the next run, started and ended
    # but not counted yet, which is crash_looping with no wait; seen once under load.)
    views: list[dict[str, object]] = []

    def waiting() -> bool:
        _round(apps)
        views.append(_view(apps, app))
        return views[-1]["status"] == CRASH_LOOPING and views[-1]["next_restart_in_s"] is not None

    wait_until(waiting, timeout_s=10.0, step_s=0.05)
    view = views[-1]
    assert view["running"] is False and view["node"] == ME.node.hex()
    assert view["last_exit"] == "exit code 3"
    assert isinstance(view["restarts"], int) and view["restarts"] >= 4
    wait = view["next_restart_in_s"]
    assert isinstance(wait, float) and 0 <= wait <= 1.2
    assert len(_pids(tag)) <= 1  # never a second copy


def test_a_failing_run_says_what_it_last_wrote(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    """The reason of a failure names the exit and the run's last line of output (the
    app's log on this node, which a CLI user cannot see): the shell's complaint about a
    script it cannot open, say, rather than a bare ``exit code 2``."""
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    apps.restarts.base_s, apps.restarts.max_s = 5.0, 5.0  # one failure, then a long wait
    tag = f"said-{secrets.token_hex(4)}"
    command = ("/bin/sh", "-c", "echo starting; echo 'boom: no such thing' >&2; exit 3", tag)
    spec = AppSpec(name=f"said-{tag}", runtime=RuntimeKind.PROCESS, command=command)
    app = get_app(spec)
    _place(chain, app, spec)

    def failed() -> bool:
        _round(apps)
        return bool(_fields(caplog, "app failed"))

    wait_until(failed, timeout_s=30.0, step_s=0.05)
    [failure] = _fields(caplog, "app failed")
    assert failure["reason"] == "exit code 3: boom: no such thing"
    assert _view(apps, app)["last_exit"] == "exit code 3: boom: no such thing"


def test_a_stop_or_an_update_while_it_waits_acts_at_once(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    apps.restarts.base_s = apps.restarts.max_s = 600.0  # one failure: a long wait
    tag = f"bo-{secrets.token_hex(4)}"
    spec = _failing(tag, run_s=0.05)
    app = get_app(spec)
    record = _place(chain, app, spec)

    def waiting() -> bool:
        _round(apps)
        return _view(apps, app)["status"] == CRASH_LOOPING

    wait_until(waiting, timeout_s=10.0, step_s=0.05)
    assert len(_fields(caplog, "app started")) == 1
    _round(apps)
    assert len(_fields(caplog, "app started")) == 1, "it waits, no restart"

    # STOP: its failures are forgotten in the same pass; START: it runs at once.
    chain.append((replace(record, state=AppState.STOPPED),))
    _round(apps)
    assert _view(apps, app)["status"] == "stopped" and _view(apps, app)["restarts"] == 0
    chain.append((record,))
    _round(apps)
    assert len(_fields(caplog, "app started")) == 2

    # It fails again and waits; an UPDATE to a spec that runs starts at once.
    wait_until(waiting, timeout_s=10.0, step_s=0.05)
    fixed = replace(spec, command=("/bin/sh", "-c", "sleep 30", tag))
    chain.append((replace(record, spec=fixed, version=2),))
    _round(apps)
    assert len(_fields(caplog, "app started")) == 3
    wait_until(lambda: len(_pids(tag)) == 1)
    view = _view(apps, app)
    assert (view["status"], view["running"], view["restarts"]) == ("running", True, 0)


def test_a_start_that_raises_is_a_failure_and_waits_too(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    apps.restarts.base_s = apps.restarts.max_s = 600.0
    spec = AppSpec(name=f"broken-{secrets.token_hex(4)}", runtime=RuntimeKind.PROCESS)
    app = get_app(spec)  # no command: the process runtime refuses to start it
    _place(chain, app, spec)
    for _ in range(3):
        _round(apps)
    [failed] = _fields(caplog, "app start failed")
    assert "has no command" in str(failed["error"])
    assert (failed["failures"], failed["restart_in_s"]) == (1, 600.0)
    view = _view(apps, app)
    assert view["status"] == CRASH_LOOPING and "has no command" in str(view["last_exit"])


def test_the_last_output_is_the_last_line_of_the_log_shown_safely(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    assert read_last_output(log) == ""  # no log
    log.write_bytes(b"")
    assert read_last_output(log) == ""
    log.write_bytes(b"first\nsecond line \n\n  \n")
    assert read_last_output(log) == "second line"  # blank lines and spaces skipped
    log.write_bytes(b"x" * 10_000 + b"\nbad \x1b[31mcolour\x07 and \xff\n")
    assert read_last_output(log) == "bad ?[31mcolour? and \ufffd"  # read from the end only
    log.write_bytes(b"a" * 100 + b"b" * LAST_OUTPUT_CHARS + b"\n")
    shown = read_last_output(log)
    assert shown == "..." + "b" * LAST_OUTPUT_CHARS  # its end, where the error is
