"""The deterministic simulator: many consensus engines, one virtual clock, one seed.

Every simulated node runs the *same* :class:`ConsensusEngine` a real node runs. The
runner feeds it ticks, delivered messages and VDF results on a virtual clock
(``sim/clock.py``) over a seeded network with latency, loss, partitions and crashes
(``sim/network.py``). VDF proofs are real, at ``difficulty // proof_scale`` iterations,
while the clock is charged what the full difficulty would cost at ``vdf_ips``
(DESIGN.md, "VDF"). Simulated nodes share one :class:`Memo`, so a block is verified
once per network rather than once per node (a real node never shares it).

An auditor with its own memo re-validates every block any honest node accepts, and
the invariants of issue "Consensus engine and simulator" are checked each slot
(``sim/audit.py``); faults are injected by ``sim/faults.py`` and the result is built by
``sim/summary.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgechain.chain.assembly import EMPTY_SIGNATURE, make_inclusion_request, make_ticket
from edgechain.chain.encoding import compute_genesis_hash, encode_block
from edgechain.chain.model import AnyBlock, Block, ChainParams, Checkpoint, Genesis
from edgechain.chain.validator_set import ValidatorSet
from edgechain.consensus.context import DEFAULT_REPORT_INTERVAL_SLOTS
from edgechain.consensus.engine import ConsensusEngine, EngineConfig
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    ArchiveSyncWanted,
    BlockAccepted,
    BlockMsg,
    CandidateMsg,
    CheckpointInstalled,
    ForwardSyncResponseMsg,
    HeadChanged,
    Message,
    Output,
    ReportMsg,
    Route,
    StateResponseMsg,
    SyncResponseMsg,
    VdfRequest,
)
from edgechain.consensus.state import (
    BlockState,
    Memo,
    get_slot_start_ms,
)
from edgechain.crypto import bls, vdf
from edgechain.errors import RejectReason
from edgechain.network.dht import DhtNode, DhtOutput
from edgechain.network.gossip import Gossip, GossipConfig
from edgechain.sim.apps import AppLayer, AppModelConfig
from edgechain.sim.archive import serve_archive, serve_forward
from edgechain.sim.audit import Auditor, check_invariants
from edgechain.sim.byzantine import BEHAVIOURS, ReportDropper, make_byzantine_factory
from edgechain.sim.clock import MILLISECOND, SimClock, Timer
from edgechain.sim.coordinates import CoordinateLayer
from edgechain.sim.faults import (
    APP_SCENARIOS,
    DEFAULT_SCENARIO_APPS,
    LATE_SCENARIOS,
    inject_faults,
)
from edgechain.sim.geography import Geography, compute_geography
from edgechain.sim.network import LinkProfile, SimNetwork, Uniform
from edgechain.sim.report_metrics import ReportMetrics
from edgechain.sim.summary import SimResult, build_result, compute_result_digest
from edgechain.testing import ADMIN, Identity, make_identity
from edgechain.types import BlockHash, NodeId, Signature
from edgechain.wire.messages import Contact, FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong

SCENARIOS = (
    "none",
    "crash-producers",
    "partition-heal",
    "byzantine-producer",
    "report-dropper",
    "lossy",
    "churn",
    "app-host-crash",
    "app-host-pause",
    "reorg-apps",
    "late-join",
)


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 20
    committee: int = 8
    slots: int = 30
    slot_duration_ms: int = 2_000
    latency_ms: tuple[int, int] = (0, 5)
    seed: int = 1
    faults: str = "none"
    vdf_ips: int = 180_000
    """Iterations per second the virtual clock charges (measured: chiavdf ~180k/s here)."""
    proof_scale: int = 1_000
    vdf_target_bp: int = 2_500
    send_reports: bool = True
    nodes_per_cluster: int = 20
    agreement_depth: int = 4
    """Honest nodes must agree on everything older than this many slots."""
    convergence_slots: int = 6
    """After a partition heals, one head everywhere within this many slots."""
    overlay: str = "gossip"
    """``gossip``: every node runs the real DHT (``network/dht.py``) and gossip
    (``network/gossip.py``) objects, and gossip spreads through DHT neighbours.
    ``broadcast``: a gossiped message goes straight to every node, plus the relay below."""
    gossip_relay: int = 4
    """With ``broadcast``: each node forwards a block it sees first to this many random
    peers; 0 makes gossip a single direct broadcast."""
    gossip_fanout: int = 8
    gossip_heartbeat_ms: int = 2_000
    preset_genesis: bool = False
    """Start from a genesis holding every node, as if the bootstrap node had gathered
    all requests (skips the join phase, which is not what large runs measure)."""
    trace: bool = True
    """Hash every network event into a digest (byte-identical-trace checks)."""
    apps: int = 0
    """Apps the admin submits after genesis; > 0 (or an app scenario) runs the app
    layer and its exactly-once auditor (``sim/apps.py``)."""
    down_after_slots: int = 12
    """K (``ChainParams.down_after_slots``)."""
    app_model: AppModelConfig = field(default_factory=AppModelConfig)
    geo_regions: int = 0
    """0: uniform latency as before; N > 0: nodes in N regions, delay by distance
    (``sim/geography.py``) plus the ``latency_ms`` draw as jitter."""


WALL_CHECK_STEP = 50 * MILLISECOND
"""Virtual time run between checks of ``run``'s wall-clock limit."""


