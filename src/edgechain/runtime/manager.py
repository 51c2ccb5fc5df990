"""The node's app manager: accepted plans become running apps (DESIGN.md, "Migration
execution", "Apps").

One :class:`AppManager` per node owns the node's :class:`ProcessRuntime` (under
``<data_dir>/apps``), a :class:`TransferServer` (incoming migrations) and a
:class:`TransferClient` (outgoing ones). The node feeds it the engine's
``MigrationOrder`` events and ticks it; it never blocks the node's event loop: every
runtime call runs in a worker thread (``asyncio.to_thread``), every order in a task.

* PLACE to this node: start the app from its spec.
* MIGRATE from this node: offer it to the destination's transfer server, retried with
  backoff while the head chain still carries the block and still places the app there
  (the destination may accept the block a moment after us, and refuses until then).
  The transfer protocol guarantees the app is never lost and never runs twice.
* MIGRATE to this node: nothing to do; the server accepts the transfer once
  :meth:`is_planned` finds the entry in a block of our head chain.

Reconcile, about once a slot: an app the head registry places here that does not run
(it crashed, or the node restarted) is started from its state dir, but only if it was
placed here by a PLACE or by a migration this node completed (the transfer ledger); an
app moved here that has not arrived is the origin's to send, never ours to start.

Transfer port: peers learn it from the chain, as the label ``edgechain.transfer=PORT``
of the node's inclusion request (:func:`get_transfer_label`). The port is chosen once
(port 0 on the node's listen host), remembered in ``<data_dir>/apps/transfer.port`` and
bound again on restart (binding fails loudly if another process took it), because the
label stays on chain for as long as the node is a validator. A fixed offset from the
listen port was rejected: local testnets already use ``listen + 1`` for HTTP.

Usage: the stats of the running apps, sampled each interval, go into the node's
``LocalUsage`` with the node's own host measurement, so reports carry real per-app
usage. Host totals are raised to at least the sum of the apps (the two are sampled at
different instants; a total below its parts would be nonsense to the load model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.model import BASIS_POINTS, AppSpec, AppUsage, Block, PlanAction, PlanEntry
from edgechain.consensus.engine import ConsensusEngine, LocalUsage
from edgechain.consensus.messages import MigrationOrder
from edgechain.crypto import bls
from edgechain.errors import LocalError
from edgechain.orchestrator.registry import AppRecord, get_apps_on_node, get_record
from edgechain.runtime.base import AppRuntimeError, AppStatus, get_app_dirname
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.transfer import MigrationResult, TransferClient, TransferServer
from edgechain.types import AppId, BlockHash, NodeId, SecretKey, Slot

log = logging.getLogger("edgechain.apps")

TRANSFER_LABEL = "edgechain.transfer"
PORT_FILE = "transfer.port"
MEASURE_INTERVAL_MS = 1_000
MIGRATE_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Backoff between offers of one migration; the last value repeats."""
MIGRATE_GIVE_UP_S = 120.0
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


def merge_usage(host: LocalUsage, apps: tuple[AppUsage, ...]) -> LocalUsage:
    """The node's report figures: host totals, never below the sum of its apps."""
    cpu = sum(a.cpu_bp for a in apps)
    ram = sum(a.ram_bp for a in apps)
    return replace(
        host,
        cpu_bp=min(BASIS_POINTS, max(host.cpu_bp, cpu)),
        ram_bp=min(BASIS_POINTS, max(host.ram_bp, ram)),
        apps=apps,
    )


def is_on_head_chain(engine: ConsensusEngine, block_hash: BlockHash) -> bool:
    """True when ``block_hash`` is an ancestor-or-self of the engine's head."""
    target = engine.blocks.get(block_hash)
    current = engine.head
    if target is None:
        return False
    while current is not None and current in engine.blocks:
        if current == block_hash:
            return True
        block = engine.blocks[current]
        if block.slot < target.slot:
            return False
        current = block.parent
    return False


def find_placing_entry(
    engine: ConsensusEngine, record: AppRecord
) -> tuple[BlockHash, PlanEntry] | None:
    """The head-chain block (of ``record.last_move_slot``) and entry that put the app
    where the registry has it; None if it is out of reach."""
    slot = record.last_move_slot
    current = engine.head
    while slot is not None and current is not None and current in engine.blocks:
        block = engine.blocks[current]
        if block.slot < slot:
            return None
        if block.slot == slot and isinstance(block, Block):
            for entry in block.plan:
                if entry.app == record.app:
                    return current, entry
            return None
        current = block.parent
    return None


