"""One running node: the consensus engine, DHT and gossip driven over real sockets.

``Node.run`` owns the only event loop of a node. It feeds the sans-I/O objects
(``consensus.engine``, ``network.dht``, ``network.gossip``) with decoded messages and
wall-clock ticks, and turns their outputs into datagrams, frames, VDF evaluations in a
worker thread, and writes to the SQLite store. Paper §4 steps 1-5: a node joins the DHT
through the bootstrap node, whose address and public key every node is given.

The node knows nothing of HTTP: ``api/`` sits above it and calls its public interface
(``get_*`` and ``submit_*``, see "public interface" below); ``node_daemon.py`` builds
the process, a node with the API server around it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.assembly import make_command
from edgechain.chain.attestation import count_signers
from edgechain.chain.authority import get_last_seq
from edgechain.chain.encoding import (
    compute_submitted_app_id,
    decode_block,
    decode_genesis,
    encode_block,
    encode_genesis,
)
from edgechain.chain.model import (
    BASIS_POINTS,
    AnyBlock,
    AppSpec,
    Block,
    ChainParams,
    CommandKind,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.store import BlockStore
from edgechain.consensus.engine import ConsensusEngine, EngineConfig, LocalUsage
from edgechain.consensus.messages import (
    BlockAccepted,
    BlockMsg,
    CandidateMsg,
    CommandMsg,
    GenesisCreated,
    HeadChanged,
    MigrationOrder,
    Outgoing,
    Output,
    PeerRejected,
    Route,
    SkipVoteMsg,
    SyncResponseMsg,
    VdfRequest,
    VoteMsg,
)
from edgechain.consensus.roles import Role
from edgechain.consensus.state import BlockState, get_current_slot, get_roles
from edgechain.crypto import bls, vdf
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.keystore import load_keystore, load_or_create_keystore
from edgechain.errors import LocalError, PeerError, ValidationError
from edgechain.network.dht import DhtConfig, DhtNode, DhtOutput
from edgechain.network.gossip import Gossip, GossipConfig
from edgechain.network.transport import NetworkTransport, join_address, split_address
from edgechain.node_logging import configure_logging
from edgechain.node_priority import (
    COMMITTEE_NICE,
    PRODUCER_NICE,
    get_autogroup_nice,
    raise_thread_priority,
    set_autogroup_nice,
    set_thread_nice,
)
from edgechain.runtime.manager import AppManager, get_transfer_label
from edgechain.types import AppId, BlockHash, NodeId, SecretKey, Signature, Slot
from edgechain.wire.codec import (
    Transport,
    decode_gossip_payload,
    decode_message,
    encode_gossip_payload,
    encode_message,
    fit_sync_response,
    is_envelope_signed,
    select_transport,
)
from edgechain.wire.messages import Contact, FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong

log = logging.getLogger("edgechain.node")

USAGE_INTERVAL_MS = 5_000
MAX_ACCEPTED_LOG = 20_000


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    listen: str = "127.0.0.1:0"
    http: str = "127.0.0.1:0"
    advertise_host: str | None = None
    bootstrap: str | None = None
    bootstrap_key: bytes = b""
    chain_id: str = "edgechain"
    admin_key: bytes = b""
    ticket: bytes = b""
    open_admission: bool = False
    """Genesis only: nodes join without a ticket (labs); the admin key still rules apps."""
    genesis: bool = False
    committee: int = 8
    slot_duration_ms: int = 2_000
    vdf_target_bp: int = 2_500
    initial_difficulty: int | None = None
    labels: tuple[str, ...] = ()
    ready_file: Path | None = None
    operator_key: Path | None = None
    """A keystore file with an operator key: the node signs SUBMIT commands with it for
    local callers who present its API token (``POST /apps``)."""
    app_user: str = "nobody"
    """``USER[:GROUP]`` that process apps run as when the node is root (never root)."""


@dataclass(frozen=True)
class CommandReceipt:
    """A command the node accepted and gossiped (not yet in a block)."""

    command_hash: bytes
    seq: int
    app_id: AppId | None = None
    """SUBMIT only: the id the app will have."""


@dataclass(frozen=True)
class ChainEntry:
    """One block of the head chain and the state of its parent."""

    block_hash: BlockHash
    block: AnyBlock
    parent_state: BlockState


class NoOperatorKeyError(LocalError):
    """``submit_app`` needs an operator key in the node's configuration."""