@dataclass
class SimNode:
    index: int
    ident: Identity
    engine: ConsensusEngine
    honest: bool = True
    up: bool = True
    timer: Timer[Any] | None = None
    timer_at: int | None = None
    gossip: Gossip | None = None
    dht: DhtNode | None = None
    dht_wakeup: int | None = None
    peers_version: int = -1
    """The DHT membership version the gossip peer list was last built from."""


SimPayload = Message | GossipMsg | IHave | IWant | Ping | Pong | FindNode | Nodes


def _message_size(msg: Any, memo: Memo) -> int:
    """Approximate wire size; blocks are charged their canonical encoding."""
    if isinstance(msg, BlockMsg | CandidateMsg):
        return memo.get(("size", id(msg.block)), lambda: (msg.block, len(encode_block(msg.block))))[
            1
        ]
    if isinstance(msg, ReportMsg):
        return 64 + 180 * len(msg.reports)
    if isinstance(msg, SyncResponseMsg | ForwardSyncResponseMsg):
        return 64 + sum(_message_size(BlockMsg(b), memo) for b in msg.blocks)
    if isinstance(msg, StateResponseMsg):
        return 64 + len(msg.state)
    return 200


class Simulation:
    """Build with a config, then :meth:`run`. Same config, same result (wall time aside)."""

    def __init__(
        self,
        config: SimConfig,
        *,
        engine_factory: Callable[[int, Identity, EngineConfig, Memo], ConsensusEngine]
        | None = None,
        byzantine: frozenset[int] = frozenset(),
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if config.faults not in SCENARIOS:
            raise ValueError(f"unknown fault scenario {config.faults!r}; one of {SCENARIOS}")
        if config.faults == "byzantine-producer" and engine_factory is None:
            # Nodes 1..6 each misbehave one way (sim/byzantine.py); the rest are honest.
            assignment = {i + 1: kind for i, kind in enumerate(BEHAVIOURS) if i + 1 < config.nodes}
            engine_factory = make_byzantine_factory(assignment)
            byzantine = frozenset(assignment)
        elif config.faults == "report-dropper" and engine_factory is None:
            # Every fourth node (1, 5, 9, ...) drops every report it should relay.
            droppers: dict[int, type[ConsensusEngine]] = dict.fromkeys(
                range(1, config.nodes, 4), ReportDropper
            )
            engine_factory = make_byzantine_factory(droppers)
            byzantine = frozenset(droppers)
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = SimClock()
        low, high = config.latency_ms
        self.geography: Geography | None = None
        if config.geo_regions > 0:
            # The ids the nodes get below (node i is make_identity(i, b"sim")), in order.
            node_ids = [make_identity(i, b"sim").node for i in range(config.nodes)]
            self.geography = compute_geography(node_ids, config.geo_regions, config.seed)
        self.net: SimNetwork[SimPayload] = SimNetwork(
            config.seed,
            self.clock,
            profile=LinkProfile(latency=Uniform(low * MILLISECOND, high * MILLISECOND)),
            trace=config.trace,
            base_latency=None if self.geography is None else self.geography.get_one_way_us,
        )
        self.memo = Memo(
            randomness=hashlib.sha256(b"edgechain/sim" + config.seed.to_bytes(8, "big")).digest(),
            # Shared by every simulated node: per-block entries, plus per-node ones.
            max_entries=8_192 + 300 * config.nodes,
        )
        self.progress = progress
        self.byzantine = byzantine
        self.params = ChainParams(
            chain_id=f"sim-{config.seed}",
            genesis_time_ms=0,
            slot_duration_ms=config.slot_duration_ms,
            committee_size=config.committee,
            initial_difficulty=max(
                1, config.vdf_ips * config.slot_duration_ms * config.vdf_target_bp // 10_000_000
            ),
            vdf_target_bp=config.vdf_target_bp,
            admin_key=ADMIN.pk,
            nodes_per_cluster=config.nodes_per_cluster,
            down_after_slots=config.down_after_slots,
        )
        self.nodes: list[SimNode] = []
        self.by_id: dict[NodeId, SimNode] = {}
        self.accept_times: dict[BlockHash, int] = {}
        self.blocks: dict[BlockHash, AnyBlock] = {}
        self.finalized_by_node: dict[int, Checkpoint] = {}
        # The simulated nodes keep the engine's report interval.
        self.report_metrics = ReportMetrics(DEFAULT_REPORT_INTERVAL_SLOTS)
        """How reports travel (sim/report_metrics.py, paper Fig. 12)."""
        self.slots_run = 0
        """Slots completed so far (fewer than configured if a wall-time limit stopped it)."""
        self.validators_checked: dict[int, tuple[ValidatorSet, ValidatorSet]] = {}
        """Node index → (its head's set, the auditor's) last found equal."""
        self.violations: list[str] = []
        self.auditor: Auditor | None = None
        self.genesis_slot_ms: int | None = None
        self.reorgs = 0
        self.checkpoints_installed = 0
        """Checkpoint syncs that adopted a state fetched from a peer."""
        self.peer_errors: Counter[RejectReason] = Counter()
        self.heal_slot: int | None = None
        self.finality_marks: list[tuple[str, dict[int, int]]] = []
        """Each node's finalized epoch when a partition starts and when it heals."""
        self.crashed_producers: list[tuple[int, NodeId]] = []
        self.apps: AppLayer | None = None
        self.coordinates = (
            None
            if self.geography is None
            else CoordinateLayer(
                self.geography, config.seed, config.slot_duration_ms, config.nodes_per_cluster
            )
        )
        """Vivaldi samples and cluster latency (sim/coordinates.py), with a geography."""
        self.app_victim: int | None = None
        self.app_victim_apps = 0
        """Running apps the majority head placed on the app-host fault's victim."""
        self._vdf_cache: dict[tuple[bytes, bytes, int], vdf.VdfResult] = {}
        self.relayed: dict[int, set[int]] = {}
        self.tokens: dict[bytes, tuple[Message, NodeId]] = {}
        """Gossip payload token -> (message, origin): the gossip objects run for real on
        small tokens instead of re-encoding a block at every hop."""
        bootstrap = make_identity(0, b"sim")
        self.bootstrap = bootstrap
        idents = [bootstrap] + [make_identity(i, b"sim") for i in range(1, config.nodes)]
        configs = []
        for i, ident in enumerate(idents):
            engine_config = EngineConfig(
                chain_id=self.params.chain_id,
                genesis_key=bootstrap.pk,
                address=f"sim:{i}",
                labels=("region-a" if i % 2 == 0 else "region-b",),
                ticket=make_ticket(ADMIN.sk, self.params.chain_id, ident.pk),
                genesis_template=self.params if i == 0 else None,
                genesis_delay_ms=1_000,
                proof_scale=config.proof_scale,
                send_reports=config.send_reports,
            )
            configs.append(engine_config)
        genesis, genesis_sig = self._make_preset_genesis(idents, configs)
        for i, (ident, engine_config) in enumerate(zip(idents, configs, strict=True)):
            factory = engine_factory if (engine_factory and i in byzantine) else None
            engine = (
                factory(i, ident, engine_config, self.memo)
                if factory
                else ConsensusEngine(
                    ident.sk,
                    engine_config,
                    memo=self.memo,
                    genesis=genesis,
                    genesis_signature=genesis_sig,
                )
            )
            if factory and genesis is not None:
                engine._adopt_genesis(genesis, genesis_sig or EMPTY_SIGNATURE)
            node = SimNode(i, ident, engine, honest=i not in byzantine)
            if config.overlay == "gossip":
                rng = random.Random(config.seed * 1_000_003 + i)
                node.dht = DhtNode(ident.node, random.Random(rng.getrandbits(64)))
                gossip_config = GossipConfig(
                    fanout=config.gossip_fanout, heartbeat_ms=config.gossip_heartbeat_ms
                )
                node.gossip = Gossip(ident.node, random.Random(rng.getrandbits(64)), gossip_config)
            self.nodes.append(node)
            self.by_id[ident.node] = node

    def _make_preset_genesis(
        self, idents: list[Identity], configs: list[EngineConfig]
    ) -> tuple[Genesis | None, Signature | None]:
        if not self.config.preset_genesis:
            return None, None
        requests = sorted(
            (
                make_inclusion_request(ident.sk, c.address, c.labels, c.ticket)
                for ident, c in zip(idents, configs, strict=True)
            ),
            key=lambda r: r.public_key,
        )
        params = dataclasses.replace(self.params, genesis_time_ms=1_000)
        genesis = Genesis(params, tuple(requests), 0)
        return genesis, bls.sign(self.bootstrap.sk, compute_genesis_hash(genesis))

    # --- driving -----------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock.now // MILLISECOND

    def _start_node(self, node: SimNode, at_ms: int) -> None:
        node.up = True
        self.net.register(node.ident.node, self._deliver)
        self.net.node_up(node.ident.node)
        if node.dht is not None:
            bootstrap = Contact(self.bootstrap.node, self.bootstrap.node.hex())
            self._handle_dht(node, node.dht.join(bootstrap, self.now_ms()))
        self._arm(node, at_ms)

    def _arm(self, node: SimNode, at_ms: int | None) -> None:
        if at_ms is None or not node.up:
            return
        at_ms = max(at_ms, self.now_ms())
        if node.timer is not None and node.timer.pending and node.timer_at is not None:
            if node.timer_at <= at_ms:
                return
            node.timer.cancel()
        node.timer_at = at_ms
        node.timer = self.clock.schedule(at_ms * MILLISECOND, lambda: self._wake(node))

    def _wake(self, node: SimNode) -> None:
        node.timer = None
        node.timer_at = None
        if not node.up:
            return
        now = self.now_ms()
        if node.dht is not None:
            self._handle_dht(node, node.dht.on_tick(now))
        if node.gossip is not None:
            self._refresh_peers(node)
            for peer, ihave in node.gossip.on_tick(now):
                self.net.send(node.ident.node, peer, ihave, 64 + 32 * len(ihave.message_ids))
        self._handle(node, node.engine.on_tick(now))

    def _refresh_peers(self, node: SimNode) -> None:
        assert node.gossip is not None and node.dht is not None
        # Rebuilding the list walks 256 buckets; at 1000 nodes it was a quarter of the run.
        if node.dht.peers_version != node.peers_version:
            node.peers_version = node.dht.peers_version
            node.gossip.set_peers(c.node_id for c in node.dht.get_peers())

    def _handle_dht(self, node: SimNode, out: DhtOutput) -> None:
        if out.next_wakeup_ms is not None:
            node.dht_wakeup = out.next_wakeup_ms
        for contact, message in out.messages:
            self.net.send(node.ident.node, NodeId(bytes.fromhex(contact.address)), message, 120)
        if out.next_wakeup_ms is not None:
            self._arm(node, out.next_wakeup_ms)

    def _deliver(self, src: NodeId, dst: NodeId, payload: SimPayload, at: int) -> None:
        node = self.by_id[dst]
        if not node.up:
            return
        now = self.now_ms()
        if isinstance(payload, Ping | Pong | FindNode | Nodes):
            if node.dht is not None:
                self._handle_dht(node, node.dht.on_message(Contact(src, src.hex()), payload, now))
            return
        if isinstance(payload, GossipMsg | IHave | IWant):
            self._on_gossip(node, src, payload, now)
            return
        if isinstance(payload, ReportMsg):
            self.report_metrics.on_delivered(dst, payload.reports, now)
        if (
            isinstance(payload, BlockMsg)
            and self.config.overlay == "broadcast"
            and self.config.gossip_relay
        ):
            self._relay(node, payload)
        self._handle(node, node.engine.on_message(payload, src, now))

    def _on_gossip(
        self, node: SimNode, src: NodeId, payload: GossipMsg | IHave | IWant, now: int
    ) -> None:
        gossip = node.gossip
        if gossip is None:
            return
        me = node.ident.node
        if isinstance(payload, IHave):
            for peer, want in gossip.on_ihave(src, payload, now):
                self.net.send(me, peer, want, 64 + 32 * len(want.message_ids))
            return
        if isinstance(payload, IWant):
            for peer, copy in gossip.on_iwant(src, payload, now):
                self.net.send(me, peer, copy, self._gossip_size(copy))
            return
        deliver, forwards = gossip.on_message(src, payload, now)
        for peer, copy in forwards:
            self.net.send(me, peer, copy, self._gossip_size(copy))
        if deliver:
            message, origin = self.tokens[payload.payload]
            self._handle(node, node.engine.on_message(message, origin, now))

    def _gossip_size(self, msg: GossipMsg) -> int:
        return 48 + _message_size(self.tokens[msg.payload][0], self.memo)

    def _publish(self, node: SimNode, message: Message) -> None:
        assert node.gossip is not None
        token = len(self.tokens).to_bytes(8, "big")
        self.tokens[token] = (message, node.ident.node)
        self._refresh_peers(node)
        for peer, copy in node.gossip.publish(token, self.now_ms()):
            self.net.send(node.ident.node, peer, copy, self._gossip_size(copy))

    def _relay(self, node: SimNode, msg: BlockMsg) -> None:
        """Gossip forwarding on first sight (de-duplicated by block identity)."""
        seen = self.relayed.setdefault(node.index, set())
        key = id(msg.block)
        if key in seen:
            return
        seen.add(key)
        if len(seen) > 4096:
            seen.clear()
        size = _message_size(msg, self.memo)
        for _ in range(self.config.gossip_relay):
            peer = self.nodes[self.rng.randrange(len(self.nodes))]
            if peer is not node:
                self.net.send(node.ident.node, peer.ident.node, msg, size)

    def send_direct(self, node: SimNode, message: Message, dst: NodeId) -> None:
        """One message from ``node`` to ``dst`` (sized like any other)."""
        if dst != node.ident.node and dst in self.by_id:
            self.net.send(node.ident.node, dst, message, _message_size(message, self.memo))

    def _handle(self, node: SimNode, out: Output) -> None:
        src = node.ident.node
        for outgoing in out.messages:
            size = _message_size(outgoing.message, self.memo)
            if outgoing.route is Route.GOSSIP and node.gossip is not None:
                self._publish(node, outgoing.message)
                continue
            if outgoing.route is Route.GOSSIP:
                targets: Any = (n.ident.node for n in self.nodes if n is not node)
            else:
                targets = outgoing.to
            for dst in targets:
                if dst != src and dst in self.by_id:
                    self.net.send(src, dst, outgoing.message, size)
        for request in out.vdf_requests:
            self._run_vdf(node, request)
        for event in out.events:
            if isinstance(event, BlockAccepted):
                self._on_accepted(node, event)
            elif isinstance(event, HeadChanged) and event.reverted and node.honest:
                self.reorgs += 1
            elif isinstance(event, ArchiveSyncWanted) and node.honest:
                serve_archive(self, node, event)
            elif isinstance(event, ArchiveForwardWanted) and node.honest:
                serve_forward(self, node, event)
            elif isinstance(event, CheckpointInstalled):
                self.checkpoints_installed += 1
        self._arm(node, out.next_wakeup_ms)
        if node.gossip is not None and node.gossip.next_wakeup_ms is not None:
            self._arm(node, node.gossip.next_wakeup_ms)

    def _run_vdf(self, node: SimNode, request: VdfRequest) -> None:
        key = (bytes(request.group), bytes(request.challenge), request.iterations)
        result = self._vdf_cache.get(key)
        if result is None:
            result = vdf.prove(request.group, request.challenge, request.iterations)
            self._vdf_cache[key] = result
        delay_us = request.difficulty * 1_000_000 // self.config.vdf_ips

        def finish() -> None:
            if node.up:
                self._handle(node, node.engine.on_vdf_result(request, result, self.now_ms()))

        self.clock.call_later(delay_us, finish)

    def _on_accepted(self, node: SimNode, event: BlockAccepted) -> None:
        if not node.honest:
            return
        block = event.block
        first = event.block_hash not in self.blocks
        self.blocks.setdefault(event.block_hash, block)
        self.accept_times.setdefault(event.block_hash, self.now_ms())
        if self.auditor is None and node.engine.genesis is not None:
            self.auditor = Auditor(
                node.engine.genesis, self.config.proof_scale, self.memo.signatures
            )
        if self.auditor is not None:
            parent = self.auditor.states.get(block.parent) if first else None
            if isinstance(block, Block) and parent is not None:
                live = (n.ident.node for n in self.nodes if n.up and n.honest)
                self.report_metrics.on_block(block, parent, live)
            self.auditor.check(block, event.block_hash)

    # --- the run -----------------------------------------------------------------------

    def run(self, max_wall_seconds: float | None = None) -> SimResult:
        """Run every configured slot, or stop once ``max_wall_seconds`` of wall time
        have passed (checked every ``WALL_CHECK_STEP`` of virtual time; the summary's
        ``slots_run`` counts the slots completed)."""
        started = time.perf_counter()
        for node in self.nodes:
            late = self.config.faults in LATE_SCENARIOS
            if not (late and node.index >= self.config.nodes * 4 // 5):
                self._start_node(node, 0)
        # Genesis is created by the bootstrap node once committee + 1 requests are in.
        while self.nodes[0].engine.genesis is None and self.clock.run_next():
            pass
        genesis = self.nodes[0].engine.genesis
        if genesis is None:
            raise RuntimeError("the bootstrap node never created genesis")
        self.genesis_slot_ms = genesis.params.genesis_time_ms
        params = genesis.params
        scenario_apps = DEFAULT_SCENARIO_APPS if self.config.faults in APP_SCENARIOS else 0
        apps = self.config.apps or scenario_apps
        if apps:
            self.apps = AppLayer(self, params, apps, self.config.app_model)
            self.apps.start()
        end_slot = self.config.slots
        deadline = None if max_wall_seconds is None else started + max_wall_seconds
        for slot in range(1, end_slot + 1):
            inject_faults(self, slot, params)
            if self.coordinates is not None:
                self.coordinates.on_slot(self, slot)
            if not self._run_slot(get_slot_start_ms(params, slot + 1) * MILLISECOND, deadline):
                break
            check_invariants(self, slot, params)
            self.slots_run = slot
            if self.progress:
                self.progress(slot, end_slot)
        return build_result(self, params, time.perf_counter() - started)

    def _run_slot(self, end: int, deadline: float | None) -> bool:
        """Run the clock to ``end``; False if the wall-clock ``deadline`` came first.

        Checked every 50 virtual ms, since one slot of a 10,000-node run takes minutes."""
        if deadline is None:
            self.clock.run_until(end)
            return True
        while self.clock.now < end:
            self.clock.run_until(min(end, self.clock.now + WALL_CHECK_STEP))
            if time.perf_counter() > deadline:
                return False
        return True

    # --- faults ------------------------------------------------------------------------

    def _honest_up(self) -> list[SimNode]:
        return [n for n in self.nodes if n.honest and n.up and n.engine.genesis is not None]

    def get_majority_head(self) -> BlockState | None:
        honest = self._honest_up()
        heads = Counter(n.engine.head for n in honest if n.engine.head)
        if not heads:
            return None
        head, _ = max(heads.items(), key=lambda kv: (kv[1], kv[0]))
        return next(n.engine.states[head] for n in honest if head in n.engine.states)


def run_simulation(config: SimConfig, **kwargs: Any) -> SimResult:
    return Simulation(config, **kwargs).run()


__all__ = [
    "SCENARIOS",
    "SimConfig",
    "SimResult",
    "Simulation",
    "compute_result_digest",
    "field",
    "run_simulation",
]
