"""An app's history (``GET /apps/{app}/history``): every app's events computed at once
(``compute_fleet_history``) are each app's own, each finality advance carries the blocks
it finalized (collected before pruning), and the node answers from its store for the
finalized blocks memory has pruned, from memory after them.

The chain is real chain state (``test_snapshot.World``): commands signed by the test
admin, applied with the consensus transition.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.forkchoice import ForkChoice
from edgechain.chain.model import (
    AnyBlock,
    AppSpec,
    Block,
    Checkpoint,
    CommandKind,
    PlanAction,
    PlanEntry,
    RuntimeKind,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.store.block_store import BlockStore
from edgechain.chain.validator_set import get_removed_nodes
from edgechain.consensus.messages import FinalityAdvanced, Output
from edgechain.consensus.pruning import RETAIN_SLOTS, ChainPruner
from edgechain.consensus.state import BlockState
from edgechain.node.events import put_finalized_history
from edgechain.orchestrator.fleet import (
    ChainStep,
    HistoryEvent,
    compute_app_history,
    compute_fleet_history,
)
from edgechain.orchestrator.registry import Registry, get_record
from edgechain.testing import ADMIN, make_identity
from edgechain.types import AppId, BlockHash, Slot

from .test_snapshot import World

SPEC_V2 = AppSpec(name="web", runtime=RuntimeKind.PROCESS, command=("/bin/sleep", "9"))


def reference_app_history(
    app: AppId, chain: Iterable[tuple[BlockHash, AnyBlock, Registry]]
) -> list[HistoryEvent]:
    """``compute_app_history`` as it was before every app's history was computed at
    once: the oracle the shared code must still agree with."""
    events: list[HistoryEvent] = []
    for block_hash, block, before in chain:
        placed = get_record(before, app)
        for node in get_removed_nodes(block):
            if placed is not None and placed.node == node:
                events.append(HistoryEvent(block.slot, block_hash, "node_left", node=node))
        if not isinstance(block, Block):
            continue
        for entry in block.plan:
            if entry.app != app:
                continue
            kind = entry.action.name.lower()
            origin = entry.origin if entry.action is not PlanAction.PLACE else None
            events.append(
                HistoryEvent(block.slot, block_hash, kind, node=entry.destination, origin=origin)
            )
        version = placed.version if placed is not None else 0
        for cmd in block.commands:
            if cmd.kind is CommandKind.SUBMIT:
                if compute_submitted_app_id(cmd.signer, cmd.seq) != app:
                    continue
                version = 1
            elif cmd.app != app:
                continue
            elif cmd.kind is CommandKind.UPDATE:
                version += 1
            events.append(
                HistoryEvent(
                    block.slot,
                    block_hash,
                    cmd.kind.name.lower(),
                    node=cmd.node or None,
                    signer=bytes(cmd.signer),
                    version=version if cmd.spec is not None else None,
                )
            )
    return events


def sign(world: World, kind: CommandKind, **fields: object) -> SignedCommand:
    world.seq += 1
    return make_command(ADMIN.sk, world.params.chain_id, world.seq, kind, **fields)  # type: ignore[arg-type]


def build_history_world() -> tuple[World, AppId, AppId]:
    """6 validators: web and db submitted (with an operator grant, which names no app),
    placed; web updated twice in one block and asked to move; db's node excluded while
    web migrates; db recovered, web stopped; then a skip block."""
    w = World(6, 2)
    n = [i.node for i in w.idents]
    web, submit_web = w.submit("web")
    db, submit_db = w.submit("db")
    grant = sign(w, CommandKind.GRANT_OPERATOR, key=bytes(make_identity(70, b"op").pk))
    w.add(commands=[submit_web, submit_db, grant])
    w.add(
        plan=[
            PlanEntry(PlanAction.PLACE, web, b"", n[1]),
            PlanEntry(PlanAction.PLACE, db, b"", n[2]),
        ]
    )
    w.add(
        commands=[
            sign(w, CommandKind.UPDATE, app=web, spec=SPEC_V2),
            sign(w, CommandKind.UPDATE, app=web, spec=SPEC_V2),
            sign(w, CommandKind.MOVE, app=web, node=n[3]),
        ]
    )
    w.add(
        plan=[PlanEntry(PlanAction.MIGRATE, web, n[1], n[3])],
        commands=[sign(w, CommandKind.EXCLUDE_NODE, node=n[2])],
    )
    w.add(
        plan=[PlanEntry(PlanAction.RECOVER, db, n[2], n[4])],
        commands=[sign(w, CommandKind.STOP, app=web)],
    )
    w.add(skip=True)
    return w, web, db


def chain_steps(world: World) -> list[ChainStep]:
    return [(e.block_hash, e.block, e.parent_state.registry) for e in world.get_head_chain()]


def test_every_apps_history_at_once_is_each_apps_history() -> None:
    world, web, db = build_history_world()
    chain = chain_steps(world)
    n = [i.node for i in world.idents]
    pairs = compute_fleet_history(chain)
    skip = chain[-1][1]
    assert isinstance(skip, SkipBlock)
    left_on_skip = [r.app for r in chain[-1][2].records if r.node == skip.excluded]
    # Chain order, and every event is one app's own: nothing for the operator grant
    # or the exclusion themselves.
    assert [e.slot for _, e in pairs] == sorted(e.slot for _, e in pairs)
    assert {app for app, _ in pairs} == {web, db}
    for app in (web, db):
        mine = [e for owner, e in pairs if owner == app]
        assert mine == reference_app_history(app, chain) == compute_app_history(app, chain)
    assert len(pairs) == 11 + len(left_on_skip)
    web_events = [
        (e.slot, e.kind, e.node, e.origin, e.version) for e in compute_app_history(web, chain)
    ]
    assert web_events[:7] == [
        (1, "submit", None, None, 1),
        (2, "place", n[1], None, None),
        (3, "update", None, None, 2),
        (3, "update", None, None, 3),
        (3, "move", n[3], None, None),
        (4, "migrate", n[3], n[1], None),
        (5, "stop", None, None, None),
    ]
    db_events = [(e.slot, e.kind, e.node, e.origin) for e in compute_app_history(db, chain)]
    assert db_events[:4] == [
        (1, "submit", None, None),
        (2, "place", n[2], None),
        (4, "node_left", n[2], None),
        (5, "recover", n[4], n[2]),
    ]
    assert all(e.signer == ADMIN.pk for _, e in pairs if e.kind in ("submit", "update", "stop"))


@pytest.mark.parametrize("finalized_slot", [0, 1, 4, 6])
def test_the_node_joins_stored_finalized_history_and_memory(
    tmp_path: Path, finalized_slot: int
) -> None:
    """The finalized blocks' history comes from the store (pruning dropped most of them
    from memory, the finalized block and its parent stay), the rest from memory:
    together, each app's whole history, each event once."""
    world, web, db = build_history_world()
    chain = chain_steps(world)
    whole = {app: compute_app_history(app, chain) for app in (web, db)}
    finalized = chain[:finalized_slot]
    with BlockStore(tmp_path / "chain.db") as store:
        if finalized:
            checkpoint = Checkpoint(1, finalized[-1][0])
            event = FinalityAdvanced(checkpoint, Slot(finalized_slot), 0, tuple(finalized))
            put_finalized_history(store, event)
        for block_hash, block, _ in chain:
            if block.slot < finalized_slot - 1:
                del world.chain.blocks[block_hash]
        cast(Any, world.chain).pruner = SimpleNamespace(finalized_slot=Slot(finalized_slot))
        world.recorder = cast(Any, SimpleNamespace(accepted=deque(), store=store))
        assert len(world.get_head_chain()) == len(chain) - max(0, finalized_slot - 2)
        for app in (web, db):
            assert world.get_app_history(app) == whole[app]
        assert world.get_app_history(AppId(bytes(32))) == []


