"""Reorganisations against the reconciler (issue "Every app runs exactly once").

Two nodes, each a real ``AppManager`` with a real ``ProcessRuntime`` over its own fake
chain (``test_lifecycle.FakeChain``). Both first follow branch A, then switch to branch
B, as a reorg does; the process table is checked after every step: never two running
copies, and in the end exactly one, where branch B places the app.

The nodes switch one after the other, and the one that must start the app may switch
first: after a reorg a node starts nothing for one slot (``AppManager.on_head_changed``),
which gives the other node the time to stop the copy branch B no longer wants.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.chain.model import ChainParams, PlanAction, PlanEntry
from edgechain.orchestrator.registry import AppRecord
from edgechain.runtime.lease_renewal import FENCED, FENCED_HOLD
from edgechain.runtime.manager import AppManager
from edgechain.testing import make_identity
from edgechain.types import BlockHash, NodeId, Slot

from .helpers import read_count, wait_count_above, wait_until
from .test_lifecycle import FakeChain, _new_app, _pids

ME = make_identity(1)
THEM = make_identity(2)
SLOT_MS = 1_000


def _params() -> ChainParams:
    """Genesis now: both nodes are seen in every block, so their fencing leases (F slots
    after that) stay valid for the test; the slot duration sets the settle delay."""
    return ChainParams("reorg-test", int(time.time() * 1000), SLOT_MS, 3)


class Node:
    def __init__(self, root: Path, ident_index: int) -> None:
        ident = make_identity(ident_index)
        self.id = ident.node
        self.chain = FakeChain()
        self.chain.params = _params()
        self.chain.members = (ME.node, THEM.node)
        self.apps = AppManager(root / f"node-{ident_index}", ident.node, ident.sk)
        self.apps.attach(self.chain)

    def reconcile(self) -> None:
        asyncio.run(self.apps.reconcile())

    def switch_to(
        self, base: BlockHash, records: tuple[AppRecord, ...], plan: tuple[PlanEntry, ...]
    ) -> None:
        """Adopt a branch forking at ``base``: its block carries ``plan`` and leaves
        ``records``; the node learns of the reorg as its HeadChanged tells it."""
        self.chain.head = base
        self.chain.append(records, plan)
        self.apps.on_head_changed(reorg=True)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    me, them = Node(tmp_path, 1), Node(tmp_path, 2)
    try:
        yield me, them
    finally:
        asyncio.run(me.apps.close())
        asyncio.run(them.apps.close())


def _place(app: bytes, node: NodeId) -> PlanEntry:
    return PlanEntry(PlanAction.PLACE, app, b"", node)  # type: ignore[arg-type]


def test_a_reorg_that_reverts_a_place(nodes: tuple[Node, Node]) -> None:
    me, them = nodes
    app, spec, tag = _new_app()
    genesis = me.chain.head
    assert genesis is not None
    # Branch A places the app on ME.
    on_me = AppRecord(app, spec, node=me.id, last_move_slot=Slot(1))
    for node in (me, them):
        node.chain.append((on_me,), (_place(app, me.id),))
        node.reconcile()
    [pid_a] = _pids(tag)
    assert me.apps.runtime.process.get_pid(app) == pid_a
    # Branch B (heavier, say) placed it on THEM instead. THEM switches first.
    on_them = AppRecord(app, spec, node=them.id, last_move_slot=Slot(2))
    them.switch_to(genesis, (on_them,), (_place(app, them.id),))
    them.reconcile()
    assert _pids(tag) == {pid_a}, "THEM waits for the reorg to settle: ME still runs it"
    me.switch_to(genesis, (on_them,), (_place(app, them.id),))
    me.reconcile()
    wait_until(lambda: _pids(tag) == set())  # ME stopped its stale copy
    assert me.apps.runtime.get_state_dir(app).exists(), "its state is kept"
    time.sleep(SLOT_MS / 1000)  # the settle delay itself, not a wait for a condition
    them.reconcile()
    wait_until(lambda: len(_pids(tag)) == 1)
    [pid_b] = _pids(tag)
    assert them.apps.runtime.process.get_pid(app) == pid_b
    me.reconcile()
    them.reconcile()
    assert _pids(tag) == {pid_b}, "exactly once, where branch B places it"


def test_a_reorg_that_reverts_a_completed_migrate(nodes: tuple[Node, Node]) -> None:
    me, them = nodes
    app, spec, tag = _new_app()
    # Block 1 (on both branches) places the app on ME.
    on_me = AppRecord(app, spec, node=me.id, last_move_slot=Slot(1))
    for node in (me, them):
        node.chain.append((on_me,), (_place(app, me.id),))
    me.reconcile()
    wait_count_above(me.apps.runtime.get_state_dir(app), 3)
    fork = me.chain.head
    assert fork is not None
    # Branch A, block 2: MIGRATE ME -> THEM, carried out as the transfer does it: the
    # origin saves (frozen), the destination restores and starts and records it in its
    # ledger, the origin ends its copy and keeps the state it handed over.
    moved = AppRecord(app, spec, node=them.id, last_move_slot=Slot(2))
    migrate = PlanEntry(PlanAction.MIGRATE, app, me.id, them.id)
    for node in (me, them):
        node.chain.append((moved,), (migrate,))
    saved = me.apps.runtime.save(app)
    handed_over = read_count(me.apps.runtime.get_state_dir(app))
    them.apps.runtime.restore(app, spec, saved.archive)
    ledger = them.apps.transfer_dir / "ledger"
    ledger.mkdir(parents=True, exist_ok=True)
    assert them.chain.head is not None
    (ledger / f"{them.chain.head.hex()}-{app.hex()}").touch()
    me.apps.runtime.retire(app)
    for node in (me, them):
        node.reconcile()
    wait_until(lambda: len(_pids(tag)) == 1)
    [pid_a] = _pids(tag)
    assert them.apps.runtime.process.get_pid(app) == pid_a
    wait_count_above(them.apps.runtime.get_state_dir(app), handed_over + 2)
    # Branch B has no MIGRATE: the app is ME's again (its PLACE of block 1). ME, which
    # must start it, switches first.
    me.switch_to(fork, (on_me,), ())
    me.reconcile()
    assert _pids(tag) == {pid_a}, "ME waits for the reorg to settle: THEM still runs it"
    them.switch_to(fork, (on_me,), ())
    them.reconcile()
    wait_until(lambda: _pids(tag) == set())  # THEM stopped its stale copy
    time.sleep(SLOT_MS / 1000)  # the settle delay itself
    me.reconcile()
    wait_until(lambda: len(_pids(tag)) == 1)
    [pid_b] = _pids(tag)
    assert me.apps.runtime.process.get_pid(app) == pid_b
    # It continues from the state ME handed over, not from nothing (the few steps THEM
    # ran on branch A are lost with branch A).
    wait_count_above(me.apps.runtime.get_state_dir(app), handed_over)
    log = (me.apps.runtime.get_app_dir(app) / "app.log").read_text()
    assert f"counter: starting from {handed_over}" in log
    them.reconcile()
    assert _pids(tag) == {pid_b}, "exactly once, where branch B places it"


def test_nothing_starts_under_an_expired_lease(tmp_path: Path) -> None:
    """A node whose chain last saw it more than F slots ago holds no valid lease: the
    network may run its apps elsewhere already, so it starts none (the watchdog would
    only freeze a new copy at its next poll)."""
    node = Node(tmp_path, 1)
    try:
        # Genesis 100 slots ago; the node was last seen at slot 1 (this block).
        node.chain.params = ChainParams("reorg-test", int(time.time() * 1000) - 100_000, SLOT_MS, 3)
        app, spec, tag = _new_app()
        record = AppRecord(app, spec, node=node.id, last_move_slot=Slot(1))
        node.chain.append((record,), (_place(app, node.id),))
        node.reconcile()
        assert _pids(tag) == set()
        assert node.apps.runtime.list() == ()
        # Seen again (a block of the current slot): it starts.
        node.chain.params = _params()
        node.reconcile()
        wait_until(lambda: len(_pids(tag)) == 1)
    finally:
        asyncio.run(node.apps.close())


def test_an_app_the_watchdog_ends_under_an_expired_lease_is_fenced_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The chain stops seeing the node (a stall, a partition): the watchdog freezes the
    node's apps, then kills them. That is no failure of the app: it is not counted for
    the restart backoff nor logged as ``app failed``, the API shows it ``fenced`` with
    why (not ``crash_looping``), and once the chain sees the node again it starts at
    once, from its state here."""
    caplog.set_level(logging.INFO, logger="edgechain.apps")
    node = Node(tmp_path, 1)
    try:
        app, spec, tag = _new_app()
        record = AppRecord(app, spec, node=node.id, last_move_slot=Slot(1))
        node.chain.append((record,), (_place(app, node.id),))
        node.reconcile()
        wait_until(lambda: len(_pids(tag)) == 1)
        state = node.apps.runtime.get_state_dir(app)
        wait_count_above(state, 2)
        # The lease expires (the node was last seen at slot 1, 100 slots ago), and the
        # watchdog kills the app's group, as it does once the lease says retire.
        node.chain.params = ChainParams("reorg-test", int(time.time() * 1000) - 100_000, SLOT_MS, 3)
        [pid] = _pids(tag)
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        wait_until(lambda: _pids(tag) == set())
        counted = read_count(state)

        def fenced() -> bool:
            node.reconcile()
            asyncio.run(node.apps.usage.measure())
            [view] = node.apps.get_views()
            return bool(view["status"] == FENCED)

        wait_until(fenced)
        [view] = node.apps.get_views()
        assert view["hold"] == FENCED_HOLD and view["running"] is False
        assert node.apps.restarts.get_status(app, time.monotonic()) is None
        assert _pids(tag) == set(), "nothing starts under the expired lease"
        for _ in range(3):
            node.reconcile()  # each pass defers the start; the log says so once a minute
        deferred = [r for r in caplog.records if r.getMessage() == "start deferred: lease expired"]
        assert len(deferred) == 1
        # Seen again: it starts at once, from where it was, and nothing was a failure.
        node.chain.params = _params()
        node.reconcile()
        wait_until(lambda: len(_pids(tag)) == 1)
        wait_count_above(state, counted + 1)
        log = (node.apps.runtime.get_app_dir(app) / "app.log").read_text()
        assert f"counter: starting from {counted}" in log
        assert not [r for r in caplog.records if r.getMessage() == "app failed"]
    finally:
        asyncio.run(node.apps.close())