class AppManager:
    """Runs the apps the chain places on this node and carries out their migrations."""

    def __init__(self, data_dir: Path, node_id: NodeId, sk: SecretKey) -> None:
        self.node_id = node_id
        self.root = data_dir / "apps"
        self.runtime = ProcessRuntime(self.root)
        self.transfer_dir = data_dir / "transfer"
        # Offers are signed by their origin and checked against the chain's validator
        # keys: only the node the plan names can hand an app over (runtime/protocol.py).
        self.server = TransferServer(
            self.runtime,
            node_id,
            self.is_planned,
            self.transfer_dir,
            verify_origin=self.verify_origin,
        )
        self.client = TransferClient(self.runtime, sk=sk)
        self.engine: ConsensusEngine | None = None
        self.host_usage = LocalUsage()
        self.app_usage: tuple[AppUsage, ...] = ()
        self.views: tuple[AppView, ...] = ()
        self.results: deque[dict[str, Any]] = deque(maxlen=MAX_RESULTS)
        self._locks: dict[AppId, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._measuring: asyncio.Task[None] | None = None
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

    def attach(self, engine: ConsensusEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
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
            self._spawn(self._place(entry.app, order.spec))
        elif entry.action is PlanAction.MIGRATE and entry.origin == self.node_id:
            self._spawn(self._migrate_out(order.block_hash, order.slot, entry, order.spec))
        # MIGRATE to us: the transfer server accepts it once is_planned agrees.

    def set_host_usage(self, usage: LocalUsage) -> None:
        self.host_usage = usage
        self._push_usage()

    def tick(self, now_ms: int) -> None:
        """Measure apps and reconcile, at most one round at a time, ~once a slot."""
        if now_ms < self._next_measure_ms:
            return
        if self._measuring is not None and not self._measuring.done():
            return
        self._next_measure_ms = now_ms + MEASURE_INTERVAL_MS
        self._measuring = self._spawn(self._round())

    @property
    def next_wakeup_ms(self) -> int:
        return self._next_measure_ms

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

    async def _place(self, app: AppId, spec: AppSpec) -> None:
        async with self._lock(app):
            await self._start_if_stopped(app, spec, "place")

    async def _start_if_stopped(self, app: AppId, spec: AppSpec, why: str) -> None:
        if await asyncio.to_thread(self.runtime.is_running, app):
            return
        fields = {"app": bytes(app).hex()[:16], "name": spec.name, "why": why}
        try:
            await asyncio.to_thread(self.runtime.start, app, spec)
        except AppRuntimeError as exc:
            log.error("app start failed", extra={"fields": {**fields, "error": str(exc)}})
            return
        log.info("app started", extra={"fields": fields})

    def _is_still_wanted(self, block_hash: BlockHash, entry: PlanEntry) -> bool:
        """The block is on our head chain and the registry still places the app at the
        entry's destination (a reorg or a later move makes the offer pointless)."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        if engine is None or state is None or not is_on_head_chain(engine, block_hash):
            return False
        record = get_record(state.registry, entry.app)
        return record is not None and record.node == entry.destination

    def _get_destination(self, node: NodeId) -> tuple[str, int] | None:
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
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
        deadline = time.monotonic() + MIGRATE_GIVE_UP_S
        attempt = 0
        fields: dict[str, Any] = {
            "app": bytes(app).hex()[:16],
            "name": spec.name,
            "slot": slot,
            "to": bytes(entry.destination).hex()[:16],
        }
        while time.monotonic() < deadline and self._is_still_wanted(block_hash, entry):
            address = self._get_destination(entry.destination)
            if address is None:
                log.error("no transfer address for destination", extra={"fields": fields})
                return
            async with self._lock(app):
                try:
                    result = await self.client.migrate(block_hash, entry, spec, *address)
                except LocalError as exc:
                    # Not running here (never started, or already gone): nothing to send.
                    log.warning("migration skipped", extra={"fields": {**fields, "why": str(exc)}})
                    return
            self._record_result(result, fields, attempt)
            if result.ok:
                return
            await asyncio.sleep(MIGRATE_RETRY_S[min(attempt, len(MIGRATE_RETRY_S) - 1)])
            attempt += 1
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
        await self._reconcile()
        await self._measure()

    async def _reconcile(self) -> None:
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        if engine is None or state is None:
            return
        for record in get_apps_on_node(state.registry, self.node_id):
            lock = self._lock(record.app)
            if lock.locked() or not self._may_start_here(engine, record):
                continue
            async with lock:
                await self._start_if_stopped(record.app, record.spec, "reconcile")

    def _may_start_here(self, engine: ConsensusEngine, record: AppRecord) -> bool:
        """Placed here by a PLACE, or moved here by a migration we completed."""
        found = find_placing_entry(engine, record)
        if found is None:
            return False
        block_hash, entry = found
        if entry.action is PlanAction.PLACE:
            return True
        # Same path as TransferServer's ledger: it exists once we acknowledged DONE.
        name = f"{bytes(block_hash).hex()}-{get_app_dirname(record.app)}"
        return (self.transfer_dir / "ledger" / name).exists()

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
        for info in self.runtime.list():
            running = info.status is not AppStatus.STOPPED
            view = AppView(bytes(info.app).hex(), info.name, running, info.status.value)
            if running:
                try:
                    stats = self.runtime.stats(info.app)
                except AppRuntimeError:
                    views.append(view)
                    continue
                disk_bp = stats.disk_bytes * BASIS_POINTS // self._disk_total
                usage.append(AppUsage(info.app, stats.cpu_bp, stats.ram_bp, disk_bp, 0, now))
                view = replace(
                    view, cpu_bp=stats.cpu_bp, ram_bp=stats.ram_bp, disk_bytes=stats.disk_bytes
                )
            views.append(view)
        usage.sort(key=lambda u: bytes(u.app))
        return tuple(views), tuple(usage)

    def _push_usage(self) -> None:
        if self.engine is not None:
            self.engine.set_local_usage(merge_usage(self.host_usage, self.app_usage))

    @staticmethod
    def _order(order: MigrationOrder) -> dict[str, Any]:
        return {
            "app": bytes(order.entry.app).hex()[:16],
            "action": order.entry.action.name,
            "slot": order.slot,
        }
