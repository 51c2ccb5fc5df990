"""The app lifecycle against the head registry: start, stop, update, remove.

``decide`` (the rules) on its own, then ``AppManager.reconcile`` driving a real
``ProcessRuntime`` (real processes, checked on the process table) over a small fake
chain: real ``Block`` and ``BlockState`` objects whose registries the test writes, the
way the lead's registry would after STOP, START, UPDATE and REMOVE commands.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import tarfile
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import (
    NO_REPORT_SIGNATURE,
    AnyBlock,
    AppSpec,
    AppUsage,
    Block,
    ChainParams,
    PlanAction,
    PlanEntry,
    ResourceReport,
    RuntimeKind,
)
from edgechain.chain.validator_set import ValidatorSet
from edgechain.consensus.engine import LocalUsage
from edgechain.consensus.state import BlockState
from edgechain.orchestrator.registry import AppRecord, AppState, Registry
from edgechain.runtime.app_starter import NO_REPLICAS
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lifecycle import (
    Action,
    HeldApp,
    decide,
    find_placing_entry,
    is_on_head_chain,
    was_removed,
)
from edgechain.runtime.manager import AppManager
from edgechain.runtime.replica import hash_file
from edgechain.runtime.replication import Handoff, Replicator
from edgechain.runtime.samples import get_counter_spec
from edgechain.telemetry import logs
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, NodeId, Signature, Slot

from .helpers import (
    get_app,
    get_node_id,
    get_tagged_processes,
    read_count,
    wait_count_above,
    wait_until,
)

ME = make_identity(1)
OTHER = get_node_id("other")


# --- the fake chain -------------------------------------------------------------------


class FakeChain:
    """A linear chain whose registries the test writes; what ``AppManager`` reads."""

    def __init__(self) -> None:
        self.blocks: dict[BlockHash, AnyBlock] = {}
        self.states: dict[BlockHash, BlockState] = {}
        genesis = BlockHash(bytes(32))
        self.states[genesis] = self._state(genesis, Slot(0), Registry())
        self.head: BlockHash | None = genesis
        self.top = Slot(0)
        """The slot of the newest block made, on any branch (each block has its own)."""
        self.usage: LocalUsage | None = None
        self.params: ChainParams | None = None
        """No chain parameters: no liveness, no lease (the rules below need neither)."""
        self.members: tuple[NodeId, ...] = ()
        """Validators seen in every block (``BlockState.last_seen``): live leases."""

    def _state(self, block_hash: BlockHash, slot: Slot, registry: Registry) -> BlockState:
        members = getattr(self, "members", ())
        return BlockState(
            block_hash, slot, b"", ValidatorSet(()), 1, registry, (), 0, is_skip=False,
            vdf_group=block_hash, last_seen=dict.fromkeys(members, slot),
        )  # fmt: skip

    def append(self, records: tuple[AppRecord, ...], plan: tuple[PlanEntry, ...] = ()) -> Slot:
        """A new head block carrying ``plan``, after which the registry is ``records``."""
        assert self.head is not None
        slot = self.top = Slot(self.top + 1)
        block = Block(
            self.head, slot, 0, ME.node, 0, 1, b"", b"", bytes(32), (), plan, (), (), (),
            Signature(b""), b"", Signature(b""),
        )  # fmt: skip
        block_hash = BlockHash(slot.to_bytes(32, "big"))
        registry = Registry(tuple(sorted(records, key=lambda r: bytes(r.app))))
        self.blocks[block_hash] = block
        self.states[block_hash] = self._state(block_hash, slot, registry)
        self.head = block_hash
        return slot

    def get_head_state(self) -> BlockState | None:
        return self.states[self.head] if self.head is not None else None

    def get_chain(self, upto: BlockHash | None = None) -> list[BlockHash]:
        chain = []
        current = upto or self.head
        while current is not None:
            chain.append(current)
            block = self.blocks.get(current)
            current = block.parent if block is not None else None
        return chain[::-1]

    def set_local_usage(self, usage: LocalUsage) -> None:
        self.usage = usage

    def forget_below(self, slot: int) -> FakeArchive:
        """Drop the blocks below ``slot`` from memory, as finality's pruning or a restart
        from a snapshot does; they stay in the returned archive, as in a node's store."""
        gone = {h: b for h, b in self.blocks.items() if b.slot < slot}
        for block_hash in gone:
            del self.blocks[block_hash]
            del self.states[block_hash]
        return FakeArchive(gone)


class FakeArchive:
    """The finalized chain below memory (``lifecycle.ChainArchive``); counts reads."""

    def __init__(self, blocks: dict[BlockHash, AnyBlock]) -> None:
        self.blocks = blocks
        self.reads = 0

    def get_block_at(self, slot: Slot) -> tuple[BlockHash, AnyBlock] | None:
        self.reads += 1
        return next(((h, b) for h, b in self.blocks.items() if b.slot == slot), None)

    def get_finalized_block(self, block_hash: BlockHash) -> AnyBlock | None:
        self.reads += 1
        return self.blocks.get(block_hash)


# --- helpers --------------------------------------------------------------------------


