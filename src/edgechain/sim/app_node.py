"""One simulated node's app runtime (``sim/apps.py`` drives it): the copies it holds,
its transfer ledger, its migrations in and out and its fencing lease; and the checks
``runtime/manager.py`` makes against the node's own head before it starts or hands
over an app, re-implemented here where the manager reads its disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.consensus.engine import ConsensusEngine
from edgechain.orchestrator.liveness import is_down
from edgechain.orchestrator.registry import AppRecord, get_record
from edgechain.runtime.lifecycle import ChainArchive, is_planned_on_head
from edgechain.runtime.lifecycle import get_start_reason as get_lifecycle_start_reason
from edgechain.types import AppId, BlockHash, NodeId


@dataclass
class Copy:
    """An app the node's runtime holds."""

    spec: AppSpec
    version: int | None
    running: bool = True
    frozen: bool = False
    """SIGSTOPped by the watchdog (its lease expired)."""
    saving: bool = False
    """Stopped at the origin while a migration streams its state (the app's lock)."""


@dataclass
class Handover:
    """An outgoing migration (``MigrationsOut._migrate_out``'s task)."""

    block_hash: BlockHash
    entry: PlanEntry
    attempt: int = 0
    next_try_ms: int = 0
    in_flight: bool = False


@dataclass
class NodeApps:
    """One node's app runtime, transfer ledger and fencing lease."""

    index: int
    node_id: NodeId
    copies: dict[AppId, Copy] = field(default_factory=dict)
    ledger: set[tuple[BlockHash, AppId]] = field(default_factory=set)
    """Migrations received (the transfer server's ledger; on disk: survives a crash)."""
    outgoing: dict[AppId, Handover] = field(default_factory=dict)
    handed: set[tuple[BlockHash, AppId]] = field(default_factory=set)
    """Migrations this node completed as origin (``MigrationsOut``'s handed markers; on
    disk: survives a crash): never offered again."""
    arriving: set[AppId] = field(default_factory=set)
    searched: dict[AppId, BlockHash] = field(default_factory=dict)
    lease_until_ms: int = 0
    lease_apps: frozenset[AppId] = frozenset()
    next_reconcile_ms: int = 0
    head: BlockHash | None = None
    """The head of the last reconcile: a new one triggers a reconcile at once, as the
    node's HeadChanged does (``AppManager.on_head_changed``)."""
    settle_until_ms: int = 0
    """After a reorg, no start before this (``AppManager`` ``REORG_SETTLE``)."""

    def is_live_copy(self, app: AppId) -> bool:
        """Does this node run ``app`` (running, neither frozen nor stopped for a save)?"""
        copy = self.copies.get(app)
        return copy is not None and copy.running and not copy.frozen and not copy.saving


def get_start_reason(
    engine: ConsensusEngine,
    apps: NodeApps,
    record: AppRecord,
    down_after: int,
    archive: ChainArchive | None = None,
) -> str | None:
    """``runtime/lifecycle.get_start_reason`` (the node's own rule) with the model's
    transfer ledger and arrivals (``apps.ledger``, ``apps.arriving``) and its store
    (``archive``)."""
    return get_lifecycle_start_reason(
        engine,
        record,
        is_received=lambda block_hash, app: (block_hash, app) in apps.ledger,
        is_down=lambda node: is_head_down(engine, node, down_after),
        is_arriving=lambda app: app in apps.arriving,
        archive=archive,
    )


def is_head_down(engine: ConsensusEngine, node: bytes, down_after: int) -> bool:
    """``node`` is down as the next block's plan on ``engine``'s head will see it."""
    state = engine.get_head_state()
    if state is None:
        return False
    return is_down(state.last_seen, NodeId(node), state.slot + 1, down_after, state.stall)


def get_head_record(engine: ConsensusEngine, app: AppId) -> AppRecord | None:
    state = engine.get_head_state()
    return get_record(state.registry, app) if state is not None else None


def is_planned(
    engine: ConsensusEngine, block_hash: BlockHash, entry: PlanEntry, archive: ChainArchive
) -> bool:
    """The destination's check of an offer (``HeadQueries.is_planned``)."""
    return is_planned_on_head(engine, block_hash, entry, archive)
