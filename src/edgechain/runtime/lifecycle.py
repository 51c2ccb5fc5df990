"""What an app needs on this node: the head registry against what the runtime holds.

The chain says what should run (orchestrator/registry.py): a node runs exactly the
records placed on it whose state is RUNNING, at their spec version; a STOPPED record
keeps its state dir here but does not run; a record that is gone (REMOVE) takes the
app and its state with it. :func:`decide` compares one record with the runtime's copy
and names the action; it is pure, so the rules are tested on their own.
:class:`~edgechain.runtime.manager.AppManager` applies the guards that need the chain
or the node's locks (an app in flight is never touched; a start needs a PLACE or a
completed migration, ``_may_start_here``) and carries the actions out.

An app whose record is absent from the head registry is deleted only when the head
chain shows a REMOVE, i.e. an ancestor of the head held the record
(:func:`was_removed`). A record can also be absent because the node is behind, or after
a reorg onto a branch that never had the app (its copy here arrived by a migration the
reorg undid); deleting then would lose the only copy of its state, so such an app is
left alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from edgechain.chain.model import AnyBlock, AppSpec, Block, PlanEntry
from edgechain.consensus.engine import LocalUsage
from edgechain.consensus.state import BlockState
from edgechain.orchestrator.registry import AppRecord, AppState, get_record
from edgechain.types import AppId, BlockHash, NodeId


class ChainView(Protocol):
    """What the app manager reads of the consensus engine (``ConsensusEngine`` is one;
    tests use a small fake chain)."""

    @property
    def head(self) -> BlockHash | None: ...

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


@dataclass(frozen=True)
class HeldApp:
    """An app the runtime holds: whether it runs (or is frozen), and its release."""

    app: AppId
    running: bool
    spec: AppSpec
    version: int | None


def decide(node: NodeId, record: AppRecord | None, held: HeldApp | None) -> Action | None:
    """The action that makes ``held`` (None: the runtime has no such app) match
    ``record`` (None: the head registry has none), or None when nothing is to be done.

    A record placed elsewhere, or queued, is not this node's to act on: a stale copy
    here is left alone (an interrupted migration resolves it).
    """
    if record is None:
        return Action.REMOVE if held is not None else None
    if record.node != node:
        return None
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


def is_on_head_chain(engine: ChainView, block_hash: BlockHash) -> bool:
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


def find_placing_entry(engine: ChainView, record: AppRecord) -> tuple[BlockHash, PlanEntry] | None:
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
