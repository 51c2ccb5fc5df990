"""Reconciliation of this node's runtime with the head registry (DESIGN.md, "Exactly
once"; ``runtime/manager.py`` runs it).

Reconcile, about once a slot, makes the runtime match the head registry (the rules are
in ``runtime/lifecycle.py``; each action runs in a worker thread under the app's lock,
re-checks the runtime there, and is logged as "app started", "app stopped", "app
updated" or "app removed"):

* placed here, RUNNING, not running (it crashed, the node restarted, or a START): start
  it from its state dir, but only if it was placed here by a PLACE or by a migration
  this node completed (the transfer ledger); an app moved here that has not arrived is
  the origin's to send, never ours to start;
* placed here, STOPPED, running: stop it, keeping its state dir;
* placed here, RUNNING, running another spec version (UPDATE): stop it and start the
  record's spec from the same state dir; the runtime records the version it started,
  so this survives a node restart;
* held here, record gone from the head registry (REMOVE): stop it and delete its app
  directory, once the head chain shows the removal (``lifecycle.was_removed``).

An app the node holds stopped for filling its disk (``runtime/disk_guard.py``) is not
started while held.

A start this node made that ended on its own (the runtime lists the app stopped, with
its exit status) is a failure: it is logged, and the next start waits, longer after each
failure in a row (``runtime/restart_backoff.py``). Only starts wait; the failures of an
app the head no longer wants running here, or whose spec an UPDATE replaced, are
forgotten in the same pass.

An app in flight (a migration out holds its lock; one coming in has an incoming file)
is skipped, and an app whose record places it on another node is left alone. A
migration out that the head no longer wants (it places the app on neither end) is
cancelled first, so its copy is stopped in this pass (``MigrationsOut.cancel_unwanted``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgechain.orchestrator.load import is_move_landed
from edgechain.orchestrator.registry import AppRecord, AppState, get_apps_on_node, get_record
from edgechain.runtime.app_starter import AppStarter
from edgechain.runtime.app_tasks import AppTasks
from edgechain.runtime.base import AppRuntimeError, AppStatus, get_app_dirname
from edgechain.runtime.disk_guard import DiskGuard
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lifecycle import (
    Action,
    ChainView,
    HeldApp,
    decide,
    find_placing_entry,
    get_start_reason,
    was_removed,
)
from edgechain.runtime.migrations_out import MigrationsOut
from edgechain.runtime.replica_sync import ReplicaSync
from edgechain.runtime.restart_backoff import RestartBackoff, describe_exit
from edgechain.runtime.runtimes import NodeRuntimes
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer_common import get_ledger_path
from edgechain.telemetry import logs
from edgechain.types import AppId, BlockHash, NodeId

log = logging.getLogger("edgechain.apps")

PASS_SLACK_S = 0.1
"""A restart wait this close to its end counts as over: passes come about a second
apart, each after an await, and one a few ms early must not postpone the start by a
whole pass."""


class Reconciler:
    """One pass of the lifecycle rules over ``runtime`` at a time (:meth:`reconcile`).
    ``transfer_dir``: the transfer server's work dir (its incoming files and ledger)."""

    def __init__(
        self,
        node_id: NodeId,
        runtime: NodeRuntimes,
        head: HeadQueries,
        tasks: AppTasks,
        *,
        starter: AppStarter,
        migrations: MigrationsOut,
        replica_sync: ReplicaSync,
        transfer_dir: Path,
        restarts: RestartBackoff,
        disk_guard: DiskGuard,
        is_lease_valid: Callable[[], bool] = lambda: True,
    ) -> None:
        self.node_id = node_id
        self.runtime = runtime
        self.head = head
        self.tasks = tasks
        self.starter = starter
        self.migrations = migrations
        self.replica_sync = replica_sync
        self.transfer_dir = transfer_dir
        self.restarts = restarts
        """Each app's failures here and the wait before its next start."""
        self.disk_guard = disk_guard
        """The apps held stopped for filling the node's disk (never started here)."""
        self.is_lease_valid = is_lease_valid
        """Whether the node's fencing lease holds: while it does not, the watchdog
        freezes and kills the apps, which is no failure of theirs."""
        self._settle_until = 0.0
        """No start before this (monotonic seconds): a reorg is settling."""
        self._searched: dict[AppId, BlockHash] = {}
        """``lifecycle.was_removed``'s memory of heads already searched, per app."""

    def settle(self, seconds: float) -> None:
        """Start nothing for ``seconds`` from now (a reorg is settling)."""
        self._settle_until = time.monotonic() + seconds

    async def reconcile(self) -> None:
        """One pass of the lifecycle rules (module docstring); idempotent. ``tick``
        runs it about once a slot."""
        engine = self.head.engine
        if engine is None or engine.get_head_state() is None:
            return
        # First: a handover whose app the head re-placed on a third node holds the app's
        # lock while its offer waits; cancelled, its copy is stale and stopped below.
        await self.migrations.cancel_unwanted()
        # The pass's one time for the backoff: its failures, waits and starts are all
        # stamped with it, so a wait of N s is over N passes later (passes are ~1 s apart).
        listed_at = time.monotonic()
        # An empty runtime has nothing to list: no worker thread (runtimes.py).
        listed = [] if self.runtime.is_known_empty() else await run_in_thread(self._get_held)
        held = {h.app: h for h in listed}
        state = engine.get_head_state()  # after the await: the head may have moved
        if state is None:
            return
        apps = [r.app for r in get_apps_on_node(state.registry, self.node_id)]
        placed_here = set(apps)
        apps += sorted(app for app in held if app not in placed_here)
        for app in apps:
            lock = self.tasks.lock(app)
            if lock.locked():
                continue  # in flight (a migration out) or already being acted on
            # Read again per app: an earlier action awaited, and the head moves on.
            current = engine.get_head_state()
            record = get_record(current.registry, app) if current is not None else None
            here = held.get(app)
            self._note_failure(app, record, here, listed_at)
            action = decide(
                self.node_id,
                record,
                here,
                removed=record is None
                and here is not None
                and not self._is_arriving(app)
                and was_removed(engine, app, self._searched),
                outgoing=here is not None and self.migrations.is_handing_over(engine, record, here),
                settled=here is not None and self._is_settled(record),
            )
            if action is None or not self._is_allowed(engine, action, app, record, listed_at):
                continue
            async with lock:
                await self._carry_out(action, app, record, listed_at)
        self.restarts.retain(apps)
        self.replica_sync.prune(state, [app for app, h in held.items() if h.running])
        await self._discard_removed_logs(engine)

    async def _discard_removed_logs(self, engine: ChainView) -> None:
        """Delete the kept logs (``app_log.keep_log``) of apps the chain removed: a node
        that no longer held the app never saw a REMOVE of its own to act on."""
        for app in sorted(self.runtime.get_kept_logs()):
            state = engine.get_head_state()
            if state is None or get_record(state.registry, app) is not None:
                continue
            if self.tasks.lock(app).locked():
                continue  # coming back here: a restore takes its log back
            if was_removed(engine, app, self._searched):
                await run_in_thread(self.runtime.discard_log, app)
                logs.info(log, "app log discarded", app=app.hex()[:16], why="removed")

    def _note_failure(
        self, app: AppId, record: AppRecord | None, here: HeldApp | None, now: float
    ) -> None:
        """Count the end of a start of ours that the runtime's listing (taken at
        ``now``) shows stopped, and log it (rate-limited); forget the app's failures once
        the head no longer wants it running here, or wants another spec."""
        if (
            record is None
            or record.node != self.node_id
            or record.state is not AppState.RUNNING
            or (here is not None and not here.running and here.spec != record.spec)
            or not self.is_lease_valid()  # fenced: the watchdog ends it, not a failure
        ):
            self.restarts.forget(app)
        elif here is not None and here.running:
            self.restarts.on_running(app, now)
        elif here is not None and self.restarts.is_started(app, now):
            reason = describe_exit(here.exit_code, here.last_output)
            failure = self.restarts.on_failed(app, now, reason)
            if failure is not None:
                logs.warning(
                    log,
                    "app failed",
                    app=bytes(app).hex()[:16],
                    name=record.spec.name,
                    reason=failure.reason,
                    failures=failure.failures,
                    restarts=failure.restarts,
                    restart_in_s=failure.delay_s,
                    not_logged=failure.unlogged,
                )

    def _is_settled(self, record: AppRecord | None) -> bool:
        """The record's last move is K slots below the head and its node has reported
        running the app since (``Action.DISCARD``). Until then this copy may be the
        app's only state: a move whose destination died before the app landed is
        RECOVERed back here (``placement.get_unlanded_origin``)."""
        engine = self.head.engine
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if (
            record is None
            or record.node == self.node_id
            or record.last_move_slot is None
            or state is None
            or params is None
        ):
            return False
        deep = state.slot - record.last_move_slot >= params.down_after_slots
        return deep and is_move_landed(record, state.reports)

    def _get_held(self) -> list[HeldApp]:
        """Blocking: the runtime's apps with their releases."""
        held = []
        for info in self.runtime.list():
            try:
                spec, version = self.runtime.get_release(info.app)
            except AppRuntimeError:
                continue  # removed meanwhile
            running = info.status is not AppStatus.STOPPED
            held.append(HeldApp(info.app, running, spec, version, info.exit_code, info.last_output))
        return held

    def _is_allowed(
        self,
        engine: ChainView,
        action: Action,
        app: AppId,
        record: AppRecord | None,
        now: float,
    ) -> bool:
        if action is Action.START:
            return (
                record is not None
                and time.monotonic() >= self._settle_until
                and self.restarts.get_wait(app, now) <= PASS_SLACK_S
                and not self.disk_guard.is_held(app)
                and self._get_start_reason(engine, record) is not None
            )
        if action is Action.STOP_STALE:
            return not self._is_arriving(app)
        return True

    def _is_arriving(self, app: AppId) -> bool:
        """A migration of ``app`` is being received or restored here (the transfer
        server's incoming file exists from the first byte until the restore ends)."""
        incoming = self.transfer_dir / "incoming"
        return any(incoming.glob(f"{get_app_dirname(app)}-*"))

    async def _carry_out(
        self, action: Action, app: AppId, record: AppRecord | None, now: float
    ) -> None:
        """Run ``action`` in a worker thread; the caller holds the app's lock; ``now``:
        the pass's time (a start is stamped with it)."""
        fields: dict[str, Any] = {"app": bytes(app).hex()[:16]}
        if record is not None:
            fields.update(name=record.spec.name, version=record.version)
        engine = self.head.engine
        try:
            if action is Action.START and record is not None:
                why = self._get_start_reason(engine, record) if engine else None
                await self.starter.start_if_stopped(
                    app, record.spec, why or "reconcile", record.version, now=now
                )
                if why == "origin down" and engine is not None:
                    await run_in_thread(self._record_takeover, engine, record)
            elif action is Action.STOP_STALE:
                if await run_in_thread(self.stop_if_running, app):
                    # A second copy: the head runs it elsewhere, or never started it.
                    where = record.node.hex()[:16] if record and record.node else None
                    logs.warning(log, "stale app stopped", **fields, placed_on=where)
            elif action is Action.STOP:
                if await run_in_thread(self.stop_if_running, app):
                    logs.info(log, "app stopped", **fields, why="stopped")
            elif action is Action.UPDATE and record is not None:
                done, old = await run_in_thread(self._restart_at, app, record)
                if done:
                    logs.info(log, "app updated", **fields, from_version=old)
            elif action is Action.CONFIRM and record is not None:
                await run_in_thread(self.runtime.set_version, app, record.version)
            elif action is Action.REMOVE:
                await run_in_thread(self._remove_copy, app)
                await run_in_thread(self.runtime.discard_log, app)
                self._searched.pop(app, None)
                logs.info(log, "app removed", **fields, why="removed")
            elif action is Action.DISCARD:
                await run_in_thread(self._remove_copy, app)
                logs.info(log, "app removed", **fields, why="placed elsewhere")
        except AppRuntimeError as exc:
            logs.error(log, "app action failed", **fields, action=action.value, error=str(exc))

    def _remove_copy(self, app: AppId) -> None:
        """Blocking: delete the app's copy here; a mark that it was handed over goes
        with it (``runtime/handovers.py``), and so does a note that it started here
        without its state."""
        self.runtime.remove(app)
        self.migrations.handovers.forget(app)
        self.starter.forget(app)

    def stop_if_running(self, app: AppId) -> bool:
        """Blocking: stop the app (state kept) if it runs; True when it did."""
        if not self.runtime.is_running(app):
            return False
        self.runtime.stop(app)
        return True

    def _restart_at(self, app: AppId, record: AppRecord) -> tuple[bool, int | None]:
        """Blocking: if the app still runs another release, stop it and start the
        record's spec from the same state dir. Returns (restarted, the old version)."""
        spec, version = self.runtime.get_release(app)
        if not self.runtime.is_running(app) or (spec, version) == (record.spec, record.version):
            return False, version
        self.runtime.stop(app)
        self.runtime.start(app, record.spec, version=record.version)
        return True, version

    def _record_takeover(self, engine: ChainView, record: AppRecord) -> None:
        """Blocking: once an "origin down" start has the app running here, enter its
        move in the transfer ledger, as a migration received is.

        Without it, the start reason held only while the origin was down: the copy
        here, killed later (its lease ran out in a partition and the watchdog retired
        it), was never started again once the origin was back, and the app ran
        nowhere while the chain placed it here (chaos, session 49: 14-slot faults, 2
        ``apps_exactly_once`` violations)."""
        if not self.runtime.is_running(record.app):
            return
        found = find_placing_entry(engine, record, self.head.archive)
        if found is not None:
            get_ledger_path(self.transfer_dir, found[0], record.app).touch()

    def _get_start_reason(self, engine: ChainView, record: AppRecord) -> str | None:
        """``lifecycle.get_start_reason`` with this node's transfer ledger (the same path
        as the TransferServer's: it exists once we acknowledged DONE)."""

        def is_received(block_hash: BlockHash, app: AppId) -> bool:
            return get_ledger_path(self.transfer_dir, block_hash, app).exists()

        return get_start_reason(
            engine,
            record,
            is_received=is_received,
            is_down=self.head.is_node_down,
            is_arriving=self._is_arriving,
            archive=self.head.archive,
        )