def _counter(tag: str, interval_s: float = 0.05) -> AppSpec:
    return get_counter_spec(RuntimeKind.PROCESS, interval_s=interval_s, tag=tag)


def _new_app() -> tuple[AppId, AppSpec, str]:
    tag = f"l-{secrets.token_hex(4)}"
    spec = _counter(tag)
    return get_app(spec), spec, tag


def _place(chain: FakeChain, app: AppId, spec: AppSpec, node: NodeId = ME.node) -> AppRecord:
    """A block whose plan PLACEs ``app`` on ``node`` (what makes a start legitimate)."""
    record = AppRecord(app, spec, node=node, last_move_slot=Slot(len(chain.blocks) + 1))
    chain.append((record,), (PlanEntry(PlanAction.PLACE, app, NodeId(bytes(32)), node),))
    return record


def _pids(tag: str) -> set[int]:
    return {p.pid for p in get_tagged_processes(tag)}


def _single_pid(tag: str) -> int:
    """The one running instance's pid, once a stopped one's last fork has died too.
    Taken from the look that found one: a new instance execs its way to the app
    (shell, setpriv, prlimit), and its argv reads empty for the moment of each exec."""
    found: list[int] = []

    def is_single() -> bool:
        found[:] = _pids(tag)
        return len(found) == 1

    wait_until(is_single)
    return found[0]


def _wait_none(tag: str) -> None:
    """No instance left (a stopped one's last fork may take a moment to die)."""
    wait_until(lambda: _pids(tag) == set())


