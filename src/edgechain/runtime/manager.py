"""The node's app manager: accepted plans become running apps (DESIGN.md, "Migration
execution", "Apps").

One :class:`AppManager` per node owns the node's runtimes (``runtime/runtimes.py``: the
process runtime, and the container runtime when the node has a container engine; both
under ``<data_dir>/apps``; each app runs with the runtime its spec names), a
:class:`TransferServer` (incoming migrations) and a :class:`TransferClient` (outgoing
ones). The node feeds it the engine's
``MigrationOrder`` events and ticks it; it never blocks the node's event loop: every
runtime call runs in a worker thread (``asyncio.to_thread``), every order in a task.

* PLACE to this node: start the app from its spec.
* MIGRATE from this node: offer it to the destination's transfer server, retried with
  backoff while the head chain still carries the block and still places the app there
  (the destination may accept the block a moment after us, and refuses until then).
  The transfer protocol guarantees the app is never lost and never runs twice.
* MIGRATE to this node: nothing to do; the server accepts the transfer once
  :meth:`is_planned` finds the entry in a block of our head chain.

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

An app in flight (a migration out holds its lock; one coming in has an incoming file)
is skipped, and an app whose record places it on another node is left alone.

Transfer port: peers learn it from the chain, as the label ``edgechain.transfer=PORT``
of the node's inclusion request (:func:`get_transfer_label`). The port is chosen once
(port 0 on the node's listen host), remembered in ``<data_dir>/apps/transfer.port`` and
bound again on restart (binding fails loudly if another process took it), because the
label stays on chain for as long as the node is a validator. A fixed offset from the
listen port was rejected: local testnets already use ``listen + 1`` for HTTP.

Usage: the stats of the running apps, sampled each interval and averaged over the last
few samples, go into the node's ``LocalUsage`` with the node's own host measurement, so
reports carry real per-app usage. Shares are of the whole host, or of the node's
declared CPU capacity (``cpu_capacity``: the cores it offers its apps, whose total is
then its apps' alone); ``runtime/usage.py`` says how the node's total is made of its
parts in each case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.model import (
    BASIS_POINTS,
    AppSpec,
    AppUsage,
    Block,
    ChainParams,
    PlanAction,
    PlanEntry,
)
from edgechain.consensus.engine import LocalUsage
from edgechain.consensus.messages import MigrationOrder
from edgechain.consensus.state import BlockState, get_slot_start_ms
from edgechain.crypto import bls
from edgechain.errors import LocalError
from edgechain.orchestrator.liveness import FENCE_MARGIN_SLOTS, get_lease_end_slot, is_down
from edgechain.orchestrator.registry import AppRecord, AppState, get_apps_on_node, get_record
from edgechain.runtime.appuser import DEFAULT_APP_USER
from edgechain.runtime.base import AppRuntimeError, AppStatus, get_app_dirname
from edgechain.runtime.fencing import LeaseWriter
from edgechain.runtime.lifecycle import (
    Action,
    ChainView,
    HeldApp,
    decide,
    find_placing_entry,
    get_start_reason,
    is_on_head_chain,
    was_removed,
)
from edgechain.runtime.replica import ReplicaStore, restore_from_replica
from edgechain.runtime.replication import DueReplica, Replicator
from edgechain.runtime.runtimes import DEFAULT_CONTAINER_NETWORK, open_node_runtimes
from edgechain.runtime.transfer import MigrationResult, TransferClient, TransferServer
from edgechain.runtime.usage import CpuAverager, merge_cpu_bp, scale_host_bp
from edgechain.types import AppId, BlockHash, NodeId, SecretKey, Slot

log = logging.getLogger("edgechain.apps")

TRANSFER_LABEL = "edgechain.transfer"
PORT_FILE = "transfer.port"
MEASURE_INTERVAL_MS = 1_000
MIGRATE_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Backoff between offers of one migration; the last value repeats. An origin never
gives up while the head still places the app at an active destination: the app runs
here until it runs there (DESIGN.md, "Exactly once"); once the destination is down the
chain recovers the app elsewhere and this copy is stale."""
MAX_RESULTS = 100
ORIGIN_KEY_LOOKBACK = 64
"""Blocks back in which an origin's key is looked up (it may have left since)."""


def get_transfer_label(port: int) -> str:
    return f"{TRANSFER_LABEL}={port}"


