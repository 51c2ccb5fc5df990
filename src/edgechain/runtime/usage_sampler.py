"""Per-app usage for the node's reports and the API (``runtime/manager.py``).

The stats of the running apps, sampled each interval and averaged over the last few
samples, go into the node's ``LocalUsage`` with the node's own host measurement, so
reports carry real per-app usage. Shares are of the whole host, or of the node's
declared CPU capacity (``cpu_capacity``: the cores it offers its apps, whose total is
then its apps' alone); ``runtime/usage.py`` says how the node's total is made of its
parts in each case.

:class:`UsageSampler` keeps the last sample (:class:`AppView` per app for the API,
``AppUsage`` per measured app for the reports) and pushes the merged figures
(:func:`merge_usage`) to the engine. An app's view also says what the node's restart
backoff knows of it (``runtime/restart_backoff.py``): ``crash_looping`` while it waits
to be restarted after failing here, its restarts and its last exit; ``disk_full``
with why, while the node holds it stopped for filling its disk
(``runtime/disk_guard.py``); and ``fenced`` with why, while the node's lease has
expired and the watchdog holds it frozen or has killed it (``runtime/lease_renewal.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from edgechain.chain.model import BASIS_POINTS, AppUsage
from edgechain.consensus.engine import LocalUsage
from edgechain.runtime.base import AppRuntimeError, AppStatus
from edgechain.runtime.disk_guard import DISK_FULL, DiskGuard
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lease import get_now_ms
from edgechain.runtime.lease_renewal import FENCED, FENCED_HOLD
from edgechain.runtime.restart_backoff import CRASH_LOOPING, RestartBackoff
from edgechain.runtime.runtimes import NodeRuntimes
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.usage import CpuAverager, merge_cpu_bp, scale_host_bp
from edgechain.types import AppId


@dataclass(frozen=True)
class AppView:
    """One app of this node's runtime as the API shows it."""

    app: str
    name: str
    running: bool
    status: str
    """The runtime's (``AppStatus``), or ``crash_looping``: it failed here and waits to be
    restarted, or ``disk_full`` / ``fenced``: the node holds it stopped (``hold`` says
    why)."""
    cpu_bp: int = 0
    ram_bp: int = 0
    disk_bytes: int = 0
    net_bytes_per_s: int = 0
    version: int | None = None
    """The spec version the runtime started (None: not known yet, after a migration)."""
    restarts: int = 0
    """Restarts after failures here, since it last stayed up (``STABLE_AFTER_S``)."""
    last_exit: str | None = None
    """How its last failure here ended (``exit code 2``, a start's error), while its
    failures count."""
    next_restart_in_s: float | None = None
    """Seconds until its next start, while it waits for one."""
    hold: str | None = None
    """Why this node holds it stopped (status ``disk_full``: it was filling the node's
    disk, ``runtime/disk_guard.py``; ``fenced``: the node's lease expired), while it
    does."""
    state_lost: str | None = None
    """How this copy last started without the state the app had elsewhere
    (``app_starter.StateLoss``), until it starts here again with state or moves."""


def render_views(views: Iterable[AppView], node: bytes) -> list[dict[str, Any]]:
    """The views as the API answers them (``GET /runtime/apps``): each with the id of
    the ``node`` that holds the copy."""
    return [{**vars(view), "node": node.hex()} for view in views]


def merge_usage(
    host: LocalUsage, apps: tuple[AppUsage, ...], *, apps_only_cpu: bool = False
) -> LocalUsage:
    """The node's report figures: host totals, never below the sum of its apps; with
    ``apps_only_cpu`` (a declared capacity) the CPU total is the sum of the apps' shares
    alone, ``host.cpu_bp`` left out (``usage.merge_cpu_bp``)."""
    ram = sum(a.ram_bp for a in apps)
    return replace(
        host,
        cpu_bp=merge_cpu_bp(host.cpu_bp, (a.cpu_bp for a in apps), apps_only=apps_only_cpu),
        ram_bp=min(BASIS_POINTS, max(host.ram_bp, ram)),
        apps=apps,
    )


