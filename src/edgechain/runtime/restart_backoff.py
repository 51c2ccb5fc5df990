"""When an app that failed on this node may start again: exponential backoff.

Reconcile (``runtime/reconcile.py``) starts an app placed here that does not run about
once a second. An app that fails at once (its command cannot run, its script is not
readable by the app user, it exits on start) was restarted that fast, forever. Now each
failure, an exit the node did not ask for or a start that raised, doubles the wait
before the next start: :func:`compute_restart_delay`, from ``BASE_DELAY_S`` up to
``MAX_DELAY_S``. An app that then stays up ``STABLE_AFTER_S`` is forgiven: its count
goes back to 0, and its next failure waits ``BASE_DELAY_S`` again.

Only starts wait. Stopping an app, moving it away, removing it or stopping a stale copy
never asks this module, and fencing and the lease never do either; an app the node stops
on purpose, or that the head no longer wants running here, is forgotten at once
(:meth:`RestartBackoff.forget`), so a START after a STOP runs without delay.

The failures are node-local: blocks carry nothing of them. The node says what it knows
through its API (``GET /runtime/apps``, and ``local`` in ``GET /apps``): the app is
``crash_looping`` while it waits for a restart, with its restarts and the last exit.
Failures are logged at most once per ``LOG_INTERVAL_S`` per app, each log line counting
the ones it stands for.

Pure: every method takes ``now`` (monotonic seconds); the node's reconcile reads the
clock.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.telemetry.log_limit import LogLimit
from edgechain.types import AppId

BASE_DELAY_S = 1.0
"""The wait after a first failure."""
MAX_DELAY_S = 60.0
"""The longest wait between restarts."""
STABLE_AFTER_S = 60.0
"""An app up this long after its last start has its failures forgiven."""
LOG_INTERVAL_S = 30.0
"""At most one failure log line per app this often."""

CRASH_LOOPING = "crash_looping"
"""The local status of an app that failed here and waits to be restarted."""


def compute_restart_delay(
    failures: int, *, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S
) -> float:
    """Seconds to wait before starting an app after its ``failures``-th failure in a
    row: 0 with none, then ``base_s``, doubling each time, at most ``max_s``."""
    if failures <= 0:
        return 0.0
    if failures > 62:  # 2**62 seconds are past any cap: no float overflow
        return max_s
    return float(min(max_s, base_s * 2 ** (failures - 1)))


LAST_OUTPUT_CHARS = 200
"""The longest last line of output shown (``AppInfo.last_output``): a reason, not a log."""


def get_last_line(output: bytes) -> str:
    """The last non-blank line of an app's ``output`` (the end of its log), printable
    characters only, at most :data:`LAST_OUTPUT_CHARS` (its end, where the error
    usually is); "" for none."""
    lines = [line.strip() for line in output.decode("utf-8", errors="replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    shown = "".join(c if c.isprintable() else "?" for c in last)
    return shown if len(shown) <= LAST_OUTPUT_CHARS else "..." + shown[-LAST_OUTPUT_CHARS:]


def describe_exit(exit_code: int | None, last_output: str = "") -> str:
    """How a run ended, for people: ``exit code 2``, ``killed by SIGKILL``, followed by
    what it last wrote when the runtime knows (``exit code 2: sh: 0: cannot open
    run.sh: Permission denied``)."""
    if exit_code is None:
        how = "exited (status unknown)"
    elif exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        how = f"killed by {name}"
    else:
        how = f"exit code {exit_code}"
    return f"{how}: {last_output}" if last_output else how


@dataclass
class _Record:
    failures: int = 0
    """Failures in a row (since the app last stayed up ``stable_after_s``)."""
    restarts: int = 0
    """Starts after a failure, in that same stretch."""
    last_reason: str | None = None
    failed_at: float | None = None
    started_at: float | None = None
    """When this node last started it, until its end is counted (None: not started
    here, or its exit already counted)."""
    log: LogLimit | None = None
    """The failures logged (None: none yet; made with the backoff's interval)."""


@dataclass(frozen=True)
class Failure:
    """A failure to log (``on_failed``); ``unlogged``: earlier ones not logged."""

    reason: str
    failures: int
    restarts: int
    delay_s: float
    unlogged: int


@dataclass(frozen=True)
class RestartStatus:
    """What the node says of an app that failed here."""

    failures: int
    restarts: int
    last_exit: str | None
    next_restart_in_s: float | None
    """Seconds until it may start again (None: not waiting)."""


class RestartBackoff:
    """Each app's failures on this node and the wait they impose on its next start."""

    def __init__(
        self,
        *,
        base_s: float = BASE_DELAY_S,
        max_s: float = MAX_DELAY_S,
        stable_after_s: float = STABLE_AFTER_S,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.stable_after_s = stable_after_s
        self.log_interval_s = log_interval_s
        self._apps: dict[AppId, _Record] = {}

    def on_started(self, app: AppId, now: float) -> int:
        """This node started the app at ``now``; returns its restarts after failures
        in a row (0: a first start, or one after a stable run)."""
        record = self._apps.setdefault(app, _Record())
        record.started_at = now
        if record.failures:
            record.restarts += 1
        return record.restarts

    def is_started(self, app: AppId, before: float) -> bool:
        """This node started the app before ``before`` and its end is not counted yet
        (a runtime listing taken at ``before`` that shows it stopped saw it end)."""
        record = self._apps.get(app)
        return record is not None and record.started_at is not None and record.started_at < before

    def on_failed(self, app: AppId, now: float, reason: str) -> Failure | None:
        """The app ended on its own, or a start raised, at ``now``: one more failure.
        The failure to log, or None while the log is rate-limited."""
        record = self._apps.setdefault(app, _Record())
        record.failures += 1
        record.failed_at = now
        record.last_reason = reason
        record.started_at = None
        if record.log is None:
            record.log = LogLimit(self.log_interval_s)
        unlogged = record.log.take(now)
        if unlogged is None:
            return None
        delay = compute_restart_delay(record.failures, base_s=self.base_s, max_s=self.max_s)
        return Failure(reason, record.failures, record.restarts, delay, unlogged)

    def on_running(self, app: AppId, now: float) -> None:
        """The app runs at ``now``: forgive its failures once it has been up
        ``stable_after_s`` since this node last started it."""
        record = self._apps.get(app)
        if record is None or not record.failures or record.started_at is None:
            return
        if now - record.started_at >= self.stable_after_s:
            self._apps[app] = _Record(started_at=record.started_at)

    def get_wait(self, app: AppId, now: float) -> float:
        """Seconds from ``now`` until the app may be started (0: at once)."""
        record = self._apps.get(app)
        if record is None or record.failed_at is None or not record.failures:
            return 0.0
        delay = compute_restart_delay(record.failures, base_s=self.base_s, max_s=self.max_s)
        return max(0.0, record.failed_at + delay - now)

    def get_status(self, app: AppId, now: float) -> RestartStatus | None:
        """The app's failures, or None when it has none in a row."""
        record = self._apps.get(app)
        if record is None or not record.failures:
            return None
        waiting = record.started_at is None
        return RestartStatus(
            record.failures,
            record.restarts,
            record.last_reason,
            round(self.get_wait(app, now), 1) if waiting else None,
        )

    def forget(self, app: AppId) -> None:
        """The node stopped the app on purpose, or no longer runs it: no failures, no
        wait."""
        self._apps.pop(app, None)

    def retain(self, apps: Iterable[AppId]) -> None:
        """Forget every app not in ``apps``."""
        keep = set(apps)
        for app in [a for a in self._apps if a not in keep]:
            del self._apps[app]
