"""The deterministic simulator: many consensus engines, one virtual clock, one seed.

Every simulated node runs the *same* :class:`ConsensusEngine` a real node runs; the
nodes are built from a :class:`SimConfig` (``sim/config.py``) by ``sim/world.py``. The
runner feeds each engine ticks, delivered messages and VDF results on a virtual clock
(``sim/clock.py``); the messages travel through ``sim/transport.py`` over a seeded
network with latency, loss, partitions and crashes (``sim/network.py``). VDF proofs
are real, at ``difficulty // proof_scale`` iterations, while the clock is charged what
the full difficulty would cost at ``vdf_ips`` (DESIGN.md, "VDF"). Simulated nodes
share one :class:`Memo`, so a block is verified once per network rather than once per
node (a real node never shares it).

An auditor with its own memo re-validates every block any honest node accepts, and
the invariants of issue "Consensus engine and simulator" are checked each slot
(``sim/audit.py``); faults are injected by ``sim/faults.py`` and the result is built by
``sim/summary.py``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import field
from typing import Any

from edgechain.chain.model import AnyBlock, Block, Checkpoint
from edgechain.chain.validator_set import ValidatorSet
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    ArchiveSyncWanted,
    BlockAccepted,
    CheckpointInstalled,
    HeadChanged,
    Output,
    VdfRequest,
)
from edgechain.consensus.state import (
    BlockState,
    Memo,
    get_slot_start_ms,
)
from edgechain.crypto import vdf
from edgechain.errors import RejectReason
from edgechain.sim.apps import AppLayer
from edgechain.sim.archive import serve_archive, serve_forward
from edgechain.sim.audit import Auditor, check_invariants
from edgechain.sim.clock import MILLISECOND, SimClock
from edgechain.sim.config import SCENARIOS, SimConfig
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
from edgechain.sim.transport import SimPayload, Transport
from edgechain.sim.world import (
    EngineFactory,
    SimNode,
    choose_engines,
    make_chain_params,
    make_nodes,
)
from edgechain.testing import make_identity
from edgechain.types import BlockHash, NodeId

WALL_CHECK_STEP = 50 * MILLISECOND
"""Virtual time run between checks of ``run``'s wall-clock limit."""


class Simulation:
    """Build with a config, then :meth:`run`. Same config, same result (wall time aside).

    It builds the world (``sim/world.py``) and owns the transport (``sim/transport.py``);
    what it keeps is the run itself: the nodes' timers, what their engines return, the
    VDF they ask for, and the slot loop with its faults and checks."""

    def __init__(
        self,
        config: SimConfig,
        *,
        engine_factory: EngineFactory | None = None,
        byzantine: frozenset[int] = frozenset(),
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if config.faults not in SCENARIOS:
            raise ValueError(f"unknown fault scenario {config.faults!r}; one of {SCENARIOS}")
        engine_factory, byzantine = choose_engines(config, engine_factory, byzantine)
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = SimClock()
        low, high = config.latency_ms
        self.geography: Geography | None = None
        if config.geo_regions > 0:
            # The ids sim/world.py gives the nodes (node i is make_identity(i, b"sim")), in order.
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
        self.params = make_chain_params(config)
        self.accept_times: dict[BlockHash, int] = {}
        self.blocks: dict[BlockHash, AnyBlock] = {}
        self.finalized_by_node: dict[int, Checkpoint] = {}
        # The simulated nodes report at the interval the genesis parameters give.
        self.report_metrics = ReportMetrics(self.params.report_interval_slots)
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
        self.nodes = make_nodes(config, self.params, self.memo, engine_factory, byzantine)
        self.by_id: dict[NodeId, SimNode] = {node.ident.node: node for node in self.nodes}
        self.bootstrap = self.nodes[0].ident
        self.transport = Transport(
            config,
            net=self.net,
            clock=self.clock,
            memo=self.memo,
            rng=self.rng,
            nodes=self.nodes,
            by_id=self.by_id,
            bootstrap=self.bootstrap.node,
            report_metrics=self.report_metrics,
            handle=self._handle,
            arm=self._arm,
        )
        """Carries the nodes' messages (sim/transport.py)."""

    # --- driving -----------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock.now // MILLISECOND

    def _start_node(self, node: SimNode, at_ms: int) -> None:
        node.up = True
        self.transport.connect(node)
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
        # "Now" in milliseconds may lie a fraction of one behind the clock (an engine
        # asks for a pass at once after a message that moved its head).
        at = max(at_ms * MILLISECOND, self.clock.now)
        node.timer = self.clock.schedule(at, lambda: self._wake(node))

    def _wake(self, node: SimNode) -> None:
        node.timer = None
        node.timer_at = None
        if not node.up:
            return
        now = self.now_ms()
        self.transport.on_tick(node, now)
        self._handle(node, node.engine.on_tick(now))

    def _handle(self, node: SimNode, out: Output) -> None:
        self.transport.send(node, out.messages)
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
    "SimNode",
    "SimResult",
    "Simulation",
    "compute_result_digest",
    "field",
    "run_simulation",
]
