"""Starting an app on this node (``runtime/manager.py``): after a PLACE or a RECOVER
naming it, and whenever reconcile finds an app placed here that does not run.

:class:`AppStarter` starts an app only under a valid fencing lease
(``runtime/lease_renewal.py``), from the local replica when that is the newer state
(after a RECOVER, or a migration whose origin died), and logs "app started". A start
that begins from nothing although the app kept state on the node it ran on before (no
replica reached this node in time, or the app keeps none) is logged as a warning, "app
started without its state", counted, and shown in the copy's view until the app starts
here again or its copy goes (:class:`StateLoss`). Every
start and every start that raises is told to the node's restart backoff
(``runtime/restart_backoff.py``): a start that raises is a failure, logged at most once
per interval, and the next start waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgechain.chain.model import AppSpec
from edgechain.orchestrator.registry import AppState
from edgechain.runtime.base import AppRuntimeError, is_held
from edgechain.runtime.handovers import HandoverMarks
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.replica import ReplicaInfo, ReplicaStore, restore_from_replica
from edgechain.runtime.restart_backoff import RestartBackoff
from edgechain.runtime.runtimes import NodeRuntimes
from edgechain.runtime.threads import run_in_thread
from edgechain.telemetry import logs
from edgechain.telemetry.log_limit import LogLimit
from edgechain.types import AppId, NodeId, Slot

log = logging.getLogger("edgechain.apps")

DEFERRED_LOG_INTERVAL_S = 60.0
"""A start deferred for an expired lease is logged once, then at most this often per
app: reconcile tries about once a second, and a node cut off for an hour logged 3,600
lines per app."""


HANDOFF_WAIT_MIN_S = 2.0
"""A recovered app with replicas, on a node that holds none, waits this long at least
(one slot, if longer) for its replica node's hand-on before it starts from nothing
(:meth:`AppStarter.is_waiting_for_handoff`)."""


STATE_LOST_MESSAGE = "app started without its state"
"""The warning a start that lost the app's state logs (the chaos report reads it)."""

HANDOFF_REASONS = ("recover", "origin down")
"""The starts a replica's hand-on may be on its way for."""


