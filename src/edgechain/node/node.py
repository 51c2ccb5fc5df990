"""One running node: the consensus engine, DHT and gossip driven over real sockets.

``Node.run`` owns the only event loop of a node. It feeds the sans-I/O objects
(``consensus.engine``, ``network.dht``, ``network.gossip``) with decoded messages and
wall-clock ticks, and turns their outputs into datagrams, frames, VDF evaluations and
writes to the SQLite store. Paper §4 steps 1-5: a node joins the DHT through the
bootstrap node, whose address and public key every node is given.

Its collaborators live next to it in ``edgechain.node`` (see the package doc): the
VDF worker, the events recorder, the duty priority, peer routing (``routing.py``:
addresses, keys, encoding what is sent), the CPU budget, the store's archive; and the
mixins of ``Node``: the inbox (what arrives), the read-side queries, the write-side
submissions, the duties (``duties.py``) and the first contacts (``contacts.py``: the DHT
join, the seeds' pings, the RTT probes).

The node knows nothing of HTTP: ``api/`` sits above it and calls its public interface;
``node_daemon.py`` builds the process, a node with the API server around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import psutil

from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.engine import ConsensusEngine, LocalUsage
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    ArchiveSyncWanted,
    BlockAccepted,
    HeadChanged,
    IdentityClash,
    MigrationOrder,
    Outgoing,
    Output,
)
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.keystore import load_keystore, load_or_create_keystore
from edgechain.crypto.session import SessionKeys
from edgechain.errors import (
    StoreError,
    StoreFullError,
)
from edgechain.network.dht import DhtNode
from edgechain.network.dht_config import DhtConfig
from edgechain.network.dht_events import DhtOutput
from edgechain.network.gossip import Gossip, GossipConfig
from edgechain.network.transport import NetworkTransport, split_address
from edgechain.node.archive import StoreArchive, get_archive_response, replay_store
from edgechain.node.clock import NodeClock
from edgechain.node.config import HOSTILE_ENV, NodeConfig, make_engine
from edgechain.node.contacts import NodeContacts
from edgechain.node.cpu import CpuAccounting
from edgechain.node.duties import NodeDuties
from edgechain.node.duty import DutyPriority
from edgechain.node.events import EventRecorder, log_duty
from edgechain.node.host_usage import measure_host_usage
from edgechain.node.identity_clash import describe_clash, write_clash_file
from edgechain.node.inbox import NodeInbox
from edgechain.node.leaving import Leaving
from edgechain.node.log_format import configure_logging
from edgechain.node.metrics import NodeObserver
from edgechain.node.queries import ChainEntry, NodeCounters, NodeQueries
from edgechain.node.relayed_blocks import RelayedBlocks
from edgechain.node.report_times import ReportTimes
from edgechain.node.routing import PeerRouting
from edgechain.node.rtt import RttProbe
from edgechain.node.seeds import SeedContacts
from edgechain.node.submissions import CommandReceipt, NodeSubmissions, NoOperatorKeyError
from edgechain.node.tick_schedule import (
    HousekeepingGrid,
    TickSchedule,
    get_housekeeping_phase,
)
from edgechain.node.vdf_worker import VdfRunner
from edgechain.node.vote_file import VOTE_FILE_NAME
from edgechain.node.watchdog_keeper import WatchdogKeeper
from edgechain.orchestrator.policy import CONTAINER_ENGINE_LABEL, ROOT_CONTAINERS_LABEL
from edgechain.runtime.fencing import Watchdog
from edgechain.runtime.manager import AppManager, get_transfer_label
from edgechain.telemetry import logs
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import BlockHash, SecretKey

if TYPE_CHECKING:
    from edgechain.hostile import Hostile

log = logging.getLogger("edgechain.node")

USAGE_INTERVAL_MS = 5_000


class Node(NodeQueries, NodeSubmissions, NodeInbox, NodeDuties, NodeContacts):
    """A node: one event loop (:meth:`run`) driving its engine, DHT and gossip."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.clock = NodeClock(config.clock_offset_ms)
        """Every wall-clock read of the node (``--clock-offset-ms``: node/clock.py)."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.sk = load_or_create_keystore(config.data_dir / "node.key")
        self.pk = bls.sk_to_pk(self.sk)
        self.node_id = compute_node_id(self.pk)
        self.sessions = SessionKeys(self.sk, self.pk)
        """DHT messages to a peer whose key we know are MACed, not signed (session.py)."""
        if config.genesis_key:
            self.sessions.learn(config.genesis_key)
        self.hostile: Hostile | None = None
        if os.environ.get(HOSTILE_ENV):
            # Chaos experiments only: an honest node never imports hostile.py.
            from edgechain.hostile import load_hostile

            self.hostile = load_hostile(
                os.environ[HOSTILE_ENV], self.sk, self.node_id, lambda: self.engine
            )
        self.store = BlockStore(config.data_dir / "chain.db")
        self.operator_sk: SecretKey | None = (
            load_keystore(config.operator_key) if config.operator_key is not None else None
        )
        host, port = split_address(config.listen)
        self.transport = NetworkTransport(host, port, self._on_data)
        self._operator_seq = 0
        self.leaving = Leaving(self.node_id, config.leave_timeout_ms)
        """This node's own leave, once asked for (node/leaving.py)."""
        self.stopping = asyncio.Event()
        """The loop's stop (``run`` takes the daemon's); a finished leave sets it."""
        self.started = asyncio.Event()
        """Set once the node runs (engine built, store replayed, DHT joined)."""
        self.rng = random.Random(self.node_id)
        self.dht = DhtNode(self.node_id, random.Random(self.rng.getrandbits(64)), DhtConfig())
        self.gossip = Gossip(self.node_id, random.Random(self.rng.getrandbits(64)), GossipConfig())
        self.relayed_blocks = RelayedBlocks()
        """Blocks relayed by gossip: another origin's copy stops here (relayed_blocks.py)."""
        self._gossip_peers_key: tuple[int, BlockHash | None] | None = None
        """(DHT membership version, head) the gossip peer list was built from."""
        self.rtt = RttProbe(self.node_id, random.Random(self.rng.getrandbits(64)))
        """The RTT our reports carry (node/rtt.py, paper Table 2)."""
        self.engine: ConsensusEngine | None = None
        self.counters = NodeCounters()
        self.report_times = ReportTimes(self.node_id)
        self.recorder = EventRecorder(
            self.store, self.clock, self.report_times, config.data_dir / VOTE_FILE_NAME
        )
        self.routing = PeerRouting(
            self.node_id, self.sk, self.sessions, self.transport, self.dht, self.gossip,
            lambda: self.engine, self.clock.now_ms,
        )  # fmt: skip
        self.seeds = SeedContacts(config.seeds, random.Random(self.rng.getrandbits(64)))
        """The operator's seed addresses and who answered at them (node/seeds.py)."""
        self._seed_tasks: set[asyncio.Task[None]] = set()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self.schedule = TickSchedule(self.clock.now_ms)
        """When the loop runs its next pass (``_tick``): the earliest timer of its parts
        (the engine's is "now" after a message that moved its head); node/tick_schedule.py."""
        self.housekeeping = HousekeepingGrid(get_housekeeping_phase(self.node_id))
        """The grid the gossip heartbeat, the apps' and usage rounds and the probes keep."""
        self.observer = NodeObserver(self.get_metrics_reading)
        """The node's Prometheus metrics (node/metrics.py): ``GET /metrics``."""
        self.cpu = CpuAccounting(on_slot=self.observer.on_slot_cpu)
        """CPU per slot by component (node/cpu.py, telemetry/cpu.py): ``/status``."""
        self.vdf_runner = VdfRunner(
            config.data_dir / "vdf",
            on_start=self._on_vdf_start,
            on_result=self._on_vdf_result,
            clock=self.clock,
        )
        self.measure_usage: Callable[[], LocalUsage] = lambda: measure_host_usage(
            config.cpu_capacity, config.data_dir
        )
        """The host's usage for our reports (host_usage.py); tests put a simulated
        device here."""
        self._next_usage_ms = 0
        self._engine_wakeup: int | None = None
        self._dht_wakeup: int | None = None
        self._replaying = False
        self.duty = DutyPriority()
        self.apps: AppManager | None = None
        self.watchdog = Watchdog(clock_offset_ms=self.clock.offset_ms)
        """Fencing (DESIGN.md, "Exactly once"): a process of its own that freezes our
        apps when the lease the app manager renews runs out (runtime/fencing.py); it
        reads its clock with our offset, since the lease is written in our clock."""
        self.watchdog_keeper = WatchdogKeeper(self.watchdog)
        """Starts the watchdog again should it end (node/watchdog_keeper.py)."""
        self._transfer_port: int | None = None
        self.store_failure: StoreError | None = None
        """A write to the store failed (a full disk): the engine holds a block the store
        does not, so the node stops (``node_daemon.py`` exits with a code saying why)."""
        self.identity_clash: IdentityClash | None = None
        """Another process signs as this node: it stops, its apps first
        (``node/identity_clash.py``)."""
        self.closed = False
        """The loop has ended: what still arrives (a frame read before the transport
        closed) is dropped, not served from a store that is closing."""

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = stop
        await self.transport.start()
        # Before the engine: the transfer port goes into our inclusion request's labels.
        self.apps = AppManager(
            self.config.data_dir,
            self.node_id,
            self.sk,
            app_user=self.config.app_user,
            cpu_capacity=self.config.cpu_capacity,
            container_engine=self.config.container_engine,
            container_network=self.config.container_network,
            allow_root_containers=self.config.allow_root_containers,
            clock=self.clock.now_ms,
        )
        self.apps.migrations.on_result = self.observer.on_migration
        self._transfer_port = await self.apps.start(self.transport.host)
        # Before any app can start: from here on, apps run only under a live lease.
        await asyncio.to_thread(self.watchdog.start, self.config.data_dir)
        self.watchdog_keeper.watch(asyncio.get_running_loop())
        self.engine = make_engine(
            self.config,
            self.sk,
            self.store,
            listen_host=self.transport.host,
            port=self.transport.port,
            labels=self._get_labels(),
        )
        self.apps.attach(self.engine, StoreArchive(self.store, self._stop_on_store_failure))
        self._replay_store()
        self._join_dht()
        logs.info(log, "node started", **self.get_identity())
        self.started.set()
        try:
            await self._loop(stop)
        finally:
            self.closed = True
            await self._close_apps()
            await self.transport.close()
            self.store.close()
            logs.info(log, "node stopped", node_id=self.node_id.hex())

    async def _close_apps(self) -> None:
        if self.apps is not None:
            await self.apps.close()
        # After the apps: a clean stop leaves nothing running for it to fence.
        self.watchdog_keeper.close()
        await asyncio.to_thread(self.watchdog.stop)

    def _get_labels(self) -> tuple[str, ...]:
        """The inclusion request's labels: the configured ones, the transfer port, and
        the container engine when there is one (the planner places container apps on
        such nodes only)."""
        labels = list(self.config.labels)
        if self._transfer_port is not None:
            labels.append(get_transfer_label(self._transfer_port))
        if self.config.container_engine is not None:
            labels.append(CONTAINER_ENGINE_LABEL)
            if self.config.allow_root_containers:
                labels.append(ROOT_CONTAINERS_LABEL)
        return tuple(labels)

    def _replay_store(self) -> None:
        """Restart: the stored snapshot and the blocks after it (``archive.replay_store``)."""
        engine = self.engine
        assert engine is not None
        if engine.genesis is None:
            return
        self._replaying = True
        try:
            count, from_slot = replay_store(self.store, engine, self.clock.now_ms, self._apply)
        finally:
            self._replaying = False
        logs.info(log, "store replayed", blocks=count, from_slot=from_slot)

    async def _loop(self, stop: asyncio.Event) -> None:
        self.duty.capture_base()
        self.cpu.start()
        schedule = self.schedule
        # One waiter for the whole run turns ``stop`` into a wake-up; a pass costs no
        # task or future of its own, and a message moves the one timer rather than
        # waking the loop (node/tick_schedule.py).
        stop_waiter = asyncio.ensure_future(stop.wait())
        stop_waiter.add_done_callback(lambda _: schedule.wake_now())
        try:
            while not stop.is_set() and self.store_failure is None:
                now = self.clock.now_ms()
                if schedule.is_due(now):
                    self._tick(now)
                    self._drop_unwanted_vdfs(now)
                    self._update_priority(now)
                    schedule.set_next(self._next_wakeup(now))
                else:
                    schedule.arm()  # woken a little early by the timer
                schedule.wake.clear()
                await schedule.wake.wait()
        finally:
            schedule.close()
            stop_waiter.cancel()
            self._drop_unwanted_vdfs(self.clock.now_ms(), all_of_them=True)
            self.duty.set(None)
            self.cpu.stop()

    def _request_tick(self, at_ms: int) -> None:
        """Run the loop's next pass no later than ``at_ms``."""
        self.schedule.request(at_ms)

    def _tick(self, now: int) -> None:
        engine = self.engine
        assert engine is not None
        # Housekeeping (whatever of it is due) runs as at the grid point this pass
        # serves, if any (node/tick_schedule.py); the deadlines' parts at ``now``.
        at = self.housekeeping.take(now, idle=self._is_idle()) or now
        with cpu_span(Component.APPS):
            if at >= self._next_usage_ms:
                self._next_usage_ms = at + USAGE_INTERVAL_MS
                usage = replace(
                    self.measure_usage(),
                    rtt_us=self.rtt.get_rtt_us(),
                    coordinate=self.rtt.get_coordinate(),
                )
                if self.apps is not None:
                    self.apps.set_host_usage(usage)  # merged with the apps' own usage
                else:
                    engine.set_local_usage(usage)
            if self.apps is not None:
                self.apps.tick(at)
            self.watchdog_keeper.check(at)
        with cpu_span(Component.CONSENSUS):
            self._apply(engine.on_tick(now))
            self.advance_leave(now)
            if self.hostile is not None:
                self._apply(Output(messages=self.hostile.on_tick(now)))
        with cpu_span(Component.DHT):
            self._apply_dht(self.dht.on_tick(now))
            self._ping_seeds(at)
            self._probe_rtt(engine, at)
        with cpu_span(Component.GOSSIP):
            # The list is our DHT contacts and our head's validators: rebuild it only
            # when either may have changed.
            peers_key = (self.dht.peers_version, engine.head)
            if peers_key != self._gossip_peers_key:
                self._gossip_peers_key = peers_key
                self.gossip.set_peers(self.routing.get_gossip_peers())
            self.routing.send_copies(self.gossip.on_tick(at))

    def _is_idle(self) -> bool:
        """No app to look after here: the slower housekeeping grid (tick_schedule.py)."""
        return self.apps is None or self.apps.is_idle()

    def _next_wakeup(self, now: int) -> int:
        """The engine's and the DHT's deadlines, and the next point of the housekeeping
        grid (node/tick_schedule.py; the idle one without apps to look after): a pass
        there runs whatever of the gossip heartbeat, the apps' and the host's usage
        rounds and the probes is due by then, so their own due times need no pass."""
        candidates = [self.housekeeping.get_next_point(now, idle=self._is_idle())]
        if self._engine_wakeup is not None:
            candidates.append(self._engine_wakeup)
        if self._dht_wakeup is not None:
            candidates.append(self._dht_wakeup)
        return max(now + 1, min(candidates))

    # --- sending -------------------------------------------------------------------------

    def _apply(self, out: Output) -> None:
        engine = self.engine
        assert engine is not None
        if self.store_failure is not None or self.identity_clash is not None or self.closed:
            return  # stopping: nothing more is accepted, sent or started
        if out.next_wakeup_ms is not None:
            self._engine_wakeup = out.next_wakeup_ms
            self._request_tick(out.next_wakeup_ms)
        for event in out.events:
            self._on_event(event)
            if self.store_failure is not None or self.identity_clash is not None:
                return
        if self._replaying:
            return
        messages = out.messages
        if self.hostile is not None:
            messages = [m for o in messages for m in self.hostile.rewrite(o)]
        for outgoing in messages:
            log_duty(outgoing, self.node_id)
            self._send_outgoing(outgoing)
        for request in out.vdf_requests:
            self.vdf_runner.start(request)

    def _send_outgoing(self, outgoing: Outgoing) -> None:
        now = self.clock.now_ms()
        for peer in self.routing.send_outgoing(outgoing, now):
            self._apply_dht(self.dht.find(peer, now))

    def _apply_dht(self, out: DhtOutput) -> None:
        if out.next_wakeup_ms is not None:
            self._dht_wakeup = out.next_wakeup_ms
            self._request_tick(out.next_wakeup_ms)
        for contact, message in out.messages:
            self.routing.send_dht(contact, message)

    # --- events --------------------------------------------------------------------------

    def _on_event(self, event: object) -> None:
        engine = self.engine
        assert engine is not None
        try:
            with cpu_span(Component.STORE):
                self.recorder.record(engine, event, replaying=self._replaying)
        except StoreError as exc:
            self._stop_on_store_failure(exc)
            return
        if isinstance(event, IdentityClash) and not self._replaying:
            self._stop_on_identity_clash(event)
        elif isinstance(event, BlockAccepted):
            self.observer.on_block_accepted(
                engine, event, self.clock.now_ms(), replaying=self._replaying
            )
        elif isinstance(event, ArchiveSyncWanted | ArchiveForwardWanted) and not self._replaying:
            self._serve_from_store(event)
        # Replayed blocks are history: reconcile starts what the head places here.
        if isinstance(event, MigrationOrder) and self.apps is not None and not self._replaying:
            self.apps.on_order(event)
        elif isinstance(event, HeadChanged) and self.apps is not None and not self._replaying:
            # A new head may assign our apps elsewhere (a reorg, a sync after a pause):
            # stale copies stop at the next tick, not a measuring interval later.
            self.apps.on_head_changed(reorg=bool(event.reverted))

    def _serve_from_store(self, event: ArchiveSyncWanted | ArchiveForwardWanted) -> None:
        """A peer syncs history pruned from memory: answer from the store."""
        engine = self.engine
        assert engine is not None
        if self.closed:
            return  # a stopped node answers nobody; its store may be closed already
        try:
            with cpu_span(Component.STORE):
                response = get_archive_response(self.store, engine, event)
        except StoreError as exc:
            self._stop_on_store_failure(exc)
            return
        if response is not None:
            self._send_outgoing(response)

    def _stop_on_identity_clash(self, clash: IdentityClash) -> None:
        """Another process holds our key: the file that keeps a restart from running
        first, then stop (the loop ends and the apps are stopped with it)."""
        self.identity_clash = clash
        data_dir = self.config.data_dir
        try:
            write_clash_file(data_dir, clash, self.clock.now_ms())
        except OSError as exc:
            logs.error(log, "cannot write the identity clash file", error=str(exc))
        logs.error(
            log,
            "identity clash: stopping",
            detail=describe_clash(data_dir, clash.report_slot),
            block=clash.block.hex()[:16],
            block_slot=clash.block_slot,
        )
        self.stopping.set()

    def _stop_on_store_failure(self, exc: StoreError) -> None:
        """A block or head the store refused is not accepted: stop at once, before the
        API, a peer or the apps act on the engine's newer state. The store holds every
        block counted so far (each committed before ``accepted``), and a restart
        re-syncs the rest once there is room again."""
        self.store_failure = exc
        full = isinstance(exc, StoreFullError)
        logs.error(
            log,
            "disk full: stopping" if full else "block store failed: stopping",
            error=str(exc),
            data_dir=str(self.config.data_dir),
        )
        self._request_tick(self.clock.now_ms())


__all__ = [
    "ChainEntry",
    "CommandReceipt",
    "Node",
    "NodeConfig",
    "NoOperatorKeyError",
    "configure_logging",
]
