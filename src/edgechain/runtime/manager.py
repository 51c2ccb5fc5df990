"""The node's app manager: accepted plans become running apps (DESIGN.md, "Migration
execution", "Apps").

One :class:`AppManager` per node owns the node's runtimes (``runtime/runtimes.py``: the
process runtime, and the container runtime when the node has a container engine; both
under ``<data_dir>/apps``; each app runs with the runtime its spec names), a
:class:`TransferServer` (incoming migrations) and a :class:`TransferClient` (outgoing
ones). The node feeds it the engine's
``MigrationOrder`` events and ticks it; it never blocks the node's event loop: every
runtime call runs in a worker thread (``threads.run_in_thread``), every order in a task.

* PLACE to this node: start the app from its spec.
* MIGRATE from this node: offer it to the destination's transfer server, retried with
  backoff while the head chain still carries the block and still places the app there
  (the destination may accept the block a moment after us, and refuses until then).
  The transfer protocol guarantees the app is never lost and never runs twice.
* MIGRATE to this node: nothing to do; the server accepts the transfer once
  :meth:`is_planned` finds the entry in a block of our head chain.

Reconcile, about once a slot, makes the runtime match the head registry (the rules are
in ``runtime/lifecycle.py``, how they are applied in ``runtime/reconcile.py``).

The manager is the composition the node holds; each of its jobs is a module of its own,
and the parts get their collaborators passed in (none refers back to the manager):

* ``head_queries.py`` (:class:`HeadQueries`): the attached engine and what is asked of
  its head (the transfer server's checks, records, liveness, transfer addresses);
* ``app_tasks.py`` (:class:`AppTasks`): the background tasks and the apps' locks;
* ``lease_renewal.py`` (:class:`LeaseRenewal`): the fencing lease, renewed every tick;
* ``app_starter.py`` (:class:`AppStarter`): starting an app (PLACE, RECOVER, reconcile);
* ``migrations_out.py`` (:class:`MigrationsOut`): the outgoing retry loops, their
  results and the handovers;
* ``reconcile.py`` (:class:`Reconciler`): the reconciliation pass;
* ``restart_backoff.py`` (:class:`RestartBackoff`): the apps' failures here and the wait
  before each one's next start (the starter and reconcile tell it, the views show it);
* ``replica_sync.py`` (:class:`ReplicaSync`): replica sends and pruning;
* ``usage_sampler.py`` (:class:`UsageSampler`, :class:`AppView`, :func:`merge_usage`):
  per-app usage for the reports and the API.

Transfer port: peers learn it from the chain, as the label ``edgechain.transfer=PORT``
of the node's inclusion request (:func:`get_transfer_label`). The port is chosen once
(port 0 on the node's listen host), remembered in ``<data_dir>/apps/transfer.port`` and
bound again on restart (binding fails loudly if another process took it), because the
label stays on chain for as long as the node is a validator. A fixed offset from the
listen port was rejected: local testnets already use ``listen + 1`` for HTTP.

Usage: the stats of the running apps, sampled each interval, go into the node's
``LocalUsage`` with the node's own host measurement (``runtime/usage_sampler.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.model import AppSpec, AppUsage, PlanAction, PlanEntry
from edgechain.consensus.engine import LocalUsage
from edgechain.consensus.messages import MigrationOrder
from edgechain.errors import BindError
from edgechain.runtime.app_starter import AppStarter
from edgechain.runtime.app_tasks import AppTasks
from edgechain.runtime.appuser import DEFAULT_APP_USER
from edgechain.runtime.disk_guard import MIB, DiskGuard, StateSize, read_disk_space
from edgechain.runtime.fencing import LeaseWriter
from edgechain.runtime.head_queries import HeadQueries, get_transfer_label
from edgechain.runtime.lease import get_now_ms
from edgechain.runtime.lease_renewal import LeaseRenewal
from edgechain.runtime.lifecycle import ChainArchive, ChainView
from edgechain.runtime.migrations_out import MigrationsOut
from edgechain.runtime.reconcile import Reconciler
from edgechain.runtime.replica import ReplicaStore
from edgechain.runtime.replica_sync import ReplicaSync
from edgechain.runtime.replication import Replicator
from edgechain.runtime.restart_backoff import RestartBackoff
from edgechain.runtime.runtimes import DEFAULT_CONTAINER_NETWORK, open_node_runtimes
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer import TransferClient, TransferServer
from edgechain.runtime.usage_sampler import AppView, UsageSampler, merge_usage, render_views
from edgechain.telemetry import logs
from edgechain.types import AppId, BlockHash, NodeId, SecretKey

__all__ = ["AppManager", "AppView", "get_transfer_label", "merge_usage"]

log = logging.getLogger("edgechain.apps")

PORT_FILE = "transfer.port"
MEASURE_INTERVAL_MS = 1_000


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
        clock: Callable[[], int] = get_now_ms,
    ) -> None:
        """``app_user``: who apps run as when the node is root (process apps and
        containers alike); an unknown user is an ``AppUserError`` (a ``LocalError``)
        here. ``cpu_capacity``: the node's declared cores, which CPU shares are of
        (None: the whole host). ``container_engine``: the Engine API URL
        (``unix:///...``) of the node's Docker or Podman, None for a process-only node;
        ``container_network``: every container's network mode;
        ``allow_root_containers``: specs may ask to run as root in their container.
        ``clock``: the node's wall clock in epoch ms (``node_clock.NodeClock.now_ms``,
        shifted by ``--clock-offset-ms``), which the lease and usage times are in."""
        self.node_id = node_id
        self.cpu_capacity = cpu_capacity
        self.root = data_dir / "apps"
        self.runtime = open_node_runtimes(self.root, app_user, container_engine, container_network)
        self.transfer_dir = data_dir / "transfer"
        self.head = HeadQueries(node_id)
        self.tasks = AppTasks()
        # Offers are signed by their origin and checked against the chain's validator
        # keys: only the node the plan names can hand an app over (runtime/protocol.py).
        self.server = TransferServer(
            self.runtime,
            node_id,
            self.is_planned,
            self.transfer_dir,
            verify_origin=self.verify_origin,
            is_spec_current=self.is_spec_current,
            get_writable=lambda: read_disk_space(self.transfer_dir).get_writable(),
        )
        self.client = TransferClient(self.runtime, sk=sk)
        self.replicas = ReplicaStore(data_dir / "replicas")
        self.replicator = Replicator(node_id, self.head.get_head_state)
        self.server.replicas = self.replicas
        self.server.is_replica_wanted = self.replicator.is_wanted
        self.lease = LeaseWriter(data_dir)
        self.restarts = RestartBackoff()
        self.disk_guard = DiskGuard(data_dir)
        self.migrations = MigrationsOut(
            node_id,
            self.client,
            self.head,
            self.tasks,
            self.transfer_dir,
            is_lease_valid=self._is_lease_valid,
        )
        self.lease_renewal = LeaseRenewal(
            node_id, self.head, self.lease, self.migrations.get_outgoing, clock=clock
        )
        self.starter = AppStarter(
            node_id,
            self.runtime,
            self.replicas,
            self.head,
            self.migrations.handovers,
            lock=self.tasks.lock,
            is_lease_valid=self.lease_renewal.is_valid,
            restarts=self.restarts,
        )
        self.replica_sync = ReplicaSync(
            self.client, self.replicas, self.replicator, self.head, self.tasks
        )
        self.reconciler = Reconciler(
            node_id,
            self.runtime,
            self.head,
            self.tasks,
            starter=self.starter,
            migrations=self.migrations,
            replica_sync=self.replica_sync,
            transfer_dir=self.transfer_dir,
            restarts=self.restarts,
            disk_guard=self.disk_guard,
            is_lease_valid=self.lease_renewal.is_valid,
        )
        self.usage = UsageSampler(
            self.runtime,
            self.head,
            disk_total=max(1, psutil.disk_usage(str(data_dir)).total),
            cpu_capacity=cpu_capacity,
            clock=clock,
            restarts=self.restarts,
            disk_guard=self.disk_guard,
            is_lease_valid=self.lease_renewal.is_valid,
            get_state_loss=self._describe_state_loss,
        )
        self._measuring: asyncio.Task[None] | None = None
        self._next_measure_ms = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, host: str) -> int:
        """Bind the transfer server (the remembered port, else a free one)."""
        port_file = self.root / PORT_FILE
        port = int(port_file.read_text()) if port_file.exists() else 0
        # Peers know this port from the chain: a node on another one is unreachable, so
        # the node stops rather than take a new one unasked.
        hint = (
            f" (this node's port before, known to its peers; another process holds it,"
            f" perhaps a copy of this data directory: free it, or delete {port_file} and"
            f" the node takes a new one)"
            if port
            else ""
        )
        try:
            _, bound = await self.server.start(host, port, hint=hint)
        except BindError:
            logs.error(log, "cannot bind the transfer port", port=port)
            await run_in_thread(self.runtime.close)
            raise
        port_file.write_text(f"{bound}\n")
        return bound

    def _is_lease_valid(self) -> bool:
        # Late-bound: the lease renewal lists the handovers, so it is built after them.
        return self.lease_renewal.is_valid()

    def _describe_state_loss(self, app: AppId) -> str | None:
        loss = self.starter.get_loss(app)
        return loss.describe() if loss is not None else None

    def attach(self, engine: ChainView, archive: ChainArchive | None = None) -> None:
        """Read the head chain from ``engine``, and the finalized chain its memory no
        longer holds from ``archive`` (the node's store)."""
        self.head.engine = engine
        self.head.archive = archive

    @property
    def engine(self) -> ChainView | None:
        return self.head.engine

    async def close(self) -> None:
        await self.tasks.close()
        await self.server.close()
        await run_in_thread(self.runtime.close)

    # --- inputs from the node ----------------------------------------------------------

    def on_order(self, order: MigrationOrder) -> None:
        entry = order.entry
        if order.spec is None:
            logs.warning(log, "migration order without spec", **self._order(order))
            return
        if entry.action is PlanAction.PLACE and entry.destination == self.node_id:
            self.tasks.spawn(self.starter.place(entry.app, order.spec, "place"))
        elif entry.action is PlanAction.RECOVER and entry.destination == self.node_id:
            # Its node is down (and fenced): start it here from its latest replica.
            self.tasks.spawn(self.starter.place(entry.app, order.spec, "recover"))
        elif entry.action is PlanAction.MIGRATE and entry.origin == self.node_id:
            self.migrations.start(order.block_hash, order.slot, entry, order.spec)
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
            self.reconciler.settle(slot_ms / 1000)

    def is_idle(self) -> bool:
        """Nothing here for a round to look after: no app is held here (known without
        blocking, ``NodeRuntimes.is_known_empty``), the head places none here and none
        is being handed over from here. The node's loop then wakes for housekeeping half
        as often (``node/tick_schedule.py``); a head change still reconciles at the next
        pass (``on_head_changed``), which starts what it places here."""
        return (
            self.runtime.is_known_empty()
            and not self.head.is_placing_here()
            and not self.migrations.get_in_progress()
        )

    def set_host_usage(self, usage: LocalUsage) -> None:
        self.usage.set_host_usage(usage)

    def tick(self, now_ms: int) -> None:
        """Renew the fencing lease; measure apps and reconcile, at most one round at a
        time, ~once a slot."""
        self.lease_renewal.renew()
        if now_ms < self._next_measure_ms:
            return
        if self._measuring is not None and not self._measuring.done():
            return
        self._next_measure_ms = now_ms + MEASURE_INTERVAL_MS
        self._measuring = self.tasks.spawn(self._round())

    # --- queries ---------------------------------------------------------------------

    def is_planned(self, block_hash: BlockHash, entry: PlanEntry) -> bool:
        """The TransferServer's check: ``entry`` is in a block of our head chain."""
        return self.head.is_planned(block_hash, entry)

    def is_spec_current(self, app: AppId, spec: AppSpec) -> bool:
        """The TransferServer's check: ``spec`` is the head registry's spec of ``app``."""
        return self.head.is_spec_current(app, spec)

    def verify_origin(self, origin: NodeId, message: bytes, signature: bytes) -> bool:
        """Did validator ``origin`` sign ``message``? Its key from the recent chain."""
        return self.head.verify_origin(origin, message, signature)

    @property
    def results(self) -> deque[dict[str, Any]]:
        """The last outgoing migrations' outcomes (``migrations_out.py``)."""
        return self.migrations.results

    @property
    def host_usage(self) -> LocalUsage:
        return self.usage.host_usage

    @property
    def app_usage(self) -> tuple[AppUsage, ...]:
        return self.usage.app_usage

    @property
    def views(self) -> tuple[AppView, ...]:
        return self.usage.views

    def get_views(self) -> list[dict[str, Any]]:
        """The runtime's apps as the API shows them (``GET /runtime/apps``), each with
        this node's id."""
        return render_views(self.views, self.node_id)

    def get_busy_apps(self) -> list[str]:
        """Apps (hex ids) that still run here or are being handed over from here: a
        leaving node waits for none to be left (node/leaving.py). Running copies as the
        last sample (every ``MEASURE_INTERVAL_MS``) saw them."""
        busy = {bytes(app).hex() for app in self.migrations.get_in_progress()}
        busy.update(v.app for v in self.views if v.running)
        return sorted(busy)

    def get_status_apps(self) -> list[dict[str, Any]]:
        return [{"app": v.app, "name": v.name, "running": v.running} for v in self.views]

    # --- measure and reconcile ---------------------------------------------------------

    async def _round(self) -> None:
        await self.reconcile()
        await self.usage.measure()
        await self._guard_disk()
        self.replica_sync.send_due(self.usage.get_running())
        self.replica_sync.hand_off_due()

    async def _guard_disk(self) -> None:
        """Stop and hold the app filling the node's disk, if it is nearly full
        (``runtime/disk_guard.py``); one ``statvfs`` a pass otherwise."""
        sizes = [
            StateSize(AppId(bytes.fromhex(v.app)), v.running, v.disk_bytes)
            for v in self.usage.views
        ]
        found = self.disk_guard.check(sizes, busy=self.migrations.get_in_progress())
        if found is None:
            return
        app, hold = found
        lock = self.tasks.lock(app)
        if lock.locked():
            # An action of reconcile or a handover that just began: the next pass decides.
            self.disk_guard.release(app)
            return
        async with lock:
            stopped = await run_in_thread(self.reconciler.stop_if_running, app)
        # Stopped on purpose: not a failure to back off from (restart_backoff.py).
        self.restarts.forget(app)
        name = next((v.name for v in self.usage.views if v.app == bytes(app).hex()), None)
        logs.warning(
            log,
            "app stopped: the node's disk is nearly full",
            app=bytes(app).hex()[:16],
            name=name,
            stopped=stopped,
            free_mib=hold.free_bytes // MIB,
            reserve_mib=hold.reserve_bytes // MIB,
            state_mib=hold.state_bytes // MIB,
            grew_mib=hold.growth_bytes // MIB,
        )

    async def reconcile(self) -> None:
        """One pass of the lifecycle rules (``runtime/reconcile.py``); idempotent.
        ``tick`` runs it about once a slot."""
        await self.reconciler.reconcile()

    @staticmethod
    def _order(order: MigrationOrder) -> dict[str, Any]:
        return {
            "app": bytes(order.entry.app).hex()[:16],
            "action": order.entry.action.name,
            "slot": order.slot,
        }
