"""The read side of a node's public interface: what ``api/`` and tests ask a node.

:class:`NodeQueries` is a mixin of :class:`~edgechain.node.Node` (the API holds a node
and calls ``node.get_status()`` etc., see ``api/node_interface.py``). Its methods only
read the node's state; they never feed the engine, send or write, and nothing here
knows of HTTP. The write side (``submit_*``) is ``submissions.py``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from edgechain.chain.model import AnyBlock, ChainParams, SkipBlock
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.command_status import CommandState, CommandStatus, get_command_status
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.finality_health import get_silent_voters, is_finality_held_back
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import BlockState, get_current_slot, get_roles
from edgechain.crypto import bls
from edgechain.crypto.session import SessionKeys
from edgechain.errors import RejectReason, StoreError
from edgechain.network.dht import DhtNode
from edgechain.network.gossip import Gossip
from edgechain.network.transport import NetworkTransport
from edgechain.node.archive import get_stored_chain_below, reporting_store_failure
from edgechain.node.clock import NodeClock
from edgechain.node.config import NodeConfig
from edgechain.node.cpu import CpuAccounting
from edgechain.node.duty import get_current_role
from edgechain.node.events import MAX_ACCEPTED_LOG, EventRecorder, get_stored_app_history
from edgechain.node.leaving import Leaving
from edgechain.node.metrics import NodeObserver
from edgechain.node.rtt import RttProbe
from edgechain.node.seeds import SeedContacts
from edgechain.orchestrator.fleet import HistoryEvent, compute_app_history
from edgechain.orchestrator.liveness import NO_STALL, get_node_status
from edgechain.runtime.app_cgroups import get_unavailable_reason as get_no_cgroup
from edgechain.runtime.fencing import Watchdog, get_frozen_apps
from edgechain.runtime.manager import AppManager
from edgechain.telemetry.metrics import MetricsReading
from edgechain.types import AppId, BlockHash, NodeId, PublicKey, SecretKey, Slot

if TYPE_CHECKING:
    from edgechain.hostile import Hostile


@dataclass(frozen=True)
class ChainEntry:
    """One block of the head chain and the state of its parent."""

    block_hash: BlockHash
    block: AnyBlock
    parent_state: BlockState


@dataclass
class NodeCounters:
    """Input the node's loop could not use (``decode_errors`` is in the status)."""

    decode_errors: Counter[RejectReason] = field(default_factory=Counter)


def get_stall_status(state: BlockState | None) -> dict[str, int] | None:
    """The head chain's latest stall, or None when it never stalled."""
    if state is None or state.stall == NO_STALL:
        return None
    return {"before_slot": state.stall.before, "resumed_slot": state.stall.resumed}


SKIP_RUN_LIMIT = 4_096
"""How far back :func:`get_skip_run` walks (memory holds the blocks of a run: skip
blocks carry no finality votes, so nothing below them is pruned meanwhile)."""


def get_skip_run(
    blocks: Mapping[BlockHash, AnyBlock], head: BlockHash | None
) -> dict[str, int] | None:
    """The skip blocks in a row at the tip of the head chain, and the slot of the first
    (None: the head is a full block). Committees that attest no block leave only skip
    blocks, which carry no reports, so every node looks silent; the stall above
    (no block at all) does not count them. A dead validator at the chain's floor does
    that (README, "How many nodes may fail")."""
    count, first, current = 0, None, head
    while current is not None and count < SKIP_RUN_LIMIT:
        block = blocks.get(current)
        if not isinstance(block, SkipBlock):
            break
        count, first, current = count + 1, block.slot, block.parent
    return None if first is None else {"skip_blocks": count, "since_slot": first}