def test_each_finality_advance_carries_the_blocks_it_finalized_before_pruning() -> None:
    """The pruner on a chain of real states: a first advance that finalizes more than
    the retained window still carries every block from the genesis on (collected
    before memory drops the oldest), with its parent's registry; the next carries only
    the blocks after the previous finalized one; an advance to no later epoch, nothing."""
    world = World(6, 2)
    web, submit = world.submit("web")
    world.add(commands=[submit])
    world.add(plan=[PlanEntry(PlanAction.PLACE, web, b"", world.idents[1].node)])
    for _ in range(RETAIN_SLOTS + 20):
        world.add()
    blocks, states = world.chain.blocks, world.chain.states
    chain = world.chain.get_chain()
    genesis = blocks[chain[0]].parent
    fork = ForkChoice(genesis, Slot(0))
    for block_hash in chain:
        fork.add(block_hash, blocks[block_hash].parent, blocks[block_hash].slot, 1)
    head = world.chain.get_head_state()
    finality = head.finality
    assert finality is not None
    finalizing = {"at": Checkpoint(1, chain[0])}

    def get_head_state() -> BlockState:
        assert finality is not None
        return dataclasses.replace(
            head, finality=dataclasses.replace(finality, finalized=finalizing["at"])
        )

    ctx = SimpleNamespace(blocks=blocks, states=states, fork=fork, get_head_state=get_head_state)
    pruner = ChainPruner(cast(Any, ctx))

    def advance(epoch: int, slot: int) -> list[FinalityAdvanced]:
        finalizing["at"] = Checkpoint(epoch, chain[slot - 1])
        out = Output()
        pruner.on_head_changed(out)
        return [e for e in out.events if isinstance(e, FinalityAdvanced)]

    registries = {h: state.registry for h, state in states.items()}  # before pruning
    first_slot = RETAIN_SLOTS + 10
    (first,) = advance(3, first_slot)
    assert [h for h, _, _ in first.finalized_blocks] == chain[:first_slot]
    assert first.pruned_blocks == 9 and chain[0] not in blocks  # slots 1-9 forgotten
    for _, block, registry in first.finalized_blocks:
        assert block.parent == (genesis if block.slot == 1 else chain[block.slot - 2])
        assert registry is registries[block.parent]
    assert [e.kind for _, e in compute_fleet_history(first.finalized_blocks)] == [
        "submit",
        "place",
    ]
    (second,) = advance(5, first_slot + 3)
    assert [h for h, _, _ in second.finalized_blocks] == chain[first_slot : first_slot + 3]
    assert advance(5, first_slot + 5) == []


