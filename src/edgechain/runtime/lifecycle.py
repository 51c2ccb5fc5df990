"""What an app needs on this node: the head registry against what the runtime holds.

The chain says what should run (orchestrator/registry.py): a node runs exactly the
records placed on it whose state is RUNNING, at their spec version; a STOPPED record
keeps its state dir here but does not run; a record that is gone (REMOVE) takes the
app and its state with it. :func:`decide` compares one record with the runtime's copy
and names the action; it is pure, so the rules are tested on their own.
:class:`~edgechain.runtime.reconcile.Reconciler` (owned by the node's ``AppManager``)
applies the guards that need the chain or the node's locks (an app in flight is never
touched; a start needs a PLACE or a completed migration) and carries the actions out.

Exactly once (DESIGN.md, "Exactly once: the app-layer contract"): a node runs only
what its head chain assigns to it. A copy held here that the head does not assign
(placed elsewhere: re-placed while this node was away, recovered after it was taken for
down; queued; or absent after a reorg onto a branch that never had it) is *stale*: it is
stopped at once (``Action.STOP_STALE``), its state kept, unless this node is the origin
of the MIGRATE that put it elsewhere and is still handing it over (``outgoing``).

An app whose record is absent from the head registry is deleted only when the head
chain shows a REMOVE, i.e. an ancestor of the head held the record
(:func:`was_removed`). A record can also be absent because the node is behind, or after
a reorg onto a branch that never had the app; deleting then could lose the only copy of
its state, so such an app is only stopped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from edgechain.chain.model import AnyBlock, AppSpec, Block, ChainParams, PlanAction, PlanEntry
from edgechain.consensus.engine import LocalUsage
from edgechain.consensus.state import BlockState
from edgechain.orchestrator.registry import AppRecord, AppState, get_record
from edgechain.types import AppId, BlockHash, NodeId, Slot


class ChainArchive(Protocol):
    """The finalized chain below what memory holds: history that finality pruned
    (``consensus/pruning.py``), or that a restart did not load (it starts from the
    newest finalized state). The node reads its store (``node/archive.StoreArchive``);
    the simulator its run's blocks (``sim/archive.RunArchive``). Finalized blocks are on
    every later head chain, so these answer for the head chain."""

    def get_block_at(self, slot: Slot) -> tuple[BlockHash, AnyBlock] | None:
        """The finalized block at ``slot``; None for a skip or a slot never stored."""
        ...

    def get_finalized_block(self, block_hash: BlockHash) -> AnyBlock | None:
        """``block_hash``'s block if it is on the finalized chain, else None."""
        ...


class ChainView(Protocol):
    """What the app manager reads of the consensus engine (``ConsensusEngine`` is one;
    tests use a small fake chain)."""

    @property
    def head(self) -> BlockHash | None: ...

    @property
    def params(self) -> ChainParams | None: ...

    @property
    def blocks(self) -> Mapping[BlockHash, AnyBlock]: ...

    @property
    def states(self) -> Mapping[BlockHash, BlockState]: ...

    def get_head_state(self) -> BlockState | None: ...

    def get_chain(self, upto: BlockHash | None = None) -> list[BlockHash]: ...

    def set_local_usage(self, usage: LocalUsage) -> None: ...


class Action(enum.Enum):
    START = "start"
    """Placed here and RUNNING, but not running: start it (from its state dir)."""
    STOP = "stop"
    """Placed here and STOPPED, but running: stop it, keeping its state."""
    UPDATE = "update"
    """Placed here and RUNNING, but running another spec version: restart at the
    record's, same state dir."""
    CONFIRM = "confirm"
    """Running the record's spec at a version the runtime does not know (it arrived by
    a migration, which carries no version): record the version, nothing restarts."""
    REMOVE = "remove"
    """The runtime holds it and the record is gone: stop it and delete its state."""
    STOP_STALE = "stop_stale"
    """Running here, but the head assigns it elsewhere (or nowhere): stop it now, keep its
    state dir; it is a second copy, or a copy of something the chain never started."""
    DISCARD = "discard"
    """A stopped copy (handed over, or stale) of an app the head placed elsewhere at
    least K slots ago: delete it; a reorg that deep is not expected to give it back."""


@dataclass(frozen=True)
class HeldApp:
    """An app the runtime holds: whether it runs (or is frozen), its release, and how
    its last run ended when it ended on its own (``AppInfo.exit_code``)."""

    app: AppId
    running: bool
    spec: AppSpec
    version: int | None
    exit_code: int | None = None
    last_output: str = ""
    """``AppInfo.last_output``: what the ended run last wrote."""


def decide(
    node: NodeId,
    record: AppRecord | None,
    held: HeldApp | None,
    *,
    removed: bool = False,
    outgoing: bool = False,
    settled: bool = False,
) -> Action | None:
    """The action that makes ``held`` (None: the runtime has no such app) match
    ``record`` (None: the head registry has none), or None when nothing is to be done.

    ``removed``: the head chain shows the record's REMOVE (``was_removed``).
    ``outgoing``: this node is the origin of the head-chain MIGRATE that placed the app
    elsewhere and is still handing it over; its copy runs until the destination has it.
    ``settled``: the record's last move is at least K slots below the head.
    """
    if record is None:
        if held is None:
            return None
        if removed:
            return Action.REMOVE
        return Action.STOP_STALE if held.running else None
    if record.node != node:
        if held is None or outgoing:
            return None
        if held.running:
            return Action.STOP_STALE
        return Action.DISCARD if settled and record.node is not None else None
    if record.state is AppState.STOPPED:
        return Action.STOP if held is not None and held.running else None
    if held is None or not held.running:
        return Action.START
    if held.spec != record.spec:
        return Action.UPDATE
    if held.version is None:
        return Action.CONFIRM
    return Action.UPDATE if held.version != record.version else None