def get_finality_status(engine: ConsensusEngine) -> dict[str, Any]:
    """The head chain's finality and what memory holds (``consensus/pruning.py``)."""
    state = engine.get_head_state()
    finality = state.finality if state is not None else None
    pruner = engine.pruner
    params = engine.params
    silent = get_silent_voters(state, params.down_after_slots) if state and params else ()
    return {
        "justified_epoch": finality.justified.epoch if finality else 0,
        "finalized_epoch": finality.finalized.epoch if finality else 0,
        "finalized": finality.finalized.block.hex() if finality else None,
        "finalized_slot": pruner.finalized_slot,
        "epoch_length": engine.params.epoch_length if engine.params else 0,
        "blocks_in_memory": len(engine.blocks),
        "blocks_pruned": pruner.blocks_pruned,
        "stale_blocks_ignored": pruner.stale_blocks_ignored,
        # Voters that no longer validate or are down: more than a third of them stop
        # finality, and only the admin's exclusion takes one out (finality_health.py).
        "voters": len(finality.voters) if finality else 0,
        "is_voter": finality is not None and engine.node_id in finality.voters,
        "silent_voters": [node.hex() for node in silent],
        "held_back": state is not None and is_finality_held_back(state, silent),
        "checkpoint_sync": get_checkpoint_sync_status(engine),
    }


def get_checkpoint_sync_status(engine: ConsensusEngine) -> dict[str, Any]:
    """How this node caught up from a checkpoint (``consensus/checkpoint_sync.py``)."""
    sync = engine.checkpoint
    return {
        "following": sync.is_following(),
        "installs": sync.installs,
        "failures": sync.failures,
        "blocks_followed": sync.blocks_followed,
        "anchor_slot": sync.anchor_slot,
    }