@dataclass
class AcceptedBlock:
    hash: str
    slot: int
    skip: bool
    signers: int
    producer: str | None
    excluded: str | None
    accepted_ms: int


@dataclass
class NodeCounters:
    decode_errors: Counter[str] = field(default_factory=Counter)
    unresolved: int = 0


def _clamp_share(value: int) -> int:
    return max(0, min(BASIS_POINTS, value))


def now_ms() -> int:
    return int(time.time() * 1000)


def measure_vdf_ips(iterations: int = 20_000) -> int:
    """Iterations per second of this machine (for the genesis difficulty)."""
    started = time.perf_counter()
    vdf.prove(os.urandom(32), iterations)
    return max(1, int(iterations / max(time.perf_counter() - started, 1e-6)))


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.sk = load_or_create_keystore(config.data_dir / "node.key")
        self.pk = bls.sk_to_pk(self.sk)
        self.node_id = compute_node_id(self.pk)
        self.store = BlockStore(config.data_dir / "chain.db")
        self.operator_sk: SecretKey | None = (
            load_keystore(config.operator_key) if config.operator_key is not None else None
        )
        host, port = split_address(config.listen)
        self.transport = NetworkTransport(host, port, self._on_data)
        self._operator_seq = 0
        """The last seq this node signed with its operator key."""
        self.started = asyncio.Event()
        """Set once the node runs (engine built, store replayed, DHT joined)."""
        self.rng = random.Random(self.node_id)
        self.dht = DhtNode(self.node_id, random.Random(self.rng.getrandbits(64)), DhtConfig())
        self.gossip = Gossip(self.node_id, random.Random(self.rng.getrandbits(64)), GossipConfig())
        self.engine: ConsensusEngine | None = None
        self.counters = NodeCounters()
        self.accepted: deque[AcceptedBlock] = deque(maxlen=MAX_ACCEPTED_LOG)
        self.addresses: dict[NodeId, str] = {}
        """Source addresses of UDP datagrams: where a sender can be answered."""
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self._wake = asyncio.Event()
        # The VDF gets a thread of its own: it must never queue behind runtime calls. It
        # is the slot's critical path, so it also runs ahead of other work on the device.
        self._vdf_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="vdf", initializer=raise_thread_priority
        )
        self._vdf_running: dict[VdfRequest, Path] = {}
        self._vdf_dir = config.data_dir / "vdf"
        self._vdf_dir.mkdir(exist_ok=True)
        for leftover in self._vdf_dir.glob("*.run"):
            leftover.unlink()  # a killed run's; nothing evaluates them any more
        self._next_usage_ms = 0
        self._engine_wakeup: int | None = None
        self._dht_wakeup: int | None = None
        self._replaying = False
        self._duty_nice: int | None = None
        self._base_nice: tuple[int, int | None] = (0, None)
        self.apps: AppManager | None = None
        self._transfer_port: int | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.transport.start()
        # Before the engine: the transfer port goes into our inclusion request's labels.
        self.apps = AppManager(
            self.config.data_dir, self.node_id, self.sk, app_user=self.config.app_user
        )
        self._transfer_port = await self.apps.start(self.transport.host)
        self.engine = self._make_engine()
        self.apps.attach(self.engine)
        self._replay_store()
        self._join_dht()
        log.info("node started", extra={"fields": self.get_identity()})
        self.started.set()
        try:
            await self._loop(stop)
        finally:
            await self._close_apps()
            await self.transport.close()
            self.store.close()
            log.info("node stopped", extra={"fields": {"node_id": self.node_id.hex()}})

    async def _close_apps(self) -> None:
        if self.apps is not None:
            await self.apps.close()

    def _get_labels(self) -> tuple[str, ...]:
        if self._transfer_port is None:
            return self.config.labels
        return (*self.config.labels, get_transfer_label(self._transfer_port))

    def _make_engine(self) -> ConsensusEngine:
        cfg = self.config
        listen_host = self.transport.host
        advertise = cfg.advertise_host or (
            "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
        )
        template = None
        if cfg.genesis:
            if not cfg.admin_key:
                raise LocalError("a new chain needs an admin key (--admin-key)")
            difficulty = cfg.initial_difficulty or max(
                1, measure_vdf_ips() * cfg.slot_duration_ms * cfg.vdf_target_bp // 10_000_000
            )
            template = ChainParams(
                chain_id=cfg.chain_id,
                genesis_time_ms=0,
                slot_duration_ms=cfg.slot_duration_ms,
                committee_size=cfg.committee,
                initial_difficulty=difficulty,
                vdf_target_bp=cfg.vdf_target_bp,
                admin_key=cfg.admin_key,
                open_admission=cfg.open_admission,
            )
        engine_config = EngineConfig(
            chain_id=cfg.chain_id,
            bootstrap_key=bls.sk_to_pk(self.sk) if cfg.genesis else cfg.bootstrap_key,  # type: ignore[arg-type]
            address=join_address(advertise, self.transport.port),
            labels=self._get_labels(),
            ticket=cfg.ticket,
            genesis_template=template,
        )
        stored = self.store.get_genesis()
        genesis = decode_genesis(stored.encoded) if stored is not None else None
        signature = self.store.get_meta("genesis_signature")
        return ConsensusEngine(
            self.sk,
            engine_config,
            genesis=genesis,
            genesis_signature=Signature(signature) if signature else None,
        )

    def _replay_store(self) -> None:
        """Restart: re-validate and re-apply every stored block (parents first)."""
        engine = self.engine
        assert engine is not None
        if engine.genesis is None:
            return
        self._replaying = True
        count = 0
        try:
            for record in self.store.iter_blocks():
                data = self.store.get_block(record.hash)
                if data is None:
                    continue
                out = engine.on_message(BlockMsg(decode_block(data)), None, now_ms())
                self._apply(out)
                count += 1
        finally:
            self._replaying = False
        log.info("store replayed", extra={"fields": {"blocks": count}})

    def _join_dht(self) -> None:
        cfg = self.config
        if cfg.bootstrap and cfg.bootstrap_key:
            contact = Contact(compute_node_id(cfg.bootstrap_key), cfg.bootstrap)  # type: ignore[arg-type]
        else:
            contact = Contact(self.node_id, join_address(self.transport.host, self.transport.port))
        self._apply_dht(self.dht.join(contact, now_ms()))

    async def _loop(self, stop: asyncio.Event) -> None:
        self._base_nice = (
            os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
            get_autogroup_nice(),
        )
        try:
            while not stop.is_set():
                now = now_ms()
                self._tick(now)
                self._drop_unwanted_vdfs(now)
                self._update_priority(now)
                wake_at = self._next_wakeup(now)
                timeout = max(0.0, (wake_at - now_ms()) / 1000)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first(stop, self._wake), timeout)
        finally:
            self._drop_unwanted_vdfs(now_ms(), all_of_them=True)
            self._set_duty_priority(None)

    @staticmethod
    async def _first(*events: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _tick(self, now: int) -> None:
        engine = self.engine
        assert engine is not None
        if now >= self._next_usage_ms:
            self._next_usage_ms = now + USAGE_INTERVAL_MS
            usage = self._measure_usage()
            if self.apps is not None:
                self.apps.set_host_usage(usage)  # merged with the apps' own usage
            else:
                engine.set_local_usage(usage)
        if self.apps is not None:
            self.apps.tick(now)
        self._apply(engine.on_tick(now))
        self._apply_dht(self.dht.on_tick(now))
        self.gossip.set_peers(self._gossip_peers())
        for peer, ihave in self.gossip.on_tick(now):
            self._send_to(peer, ihave)

    def _next_wakeup(self, now: int) -> int:
        candidates = [now + 1_000, self._next_usage_ms]
        if self.apps is not None:
            candidates.append(self.apps.next_wakeup_ms)
        if self._engine_wakeup is not None:
            candidates.append(self._engine_wakeup)
        if self._dht_wakeup is not None:
            candidates.append(self._dht_wakeup)
        if self.gossip.next_wakeup_ms is not None:
            candidates.append(self.gossip.next_wakeup_ms)
        return max(now + 1, min(candidates))

    def _measure_usage(self) -> LocalUsage:
        cpu = int(psutil.cpu_percent(None) * 100)
        ram = int(psutil.virtual_memory().percent * 100)
        disk = int(psutil.disk_usage(str(self.config.data_dir)).percent * 100)
        return LocalUsage(
            cpu_bp=_clamp_share(cpu), ram_bp=_clamp_share(ram), disk_bp=_clamp_share(disk)
        )

    # --- receiving -----------------------------------------------------------------------

    def _on_data(self, data: bytes, transport: Transport, source: str) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            message, sender = decode_message(data, transport)
        except PeerError as exc:
            self.counters.decode_errors[exc.reason] += 1
            log.debug(
                "undecodable message", extra={"fields": {"reason": exc.reason, "from": source}}
            )
            return
        now = now_ms()
        if transport is Transport.DATAGRAM:
            self.addresses[sender] = source
        if isinstance(message, Ping | Pong | FindNode | Nodes):
            if transport is Transport.DATAGRAM:
                self._apply_dht(self.dht.on_message(Contact(sender, source), message, now))
        elif isinstance(message, GossipMsg):
            self._on_gossip(sender, message, now)
        elif isinstance(message, IHave):
            for peer, want in self.gossip.on_ihave(sender, message, now):
                self._send_to(peer, want)
        elif isinstance(message, IWant):
            for peer, copy in self.gossip.on_iwant(sender, message, now):
                self._send_to(peer, copy)
        else:
            if isinstance(message, BlockMsg) and self._duty_nice is None:
                # Blocks come directly only to the next slot's producer and committee
                # (engine._publish_block): we are one of them, and checking this block
                # is the first step of the duty, so it already runs raised. The loop
                # settles the priority on our actual role right after.
                self._set_duty_priority(COMMITTEE_NICE)
            self._apply(engine.on_message(message, sender, now))
        self._wake.set()

    def _on_gossip(self, sender: NodeId, message: GossipMsg, now: int) -> None:
        engine = self.engine
        assert engine is not None
        deliver, forwards = self.gossip.on_message(sender, message, now)
        try:
            inner, origin = decode_gossip_payload(message.payload) if deliver else (None, None)
        except PeerError as exc:
            # Undecodable for us, undecodable for every honest peer: not relayed.
            self.counters.decode_errors[exc.reason] += 1
            return
        if isinstance(inner, CommandMsg):
            # Cheap to check, and anyone can make one: a command is relayed only once it
            # passed our checks, so a refused one dies at the first honest hop. Blocks are
            # relayed before validation: their propagation time is the slot's budget.
            out = engine.on_message(inner, origin, now)
            self._apply(out)
            if any(isinstance(e, PeerRejected) for e in out.events):
                return
            inner = None
        for peer, copy in forwards:
            self._send_to(peer, copy)
        if inner is not None:
            self._apply(engine.on_message(inner, origin, now))

    # --- sending -------------------------------------------------------------------------

    def _apply(self, out: Output) -> None:
        engine = self.engine
        assert engine is not None
        if out.next_wakeup_ms is not None:
            self._engine_wakeup = out.next_wakeup_ms
        for event in out.events:
            self._on_event(event)
        if self._replaying:
            return
        for outgoing in out.messages:
            self._log_duty(outgoing)
            self._send_outgoing(outgoing)
        for request in out.vdf_requests:
            self._start_vdf(request)

    def _log_duty(self, outgoing: Outgoing) -> None:
        """Producer and committee actions, so a skip block can be explained from logs."""
        message = outgoing.message
        if isinstance(message, CandidateMsg):
            fields = {"slot": message.block.slot, "to": len(outgoing.to)}
            log.info("candidate sent", extra={"fields": fields})
        elif isinstance(message, BlockMsg) and isinstance(message.block, Block):
            if message.block.producer == self.node_id and outgoing.route is Route.GOSSIP:
                fields = {
                    "slot": message.block.slot,
                    "signers": count_signers(message.block.signers),
                }
                log.info("block produced", extra={"fields": fields})
        elif isinstance(message, SkipVoteMsg):
            log.info("skip vote sent", extra={"fields": {"slot": message.slot}})
        elif isinstance(message, VoteMsg):
            log.info("vote sent", extra={"fields": {"slot": message.slot}})

    def _send_outgoing(self, outgoing: Outgoing) -> None:
        message = outgoing.message
        if outgoing.route is Route.GOSSIP:
            sk = self.sk if is_envelope_signed(type(message)) else None
            payload = encode_gossip_payload(message, self.node_id, sk)  # type: ignore[arg-type]
            for peer, copy in self.gossip.publish(payload, now_ms()):
                self._send_to(peer, copy)
            return
        if isinstance(message, SyncResponseMsg):
            message = fit_sync_response(message)
        data = encode_message(message, self.node_id)
        transport = select_transport(message, data)
        for peer in outgoing.to:
            address = self._resolve(peer)
            if address is None:
                self.counters.unresolved += 1
                self._apply_dht(self.dht.find(peer, now_ms()))
                continue
            self.transport.send(address, data, transport)

    def _send_to(self, peer: NodeId, message: GossipMsg | IHave | IWant) -> None:
        address = self._resolve(peer)
        if address is None:
            self.counters.unresolved += 1
            return
        data = encode_message(message, self.node_id)
        self.transport.send(address, data, select_transport(message, data))

    def _apply_dht(self, out: DhtOutput) -> None:
        if out.next_wakeup_ms is not None:
            self._dht_wakeup = out.next_wakeup_ms
        for contact, message in out.messages:
            data = encode_message(message, self.node_id, self.sk)
            self.transport.send(contact.address, data, Transport.DATAGRAM)

    def _resolve(self, node: NodeId) -> str | None:
        """Where to reach ``node``: the address it registered on chain, else the DHT."""
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        if state is not None:
            info = state.validators.get(node)
            if info is not None:
                return info.address
        address = self.dht.get_address(node) or self.addresses.get(node)
        if address is None and engine is not None:
            for request in engine.pending_inclusions.values():
                if compute_node_id(request.public_key) == node:
                    return request.address
        return address

    def _gossip_peers(self) -> Iterable[NodeId]:
        peers = [c.node_id for c in self.dht.get_peers()]
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        if state is not None:
            peers.extend(state.validators.get_node_ids())
        return peers

    def _start_vdf(self, request: VdfRequest) -> None:
        loop = asyncio.get_running_loop()
        started = now_ms()
        log.info(
            "vdf started",
            extra={"fields": {"slot": request.slot, "iterations": request.iterations}},
        )
        # The evaluation runs while this file exists (see vdf.prove): removing it is how
        # _drop_unwanted_vdfs stops an evaluation whose result nobody wants any more.
        keep_running = self._vdf_dir / f"{request.slot}-{request.challenge.hex()[:16]}.run"
        keep_running.touch()
        self._vdf_running[request] = keep_running
        # Raised now, not at the loop's next pass: the request may come from a message
        # handler, with a backlog of other callbacks before the loop runs again.
        self._set_duty_priority(PRODUCER_NICE)
        timing: dict[str, int] = {}

        def prove() -> vdf.VdfResult:
            # Measured in the thread: tells a slow evaluation from a busy event loop.
            timing["start"] = now_ms()
            timing["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            timing["group_nice"] = get_autogroup_nice() or 0
            cpu_started = time.thread_time()
            try:
                return vdf.prove(
                    request.challenge, request.iterations, keep_running=str(keep_running)
                )
            finally:
                timing["end"] = now_ms()
                timing["cpu"] = int((time.thread_time() - cpu_started) * 1000)

        future = loop.run_in_executor(self._vdf_pool, prove)

        def done(f: asyncio.Future[vdf.VdfResult]) -> None:
            self._vdf_running.pop(request, None)
            keep_running.unlink(missing_ok=True)
            engine = self.engine
            if engine is None or f.cancelled():
                return
            now = now_ms()
            fields = {
                "slot": request.slot,
                "ms": now - started,
                "queued_ms": timing["start"] - started,
                "compute_ms": timing["end"] - timing["start"],
                "cpu_ms": timing["cpu"],
                "delivery_ms": now - timing["end"],
                "nice": timing["nice"],
                "group_nice": timing["group_nice"],
            }
            error = f.exception()
            if isinstance(error, vdf.VdfCancelledError):
                log.info("vdf dropped", extra={"fields": fields})
                return
            if error is not None:
                log.error("vdf failed", extra={"fields": {**fields, "error": repr(error)}})
                return
            log.info("vdf done", extra={"fields": fields})
            self._apply(engine.on_vdf_result(request, f.result(), now_ms()))
            self._wake.set()

        future.add_done_callback(done)

    def _drop_unwanted_vdfs(self, now: int, *, all_of_them: bool = False) -> None:
        engine = self.engine
        for request, keep_running in list(self._vdf_running.items()):
            if all_of_them or engine is None or not engine.is_vdf_wanted(request, now):
                keep_running.unlink(missing_ok=True)

    # --- events --------------------------------------------------------------------------

    def _on_event(self, event: object) -> None:
        engine = self.engine
        assert engine is not None
        if isinstance(event, BlockAccepted):
            block = engine.blocks[event.block_hash]
            weight = event.signers
            if not self._replaying:
                self.store.put_block(
                    event.block_hash, block.parent, block.slot, weight, encode_block(block)
                )
            self.accepted.append(
                AcceptedBlock(
                    hash=event.block_hash.hex(),
                    slot=event.slot,
                    skip=event.skip,
                    signers=event.signers,
                    producer=block.producer.hex() if isinstance(block, Block) else None,
                    excluded=block.excluded.hex() if isinstance(block, SkipBlock) else None,
                    accepted_ms=now_ms(),
                )
            )
            log.info(
                "block accepted",
                extra={
                    "fields": {
                        "slot": event.slot,
                        "hash": event.block_hash.hex()[:16],
                        "skip": event.skip,
                        "signers": event.signers,
                    }
                },
            )
        elif isinstance(event, HeadChanged):
            if not self._replaying:
                self.store.set_head(event.new)
            if event.reverted:
                log.info(
                    "reorg",
                    extra={
                        "fields": {"reverted": len(event.reverted), "applied": len(event.applied)}
                    },
                )
        elif isinstance(event, GenesisCreated):
            genesis_msg = engine.genesis_msg
            if genesis_msg is not None and self.store.get_genesis() is None:
                self.store.put_genesis(event.genesis_hash, encode_genesis(genesis_msg.genesis))
                self.store.put_meta("genesis_signature", genesis_msg.signature)
            log.info("genesis", extra={"fields": {"hash": event.genesis_hash.hex()[:16]}})
        elif isinstance(event, MigrationOrder):
            log.info(
                "migration order",
                extra={
                    "fields": {
                        "app": event.entry.app.hex()[:16],
                        "action": event.entry.action.name,
                        "slot": event.slot,
                    }
                },
            )
            # Replayed blocks are history: reconcile starts what the head places here.
            if self.apps is not None and not self._replaying:
                self.apps.on_order(event)
        elif isinstance(event, PeerRejected):
            log.debug("peer input rejected", extra={"fields": {"reason": event.reason}})

    def _get_current_role(self, now: int) -> tuple[int, Role]:
        """The current slot, and our role in it while its block is still to come."""
        engine = self.engine
        assert engine is not None
        state = engine.get_head_state()
        params = engine.params
        if params is None or state is None:
            return 0, Role.NONE
        slot = get_current_slot(params, now)
        if state.slot >= slot or not len(state.validators):
            return slot, Role.NONE
        roles = get_roles(engine.memo, state, Slot(slot), params.committee_size)
        return slot, roles.get_role(self.pk)

    def _update_priority(self, now: int) -> None:
        """On duty (producer or committee of the current slot): run ahead of other work
        (the loop thread and this process's autogroup, see :func:`set_autogroup_nice`).

        A slot's deadlines are the producer's VDF and candidate and the committee's
        votes, all before 2/3 of the slot. On a busy device (or a one-host testnet, where
        every node verifies the last block at the same moment) they would queue behind
        work that has no deadline. The VDF thread is raised for good; the loop thread
        only while on duty, since the VDF result and the votes pass through it (a raised
        thread waiting for the GIL held by a preempted normal one gains nothing).
        """
        if self._vdf_running:
            # Only wanted evaluations are left (the loop drops the others first).
            self._set_duty_priority(PRODUCER_NICE)
            return
        slot, role = self._get_current_role(now)
        engine = self.engine
        head = engine.get_head_state() if engine is not None else None
        if head is None or head.slot != slot - 1:
            # Every slot gets a block or a skip block: a head older than the last slot
            # means we are behind, and roles computed on it are most likely not the
            # network's. Still try the duty (the last slot may really have no block), but
            # never crowd out the real producer: several lagging nodes that each believe
            # they produce once starved it at this priority.
            role = Role.NONE
        self._set_duty_priority(
            {Role.PRODUCER: PRODUCER_NICE, Role.COMMITTEE: COMMITTEE_NICE}.get(role)
        )

    def _set_duty_priority(self, duty_nice: int | None) -> None:
        """Raise (or with None, restore) the loop thread and this process's autogroup.

        Always called on the loop thread; a no-op when nothing changes.
        """
        if duty_nice == self._duty_nice:
            return
        self._duty_nice = duty_nice
        base_thread, base_group = self._base_nice
        set_thread_nice(base_thread if duty_nice is None else min(base_thread, duty_nice))
        if base_group is not None:
            set_autogroup_nice(base_group if duty_nice is None else min(base_group, duty_nice))

    # --- public interface (api/ calls these; nothing here knows of HTTP) ----------------

    def is_ready(self) -> bool:
        """True once the engine exists (``run`` has started it)."""
        return self.engine is not None

    def has_operator_key(self) -> bool:
        return self.operator_sk is not None

    def get_identity(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id.hex(),
            "public_key": self.pk.hex(),
            "udp_port": self.transport.port,
            "tcp_port": self.transport.port,
            "transfer_port": self._transfer_port,
            "pid": os.getpid(),
        }

    def get_params(self) -> ChainParams | None:
        """The chain's parameters (None before genesis)."""
        return self.engine.params if self.engine is not None else None

    def get_head_state(self) -> BlockState | None:
        """The state after the head block (None before genesis)."""
        return self.engine.get_head_state() if self.engine is not None else None

    def get_head_chain(self) -> list[ChainEntry]:
        """The head chain, oldest first (genesis exclusive), each block with the state
        it was built on."""
        engine = self.engine
        if engine is None:
            return []
        out = []
        for block_hash in engine.get_chain():
            block = engine.blocks[block_hash]
            out.append(ChainEntry(block_hash, block, engine.states[block.parent]))
        return out

    def get_status(self) -> dict[str, Any]:
        engine = self.engine
        assert engine is not None
        now = now_ms()
        state = engine.get_head_state()
        params = engine.params
        slot, role = self._get_current_role(now)
        memory = self.process.memory_info()
        cpu = self.process.cpu_times()
        admin_key = params.admin_key if params is not None else self.config.admin_key
        return {
            "node_id": self.node_id.hex(),
            "public_key": self.pk.hex(),
            "chain_id": self.config.chain_id,
            "admin_key": admin_key.hex() if admin_key else None,
            "open_admission": params.open_admission if params is not None else None,
            "genesis": engine.genesis is not None,
            "slot": slot,
            "head": engine.head.hex() if engine.head else None,
            "head_slot": state.slot if state else None,
            "role": role.value,
            "is_validator": engine.is_validator(),
            "validators": len(state.validators) if state else 0,
            "peers": len(self.dht.get_peers()),
            "blocks_accepted": engine.stats.blocks_accepted,
            "skip_blocks_accepted": engine.stats.skip_blocks_accepted,
            "reorgs": engine.stats.reorgs,
            "peer_errors": dict(engine.stats.peer_errors),
            "decode_errors": dict(self.counters.decode_errors),
            "transport": vars(self.transport.stats),
            "rss_mb": round(memory.rss / 2**20, 1),
            "cpu_seconds": round(cpu.user + cpu.system, 2),
            "operator_key": (
                bls.sk_to_pk(self.operator_sk).hex() if self.operator_sk is not None else None
            ),
            "apps": self.apps.get_status_apps() if self.apps is not None else [],
        }

    def get_blocks(self, since: int = 0, limit: int = MAX_ACCEPTED_LOG) -> list[dict[str, Any]]:
        """Blocks this node accepted (any branch), slot >= ``since``, oldest first."""
        out: list[dict[str, Any]] = []
        for block in self.accepted:
            if block.slot >= since:
                if len(out) >= limit:
                    break
                out.append(vars(block))
        return out

    def get_chain(self) -> list[dict[str, Any]]:
        engine = self.engine
        assert engine is not None
        return [
            {
                "hash": h.hex(),
                "slot": engine.blocks[h].slot,
                "skip": isinstance(engine.blocks[h], SkipBlock),
            }
            for h in engine.get_chain()
        ]

    def get_runtime_apps(self) -> list[dict[str, Any]]:
        """The apps this node's runtime has, as it sees them."""
        return self.apps.get_views() if self.apps is not None else []

    def get_migrations(self) -> list[dict[str, Any]]:
        """This node's migration results (outbound), oldest first, with timings."""
        return list(self.apps.results) if self.apps is not None else []

    def submit_command(self, command: SignedCommand) -> CommandReceipt:
        """Check ``command`` against the head state, keep it for a block and gossip it.

        Raises the engine's ValidationError (``CommandReason``, ``no_chain``) if refused.
        """
        engine = self.engine
        if engine is None:
            raise ValidationError("no_chain", "node is starting")
        digest, out = engine.submit_command(command, now_ms())
        self._apply(out)
        self._wake.set()
        app_id = None
        if command.kind is CommandKind.SUBMIT:
            app_id = compute_submitted_app_id(command.signer, command.seq)
        return CommandReceipt(digest, command.seq, app_id)

    def submit_app(self, spec: AppSpec) -> CommandReceipt:
        """Sign a SUBMIT of ``spec`` with the node's operator key and submit it."""
        engine = self.engine
        sk = self.operator_sk
        if sk is None:
            raise NoOperatorKeyError("no operator key configured (--operator-key)")
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if state is None or params is None:
            raise ValidationError("no_chain", "no genesis yet")
        # SPEC's seq rule, and above what this node signed already: two submissions in
        # one millisecond, or before the first is in a block, still get distinct seqs.
        last = get_last_seq(state.authority, bls.sk_to_pk(sk))
        seq = max(last + 1, self._operator_seq + 1, now_ms())
        command = make_command(sk, params.chain_id, seq, CommandKind.SUBMIT, spec=spec)
        receipt = self.submit_command(command)
        self._operator_seq = seq
        return receipt


__all__ = [
    "ChainEntry",
    "CommandReceipt",
    "Node",
    "NodeConfig",
    "configure_logging",
]