def test_history_and_recent_chain_once_pruning_dropped_the_oldest_states(tmp_path: Path) -> None:
    """A node that ran long enough for the real pruner to drop blocks below its retained
    window (block and state both) still answers an app's whole history: the oldest
    block memory holds has no parent state any more, and the walk ends there instead
    of failing (a 500, which the testnet summary took for an app "never placed")."""
    world = World(6, 2)
    n = [i.node for i in world.idents]
    web, submit = world.submit("web")
    world.add(commands=[submit])
    world.add(plan=[PlanEntry(PlanAction.PLACE, web, b"", n[1])])
    world.add(plan=[PlanEntry(PlanAction.MIGRATE, web, n[1], n[2])])
    for _ in range(RETAIN_SLOTS + 20):
        world.add()
    whole = compute_app_history(web, chain_steps(world))
    assert [e.kind for e in whole] == ["submit", "place", "migrate"]
    chain = world.chain.get_chain()
    fork = ForkChoice(world.chain.blocks[chain[0]].parent, Slot(0))
    for block_hash in chain:
        block = world.chain.blocks[block_hash]
        fork.add(block_hash, block.parent, block.slot, 1)
    head = world.chain.get_head_state()
    assert head.finality is not None
    finalized_slot = RETAIN_SLOTS + 10
    finalized = dataclasses.replace(
        head.finality, finalized=Checkpoint(3, chain[finalized_slot - 1])
    )
    ctx = SimpleNamespace(
        blocks=world.chain.blocks,
        states=world.chain.states,
        fork=fork,
        get_head_state=lambda: dataclasses.replace(head, finality=finalized),
    )
    pruner = ChainPruner(cast(Any, ctx))
    out = Output()
    assert pruner.on_head_changed(out)
    (advance,) = [e for e in out.events if isinstance(e, FinalityAdvanced)]
    assert chain[0] not in world.chain.states  # memory dropped blocks and their states
    cast(Any, world.chain).pruner = pruner
    with BlockStore(tmp_path / "chain.db") as store:
        put_finalized_history(store, advance)
        world.recorder = cast(Any, SimpleNamespace(accepted=deque(), store=store))
        assert world.get_app_history(web) == whole
    held = world.get_recent_chain(10_000)
    assert held == world.get_head_chain()
    assert held[-1].block_hash == world.chain.head
    assert all(e.parent_state is world.chain.states[e.block.parent] for e in held)
    assert world.get_recent_chain(3) == held[-3:]