class NodeQueries:
    """Read-only public interface of a node (api/ calls these)."""

    # Set by Node.__init__ (and ``engine``, ``apps``, ``_transfer_port`` by Node.run).
    config: NodeConfig
    clock: NodeClock
    pk: PublicKey
    node_id: NodeId
    operator_sk: SecretKey | None
    transport: NetworkTransport
    dht: DhtNode
    gossip: Gossip
    engine: ConsensusEngine | None
    counters: NodeCounters
    recorder: EventRecorder
    store: BlockStore
    process: psutil.Process
    cpu: CpuAccounting
    observer: NodeObserver
    rtt: RttProbe
    seeds: SeedContacts
    leaving: Leaving
    sessions: SessionKeys
    apps: AppManager | None
    watchdog: Watchdog
    _transfer_port: int | None
    store_failure: StoreError | None
    hostile: Hostile | None

    if TYPE_CHECKING:  # Node's own

        def _stop_on_store_failure(self, exc: StoreError) -> None: ...

    def is_ready(self) -> bool:
        """True once the engine exists (``run`` has started it), until a store write
        fails (the engine then holds blocks the store does not: the node is stopping)."""
        return self.engine is not None and self.store_failure is None

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
        """The head chain memory holds, oldest first (genesis exclusive), each block
        with the state it was built on (finality prunes what lies below its retained
        window: ``get_recent_chain``)."""
        return self.get_recent_chain(sys.maxsize)

    def get_app_history(self, app: AppId) -> list[HistoryEvent]:
        """What the chain did to ``app``, in chain order: the finalized blocks' events
        from the store (memory prunes those blocks, ``consensus/pruning.py``), then the
        head chain's after the finalized slot, from memory."""
        engine = self.engine
        if engine is None:
            return []
        recent = [
            (entry.block_hash, entry.block, entry.parent_state.registry)
            for entry in self._walk_head_chain(sys.maxsize, after_slot=engine.pruner.finalized_slot)
        ]
        # A failed read stops the node as a failed write does (a damaged store).
        with reporting_store_failure(self._stop_on_store_failure):
            stored = get_stored_app_history(self.recorder.store, app)
        return stored + compute_app_history(app, recent)

    def get_command_status(self, digest: bytes) -> CommandStatus:
        engine = self.engine
        if engine is None:
            return CommandStatus(CommandState.UNKNOWN)
        return get_command_status(engine, digest)

    def get_status(self, cpu_since_slot: int | None = None) -> dict[str, Any]:
        """``cpu_since_slot``: ``cpu_per_slot`` over the slots after it only."""
        engine = self.engine
        assert engine is not None
        now = self.clock.now_ms()
        state = engine.get_head_state()
        params = engine.params
        slot, role = get_current_role(engine, self.pk, now)
        memory = self.process.memory_info()
        cpu = self.process.cpu_times()
        admin_key = params.admin_key if params is not None else self.config.admin_key
        no_cgroup = get_no_cgroup()
        return {
            "node_id": self.node_id.hex(),
            "public_key": self.pk.hex(),
            "chain_id": self.config.chain_id,
            "admin_key": admin_key.hex() if admin_key else None,
            "open_admission": params.open_admission if params is not None else None,
            "genesis": engine.genesis is not None,
            "slot": slot,
            "slot_duration_ms": params.slot_duration_ms if params is not None else None,
            "head": engine.head.hex() if engine.head else None,
            "head_slot": state.slot if state else None,
            "role": role.value,
            "is_validator": engine.is_validator(),
            # Why the chain would refuse our inclusion request (consensus/joining.py:
            # no ticket or token, one expired or revoked, banned); null: none known.
            "admission_problem": (
                str(engine.admission_problem) if engine.admission_problem is not None else None
            ),
            "validators": len(state.validators) if state else 0,
            "peers": len(self.dht.get_peers()),
            # The operator's seed addresses and who answered at each (node/seeds.py).
            "seeds": self.seeds.to_json(),
            # Smoothed RTT to random validators (node/rtt.py): what our reports carry.
            "rtt_us": self.rtt.get_rtt_us(),
            "rtt_samples": self.rtt.samples,
            # Our Vivaldi coordinate (cluster/vivaldi.py), as our next report gives it.
            "coordinate_us": [self.rtt.get_coordinate().x_us, self.rtt.get_coordinate().y_us],
            # DHT envelopes: MACs verified under session keys, keys derived (one
            # scalar multiplication each: crypto/session.py).
            "dht_sessions": {
                "keys_derived": self.sessions.derivations,
                "macs_verified": self.sessions.macs_verified,
            },
            # How long our DHT requests are waited for: the configured floor, longer
            # when answers come slowly (network/dht_requests.RequestTimer).
            "dht_timeout_ms": self.dht.timer.timeout_ms,
            "blocks_accepted": engine.stats.blocks_accepted,
            "skip_blocks_accepted": engine.stats.skip_blocks_accepted,
            "reorgs": engine.stats.reorgs,
            "leave": self.leaving.to_json(
                state, self.apps.get_busy_apps() if self.apps is not None else []
            ),
            "finality": get_finality_status(engine),
            "peer_errors": dict(engine.stats.peer_errors),
            "decode_errors": dict(self.counters.decode_errors),
            "transport": vars(self.transport.stats),
            # Push and pull repair (network/gossip.py): how many heartbeats our pushes
            # made unnecessary, how much came by IWant.
            "gossip": vars(self.gossip.stats),
            "rss_mb": round(memory.rss / 2**20, 1),
            "cpu_seconds": round(cpu.user + cpu.system, 2),
            # Milliseconds of CPU per slot by component, median and p99, on and off
            # duty (telemetry/cpu.py), over the last slots.
            "cpu_per_slot": self.cpu.log.summarize(cpu_since_slot),
            # What the node's next report says (runtime/usage.py): shares of
            # cpu_capacity cores (null: of the whole host), pressure from Linux PSI.
            "cpu_capacity": self.config.cpu_capacity,
            "cpu_bp": engine.local_usage.cpu_bp,
            "pressure_bp": engine.local_usage.pressure_bp,
            "operator_key": (
                bls.sk_to_pk(self.operator_sk).hex() if self.operator_sk is not None else None
            ),
            "apps": self.apps.get_status_apps() if self.apps is not None else [],
            # The runtimes this node runs apps with (container: --container-engine).
            "runtimes": sorted(
                kind.name.lower()
                for kind in (self.apps.runtime.kinds if self.apps is not None else ())
            ),
            "container_engine": self.config.container_engine,
            "status": self._get_liveness(state, params),
            # The head chain's latest stall (slots with no block at all), which counts
            # as no node's silence (orchestrator/liveness.py); null: none.
            "stall": get_stall_status(state),
            "skip_run": get_skip_run(engine.blocks, engine.head),
            "frozen_apps": sorted(get_frozen_apps(self.config.data_dir)),
            # The process that fences our apps (runtime/fencing.py), and how often the
            # node found it ended and started it again.
            "watchdog": {"pid": self.watchdog.pid, "restarts": self.watchdog.restarts},
            # Whether process apps run in a cgroup each, which no process of theirs can
            # leave (runtime/app_cgroups.py), and if not, why.
            "app_cgroups": {"held": not no_cgroup, "why_not": no_cgroup},
            # Migration and replica offers this node's transfer server refused, by the
            # reason it gave (not_planned: no block of our head chain carries the entry).
            "transfer_refusals": (
                dict(self.apps.server.get_stats().refused_by_reason)
                if self.apps is not None
                else {}
            ),
            # --clock-offset-ms: every time this node reads, its watchdog's too, is
            # shifted by it (node/clock.py).
            "clock_offset_ms": self.clock.offset_ms,
            # EDGECHAIN_HOSTILE (chaos experiments): the behaviours and what they did.
            "hostile": self.hostile.to_json() if self.hostile is not None else None,
        }

    def _get_liveness(self, state: BlockState | None, params: ChainParams | None) -> str | None:
        """Our own status on our head chain (``orchestrator/liveness.py``)."""
        if state is None or params is None or self.node_id not in state.last_seen:
            return None
        return get_node_status(
            state.last_seen,
            self.node_id,
            state.slot + 1,
            params.down_after_slots,
            state.authority.draining,
            state.stall,
        ).value

    def get_metrics_reading(self) -> MetricsReading | None:
        """What ``/metrics`` reads at scrape time (None before the engine runs)."""
        engine = self.engine
        if engine is None:
            return None
        state = engine.get_head_state()
        params = engine.params
        now = self.clock.now_ms()
        return MetricsReading(
            slot=get_current_slot(params, now) if params is not None else 0,
            head_slot=state.slot if state is not None else None,
            validators=len(state.validators) if state is not None else 0,
            is_validator=engine.is_validator(),
            peers=len(self.dht.get_peers()),
            rtt_us=self.rtt.get_rtt_us(),
            apps_running=(
                sum(1 for v in self.apps.views if v.running) if self.apps is not None else 0
            ),
            blocks=engine.stats.blocks_accepted,
            skip_blocks=engine.stats.skip_blocks_accepted,
            reorgs=engine.stats.reorgs,
            finalized_slot=engine.pruner.finalized_slot,
            blocks_in_memory=len(engine.blocks),
            checkpoints_installed=engine.checkpoint.installs,
            finality_voters=len(state.finality.voters) if state and state.finality else 0,
            silent_voters=(
                len(get_silent_voters(state, params.down_after_slots)) if state and params else 0
            ),
            peer_errors=dict(engine.stats.peer_errors),
            decode_errors=dict(self.counters.decode_errors),
            cpu_ns=self.cpu.meter.get_totals_ns(),
            migrations=dict(self.apps.migrations.outcomes) if self.apps is not None else {},
            app_starts_without_state=(
                self.apps.starter.starts_without_state if self.apps is not None else 0
            ),
        )

    def get_metrics_text(self) -> bytes:
        """The Prometheus exposition of this node's metrics (``telemetry/metrics.py``)."""
        return self.observer.render()

    def get_blocks(self, since: int = 0, limit: int = MAX_ACCEPTED_LOG) -> list[dict[str, Any]]:
        """Blocks this node accepted (any branch), slot >= ``since``, oldest first."""
        out: list[dict[str, Any]] = []
        for block in self.recorder.accepted:
            if block.slot >= since:
                if len(out) >= limit:
                    break
                out.append(vars(block))
        return out

    def get_chain(self) -> list[dict[str, Any]]:
        """The whole head chain, genesis exclusive: from the store below what memory
        holds (finality prunes it, ``consensus/pruning.py``), then from memory."""
        engine = self.engine
        assert engine is not None
        held = engine.get_chain()
        # A failed read stops the node as a failed write does (a damaged store).
        with reporting_store_failure(self._stop_on_store_failure):
            stored = get_stored_chain_below(self.store, held[0]) if held else []
        return [{"hash": h.hex(), "slot": slot, "skip": skip} for h, slot, skip in stored] + [
            {
                "hash": h.hex(),
                "slot": engine.blocks[h].slot,
                "skip": isinstance(engine.blocks[h], SkipBlock),
            }
            for h in held
        ]

    def get_runtime_apps(self) -> list[dict[str, Any]]:
        """The apps this node's runtime has, as it sees them."""
        return self.apps.get_views() if self.apps is not None else []

    def get_app_log(self, app: AppId, lines: int) -> dict[str, Any] | None:
        """The end of ``app``'s output on this node (``api/log_reads.py`` decides who
        may read it); None when it has none here."""
        if self.apps is None:
            return None
        tail = self.apps.runtime.get_log_tail(app, lines)
        if tail is None:
            return None
        return {
            "app_id": app.hex(),
            "node_id": self.node_id.hex(),
            "running": self.apps.runtime.is_running(app),
            "lines": list(tail.lines),
            "truncated": tail.truncated,
        }

    def get_now_ms(self) -> int:
        return self.clock.now_ms()

    def get_migrations(self) -> list[dict[str, Any]]:
        """This node's migration results (outbound), oldest first, with timings."""
        return list(self.apps.results) if self.apps is not None else []

    # --- the dashboard's (api/snapshot.py): cheap enough to ask twice a second ---------

    def get_overview(self) -> dict[str, Any]:
        """Who this node is and a few cheap figures (``get_status`` without its costly
        tables): ids, the DHT peers it knows, its resident memory in MiB."""
        return {
            "node_id": self.node_id.hex(),
            "public_key": self.pk.hex(),
            "peers": len(self.dht.get_peers()),
            "rss_mb": round(self.process.memory_info().rss / 2**20),
        }

    def get_recent_chain(self, count: int) -> list[ChainEntry]:
        """The last ``count`` blocks of the head chain (genesis exclusive) that memory
        holds, oldest first, each with the state it was built on, walking back from the
        head only as far as asked."""
        return self._walk_head_chain(count)

    def _walk_head_chain(self, count: int, *, after_slot: int = -1) -> list[ChainEntry]:
        """At most ``count`` blocks of the head chain above ``after_slot``, oldest first.

        The walk ends where memory does: at the genesis, or at the oldest block still
        held, whose parent (block and state) finality pruned below its retained window
        (``consensus/pruning.py``); that history is in the store."""
        engine = self.engine
        if engine is None or engine.head is None:
            return []
        out: list[ChainEntry] = []
        block_hash = engine.head
        while len(out) < count:
            block = engine.blocks.get(block_hash)
            if block is None or block.slot <= after_slot:  # the genesis, or far enough
                break
            parent_state = engine.states.get(block.parent)
            if parent_state is None:  # pruned below the retained window
                break
            out.append(ChainEntry(block_hash, block, parent_state))
            block_hash = block.parent
        out.reverse()
        return out

    def get_slot_roles(self) -> tuple[int, Roles | None]:
        """The current slot (this node's clock) and its elected roles: on the head state
        while the slot's block is still to come (as ``get_current_role``), else the roles
        the head block was elected under. None before genesis, on an empty validator set
        or while the head is genesis itself and its slot has not passed."""
        engine = self.engine
        if engine is None:
            return 0, None
        params, state = engine.params, engine.get_head_state()
        if params is None or state is None:
            return 0, None
        slot = get_current_slot(params, self.clock.now_ms())
        if state.slot < slot:
            parent, elected = state, Slot(slot)
        else:
            block = engine.blocks.get(state.block_hash)
            if block is None:
                return slot, None
            parent, elected = engine.states[block.parent], block.slot
        if not len(parent.validators):
            return slot, None
        return slot, get_roles(engine.memo, parent, elected, params.committee_size)