class AppStarter:
    """Starts apps in ``runtime``; ``lock``: an app's lock (``AppTasks.lock``);
    ``is_lease_valid``: may the node start anything now; ``restarts``: the node's
    failures per app, told of every start."""

    def __init__(
        self,
        node_id: NodeId,
        runtime: NodeRuntimes,
        replicas: ReplicaStore,
        head: HeadQueries,
        handovers: HandoverMarks,
        *,
        lock: Callable[[AppId], asyncio.Lock],
        is_lease_valid: Callable[[], bool],
        restarts: RestartBackoff,
    ) -> None:
        self.node_id = node_id
        self.runtime = runtime
        self.replicas = replicas
        self.head = head
        self.handovers = handovers
        self._lock = lock
        self._is_lease_valid = is_lease_valid
        self.restarts = restarts
        self._deferred: dict[AppId, LogLimit] = {}
        """Apps whose start waits for the lease, and when that was last logged."""
        self._awaiting_state: dict[AppId, float] = {}
        """Recovered apps whose start waits for their replica's hand-on, since when."""
        self._losses: dict[AppId, StateLoss] = {}
        """Apps whose last start here began without their state, while their copy runs."""
        self.starts_without_state = 0
        """Starts that began without the app's state, since the node started (metrics)."""

    def get_loss(self, app: AppId) -> StateLoss | None:
        """How the copy here last started without its state (None: it did not, or the
        app moved since: a copy that came back by a migration brought its state)."""
        loss = self._losses.get(app)
        if loss is None or loss.slot is None:
            return loss  # the sampler asks for every app every second: no head look-up
        record = self.head.get_head_record(app)
        moved = record.last_move_slot if record is not None else None
        if moved is None:
            return loss
        return loss if moved <= loss.slot else None

    def forget(self, app: AppId) -> None:
        """The copy here is gone: so is what its start lost."""
        self._losses.pop(app, None)

    def _log_deferred(self, app: AppId, now: float) -> None:
        limit = self._deferred.setdefault(app, LogLimit(DEFERRED_LOG_INTERVAL_S))
        unlogged = limit.take(now)
        if unlogged is None:
            return
        logs.info(
            log, "start deferred: lease expired", app=bytes(app).hex()[:16], not_logged=unlogged
        )

    async def place(self, app: AppId, spec: AppSpec, why: str) -> None:
        """A PLACE or RECOVER order naming this node, checked against the head."""
        version: int | None = None
        record = self.head.get_head_record(app)
        if record is not None and record.node == self.node_id:
            # The head may be past the PLACE block: a STOP or an UPDATE since wins.
            if record.state is AppState.STOPPED:
                return
            spec, version = record.spec, record.version
        elif record is not None:
            return  # placed elsewhere since (a reorg, a later move): not ours to start
        async with self._lock(app):
            await self.start_if_stopped(app, spec, why, version)

    async def start_if_stopped(
        self,
        app: AppId,
        spec: AppSpec,
        why: str,
        version: int | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Start the app unless it runs; ``now``: the monotonic time to stamp the start
        or its failure with for the backoff (reconcile's pass; None: the clock's)."""
        if now is None:
            now = time.monotonic()
        if await run_in_thread(self.runtime.is_running, app):
            return
        if not self._is_lease_valid():
            self._log_deferred(app, now)
            return  # reconcile tries again once the lease is renewed
        self._deferred.pop(app, None)
        fields: dict[str, Any] = {
            "app": bytes(app).hex()[:16], "name": spec.name, "why": why, "version": version,
        }  # fmt: skip
        try:
            source = await run_in_thread(self._choose_state, app, spec, why)
            if source.waits and self.is_waiting_for_handoff(app, spec, why, now):
                return  # reconcile tries again, about once a second
            if source.replica:
                used = await run_in_thread(
                    restore_from_replica, self.runtime, self.replicas, app, spec
                )
                fields["replica_slot"] = used.slot if used is not None else None
            await run_in_thread(self.runtime.start, app, spec, version=version)
            # It runs here again: no copy of ours is a handed-over one now.
            await run_in_thread(self.handovers.forget, app)
            self._note_loss(app, source.lost, why, fields)
        except AppRuntimeError as exc:
            failure = self.restarts.on_failed(app, now, str(exc))
            if failure is not None:  # else rate-limited
                logs.error(
                    log,
                    "app start failed",
                    **fields,
                    error=str(exc),
                    failures=failure.failures,
                    restart_in_s=failure.delay_s,
                    not_logged=failure.unlogged,
                )
            return
        self._awaiting_state.pop(app, None)
        restarts = self.restarts.on_started(app, now)
        if restarts:
            fields["restarts"] = restarts
        if "state_lost" in fields:
            logs.warning(log, STATE_LOST_MESSAGE, **fields)
        else:
            logs.info(log, "app started", **fields)

    def _note_loss(self, app: AppId, lost: str | None, why: str, fields: dict[str, Any]) -> None:
        """Remember (and count) a start that began without the app's state: the user
        must hear of it (``apps show``, the node's log and metrics), not find a counter
        back at 0. A start with its state ends the note."""
        if lost is None:
            self._losses.pop(app, None)
            return
        state = self.head.get_head_state()
        self._losses[app] = StateLoss(state.slot if state is not None else None, why, lost)
        self.starts_without_state += 1
        fields["state_lost"] = lost

    def _choose_state(self, app: AppId, spec: AppSpec, why: str) -> StateSource:
        """Blocking: which state the start uses. Each local read at most once.

        - No copy of the app here: the replica if one is here, else (a RECOVER or an
          "origin down" start of an app with replicas) wait for one
          (:meth:`is_waiting_for_handoff`).
        - A copy here, on such a start: the copy, unless a replica here is newer
          (:func:`is_replica_newer`). The copy is the state as this node handed it over
          (a mark in ``handovers``): the destination ran the app since, and its
          replicas, handed on by the replica node a moment after the RECOVER, are
          awaited like a missing one. Otherwise this node is the origin of a move that
          never landed: its copy is the newest, and it starts at once.
        - A copy here, on any other start: the copy (a stale local copy is older than
          the replica its node sent only after a RECOVER or an "origin down").
        """
        replica = self.replicas.get(app)
        handoff = why in HANDOFF_REASONS
        if replica is None and not is_handoff_start(spec, why):
            if handoff and spec.stateful and not is_held(self.runtime, app):
                # Its state lived only on the node it ran on, which the chain gave up.
                return StateSource(replica=False, waits=False, lost=NO_REPLICAS)
            return StateSource(replica=False, waits=False)  # its own state, if any
        if not is_held(self.runtime, app):
            if replica is None:
                return StateSource(replica=False, waits=True, lost=self._get_late_replica())
            return StateSource(replica=True, waits=False)
        if not handoff:
            return StateSource(replica=False, waits=False)
        handed = self.handovers.get_slot(app)
        if replica is not None and is_replica_newer(replica, self.node_id, handed):
            return StateSource(replica=True, waits=False)
        return StateSource(replica=False, waits=handed is not None)

    def _get_handoff_wait_s(self) -> float:
        return max(HANDOFF_WAIT_MIN_S, self.head.get_slot_duration_s() or 0.0)

    def _get_late_replica(self) -> str:
        return f"no replica of it reached this node within {self._get_handoff_wait_s():g} s"

    def is_waiting_for_handoff(self, app: AppId, spec: AppSpec, why: str, now: float) -> bool:
        """Whether a RECOVER (or "origin down") start of an app with replicas waits for
        its replica node's hand-on (``Replicator.get_handoffs``), which comes a moment
        after the block that makes the move; for at most ``max(HANDOFF_WAIT_MIN_S, one
        slot)`` from the first try, then it starts from the state it has (none, or its
        handed-over copy).

        Why. In a chaos run (session 61, ``edgechain chaos --nodes 10 --duration 600
        --seed 6565 --fault-slots 14``) a node recovering a counter started it from 0
        after 823 counts, in the same 0.1 s as its replica node's hand-on of 789 counts
        was stored there."""
        if not is_handoff_start(spec, why):
            self._awaiting_state.pop(app, None)
            return False
        since = self._awaiting_state.setdefault(app, now)
        wait_s = self._get_handoff_wait_s()
        if now - since >= wait_s:
            return False
        if since == now:
            logs.info(
                log, "start waits for the replica's hand-on", app=bytes(app).hex()[:16],
                why=why, wait_s=wait_s,
            )  # fmt: skip
        return True


@dataclass(frozen=True)
class StateSource:
    """What a start begins from (:meth:`AppStarter._choose_state`)."""

    replica: bool
    """From the replica stored here; else from the copy it has (none: from nothing)."""
    waits: bool
    """A replica's hand-on may bring newer state: the start waits for it a moment."""
    lost: str | None = None
    """Why a start now would begin from nothing though the app kept state elsewhere
    (None: it begins from its state, or has none to lose)."""


NO_REPLICAS = "it keeps no replicas (replica_interval_slots is 0)"
"""A stateful app recovered from a node the chain took for down, with no replica."""


@dataclass(frozen=True)
class StateLoss:
    """A start on this node that began from nothing although the app had run elsewhere
    with state: every node that held it was down or cut off from this one (a partition
    that holds the app's node and its replica node on the other side; chaos, session 64,
    seed 6969), or the app keeps no replicas. The chain chose availability (an app that
    must not do so sets ``wait_for_state``): this says so where the user looks."""

    slot: Slot | None
    """The head's slot when it started (None: before the genesis)."""
    why: str
    """The start's reason (``recover``, ``origin down``)."""
    cause: str

    def describe(self) -> str:
        at = f" at slot {self.slot}" if self.slot is not None else ""
        return f"started{at} ({self.why}) without its state: {self.cause}"


def is_replica_newer(replica: ReplicaInfo, node_id: NodeId, handed: Slot | None) -> bool:
    """Whether ``replica`` holds newer state than this node's own copy of the app.

    Not one this node took (``origin``): the copy ran on after it. Else, when the copy
    is the state as this node handed it over in slot ``handed``, one taken from that
    slot on (by the destination, or a host after it). With no such mark (the origin of
    a move whose handover failed, or a copy left from before), one from another node,
    as before the marks: the chain RECOVERs an app onto a node that holds a copy
    mostly because that copy is the newest, so only the replicas of the app's hosts
    since would beat it, and those are the ones its replica node holds."""
    if replica.origin == node_id:
        return False
    return handed is None or replica.slot >= handed


def is_handoff_start(spec: AppSpec, why: str) -> bool:
    """A start a replica's hand-on may be on its way for: a RECOVER, or a migration whose
    origin died, of an app with replicas."""
    return why in HANDOFF_REASONS and spec.replica_interval_slots > 0