def was_removed(chain: ChainView, app: AppId, searched: dict[AppId, BlockHash]) -> bool:
    """True when an ancestor of the head held ``app``'s record and the head does not
    (records only disappear by REMOVE).

    ``searched`` remembers, per app, a head below which no record was found, so an app
    that is not on this chain costs one walk, then only the blocks added since.
    """
    head = chain.head
    head_state = chain.states.get(head) if head is not None else None
    if head is None or head_state is None or get_record(head_state.registry, app) is not None:
        return False
    stop_at = searched.get(app)
    block = chain.blocks.get(head)
    current = block.parent if block is not None else None
    while current is not None and current != stop_at:
        state = chain.states.get(current)
        if state is None:
            break
        if get_record(state.registry, app) is not None:
            return True
        block = chain.blocks.get(current)
        current = block.parent if block is not None else None
    searched[app] = head
    return False


def is_on_head_chain(
    engine: ChainView, block_hash: BlockHash, archive: ChainArchive | None = None
) -> bool:
    """True when ``block_hash`` is an ancestor-or-self of the engine's head; a block
    memory no longer holds is, when ``archive`` has it on the finalized chain."""
    target = engine.blocks.get(block_hash)
    current = engine.head
    if target is None:
        return archive is not None and archive.get_finalized_block(block_hash) is not None
    while current is not None and current in engine.blocks:
        if current == block_hash:
            return True
        block = engine.blocks[current]
        if block.slot < target.slot:
            return False
        current = block.parent
    return False


def is_planned_on_head(
    engine: ChainView, block_hash: BlockHash, entry: PlanEntry, archive: ChainArchive | None
) -> bool:
    """A destination's check of an offer: ``entry`` is in the plan of ``block_hash``'s
    block, on the engine's head chain. A block below memory is read once from
    ``archive``, which holds only finalized blocks: on the head chain if it has it."""
    block = engine.blocks.get(block_hash)
    below_memory = block is None
    if below_memory:
        block = archive.get_finalized_block(block_hash) if archive is not None else None
    if not isinstance(block, Block) or entry not in block.plan:
        return False
    return below_memory or is_on_head_chain(engine, block_hash)


def get_seen_by(engine: ChainView, node: NodeId, slot: Slot) -> Slot | None:
    """``node``'s latest contribution on the head chain at or before ``slot``: its
    ``last_seen`` in the state of the head chain's latest block at or before ``slot``
    (``liveness.get_lease_end_slot``); None when memory no longer reaches that block."""
    current = engine.head
    while current is not None and current in engine.blocks:
        if engine.blocks[current].slot <= slot:
            state = engine.states.get(current)
            return state.last_seen.get(node) if state is not None else None
        current = engine.blocks[current].parent
    return None


def find_placing_entry(
    engine: ChainView, record: AppRecord, archive: ChainArchive | None = None
) -> tuple[BlockHash, PlanEntry] | None:
    """The head-chain block (of ``record.last_move_slot``) and entry that put the app
    where the registry has it; None if it is out of reach.

    Memory holds the chain only a little below the finalized block, and after a restart
    only from the newest finalized state on; an app placed before that still runs where
    it was placed, and must be started again after a crash or a restart. When the walk
    runs out of memory above the move's slot, that slot is finalized, so ``archive``
    gives the block of the head chain there."""
    slot = record.last_move_slot
    if slot is None:
        return None
    current = engine.head
    while current is not None and current in engine.blocks:
        block = engine.blocks[current]
        if block.slot < slot:
            return None
        if block.slot == slot:
            return _find_entry(current, block, record.app)
        current = block.parent
    if current is None or archive is None:
        return None
    found = archive.get_block_at(slot)
    return _find_entry(found[0], found[1], record.app) if found is not None else None


def _find_entry(
    block_hash: BlockHash, block: AnyBlock, app: AppId
) -> tuple[BlockHash, PlanEntry] | None:
    if isinstance(block, Block):
        for entry in block.plan:
            if entry.app == app:
                return block_hash, entry
    return None


def get_start_reason(
    engine: ChainView,
    record: AppRecord,
    *,
    is_received: Callable[[BlockHash, AppId], bool],
    is_down: Callable[[bytes], bool],
    is_arriving: Callable[[AppId], bool],
    archive: ChainArchive | None = None,
) -> str | None:
    """Why a node may start the app the head places on it (None: it may not): a PLACE
    ("reconcile"), a RECOVER ("recover": its node was down), a migration it received
    (``is_received``: the transfer ledger; "reconcile"), or a migration whose origin is
    down and nothing is arriving ("origin down": it never arrived and never will; the
    origin is fenced, so the app restarts here, from a local replica if there is one).
    A migration still on its way is the origin's to send, never ours to start. The node
    (``AppManager``) and the simulator's model (``sim/app_node.py``) share this rule;
    ``archive``: :func:`find_placing_entry`'s look-up of a move memory no longer holds."""
    found = find_placing_entry(engine, record, archive)
    if found is None:
        return None
    block_hash, entry = found
    if entry.action is PlanAction.PLACE:
        return "reconcile"
    if entry.action is PlanAction.RECOVER:
        return "recover"
    if is_received(block_hash, record.app):
        return "reconcile"
    if is_down(entry.origin) and not is_arriving(record.app):
        return "origin down"
    return None