def get_transfer_port(labels: tuple[str, ...]) -> int | None:
    """The transfer port a validator advertised in its labels, if any."""
    prefix = TRANSFER_LABEL + "="
    for label in labels:
        if label.startswith(prefix):
            with contextlib.suppress(ValueError):
                return int(label[len(prefix) :])
    return None


@dataclass(frozen=True)
class AppView:
    """One app of this node's runtime as the API shows it."""

    app: str
    name: str
    running: bool
    status: str
    cpu_bp: int = 0
    ram_bp: int = 0
    disk_bytes: int = 0
    version: int | None = None
    """The spec version the runtime started (None: not known yet, after a migration)."""


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


class AppManager:
    """Runs the apps the chain places on this node and carries out their migrations."""

    def __init__(
        self,
        data_dir: Path,
        node_id: NodeId,
        sk: SecretKey,
        *,
        app_user: str | None = DEFAULT_APP_USER,
        cpu_capacity: float | None = None,
        container_engine: str | None = None,
        container_network: str = DEFAULT_CONTAINER_NETWORK,
        allow_root_containers: bool = False,
    ) -> None:
        """``app_user``: who apps run as when the node is root (process apps and
        containers alike); an unknown user is an ``AppUserError`` (a ``LocalError``)
        here. ``cpu_capacity``: the node's declared cores, which CPU shares are of
        (None: the whole host). ``container_engine``: the Engine API URL
        (``unix:///...``) of the node's Docker or Podman, None for a process-only node;
        ``container_network``: every container's network mode;
        ``allow_root_containers``: specs may ask to run as root in their container."""
        self.node_id = node_id
        self.cpu_capacity = cpu_capacity
        self._cpu = CpuAverager()
        self.root = data_dir / "apps"
        self.runtime = open_node_runtimes(self.root, app_user, container_engine, container_network)
        self.transfer_dir = data_dir / "transfer"
        # Offers are signed by their origin and checked against the chain's validator
        # keys: only the node the plan names can hand an app over (runtime/protocol.py).
        self.server = TransferServer(
            self.runtime,
            node_id,
            self.is_planned,
            self.transfer_dir,
            verify_origin=self.verify_origin,
            is_spec_current=self.is_spec_current,
        )
        self.client = TransferClient(self.runtime, sk=sk)
        self.replicas = ReplicaStore(data_dir / "replicas")
        self.replicator = Replicator(node_id, self._get_head_state)
        self.server.replicas = self.replicas
        self.server.is_replica_wanted = self.replicator.is_wanted
        self.lease = LeaseWriter(data_dir)
        self.engine: ChainView | None = None
        self.host_usage = LocalUsage()
        self.app_usage: tuple[AppUsage, ...] = ()
        self.views: tuple[AppView, ...] = ()
        self.results: deque[dict[str, Any]] = deque(maxlen=MAX_RESULTS)
        self._locks: dict[AppId, asyncio.Lock] = {}
        self._head_lease: (
            tuple[tuple[BlockHash, ChainParams], tuple[int, tuple[AppId, ...]]] | None
        ) = None
        """The end of the lease last renewed (epoch ms; 0: we hold none)."""
        self._settle_until = 0.0
        """No start before this (monotonic seconds): a reorg is settling."""
        self._outgoing: dict[AppId, asyncio.Task[None]] = {}
        """Migrations out in progress (the app runs here until the destination has it)."""
        self._searched: dict[AppId, BlockHash] = {}
        """``lifecycle.was_removed``'s memory of heads already searched, per app."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._measuring: asyncio.Task[None] | None = None
        self._closing = False
        self._next_measure_ms = 0
        self._disk_total = max(1, psutil.disk_usage(str(data_dir)).total)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, host: str) -> int:
        """Bind the transfer server (the remembered port, else a free one)."""
        port_file = self.root / PORT_FILE
        port = int(port_file.read_text()) if port_file.exists() else 0
        try:
            _, bound = await self.server.start(host, port)
        except OSError:
            # Loud: peers know this port from the chain; a node on another one is unreachable.
            log.error("cannot bind the transfer port", extra={"fields": {"port": port}})
            await asyncio.to_thread(self.runtime.close)
            raise
        port_file.write_text(f"{bound}\n")
        return bound

    def attach(self, engine: ChainView) -> None:
        self.engine = engine

    async def close(self) -> None:
        # Retry loops check this too: on Python 3.11 asyncio.wait_for may swallow a
        # cancellation that meets a refused connect, and a migration retrying towards a
        # destination that already stopped would then keep the node from stopping.
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            # A cancelled migration resumes the app here before it ends (transfer.py).
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.close()
        await asyncio.to_thread(self.runtime.close)

    # --- inputs from the node ----------------------------------------------------------

    def on_order(self, order: MigrationOrder) -> None:
        entry = order.entry
        if order.spec is None:
            log.warning("migration order without spec", extra={"fields": self._order(order)})
            return
        if entry.action is PlanAction.PLACE and entry.destination == self.node_id:
            self._spawn(self._place(entry.app, order.spec, "place"))
        elif entry.action is PlanAction.RECOVER and entry.destination == self.node_id:
            # Its node is down (and fenced): start it here from its latest replica.
            self._spawn(self._place(entry.app, order.spec, "recover"))
        elif entry.action is PlanAction.MIGRATE and entry.origin == self.node_id:
            self._start_migrate_out(order.block_hash, order.slot, entry, order.spec)
        # MIGRATE to us: the transfer server accepts it once is_planned agrees.
        # REPLICA naming us: the app's node sends, the server checks is_replica_wanted.

    def on_head_changed(self, reorg: bool) -> None:
        """Reconcile at the next tick (or right after the round in progress). After a
        reorg, start nothing for one slot: the copy the winning branch does not want may
        still run on a node that has not switched to it yet, and stops once it has."""
        self._next_measure_ms = 0
        if reorg:
            engine = self.engine
            slot_ms = engine.params.slot_duration_ms if engine and engine.params else 0
            self._settle_until = time.monotonic() + slot_ms / 1000

    def set_host_usage(self, usage: LocalUsage) -> None:
        self.host_usage = usage
        self._push_usage()

    def tick(self, now_ms: int) -> None:
        """Renew the fencing lease; measure apps and reconcile, at most one round at a
        time, ~once a slot."""
        self._renew_lease()
        if now_ms < self._next_measure_ms:
            return
        if self._measuring is not None and not self._measuring.done():
            return
        self._next_measure_ms = now_ms + MEASURE_INTERVAL_MS
        self._measuring = self._spawn(self._round())

    @property
    def next_wakeup_ms(self) -> int:
        return self._next_measure_ms

    def _renew_lease(self) -> None:
        """Let the watchdog keep our apps running until F slots after our latest
        contribution on the head chain (``orchestrator/liveness.py``): before the first
        slot whose plan may take us for down and recover them elsewhere. Listed: the apps
        the head places here and those we are handing over."""
        lease = self._get_head_lease()
        engine = self.engine
        params = engine.params if engine is not None else None
        if lease is None or params is None:
            return
        valid_until, apps = lease
        # From the first slot whose plan may take us for down, the watchdog kills what
        # it froze: a node back from a pause then finds no stale copy to stop.
        margin_ms = FENCE_MARGIN_SLOTS * params.slot_duration_ms
        self.lease.renew(valid_until, [*apps, *self._outgoing], valid_until + margin_ms)

    def _get_lease_until(self) -> int | None:
        """Our lease's end on the head chain, epoch ms (0: the chain does not know us;
        None: no chain yet)."""
        lease = self._get_head_lease()
        return lease[0] if lease is not None else None

    def _get_head_lease(self) -> tuple[int, tuple[AppId, ...]] | None:
        """Our lease's end and the apps the head places here, computed once per head:
        ``tick`` renews the lease on every loop turn, and the quorum slot sorts every
        node's last sighting."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if state is None or params is None:
            return None
        cached = self._head_lease
        if cached is not None and cached[0] == (state.block_hash, params):
            return cached[1]
        end = get_lease_end_slot(state.last_seen, self.node_id, params.down_after_slots)
        valid_until = get_slot_start_ms(params, end) if end is not None else 0
        apps = tuple(r.app for r in get_apps_on_node(state.registry, self.node_id))
        self._head_lease = ((state.block_hash, params), (valid_until, apps))
        return valid_until, apps

    def _is_lease_valid(self) -> bool:
        """Never start an app under an expired lease: the watchdog would freeze it only
        at its next poll, and the network may run it elsewhere already. (No chain
        parameters: a manager driven without a chain's liveness, as in unit tests.)"""
        engine = self.engine
        if engine is None or engine.params is None:
            return True
        until = self._get_lease_until()
        return until is not None and time.time() * 1000 < until

    # --- queries ---------------------------------------------------------------------

    def is_planned(self, block_hash: BlockHash, entry: PlanEntry) -> bool:
        """The TransferServer's check: ``entry`` is in a block of our head chain."""
        engine = self.engine
        if engine is None:
            return False
        block = engine.blocks.get(block_hash)
        if not isinstance(block, Block) or entry not in block.plan:
            return False
        return is_on_head_chain(engine, block_hash)

    def is_spec_current(self, app: AppId, spec: AppSpec) -> bool:
        """The TransferServer's check: ``spec`` is the head registry's spec of ``app``
        (ids do not hash the spec, so the spec is checked against the chain)."""
        record = self._get_head_record(app)
        return record is not None and record.spec == spec

    def _get_head_state(self) -> BlockState | None:
        engine = self.engine
        return engine.get_head_state() if engine is not None else None

    def _get_head_record(self, app: AppId) -> AppRecord | None:
        state = self._get_head_state()
        return get_record(state.registry, app) if state is not None else None

    def verify_origin(self, origin: NodeId, message: bytes, signature: bytes) -> bool:
        """Did validator ``origin`` sign ``message``? Its key from the recent chain."""
        engine = self.engine
        if engine is None:
            return False
        for block_hash in reversed(engine.get_chain()[-ORIGIN_KEY_LOOKBACK:]):
            info = engine.states[block_hash].validators.get(origin)
            if info is not None:
                return bls.verify(info.public_key, message, signature)
        return False

    def get_views(self) -> list[dict[str, Any]]:
        return [vars(v) for v in self.views]

    def get_status_apps(self) -> list[dict[str, Any]]:
        return [{"app": v.app, "name": v.name, "running": v.running} for v in self.views]

    # --- tasks -----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("app task failed", exc_info=task.exception())

    def _lock(self, app: AppId) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    async def _place(self, app: AppId, spec: AppSpec, why: str) -> None:
        version: int | None = None
        record = self._get_head_record(app)
        if record is not None and record.node == self.node_id:
            # The head may be past the PLACE block: a STOP or an UPDATE since wins.
            if record.state is AppState.STOPPED:
                return
            spec, version = record.spec, record.version
        elif record is not None:
            return  # placed elsewhere since (a reorg, a later move): not ours to start
        async with self._lock(app):
            await self._start_if_stopped(app, spec, why, version)

    async def _start_if_stopped(
        self, app: AppId, spec: AppSpec, why: str, version: int | None = None
    ) -> None:
        if await asyncio.to_thread(self.runtime.is_running, app):
            return
        if not self._is_lease_valid():
            log.info(
                "start deferred: lease expired", extra={"fields": {"app": bytes(app).hex()[:16]}}
            )
            return  # reconcile tries again once the lease is renewed
        fields: dict[str, Any] = {
            "app": bytes(app).hex()[:16], "name": spec.name, "why": why, "version": version,
        }  # fmt: skip
        try:
            if await asyncio.to_thread(self._is_replica_wanted_at_start, app, why):
                used = await asyncio.to_thread(
                    restore_from_replica, self.runtime, self.replicas, app, spec
                )
                fields["replica_slot"] = used.slot if used is not None else None
            await asyncio.to_thread(self.runtime.start, app, spec, version=version)
        except AppRuntimeError as exc:
            log.error("app start failed", extra={"fields": {**fields, "error": str(exc)}})
            return
        log.info("app started", extra={"fields": fields})

    def _is_replica_wanted_at_start(self, app: AppId, why: str) -> bool:
        """Blocking: start from the local replica? After a RECOVER, or a migration whose
        origin died, when we hold one; otherwise only when the runtime has no state of
        the app at all (a stale local copy is older than the replica its node sent)."""
        if self.replicas.get(app) is None:
            return False
        if why in ("recover", "origin down"):
            return True
        return not any(info.app == app for info in self.runtime.list())

    def _start_migrate_out(
        self, block_hash: BlockHash, slot: Slot, entry: PlanEntry, spec: AppSpec
    ) -> None:
        """Hand the app over, once: a second order for it waits for the first."""
        running = self._outgoing.get(entry.app)
        if running is not None and not running.done():
            return
        task = self._spawn(self._migrate_out(block_hash, slot, entry, spec))
        self._outgoing[entry.app] = task
        task.add_done_callback(lambda t: self._forget_outgoing(entry.app, t))

    def _forget_outgoing(self, app: AppId, task: asyncio.Task[None]) -> None:
        if self._outgoing.get(app) is task:
            del self._outgoing[app]

    def _get_wanted_record(self, block_hash: BlockHash, entry: PlanEntry) -> AppRecord | None:
        """The app's head record while the block is on our head chain and the registry
        still places the app at the entry's destination (a reorg, a later move or a
        REMOVE makes the offer pointless); None otherwise."""
        engine = self.engine
        if engine is None or not is_on_head_chain(engine, block_hash):
            return None
        record = self._get_head_record(entry.app)
        return record if record is not None and record.node == entry.destination else None

    def _get_destination(self, node: NodeId) -> tuple[str, int] | None:
        state = self._get_head_state()
        info = state.validators.get(node) if state is not None else None
        if info is None:
            return None
        port = get_transfer_port(info.labels)
        if port is None:
            return None
        # host:port of the node's transport; an IPv6 host keeps its colons.
        host = info.address.rsplit(":", 1)[0].strip("[]")
        return host, port

    async def _migrate_out(
        self, block_hash: BlockHash, slot: Slot, entry: PlanEntry, spec: AppSpec
    ) -> None:
        app = entry.app
        attempt = 0
        fields: dict[str, Any] = {
            "app": bytes(app).hex()[:16],
            "name": spec.name,
            "slot": slot,
            "to": bytes(entry.destination).hex()[:16],
        }
        while not self._closing:
            record = self._get_wanted_record(block_hash, entry)
            if record is None or self._is_node_down(entry.destination):
                break
            address = self._get_destination(entry.destination)
            if address is None:
                log.error("no transfer address for destination", extra={"fields": fields})
                return
            async with self._lock(app):
                try:
                    # The head's spec, not the order's: the destination checks the offer
                    # against its head registry, and an UPDATE may have come in between.
                    result = await self.client.migrate(block_hash, entry, record.spec, *address)
                except LocalError as exc:
                    # Not running here (never started, or already gone): nothing to send.
                    log.warning("migration skipped", extra={"fields": {**fields, "why": str(exc)}})
                    return
            self._record_result(result, fields, attempt)
            if result.ok:
                self._get_handed_path(block_hash, app).touch()
                return
            await asyncio.sleep(MIGRATE_RETRY_S[min(attempt, len(MIGRATE_RETRY_S) - 1)])
            attempt += 1
        # The head no longer places it there (a reorg, a later move, a REMOVE), the
        # destination is down (the chain recovers the app elsewhere) or this node is
        # stopping: reconcile decides what this copy is now (after a restart).
        log.warning("migration abandoned", extra={"fields": {**fields, "attempts": attempt}})

    def _record_result(self, result: MigrationResult, fields: dict[str, Any], attempt: int) -> None:
        entry = {
            **fields,
            "attempt": attempt,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "save_ms": round(result.save_ms, 1),
            "transmit_ms": round(result.transmit_ms, 1),
            "resume_ms": round(result.resume_ms, 1),
            "raw_bytes": result.raw_bytes,
            "compressed_bytes": result.compressed_bytes,
            "live": result.live,
        }
        self.results.append(entry)
        log.info("migration", extra={"fields": entry})

    # --- measure and reconcile ---------------------------------------------------------

    async def _round(self) -> None:
        await self.reconcile()
        await self._measure()
        self._send_replicas()

    async def reconcile(self) -> None:
        """One pass of the lifecycle rules (module docstring); idempotent. ``tick``
        runs it about once a slot."""
        engine = self.engine
        if engine is None or engine.get_head_state() is None:
            return
        held = {h.app: h for h in await asyncio.to_thread(self._get_held)}
        state = engine.get_head_state()  # after the await: the head may have moved
        if state is None:
            return
        apps = [r.app for r in get_apps_on_node(state.registry, self.node_id)]
        placed_here = set(apps)
        apps += sorted(app for app in held if app not in placed_here)
        for app in apps:
            lock = self._lock(app)
            if lock.locked():
                continue  # in flight (a migration out) or already being acted on
            # Read again per app: an earlier action awaited, and the head moves on.
            current = engine.get_head_state()
            record = get_record(current.registry, app) if current is not None else None
            here = held.get(app)
            action = decide(
                self.node_id,
                record,
                here,
                removed=record is None
                and here is not None
                and not self._is_arriving(app)
                and was_removed(engine, app, self._searched),
                outgoing=here is not None and self._is_handing_over(engine, record, here),
                settled=self._is_settled(record),
            )
            if action is None or not self._is_allowed(engine, action, app, record):
                continue
            async with lock:
                await self._carry_out(action, app, record)
        self._prune_replicas(state, held)

    def _is_handing_over(self, engine: ChainView, record: AppRecord | None, held: HeldApp) -> bool:
        """Are we (still) the origin of the head-chain MIGRATE that placed the app
        elsewhere, with the destination active? Then our copy runs until the destination
        has it: a handover that is not running (we restarted, or an earlier attempt was
        given up while the chain still wanted it) is started again."""
        if record is None or record.node in (None, self.node_id):
            return False
        task = self._outgoing.get(record.app)
        if task is not None and not task.done():
            return True
        found = find_placing_entry(engine, record)
        if found is None:
            return False
        block_hash, entry = found
        if entry.action is not PlanAction.MIGRATE or entry.origin != self.node_id:
            return False
        if self._is_node_down(entry.destination):
            return False
        if self._get_handed_path(block_hash, record.app).exists():
            return False  # done: what we hold is the state as we handed it over
        block = engine.blocks.get(block_hash)
        self._start_migrate_out(block_hash, block.slot if block else Slot(0), entry, held.spec)
        return True

    def _get_handed_path(self, block_hash: BlockHash, app: AppId) -> Path:
        """Exists once we handed ``app`` over for the MIGRATE of ``block_hash`` (our
        copy ended, its state kept): it is not offered again (``_is_handing_over``)."""
        handed = self.transfer_dir / "handed"
        handed.mkdir(parents=True, exist_ok=True)
        return handed / f"{bytes(block_hash).hex()}-{get_app_dirname(app)}"

    def _is_settled(self, record: AppRecord | None) -> bool:
        """The record's last move is K slots below the head (``Action.DISCARD``)."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if record is None or record.last_move_slot is None or state is None or params is None:
            return False
        return state.slot - record.last_move_slot >= params.down_after_slots

    def _is_node_down(self, node: bytes) -> bool:
        """The head's liveness view of ``node`` (``orchestrator/liveness.py``), as the
        next block's plan will see it."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if state is None or params is None:
            return False
        return is_down(state.last_seen, NodeId(node), state.slot + 1, params.down_after_slots)

    def _get_held(self) -> list[HeldApp]:
        """Blocking: the runtime's apps with their releases."""
        held = []
        for info in self.runtime.list():
            try:
                spec, version = self.runtime.get_release(info.app)
            except AppRuntimeError:
                continue  # removed meanwhile
            running = info.status is not AppStatus.STOPPED
            held.append(HeldApp(info.app, running, spec, version))
        return held

    def _is_allowed(
        self, engine: ChainView, action: Action, app: AppId, record: AppRecord | None
    ) -> bool:
        if action is Action.START:
            return (
                record is not None
                and time.monotonic() >= self._settle_until
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

    async def _carry_out(self, action: Action, app: AppId, record: AppRecord | None) -> None:
        """Run ``action`` in a worker thread; the caller holds the app's lock."""
        fields: dict[str, Any] = {"app": bytes(app).hex()[:16]}
        if record is not None:
            fields.update(name=record.spec.name, version=record.version)
        try:
            if action is Action.START and record is not None:
                why = self._get_start_reason(self.engine, record) if self.engine else None
                await self._start_if_stopped(app, record.spec, why or "reconcile", record.version)
            elif action is Action.STOP_STALE:
                if await asyncio.to_thread(self._stop_if_running, app):
                    # A second copy: the head runs it elsewhere, or never started it.
                    where = record.node.hex()[:16] if record and record.node else None
                    log.warning(
                        "stale app stopped", extra={"fields": {**fields, "placed_on": where}}
                    )
            elif action is Action.STOP:
                if await asyncio.to_thread(self._stop_if_running, app):
                    log.info("app stopped", extra={"fields": {**fields, "why": "stopped"}})
            elif action is Action.UPDATE and record is not None:
                done, old = await asyncio.to_thread(self._restart_at, app, record)
                if done:
                    log.info("app updated", extra={"fields": {**fields, "from_version": old}})
            elif action is Action.CONFIRM and record is not None:
                await asyncio.to_thread(self.runtime.set_version, app, record.version)
            elif action is Action.REMOVE:
                await asyncio.to_thread(self.runtime.remove, app)
                self._searched.pop(app, None)
                log.info("app removed", extra={"fields": {**fields, "why": "removed"}})
            elif action is Action.DISCARD:
                await asyncio.to_thread(self.runtime.remove, app)
                log.info("app removed", extra={"fields": {**fields, "why": "placed elsewhere"}})
        except AppRuntimeError as exc:
            fields.update(action=action.value, error=str(exc))
            log.error("app action failed", extra={"fields": fields})

    def _stop_if_running(self, app: AppId) -> bool:
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

    def _get_start_reason(self, engine: ChainView, record: AppRecord) -> str | None:
        """``lifecycle.get_start_reason`` with this node's transfer ledger (the same path
        as the TransferServer's: it exists once we acknowledged DONE)."""

        def is_received(block_hash: BlockHash, app: AppId) -> bool:
            name = f"{bytes(block_hash).hex()}-{get_app_dirname(app)}"
            return (self.transfer_dir / "ledger" / name).exists()

        return get_start_reason(
            engine,
            record,
            is_received=is_received,
            is_down=self._is_node_down,
            is_arriving=self._is_arriving,
        )

    def _send_replicas(self) -> None:
        """Start the replica sends that are due (``runtime/replication.py``)."""
        state = self._get_head_state()
        if state is None:
            return
        running = {AppId(bytes.fromhex(v.app)) for v in self.views if v.running}
        for due in self.replicator.get_due(state, running):
            address = self._get_destination(due.replica_node)
            if address is None:
                continue
            self.replicator.in_flight.add(due.app)
            self._spawn(self._send_replica(due, *address))

    async def _send_replica(self, due: DueReplica, host: str, port: int) -> None:
        ok = False
        fields: dict[str, Any] = {
            "app": bytes(due.app).hex()[:16],
            "slot": due.slot,
            "to": bytes(due.replica_node).hex()[:16],
        }
        try:
            result = await self.client.send_replica(due.app, due.slot, host, port)
            ok = result.ok
            fields.update(
                outcome=result.outcome.value,
                reason=result.reason,
                paused_ms=round(result.paused_ms, 1),
                transmit_ms=round(result.transmit_ms, 1),
                compressed_bytes=result.compressed_bytes,
            )
            log.info("replica sent" if ok else "replica refused", extra={"fields": fields})
        except (AppRuntimeError, OSError) as exc:
            log.warning("replica failed", extra={"fields": {**fields, "error": str(exc)}})
        finally:
            self.replicator.on_sent(due, ok)

    def _prune_replicas(self, state: BlockState, held: Collection[AppId]) -> None:
        stored = [info.app for info in self.replicas.list()]
        for app in self.replicator.get_unwanted(state, stored, held):
            self.replicas.remove(app)
            log.info("replica dropped", extra={"fields": {"app": bytes(app).hex()[:16]}})

    async def _measure(self) -> None:
        views, usage = await asyncio.to_thread(self._sample)
        self.views = views
        self.app_usage = usage
        self._push_usage()

    def _sample(self) -> tuple[tuple[AppView, ...], tuple[AppUsage, ...]]:
        """Blocking: list the runtime's apps and the stats of the running ones."""
        now = int(time.time() * 1000)
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
                view = replace(view, ram_bp=stats.ram_bp, disk_bytes=stats.disk_bytes)
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
                        0,
                        now,
                        state_bytes=stats.disk_bytes,
                    )
                )
                view = replace(view, cpu_bp=cpu_bp)
            views.append(view)
        self._cpu.retain(measured)
        usage.sort(key=lambda u: bytes(u.app))
        return tuple(views), tuple(usage)

    def _push_usage(self) -> None:
        if self.engine is not None:
            self.engine.set_local_usage(
                merge_usage(
                    self.host_usage, self.app_usage, apps_only_cpu=self.cpu_capacity is not None
                )
            )

    @staticmethod
    def _order(order: MigrationOrder) -> dict[str, Any]:
        return {
            "app": bytes(order.entry.app).hex()[:16],
            "action": order.entry.action.name,
            "slot": order.slot,
        }