class UsageSampler:
    """Samples ``runtime``'s apps; ``disk_total``: the bytes of the data dir's disk
    (disk shares are of it); ``cpu_capacity``: the node's declared cores (None: the
    whole host); ``restarts``: the node's failures per app, shown in the views;
    ``is_lease_valid``: whether the node's fencing lease holds; ``get_state_loss``: how
    an app's copy here started without its state (``app_starter.StateLoss``)."""

    def __init__(
        self,
        runtime: NodeRuntimes,
        head: HeadQueries,
        *,
        disk_total: int,
        cpu_capacity: float | None = None,
        clock: Callable[[], int] = get_now_ms,
        restarts: RestartBackoff | None = None,
        disk_guard: DiskGuard | None = None,
        is_lease_valid: Callable[[], bool] = lambda: True,
        get_state_loss: Callable[[AppId], str | None] = lambda app: None,
    ) -> None:
        self.runtime = runtime
        self.get_state_loss = get_state_loss
        self.is_lease_valid = is_lease_valid
        self.restarts = restarts
        self.disk_guard = disk_guard
        self._clock = clock
        """The node's wall clock (epoch ms): the usage timestamps are in it."""
        self.head = head
        self.cpu_capacity = cpu_capacity
        self._cpu = CpuAverager()
        self._disk_total = disk_total
        self.host_usage = LocalUsage()
        self.app_usage: tuple[AppUsage, ...] = ()
        self.views: tuple[AppView, ...] = ()

    def get_running(self) -> set[AppId]:
        """The apps running here, as last sampled."""
        return {AppId(bytes.fromhex(v.app)) for v in self.views if v.running}

    def set_host_usage(self, usage: LocalUsage) -> None:
        self.host_usage = usage
        self.push_usage()

    async def measure(self) -> None:
        views: tuple[AppView, ...]
        usage: tuple[AppUsage, ...]
        if self.runtime.is_known_empty():
            # Nothing to list or measure: no worker thread to wake (runtimes.py).
            self._cpu.retain(set())
            views, usage = (), ()
        else:
            views, usage = await run_in_thread(self._sample)
        # On the loop's thread, where the backoff is changed.
        fenced = not self.is_lease_valid()
        self.views = tuple(
            self._add_state_loss(self._add_hold(self._add_restarts(v, time.monotonic()), fenced))
            for v in views
        )
        self.app_usage = usage
        self.push_usage()

    def _sample(self) -> tuple[tuple[AppView, ...], tuple[AppUsage, ...]]:
        """Blocking: list the runtime's apps and the stats of the running ones."""
        now = self._clock()
        views: list[AppView] = []
        usage: list[AppUsage] = []
        measured: set[AppId] = set()
        for info in self.runtime.list():
            running = info.status is not AppStatus.STOPPED
            try:
                version = self.runtime.get_release(info.app)[1]
            except AppRuntimeError:
                continue  # removed since the listing
            view = AppView(
                bytes(info.app).hex(), info.name, running, info.status.value, version=version
            )
            if running:
                try:
                    stats = self.runtime.stats(info.app)
                except AppRuntimeError:
                    views.append(view)
                    continue
                disk_bp = stats.disk_bytes * BASIS_POINTS // self._disk_total
                measured.add(info.app)
                view = replace(
                    view,
                    ram_bp=stats.ram_bp,
                    disk_bytes=stats.disk_bytes,
                    net_bytes_per_s=stats.net_bytes_per_s,
                )
                mean = self._cpu.add(info.app, stats.cpu_bp)
                if mean is None:
                    # Just started here (placed, migrated in, restarted): no CPU figure
                    # yet. Left out of the report rather than listed at 0, which made
                    # the planner take the node for an app lighter than it is and send
                    # it more; until listed here, the planner counts the app at the
                    # origin's figure or its spec's request (orchestrator/load.py).
                    views.append(view)
                    continue
                cpu_bp = scale_host_bp(mean, self.cpu_capacity)
                usage.append(
                    AppUsage(
                        info.app,
                        cpu_bp,
                        stats.ram_bp,
                        disk_bp,
                        stats.net_bytes_per_s,
                        now,
                        state_bytes=stats.disk_bytes,
                    )
                )
                view = replace(view, cpu_bp=cpu_bp)
            views.append(view)
        self._cpu.retain(measured)
        usage.sort(key=lambda u: bytes(u.app))
        return tuple(views), tuple(usage)

    def _add_restarts(self, view: AppView, now: float) -> AppView:
        known = (
            self.restarts.get_status(AppId(bytes.fromhex(view.app)), now) if self.restarts else None
        )
        if known is None:
            return view
        return replace(
            view,
            status=view.status if view.running else CRASH_LOOPING,
            restarts=known.restarts,
            last_exit=known.last_exit,
            next_restart_in_s=known.next_restart_in_s,
        )

    def _add_state_loss(self, view: AppView) -> AppView:
        lost = self.get_state_loss(AppId(bytes.fromhex(view.app)))
        return view if lost is None else replace(view, state_lost=lost)

    def _add_hold(self, view: AppView, fenced: bool) -> AppView:
        if fenced and (not view.running or view.status == AppStatus.FROZEN.value):
            return replace(view, status=FENCED, hold=FENCED_HOLD)
        hold = self.disk_guard.get_hold(AppId(bytes.fromhex(view.app))) if self.disk_guard else None
        if hold is None or view.running:
            return view
        return replace(view, status=DISK_FULL, hold=hold.describe())

    def push_usage(self) -> None:
        engine = self.head.engine
        if engine is not None:
            engine.set_local_usage(
                merge_usage(
                    self.host_usage, self.app_usage, apps_only_cpu=self.cpu_capacity is not None
                )
            )