def _events(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    return [logs.get_fields(r) for r in caplog.records if r.getMessage() == message]


def _reconcile(apps: AppManager) -> None:
    asyncio.run(apps.reconcile())


# --- the rules --------------------------------------------------------------------------


def test_decide() -> None:
    app, spec, _ = _new_app()
    newer = replace(spec, cpu_bp=spec.cpu_bp + 1)
    here = AppRecord(app, spec, node=ME.node, version=2)
    stopped = replace(here, state=AppState.STOPPED)
    updated = replace(here, spec=newer, version=3)

    def held(running: bool, version: int | None = 2, s: AppSpec = spec) -> HeldApp:
        return HeldApp(app, running, s, version)

    me = ME.node
    assert decide(me, here, None) is Action.START
    assert decide(me, here, held(False)) is Action.START
    assert decide(me, here, held(True)) is None
    assert decide(me, stopped, held(True)) is Action.STOP
    assert decide(me, stopped, held(False)) is None
    assert decide(me, stopped, None) is None
    assert decide(me, updated, held(True)) is Action.UPDATE
    assert decide(me, updated, held(False)) is Action.START  # starts at the new version
    assert decide(me, replace(here, version=3), held(True)) is Action.UPDATE  # same spec
    assert decide(me, here, held(True, version=None)) is Action.CONFIRM
    assert decide(me, here, held(True, version=None, s=newer)) is Action.UPDATE
    assert decide(me, None, held(True), removed=True) is Action.REMOVE
    assert decide(me, None, held(False), removed=True) is Action.REMOVE
    assert decide(me, None, None) is None
    # No record and no REMOVE on the head chain (a reorg onto a branch without the app,
    # or we are behind): a running copy is stale and stops, its state is kept.
    assert decide(me, None, held(True)) is Action.STOP_STALE
    assert decide(me, None, held(False)) is None
    # Placed elsewhere or queued: a running copy here is a second one and stops, unless
    # we are handing it over to the destination.
    elsewhere = replace(here, node=OTHER)
    assert decide(me, elsewhere, held(True)) is Action.STOP_STALE
    assert decide(me, replace(here, node=None), held(True)) is Action.STOP_STALE
    assert decide(me, elsewhere, held(True), outgoing=True) is None
    assert decide(me, elsewhere, held(False)) is None
    assert decide(me, elsewhere, None) is None


def test_was_removed_needs_the_record_on_an_ancestor() -> None:
    chain = FakeChain()
    app, spec, _ = _new_app()
    searched: dict[AppId, BlockHash] = {}
    chain.append(())
    assert not was_removed(chain, app, searched)  # never on this chain: keep it
    chain.append((AppRecord(app, spec, node=ME.node),))
    assert not was_removed(chain, app, searched)  # present at the head
    chain.append(())
    chain.append(())
    assert was_removed(chain, app, searched)  # held two blocks back: a REMOVE


# --- reconcile on a real runtime -------------------------------------------------------


def test_start_stop_start_keeps_the_state(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    _reconcile(apps)
    state = apps.runtime.get_state_dir(app)
    wait_count_above(state, 3)
    pid = _single_pid(tag)
    _reconcile(apps)  # idempotent: the same single instance
    assert _pids(tag) == {pid}
    assert apps.runtime.get_release(app) == (spec, 1)

    chain.append((replace(record, state=AppState.STOPPED),))
    _reconcile(apps)
    _wait_none(tag)
    assert not apps.runtime.is_running(app)
    stopped_at = read_count(state)
    assert stopped_at > 3
    _reconcile(apps)  # nothing more to do, and nothing restarts it
    assert _pids(tag) == set()
    assert read_count(state) == stopped_at
    assert [e["app"] for e in _events(caplog, "app stopped")] == [bytes(app).hex()[:16]]

    chain.append((record,))  # START
    _reconcile(apps)
    _single_pid(tag)
    # Same state dir: it continues from where it stopped, never from zero.
    assert wait_count_above(state, stopped_at) > stopped_at
    log = (apps.runtime.get_app_dir(app) / "app.log").read_text()
    assert f"counter: starting from {stopped_at}" in log


def test_update_restarts_the_new_spec_on_the_same_state_and_survives_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    chain = FakeChain()
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    apps = AppManager(tmp_path / "node", ME.node, ME.sk)
    apps.attach(chain)
    try:
        _reconcile(apps)
        state = apps.runtime.get_state_dir(app)
        before = wait_count_above(state, 3)
        old_pid = _single_pid(tag)
        newer = _counter(tag, interval_s=0.04)
        chain.append((replace(record, spec=newer, version=2),))  # UPDATE
        _reconcile(apps)
        new_pid = _single_pid(tag)
        assert new_pid != old_pid
        assert "0.04" in psutil.Process(new_pid).cmdline()
        assert apps.runtime.get_release(app) == (newer, 2)
        assert wait_count_above(state, before) > before  # state kept
        [event] = _events(caplog, "app updated")
        assert (event["version"], event["from_version"]) == (2, 1)
        _reconcile(apps)
        assert _pids(tag) == {new_pid}  # idempotent
    finally:
        asyncio.run(apps.close())
    _wait_none(tag)
    # A restarted node's runtime knows what it ran, at which version, from its disk.
    again = AppManager(tmp_path / "node", ME.node, ME.sk)
    again.attach(chain)
    try:
        assert again.runtime.get_release(app) == (newer, 2)
        chain.append((replace(record, spec=spec, version=3),))  # UPDATE while it was down
        _reconcile(again)
        _single_pid(tag)
        assert again.runtime.get_release(app) == (spec, 3)
    finally:
        asyncio.run(again.close())


def test_remove_stops_and_deletes_only_removed_apps(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    app, spec, tag = _new_app()
    _place(chain, app, spec)
    _reconcile(apps)
    wait_count_above(apps.runtime.get_state_dir(app), 1)
    # A copy of an app the chain never had (a reorg undid the migration that brought it,
    # or the node is behind): it must not run, but its state may be the only copy, so
    # it is stopped and kept.
    stray, stray_spec, stray_tag = _new_app()
    apps.runtime.start(stray, stray_spec)
    chain.append(())  # REMOVE of `app`
    _reconcile(apps)
    _wait_none(tag)
    assert not apps.runtime.get_app_dir(app).exists()
    assert app not in [i.app for i in apps.runtime.list()]
    _wait_none(stray_tag)
    assert apps.runtime.get_state_dir(stray).exists()
    assert [e["app"] for e in _events(caplog, "stale app stopped")] == [bytes(stray).hex()[:16]]
    assert [e["app"] for e in _events(caplog, "app removed")] == [bytes(app).hex()[:16]]
    _reconcile(apps)  # idempotent
    assert len(_events(caplog, "app removed")) == 1


def test_apps_in_flight_are_left_alone_and_stale_copies_stop(
    manager: tuple[AppManager, FakeChain],
) -> None:
    apps, chain = manager
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    _reconcile(apps)
    pid = _single_pid(tag)

    async def stop_while_locked() -> None:
        # A migration out holds the app's lock for as long as it runs.
        async with apps.tasks.lock(app):
            await apps.reconcile()

    chain.append((replace(record, state=AppState.STOPPED),))
    asyncio.run(stop_while_locked())
    assert _pids(tag) == {pid}
    # A migration in: the transfer server's incoming file exists while it receives.
    chain.append(())
    incoming = apps.transfer_dir / "incoming" / f"{bytes(app).hex()}-0a0b0c0d"
    incoming.write_bytes(b"")
    _reconcile(apps)
    assert _pids(tag) == {pid}
    incoming.unlink()
    # Moved to another node by a MIGRATE from here: we hand it over, so it runs on
    # until the destination has it (here it has no transfer address: the handover is
    # retried every round and the copy keeps running).
    slot = Slot(len(chain.blocks) + 1)
    moved = replace(record, node=OTHER, last_move_slot=slot)
    chain.append((moved,), (PlanEntry(PlanAction.MIGRATE, app, ME.node, OTHER),))
    _reconcile(apps)
    _reconcile(apps)
    assert _pids(tag) == {pid}
    # Placed on another node without a MIGRATE from here (re-placed while we were away,
    # or a reorg): a second copy, stopped at once; its state dir stays.
    chain.append((replace(moved, last_move_slot=Slot(slot + 1)),))
    _reconcile(apps)
    _wait_none(tag)
    assert apps.runtime.get_state_dir(app).exists()


def test_a_restored_copy_gets_its_version_confirmed_or_updated(
    manager: tuple[AppManager, FakeChain], tmp_path: Path
) -> None:
    apps, chain = manager
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    _reconcile(apps)
    saved = apps.runtime.save(app)
    archive = tmp_path / "moved.tar"
    saved.archive.rename(archive)
    apps.runtime.remove(app)
    # As if it arrived by a migration: restored, version unknown.
    apps.runtime.restore(app, spec, archive)
    pid = _single_pid(tag)
    chain.append((replace(record, version=5),))
    _reconcile(apps)
    assert apps.runtime.get_release(app) == (spec, 5)
    assert _pids(tag) == {pid}  # the same spec: nothing restarts


def test_an_app_moved_here_is_not_started_before_it_arrives(
    manager: tuple[AppManager, FakeChain],
) -> None:
    apps, chain = manager
    app, spec, tag = _new_app()
    slot = Slot(len(chain.blocks) + 1)
    record = AppRecord(app, spec, node=ME.node, last_move_slot=slot)
    chain.append((record,), (PlanEntry(PlanAction.MIGRATE, app, OTHER, ME.node),))
    _reconcile(apps)
    assert _pids(tag) == set()
    assert apps.runtime.list() == ()


def test_a_move_below_memory_is_read_from_the_store() -> None:
    chain = FakeChain()
    app, spec, _ = _new_app()
    placed = _place(chain, app, spec)
    moved = replace(placed, node=OTHER, last_move_slot=Slot(len(chain.blocks) + 1))
    chain.append((moved,), (PlanEntry(PlanAction.MIGRATE, app, ME.node, OTHER),))
    for _ in range(3):
        chain.append((moved,))
    place_hash, migrate_hash = chain.get_chain()[1:3]
    stored = chain.forget_below(5)

    # Memory no longer reaches the MIGRATE's slot: out of reach without the store.
    assert find_placing_entry(chain, moved) is None
    found = find_placing_entry(chain, moved, stored)
    assert found == (migrate_hash, PlanEntry(PlanAction.MIGRATE, app, ME.node, OTHER))
    # The store's block at a slot is only the answer for a move at that slot.
    assert find_placing_entry(chain, placed, stored) == (
        place_hash, PlanEntry(PlanAction.PLACE, app, NodeId(bytes(32)), ME.node),
    )  # fmt: skip
    assert find_placing_entry(chain, replace(moved, app=get_app(_counter("x"))), stored) is None
    # Below memory, a block is on the head chain when the archive has it finalized.
    assert is_on_head_chain(chain, migrate_hash, stored)
    assert not is_on_head_chain(chain, migrate_hash)
    assert not is_on_head_chain(chain, BlockHash(b"\x09" * 32), stored)
    # A move still in memory never consults the store.
    recent = replace(moved, node=ME.node, last_move_slot=Slot(6))
    assert chain.append((recent,), (PlanEntry(PlanAction.MIGRATE, app, OTHER, ME.node),)) == 6
    reads = stored.reads
    assert find_placing_entry(chain, recent, stored)
    assert is_on_head_chain(chain, chain.get_chain()[-1], stored)
    assert stored.reads == reads


def test_an_offer_of_a_move_below_memory_is_still_planned() -> None:
    """A destination restarted from a snapshot taken after the MIGRATE still accepts
    the origin's offer: the block is finalized, on every later head chain."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    entry = PlanEntry(PlanAction.MIGRATE, app, OTHER, ME.node)
    record = AppRecord(app, spec, node=ME.node, last_move_slot=Slot(1))
    chain.append((record,), (entry,))
    [_, migrate_hash] = chain.get_chain()
    for _ in range(3):
        chain.append((record,))
    head = HeadQueries(ME.node)
    head.engine = chain
    assert head.is_planned(migrate_hash, entry)
    head.archive = chain.forget_below(3)
    assert head.is_planned(migrate_hash, entry)
    assert not head.is_planned(migrate_hash, replace(entry, destination=OTHER))
    head.archive = None
    assert not head.is_planned(migrate_hash, entry)


def test_an_app_placed_before_memory_starts_again_after_a_restart(tmp_path: Path) -> None:
    """The chaos run's lost app: a node stopped (full disk) and restarted from its
    snapshot no longer held the block that PLACEd its app, found no reason to start it,
    and left it placed on itself, running nowhere."""
    chain = FakeChain()
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    for _ in range(8):
        chain.append((record,))
    stored = chain.forget_below(4)
    for archived in (None, stored):
        apps = AppManager(tmp_path / f"node-{archived is None}", ME.node, ME.sk)
        apps.attach(chain, archived)
        try:
            _reconcile(apps)
            if archived is None:
                assert _pids(tag) == set()  # what the node did before it read its store
            else:
                _single_pid(tag)
                assert [a.app for a in apps.runtime.list()] == [app]
        finally:
            asyncio.run(apps.close())
    _wait_none(tag)


def test_a_replica_is_dropped_once_the_app_runs_here_not_while_an_old_copy_waits() -> None:
    """``Replicator.get_unwanted``: a node the app left by an earlier handover holds
    that copy's older state; a RECOVER back to it starts from the replica, so the
    replica stays until the app runs here (a live run once lost 4 counts to this)."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    other = make_identity(9).node
    replicator = Replicator(ME.node, chain.get_head_state)
    # RECOVERed here (its replica node, so the registry names none now).
    chain.append((AppRecord(app, spec, node=ME.node, last_move_slot=Slot(1)),))
    state = chain.get_head_state()
    assert state is not None
    assert replicator.get_unwanted(state, [app], running=[]) == []
    assert replicator.get_unwanted(state, [app], running=[app]) == [app]
    # This node is its replica node again: kept while the app runs elsewhere.
    chain.append((AppRecord(app, spec, node=other, replica_node=ME.node),))
    state = chain.get_head_state()
    assert state is not None
    assert replicator.get_unwanted(state, [app], running=[]) == []
    # Neither its node nor its replica node, or gone from the chain: dropped.
    chain.append((AppRecord(app, spec, node=other),))
    state = chain.get_head_state()
    assert state is not None
    assert replicator.get_unwanted(state, [app], running=[]) == [app]
    chain.append(())
    state = chain.get_head_state()
    assert state is not None
    assert replicator.get_unwanted(state, [app], running=[]) == [app]


def test_a_former_replica_node_keeps_its_replica_until_the_new_one_has_it() -> None:
    """``Replicator.is_passing_on``: the chain named another replica node (or none, the
    old one excluded); the old one keeps its replica, hands it on to the new one under
    the host's signature (which the new one accepts as the host's), and drops it only
    once handed on. Before, it dropped it at once, and a host cut off from the new
    replica node and then down had its app recovered there from nothing (chaos,
    session 50: 0 after 189 counts)."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    spec = replace(spec, stateful=True, replica_interval_slots=3)
    host, new_keeper = make_identity(9).node, make_identity(10).node
    former = Replicator(ME.node, chain.get_head_state)
    chain.append((AppRecord(app, spec, node=host, replica_node=ME.node),))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_handoffs(state, [app]) == []  # its replica node: nothing to pass on
    # Excluded: the chain names no replica node; the replica stays, with nowhere to go.
    chain.append((AppRecord(app, spec, node=host),))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == []
    assert former.get_handoffs(state, [app]) == []
    # A new replica node: handed on there, as the host's replica.
    chain.append((AppRecord(app, spec, node=host, replica_node=new_keeper),))
    state = chain.get_head_state()
    assert state is not None
    handoff = Handoff(app, new_keeper, frozenset((host,)), passing_on=True)
    # A move's hand-off there once (as the replica node then) is no passing on: a
    # live run dropped the replica at once after one.
    former.on_handed(replace(handoff, passing_on=False), 3, ok=True)
    assert former.get_unwanted(state, [app], running=[]) == []
    assert former.get_handoffs(state, [app]) == [handoff]
    assert former.get_handoffs(state, []) == []  # none stored: none to hand on
    assert Replicator(new_keeper, chain.get_head_state).is_wanted(app, host)
    former.on_handed(handoff, 7, ok=False)  # unreachable: kept, tried again
    assert former.get_unwanted(state, [app], running=[]) == []
    assert former.get_handoffs(state, [app]) == [handoff]
    former.on_handed(handoff, 7, ok=True)
    assert former.get_handoffs(state, [app]) == []
    assert former.get_unwanted(state, [app], running=[]) == [app]
    # Its replica node again, then not: it passes its replica on again.
    chain.append((AppRecord(app, spec, node=host, replica_node=ME.node),))
    state = chain.get_head_state()
    assert state is not None
    former.on_head(state)
    assert former.get_unwanted(state, [app], running=[]) == []
    chain.append((AppRecord(app, spec, node=host, replica_node=new_keeper),))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == []
    assert former.get_handoffs(state, [app]) == [handoff]
    # An app without replicas (an update turned them off) keeps none anywhere else.
    chain.append((AppRecord(app, replace(spec, replica_interval_slots=0), node=host),))
    state = chain.get_head_state()
    assert state is not None
    assert Replicator(ME.node, chain.get_head_state).get_unwanted(state, [app], []) == [app]


def test_a_former_replica_node_keeps_a_passed_on_replica_for_the_next_replica_node() -> None:
    """``Replicator.is_retaining``: passed on, the replica stays ``retain_slots`` slots.
    If the new replica node then recovers the app (its host down), the chain names a
    next replica node, and the former one passes its replica on there too, under the
    first host's signature, which the next one accepts while the recovery has not
    landed. Before, it was dropped once passed on, and the recovering node paused a
    slot later left the app to start from nothing (chaos, session 50, seed 5353)."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    spec = replace(spec, stateful=True, replica_interval_slots=3)
    host, keeper, next_keeper = (make_identity(i).node for i in (9, 10, 11))
    former = Replicator(ME.node, chain.get_head_state)
    chain.append((AppRecord(app, spec, node=host, replica_node=keeper),))
    state = chain.get_head_state()
    assert state is not None
    handoff = Handoff(app, keeper, frozenset((host,)), passing_on=True)
    assert former.get_handoffs(state, [app]) == [handoff]
    former.on_handed(handoff, 1, ok=True, retain_slots=4)
    assert former.get_handoffs(state, [app]) == []
    assert former.get_unwanted(state, [app], running=[]) == []  # retained
    # The host is down: recovered on the keeper, the next keeper named in the same plan.
    recovered = AppRecord(
        app, spec, node=keeper, replica_node=next_keeper, previous_node=host,
        last_move_slot=Slot(2), move_landed=False,
    )  # fmt: skip
    chain.append((recovered,))
    state = chain.get_head_state()
    assert state is not None
    onward = Handoff(app, next_keeper, frozenset((keeper, host)), passing_on=True)
    assert former.get_handoffs(state, [app]) == [onward]
    assert Replicator(next_keeper, chain.get_head_state).is_wanted(app, host)
    assert former.get_unwanted(state, [app], running=[]) == []
    former.on_handed(onward, 1, ok=True, retain_slots=4)
    for _ in range(3):  # kept 4 slots after the last passing on, then dropped
        assert former.get_unwanted(state, [app], running=[]) == []
        chain.append((recovered,))
        state = chain.get_head_state()
        assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == []
    chain.append((recovered,))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == [app]


def test_the_state_node_keeps_its_replica_however_long_ago_it_passed_it_on() -> None:
    """The head names this node the app's confirmed ``state_node``: a RECOVER may come
    here (``placement.get_state_holder``), so the replica stays past the retention, and
    goes once the app runs here or another node is the state node. A live run lost the
    state to this (session 60: the RECOVER started the counter from 0 after 29)."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    spec = replace(spec, stateful=True, replica_interval_slots=3)
    host, keeper = make_identity(9).node, make_identity(10).node
    former = Replicator(ME.node, chain.get_head_state)
    record = AppRecord(app, spec, node=host, replica_node=keeper, state_node=ME.node)
    chain.append((record,))
    state = chain.get_head_state()
    assert state is not None
    (handoff,) = former.get_handoffs(state, [app])
    former.on_handed(handoff, 1, ok=True, retain_slots=2)
    for _ in range(4):  # past the retention
        chain.append((record,))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == []
    assert former.get_unwanted(state, [app], running=[app]) == [app]
    chain.append((replace(record, state_node=keeper),))
    state = chain.get_head_state()
    assert state is not None
    assert former.get_unwanted(state, [app], running=[]) == [app]


def _new_unlanded_move() -> tuple[FakeChain, AppId, NodeId, NodeId]:
    """A chain whose head moved a replicated app from us to a destination (not landed):
    (chain, app, destination, replica node)."""
    chain = FakeChain()
    app, spec, _ = _new_app()
    spec = replace(spec, stateful=True, replica_interval_slots=3)
    destination, replica_node = make_identity(9).node, make_identity(10).node
    moved = AppRecord(
        app, spec, node=destination, last_move_slot=Slot(1), replica_node=replica_node,
        previous_node=ME.node, move_landed=False,
    )  # fmt: skip
    chain.append((moved,))
    return chain, app, destination, replica_node


def _land(chain: FakeChain, app: AppId, destination: NodeId) -> BlockState:
    """The head state once the destination reported running the app after the move."""
    listing = AppUsage(app, 10, 10, 0, 0, 0)
    landed = ResourceReport(destination, Slot(2), 0, 0, 0, 0, 0, (listing,), NO_REPORT_SIGNATURE)
    assert chain.head is not None
    state = chain.get_head_state()
    assert state is not None
    chain.states[chain.head] = replace(state, reports=(landed,))
    state = chain.get_head_state()
    assert state is not None
    return state


def test_the_origin_of_a_move_that_has_not_landed_sends_the_replicas() -> None:
    """``replication.is_sender``: a handover that cannot land leaves the app running on
    its origin until the chain recovers it, onto its replica node when it has one; the
    origin's replicas keep that node's copy current meanwhile, and stop once the app
    has landed (its node reported running it since the move)."""
    chain, app, destination, replica_node = _new_unlanded_move()
    sender = Replicator(ME.node, chain.get_head_state)
    keeper = Replicator(replica_node, chain.get_head_state)
    state = chain.get_head_state()
    assert state is not None
    assert [d.replica_node for d in sender.get_due(state, running=[app])] == [replica_node]
    assert sender.get_due(state, running=[]) == []  # the save stopped it: nothing to send
    assert keeper.is_wanted(app, ME.node) and keeper.is_wanted(app, destination)
    assert not keeper.is_wanted(app, make_identity(11).node)
    assert not Replicator(make_identity(11).node, chain.get_head_state).is_wanted(app, ME.node)
    # Landed: the destination's report after the move lists it; the origin stops.
    state = _land(chain, app, destination)
    assert sender.get_due(state, running=[app]) == []
    assert not keeper.is_wanted(app, ME.node) and keeper.is_wanted(app, destination)


def test_the_replica_node_hands_its_replica_on_to_where_an_unlanded_move_goes() -> None:
    """``Replicator.get_handoffs``: while a move has not landed, the app's replica node
    sends its replica (the origin's) on to the destination, which accepts it from that
    origin only (``is_wanted``); once the app lands, neither happens."""
    chain, app, destination, replica_node = _new_unlanded_move()
    state = chain.get_head_state()
    assert state is not None
    keeper = Replicator(replica_node, chain.get_head_state)
    receiver = Replicator(destination, chain.get_head_state)
    handoff = Handoff(app, destination, frozenset((ME.node,)))
    assert keeper.get_handoffs(state, [app]) == [handoff]
    for other in (ME.node, destination, make_identity(11).node):  # only the replica node
        assert Replicator(other, chain.get_head_state).get_handoffs(state, []) == []
    assert receiver.is_wanted(app, ME.node)
    assert not receiver.is_wanted(app, make_identity(11).node)
    assert not receiver.is_wanted(app, destination)
    # One at a time, and each replica once.
    keeper.handing.add(app)
    assert keeper.get_handoffs(state, [app]) == []
    keeper.on_handed(handoff, 5, ok=True)
    assert keeper.get_handoffs(state, [app]) == [handoff]
    assert not keeper.is_handoff_new(handoff, 5) and keeper.is_handoff_new(handoff, 6)
    keeper.on_handed(handoff, 6, ok=False)
    assert keeper.is_handoff_new(handoff, 6)
    # Landed: the destination reported running it since the move.
    state = _land(chain, app, destination)
    assert keeper.get_handoffs(state, [app]) == []
    assert not receiver.is_wanted(app, ME.node)


def test_the_kept_log_of_an_app_that_left_goes_when_the_chain_removes_the_app(
    manager: tuple[AppManager, FakeChain], caplog: pytest.LogCaptureFixture
) -> None:
    """The copy here was deleted after a move (its log kept, ``app_log.keep_log``);
    the node holds nothing of the app when the chain removes it, so no REMOVE of its
    own deletes the log: the pass over the kept logs does, once the removal shows."""
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    apps, chain = manager
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    _reconcile(apps)
    wait_count_above(apps.runtime.get_state_dir(app), 1)
    moved = replace(record, node=OTHER, last_move_slot=Slot(len(chain.blocks) + 1))
    chain.append((moved,), (PlanEntry(PlanAction.MIGRATE, app, ME.node, OTHER),))
    apps.runtime.remove(app)  # the origin's copy goes once the destination runs it
    _wait_none(tag)
    assert app in apps.runtime.get_kept_logs()
    _reconcile(apps)
    assert apps.runtime.get_log_tail(app, 10) is not None  # the app still exists
    chain.append(())  # REMOVE of `app`
    _reconcile(apps)
    assert apps.runtime.get_log_tail(app, 10) is None
    assert app not in apps.runtime.get_kept_logs()
    assert [e["app"] for e in _events(caplog, "app log discarded")] == [bytes(app).hex()[:16]]


def test_a_recovered_app_waits_a_moment_for_its_replica_hand_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Chaos, session 61 (seed 6565): a node recovering a counter with no replica of it
    started it from 0 after 823 counts, in the same 0.1 s as the replica node's hand-on
    (789 counts) was stored there. A RECOVER or "origin down" start of an app with
    replicas, on a node holding none, now waits up to ``HANDOFF_WAIT_MIN_S`` (or a slot)
    from its first try for the hand-on, then starts from nothing as before.

    Chaos, session 64 (seed 6969): such a start, its node and replica node cut off
    together, was logged as a plain "app started". It is now a warning, counted, and
    the copy's view says so until the app starts here with state."""
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    chain = FakeChain()
    app, spec, tag = _new_app()
    replicated = replace(spec, stateful=True, replica_interval_slots=2)
    apps = AppManager(tmp_path / "node", ME.node, ME.sk)
    apps.attach(chain)
    starter = apps.starter
    try:
        # No wait: another reason, an app without replicas.
        other = AppId(b"\x07" * 32)
        assert not starter.is_waiting_for_handoff(other, replicated, "reconcile", 0.0)
        assert not starter.is_waiting_for_handoff(other, spec, "origin down", 0.0)
        # Through the start itself: the first tries start nothing ...
        asyncio.run(starter.start_if_stopped(app, replicated, "recover", 1, now=100.0))
        asyncio.run(starter.start_if_stopped(app, replicated, "recover", 1, now=101.5))
        assert _pids(tag) == set() and not apps.runtime.is_running(app)
        assert starter.starts_without_state == 0 and starter.get_loss(app) is None
        # ... and once the wait is over it starts, from nothing, and says so.
        asyncio.run(starter.start_if_stopped(app, replicated, "recover", 1, now=102.0))
        _single_pid(tag)
        lost = "no replica of it reached this node within 2 s"
        assert [e["state_lost"] for e in _events(caplog, "app started without its state")] == [lost]
        assert _events(caplog, "app started") == []
        loss = starter.get_loss(app)
        assert loss is not None and loss.why == "recover" and loss.cause == lost
        assert starter.starts_without_state == 1
        asyncio.run(apps.usage.measure())
        (view,) = apps.views
        assert view.state_lost == loss.describe()
        # The start ends that wait: a later recovery here waits again, from its own try.
        assert starter.is_waiting_for_handoff(app, replicated, "recover", 200.0)
        # A node with the app's own state dir and no mark of a handover (an unlanded
        # move's origin keeps it, newer than any replica) starts from it at once.
        apps.runtime.stop(app)
        _wait_none(tag)
        asyncio.run(starter.start_if_stopped(app, replicated, "recover", 1, now=300.0))
        _single_pid(tag)
        # That start had state: the note ends, and the count stays.
        assert starter.get_loss(app) is None and starter.starts_without_state == 1
        assert len(_events(caplog, "app started")) == 1
        # A stateful app with no replicas, recovered onto a node that holds no copy of
        # it, starts at once and from nothing: its state stayed on the node given up.
        bare, bare_spec, bare_tag = _new_app()
        bare_spec = replace(bare_spec, stateful=True)
        asyncio.run(starter.start_if_stopped(bare, bare_spec, "recover", 1, now=400.0))
        _single_pid(bare_tag)
        bare_loss = starter.get_loss(bare)
        assert bare_loss is not None and bare_loss.cause == NO_REPLICAS
        assert starter.starts_without_state == 2
        # A placement of a new app loses nothing.
        fresh, fresh_spec, fresh_tag = _new_app()
        fresh_spec = replace(fresh_spec, stateful=True)
        asyncio.run(starter.start_if_stopped(fresh, fresh_spec, "place", 1, now=500.0))
        _single_pid(fresh_tag)
        assert starter.get_loss(fresh) is None and starter.starts_without_state == 2
        apps.runtime.remove(bare)
        apps.runtime.remove(fresh)
        _wait_none(bare_tag)
        _wait_none(fresh_tag)
    finally:
        asyncio.run(apps.close())
    _wait_none(tag)


def test_a_copy_handed_over_and_recovered_here_yields_to_a_later_replica(tmp_path: Path) -> None:
    """Session 62, the suite's exactly-once run: a counter migrated from node-005 to
    node-004 at slot 25; node-004 ran it, sent a replica (41 counts, slot 26) to the
    replica node and froze in a pause before any report showed the app. The RECOVER of
    slot 39 went back to node-005, the move's origin, which started the counter from the
    copy it kept at the handover (37), 12 ms before the replica node's hand-on of 41
    arrived. A copy marked as handed over now yields to a replica taken by another node
    from the handover's slot on, and waits a moment for one; a replica it took itself
    is older than its copy. The counts show which state each start used."""
    chain = FakeChain()
    app, spec, tag = _new_app()
    replicated = replace(spec, stateful=True, replica_interval_slots=2)
    apps = AppManager(tmp_path / "node", ME.node, ME.sk)
    apps.attach(chain)
    starter, store, runtime = apps.starter, apps.replicas, apps.runtime
    state = runtime.get_state_dir(app)
    try:
        runtime.start(app, replicated, version=1)
        wait_count_above(state, 2)
        snapshot = runtime.snapshot(app)  # the replica's state: fewer counts than the copy
        archive = tmp_path / "replica.tar"
        snapshot.archive.replace(archive)
        with tarfile.open(archive) as tar, tar.extractfile("state/count") as file:  # type: ignore[union-attr]
            taken = int(file.read())
        wait_count_above(state, taken + 3)
        runtime.stop(app)
        _wait_none(tag)
        kept = read_count(state)
        digest, size = hash_file(archive), archive.stat().st_size

        def put(origin: NodeId, slot: int) -> None:
            store.remove(app)
            copy = tmp_path / f"replica-{slot}.tar"
            copy.write_bytes(archive.read_bytes())
            assert store.put(app, origin, slot, copy, digest, size) is not None

        starts: list[int] = []

        def get_start_count() -> int:
            """What the start just made began from, read from the counter's own log."""
            log = runtime.get_app_dir(app) / "app.log"

            def is_logged() -> bool:
                starts[:] = [int(x) for x in re.findall(r"starting from (\d+)\n", log.read_text())]
                return len(starts) > seen

            seen = len(starts)
            wait_until(is_logged)
            return starts[-1]

        def start(now: float) -> None:
            asyncio.run(starter.start_if_stopped(app, replicated, "recover", 1, now=now))

        def stop_and_restore_kept() -> None:
            runtime.stop(app)
            _wait_none(tag)
            (state / "count").write_text(f"{kept}\n")

        assert get_start_count() == 0  # the first start's line, before those below
        handovers = apps.migrations.handovers
        # Each waits for the hand-on first, then starts from the kept copy: handed over
        # and no replica here yet; a replica this node took itself, even of a later
        # slot (older than its copy); another node's from before the handover.
        for now, replica in ((100.0, None), (200.0, (ME.node, 30)), (300.0, (OTHER, 24))):
            handovers.mark(BlockHash(b"\x09" * 32), app, Slot(25))
            if replica is not None:
                put(*replica)
            start(now)
            assert _pids(tag) == set(), replica
            start(now + 2.0)
            _single_pid(tag)
            assert get_start_count() == kept, replica
            assert handovers.get_slot(app) is None, "it runs here: the mark is spent"
            stop_and_restore_kept()
        # The destination's replica from the handover's slot on: restored, at once.
        handovers.mark(BlockHash(b"\x09" * 32), app, Slot(25))
        put(OTHER, 25)
        start(400.0)
        _single_pid(tag)
        assert get_start_count() == taken
    finally:
        asyncio.run(apps.close())
    _wait_none(tag)
