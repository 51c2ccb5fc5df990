"""Finality in the engine: votes ride in reports and persist, finality prunes memory,
history pruned from memory is asked of the node's store (``ArchiveSyncWanted``), and
an app's history survives pruning in the store (``FinalityAdvanced``)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.encoding import compute_genesis_hash, encode_genesis
from edgechain.chain.model import (
    AnyBlock,
    AppSpec,
    Block,
    Checkpoint,
    CommandKind,
    FinalityVote,
    RuntimeKind,
)
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.finality_health import get_silent_voters, is_finality_held_back
from edgechain.consensus.messages import (
    ArchiveSyncWanted,
    BlockAccepted,
    BlockMsg,
    FinalityAdvanced,
    LastVoteChanged,
    Message,
    Output,
    SyncRequestMsg,
    SyncResponseMsg,
)
from edgechain.consensus.pruning import RETAIN_SLOTS
from edgechain.node.clock import NodeClock
from edgechain.node.events import EventRecorder, get_stored_app_history, put_finalized_history
from edgechain.node.report_times import ReportTimes
from edgechain.orchestrator.fleet import compute_app_history
from edgechain.testing import ADMIN
from edgechain.types import BlockHash, NodeId

from .test_engine import PARAMS, Harness

SLOTS = RETAIN_SLOTS + 40
VDF_MS = PARAMS.slot_duration_ms * PARAMS.vdf_target_bp // 10_000


SPEC = AppSpec("counter", RuntimeKind.PROCESS, command=("sh", "-c", "sleep 1"))
APP = compute_submitted_app_id(ADMIN.pk, 1)
"""Submitted before slot 1 on ``finalized_net``: its blocks are pruned by the end."""


def _run_chain(net: Harness, slots: int, *, submit: bool = False) -> None:
    net.start_chain()
    if submit:
        command = make_command(ADMIN.sk, PARAMS.chain_id, 1, CommandKind.SUBMIT, spec=SPEC)
        _, out = net.engine(3).submit_command(command, net.now)
        queue: list[tuple[NodeId, NodeId, Message]] = []
        net.handle(net.order[3], out, queue)
        net.pump(queue)
    for slot in range(1, slots + 1):
        net.run_slot(slot)


@pytest.fixture(scope="module")
def finalized_net() -> Harness:
    """One chain run past finality and the retained window, with an app submitted at
    the start, shared by the tests that only read it (each run costs about 15 s of real
    VDFs and signatures)."""
    net = Harness(5, vdf_ms=VDF_MS)
    _run_chain(net, SLOTS, submit=True)
    return net


def test_votes_ride_in_reports_finalize_and_prune(finalized_net: Harness) -> None:
    net = finalized_net
    engine = net.engine(0)
    head = engine.get_head_state()
    assert head is not None and head.finality is not None
    finalized = engine.pruner.finalized
    assert finalized is not None and finalized.epoch >= 4
    assert head.finality.finalized == finalized
    # Each node announced each new vote before its report carried it.
    for node in net.order:
        votes = [e.vote for e in net.events[node] if isinstance(e, LastVoteChanged)]
        assert votes and [v.target.epoch for v in votes] == sorted({v.target.epoch for v in votes})
    carried = [r.vote for b in engine.blocks.values() if isinstance(b, Block) for r in b.reports]
    assert any(v is not None for v in carried)
    advanced = [e for e in net.events[net.order[0]] if isinstance(e, FinalityAdvanced)]
    assert advanced and sum(e.pruned_blocks for e in advanced) == engine.pruner.blocks_pruned
    # Memory: the retained window below the finalized block and the unfinalized tip.
    oldest = min(b.slot for b in engine.blocks.values())
    assert oldest >= engine.pruner.finalized_slot - RETAIN_SLOTS > 0
    assert engine.get_chain()[0] == min(engine.blocks, key=lambda h: engine.blocks[h].slot)


def test_pruned_history_is_asked_of_the_store_and_the_window_is_served(
    finalized_net: Harness,
) -> None:
    net = finalized_net
    engine = net.engine(0)
    asker = net.order[1]
    chain = engine.get_chain()
    out = engine.on_message(SyncRequestMsg(chain[-1], 1_000), asker, net.now)
    responses = [o.message for o in out.messages if isinstance(o.message, SyncResponseMsg)]
    assert len(responses) == 1 and responses[0].blocks[-1] == engine.blocks[chain[-1]]
    assert len(responses[0].blocks) == len(chain)  # the whole window, oldest first
    wanted = [e for e in out.events if isinstance(e, ArchiveSyncWanted)]
    assert len(wanted) == 1 and wanted[0].want == engine.blocks[chain[0]].parent
    assert wanted[0].sender == asker and wanted[0].limit > 0
    # A block older than the window: memory has nothing, the store is asked.
    pruned = wanted[0].want
    out = engine.on_message(SyncRequestMsg(pruned, 10), asker, net.now)
    assert not out.messages
    assert [e.want for e in out.events if isinstance(e, ArchiveSyncWanted)] == [pruned]


def test_a_restarted_node_never_votes_again_for_an_epoch_it_voted_for() -> None:
    """The persisted last vote comes back through the config: a vote for a later
    target epoch than anything the chain will reach keeps being repeated, never
    replaced by a second vote for an epoch at or below it."""
    net = Harness(4, vdf_ms=VDF_MS)
    far = FinalityVote(
        Checkpoint(0, BlockHash(bytes(32))), Checkpoint(10_000, BlockHash(b"f" * 32))
    )
    old = net.engine(1)
    restarted = ConsensusEngine(old.sk, dataclasses.replace(old.config, last_vote=far))
    net.engines[old.node_id] = restarted
    _run_chain(net, 30)
    assert not [e for e in net.events[old.node_id][30:] if isinstance(e, LastVoteChanged)]
    mine = _get_carried_votes(net, old.node_id)
    assert mine and all(v == far for v in mine)


def _get_carried_votes(net: Harness, node: NodeId) -> list[FinalityVote | None]:
    """The votes of ``node``'s reports that node 0's blocks carry."""
    return [
        r.vote
        for b in net.engine(0).blocks.values()
        if isinstance(b, Block)
        for r in b.reports
        if r.node == node
    ]


@pytest.mark.parametrize("same_chain", [True, False])
def test_a_vote_kept_outside_the_store_counts_only_on_its_own_chain(same_chain: bool) -> None:
    """A node whose store was moved aside starts with the vote file's vote and the
    genesis it was cast on (``node/vote_file.py``): on that chain it is held to it as
    to a stored vote; a vote of another chain (a data directory reused) is dropped
    once the node knows its genesis, and the node votes on this chain at once."""
    net = Harness(4, vdf_ms=VDF_MS)
    far = FinalityVote(
        Checkpoint(0, BlockHash(bytes(32))), Checkpoint(10_000, BlockHash(b"f" * 32))
    )
    net.start_chain()
    old = net.engine(1)
    assert old.genesis is not None and old.genesis_msg is not None
    genesis = compute_genesis_hash(old.genesis) if same_chain else BlockHash(b"o" * 32)
    config = dataclasses.replace(old.config, last_vote=far, last_vote_genesis=genesis)
    net.engines[old.node_id] = ConsensusEngine(
        old.sk, config, genesis=old.genesis, genesis_signature=old.genesis_msg.signature
    )
    before = len(net.events[old.node_id])
    for slot in range(1, 31):
        net.run_slot(slot)
    changed = [e for e in net.events[old.node_id][before:] if isinstance(e, LastVoteChanged)]
    mine = _get_carried_votes(net, old.node_id)
    if same_chain:
        assert not changed and mine and all(v == far for v in mine)
    else:
        assert changed and mine and far not in mine


def test_app_history_survives_pruning_in_the_store(finalized_net: Harness, tmp_path: Path) -> None:
    """The finality advances carry every finalized block once, in order, with its
    parent's registry; recorded as the node records them (``EventRecorder``), the app's
    submit and placement outlive the blocks memory pruned, a replay of the store writes
    them again without duplicates, and stored plus in-memory history is its whole."""
    engine = finalized_net.engine(0)
    events = finalized_net.events[finalized_net.order[0]]
    advanced = [e for e in events if isinstance(e, FinalityAdvanced)]
    steps = [step for event in advanced for step in event.finalized_blocks]
    assert steps and steps[-1][0] == advanced[-1].finalized.block
    assert engine.genesis is not None
    assert steps[0][1].parent == compute_genesis_hash(engine.genesis)
    assert all(b.parent == h for (h, _, _), (_, b, _) in itertools.pairwise(steps))
    for event in advanced:
        if event.finalized_blocks:
            assert event.finalized_blocks[-1][0] == event.finalized.block
    assert len(advanced) >= 2 and sum(1 for e in advanced if e.finalized_blocks) >= 2
    accepted = [e for e in events if isinstance(e, BlockAccepted)]
    with BlockStore(tmp_path / "chain.db") as store:
        recorder = EventRecorder(store, NodeClock(), ReportTimes(engine.ctx.node_id))
        store.put_genesis(compute_genesis_hash(engine.genesis), encode_genesis(engine.genesis))
        for block_event in accepted:  # a node stores each block before it finalizes
            recorder.record(engine, block_event, replaying=False)
        for event in advanced:
            recorder.record(engine, event, replaying=False)
        stored = get_stored_app_history(store, APP)
        assert stored == compute_app_history(APP, steps)
        assert [e.kind for e in stored[:2]] == ["submit", "place"]
        submit, place = stored[:2]
        assert submit.signer == ADMIN.pk and submit.version == 1 and place.node is not None
        # Both blocks are gone from memory (below the retained window), not from the store.
        assert submit.block not in engine.blocks and place.block not in engine.blocks
        assert place.slot < engine.pruner.finalized_slot - RETAIN_SLOTS
        # A replay (a restart re-finalizes the same blocks) writes, but nothing twice.
        for event in advanced:
            recorder.record(engine, event, replaying=True)
            assert put_finalized_history(store, event) == 0
        assert get_stored_app_history(store, APP) == stored
    with BlockStore(tmp_path / "lost.db") as store:  # the history lost before a restart
        recorder = EventRecorder(store, NodeClock(), ReportTimes(engine.ctx.node_id))
        store.put_genesis(compute_genesis_hash(engine.genesis), encode_genesis(engine.genesis))
        for block_event in accepted:
            recorder.record(engine, block_event, replaying=False)
        for event in advanced:
            recorder.record(engine, event, replaying=True)
        assert get_stored_app_history(store, APP) == stored
    # Stored history then memory's after the finalized block: the app's whole history.
    recent = [
        (h, engine.blocks[h], engine.states[engine.blocks[h].parent].registry)
        for h in engine.get_chain()
        if engine.blocks[h].slot > engine.pruner.finalized_slot
    ]
    whole = stored + compute_app_history(APP, recent)
    assert whole == compute_app_history(APP, [*steps, *recent])


def test_a_node_joining_after_pruning_syncs_history_from_the_stores(
    finalized_net: Harness,
) -> None:
    """A newcomer gets the head, then the ancestors: the retained window from memory,
    older blocks through ``ArchiveSyncWanted`` (answered here from every block the
    network accepted, as each node's store would)."""
    net = finalized_net
    archive: dict[BlockHash, AnyBlock] = {}
    for node in net.order:
        archive.update(
            (e.block_hash, e.block) for e in net.events[node] if isinstance(e, BlockAccepted)
        )
    served = []
    original = net.handle

    def handle_with_stores(src: NodeId, out: Output, queue: list[tuple[NodeId, NodeId, Message]]):  # type: ignore[no-untyped-def]
        for event in out.events:
            if isinstance(event, ArchiveSyncWanted):
                blocks: list[AnyBlock] = []
                current = event.want
                while current in archive and len(blocks) < event.limit:
                    blocks.append(archive[current])
                    current = archive[current].parent
                served.append(len(blocks))
                genesis = net.engines[src].genesis_msg if current not in archive else None
                queue.append((src, event.sender, SyncResponseMsg(tuple(reversed(blocks)), genesis)))
        original(src, out, queue)

    net.handle = handle_with_stores  # type: ignore[method-assign]
    newcomer = net.add(9)
    engine = net.engine(0)
    net.deliver(len(net.order) - 1, BlockMsg(engine.blocks[engine.head]), net.order[0])  # type: ignore[index]
    assert served and sum(served) > 0, "no history was asked of the stores"
    assert newcomer.head == engine.head
    assert newcomer.pruner.finalized == engine.pruner.finalized
    assert len(newcomer.blocks) < len(archive)  # it pruned while catching up


def test_the_admin_excluding_dead_voters_lets_finality_resume_and_prune() -> None:
    """Two of six nodes die for good: skip blocks take them out of the validator set,
    but four of six voters are not more than two thirds, so nothing finalizes and
    memory grows with every block. ``/status`` names the two (``finality_health``);
    once the admin excludes them (block format 20), finality resumes and prunes."""
    net = Harness(6, vdf_ms=VDF_MS)
    net.start_chain()
    for slot in range(1, 25):
        net.run_slot(slot)
    engine = net.engine(0)
    dead = set(net.order[4:])
    net.down |= dead
    for slot in range(25, 65):
        net.run_slot(slot)
    head = engine.get_head_state()
    assert head is not None and head.finality is not None
    stuck = engine.pruner.finalized_slot
    assert stuck <= 32 and len(engine.blocks) >= 64 - stuck
    silent = get_silent_voters(head, PARAMS.down_after_slots)
    assert set(silent) == dead and is_finality_held_back(head, silent)
    for seq, node in enumerate(sorted(dead), start=1):
        command = make_command(ADMIN.sk, PARAMS.chain_id, seq, CommandKind.EXCLUDE_NODE, node=node)
        _, out = engine.submit_command(command, net.now)
        queue: list[tuple[NodeId, NodeId, Message]] = []
        net.handle(net.order[0], out, queue)
        net.pump(queue)
    for slot in range(65, 95):
        net.run_slot(slot)
    head = engine.get_head_state()
    assert head is not None and head.finality is not None
    assert len(head.finality.voters) == 4 and not dead & set(head.finality.voters.get_node_ids())
    assert engine.pruner.finalized_slot >= 72 > stuck
    assert engine.pruner.blocks_pruned > 0
    assert get_silent_voters(head, PARAMS.down_after_slots) == ()
