"""The process runtime's bookkeeping (``runtime/process.py``): each app's record (spec,
process, status) and the table of them.

A :class:`ProcessRecord` is mutable and private to the runtime; every change to one
happens under its own lock (an ``RLock``: the runtime's operations call each other).
:class:`ProcessRecords` holds them under the table's lock: a record is added when an
app first starts or is restored here, or found on disk at start-up (an earlier
incarnation's app, stopped), and dropped when the app is removed. A caller that waited
for a record's lock checks it is still the table's (``is_current``), or it would act
on an app the runtime no longer tracks.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from edgechain.chain.model import AppSpec
from edgechain.runtime.base import AppNotFoundError, AppRuntimeError, AppStatus
from edgechain.runtime.process_group import is_stopped, kill_leftovers
from edgechain.types import AppId


@dataclass
class ProcessRecord:
    """Mutable bookkeeping of one app (never leaves the runtime)."""

    spec: AppSpec
    proc: subprocess.Popen[bytes] | None = None
    status: AppStatus = AppStatus.STOPPED
    lock: threading.RLock = field(default_factory=threading.RLock)
    last_sample: tuple[float, float] | None = None
    """(monotonic time, CPU seconds) at the previous ``stats`` call."""
    version: int | None = None
    """The spec version ``spec`` is, when known."""
    exit_code: int | None = None
    """How its last run ended when it ended on its own (``AppInfo.exit_code``)."""
    state_dir: str | None = None
    """The copy's state directory as its processes' environment names it
    (``app_processes``): set when it is launched."""

    def refresh(self) -> AppStatus:
        """Notice an app that exited on its own (reap it, keep its exit status)."""
        if self.proc is not None and self.proc.poll() is not None:
            kill_leftovers(self.proc.pid, self.state_dir)
            self.exit_code = self.proc.returncode
            self.proc = None
            self.status = AppStatus.STOPPED
        return self.status

    def observe(self) -> AppStatus:
        """``refresh``, and FROZEN for a running app the fencing watchdog stopped."""
        status = self.refresh()
        return AppStatus.FROZEN if self.is_fenced() else status

    def is_fenced(self) -> bool:
        """The app's leader is stopped though the runtime did not pause it: frozen by
        the fencing watchdog (``runtime/watchdog.py``)."""
        proc = self.proc
        return self.status is AppStatus.RUNNING and proc is not None and is_stopped(proc.pid)


class ProcessRecords:
    """Every app's record, by app id; closed, it adds none."""

    def __init__(self) -> None:
        self._apps: dict[AppId, ProcessRecord] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, app: AppId) -> ProcessRecord:
        """The app's record; ``AppNotFoundError`` when the runtime has none."""
        record = self.find(app)
        if record is None:
            raise AppNotFoundError(f"no app {bytes(app).hex()[:16]} on this runtime")
        return record

    def find(self, app: AppId) -> ProcessRecord | None:
        with self._lock:
            return self._apps.get(app)

    def get_or_add(self, app: AppId, spec: AppSpec) -> ProcessRecord:
        """The app's record, a new stopped one of ``spec`` when it has none."""
        with self._lock:
            if self._closed:
                raise AppRuntimeError("runtime is closed")
            record = self._apps.get(app)
            if record is None:
                record = ProcessRecord(spec)
                self._apps[app] = record
            return record

    def add_recorded(self, app: AppId, spec: AppSpec, version: int | None) -> None:
        """An app an earlier incarnation left here (stopped; its state kept)."""
        with self._lock:
            self._apps[app] = ProcessRecord(spec, version=version)

    def is_current(self, app: AppId, record: ProcessRecord) -> bool:
        """False once the app's record was dropped (``drop``) since ``record`` was read."""
        with self._lock:
            return self._apps.get(app) is record

    def drop(self, app: AppId, record: ProcessRecord) -> None:
        """Forget ``record`` if it is still the app's."""
        with self._lock:
            if self._apps.get(app) is record:
                del self._apps[app]

    @contextlib.contextmanager
    def claim_stopped(self, app: AppId, spec: AppSpec, running: str) -> Iterator[ProcessRecord]:
        """Hold the lock of the app's record (added when new), which must be stopped;
        when it runs, ``AppRuntimeError`` says "app NAME ``running``"."""
        while True:
            record = self.get_or_add(app, spec)
            with record.lock:
                if not self.is_current(app, record):
                    continue  # removed while we waited for its lock: a new record
                if record.refresh() is not AppStatus.STOPPED:
                    raise AppRuntimeError(f"app {spec.name!r} {running}")
                yield record
                return

    def items(self) -> list[tuple[AppId, ProcessRecord]]:
        with self._lock:
            return list(self._apps.items())

    def holds(self, app: AppId) -> bool:
        with self._lock:
            return app in self._apps

    def is_empty(self) -> bool:
        with self._lock:
            return not self._apps

    def owns_pid(self, pid: int) -> bool:
        """True when ``pid`` leads the group of an app of this table."""
        with self._lock:
            return any(r.proc is not None and r.proc.pid == pid for r in self._apps.values())

    def close(self) -> list[tuple[AppId, ProcessRecord]]:
        """Add nothing from now on; every record, for the caller to stop."""
        with self._lock:
            self._closed = True
            return list(self._apps.items())
