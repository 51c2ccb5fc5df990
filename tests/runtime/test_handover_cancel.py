"""A migration out whose destination stops answering, then is recovered elsewhere.

What the live exactly-once test once saw: balancing MIGRATEd an app from node A to node
B just as B was paused; A's offer waited on B (a paused process's kernel still accepts
the connection) and held the app's lock, so reconcile skipped the app and A's copy ran
on. The chain then took B for down and RECOVERed the app on a third node C, which
started it at once: two copies, until A's attempt timed out.

Here ME is a real ``AppManager`` with a real ``ProcessRuntime`` over a fake chain, and
the destination is a real listening socket that never accepts (a paused node). While
the head places the app at the destination, ME's copy keeps running (it runs here
until it runs there); once the head places it on a third node, one reconcile pass
cancels the handover and stops ME's copy, without waiting for the transfer's timeouts.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgechain.chain.model import ChainParams, PlanAction, PlanEntry
from edgechain.consensus.messages import MigrationOrder
from edgechain.orchestrator.registry import AppRecord
from edgechain.runtime.manager import AppManager
from edgechain.testing import make_identity
from edgechain.types import NodeId, Slot

from .test_lifecycle import FakeChain, _new_app, _pids

ME = make_identity(1)
DESTINATION = make_identity(2)
THIRD = make_identity(3)


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
def silent_destination() -> Iterator[tuple[str, int]]:
    """A listening socket that never accepts: connects succeed, nothing is answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host, port = listener.getsockname()
        yield host, port


def _manager(root: Path, destination: tuple[str, int]) -> tuple[AppManager, FakeChain]:
    chain = FakeChain()
    # Genesis now, everyone seen in every block: ME's lease stays valid, nobody is down.
    chain.params = ChainParams("handover-test", int(time.time() * 1000), 1_000, 3)
    chain.members = (ME.node, DESTINATION.node, THIRD.node)
    manager = AppManager(root / "me", ME.node, ME.sk)
    manager.attach(chain)
    # The destination's transfer address comes from its registration, which the fake
    # chain's empty validator set lacks: point it at the silent socket.
    manager.head.get_destination = lambda _: destination  # type: ignore[method-assign,assignment]
    return manager, chain


def _entry(action: PlanAction, app: bytes, origin: NodeId, destination: NodeId) -> PlanEntry:
    return PlanEntry(action, app, origin, destination)  # type: ignore[arg-type]


def test_a_handover_the_head_no_longer_wants_is_cancelled_and_its_copy_stopped(
    tmp_path: Path, silent_destination: tuple[str, int]
) -> None:
    manager, chain = _manager(tmp_path, silent_destination)
    app, spec, tag = _new_app()

    async def run() -> None:
        try:
            chain.append(
                (AppRecord(app, spec, node=ME.node, last_move_slot=Slot(1)),),
                (_entry(PlanAction.PLACE, app, NodeId(bytes(32)), ME.node),),
            )
            await manager.reconcile()
            await _until(lambda: len(_pids(tag)) == 1, "the app to start here")

            # MIGRATE ME -> DESTINATION; the destination is paused: the offer hangs.
            migrate = _entry(PlanAction.MIGRATE, app, ME.node, DESTINATION.node)
            slot = chain.append(
                (AppRecord(app, spec, node=DESTINATION.node, last_move_slot=Slot(2)),),
                (migrate,),
            )
            assert chain.head is not None
            manager.on_order(MigrationOrder(chain.head, slot, migrate, spec))
            await _until(lambda: manager.tasks.lock(app).locked(), "the offer to be sent")
            await manager.reconcile()
            assert len(_pids(tag)) == 1, "the head still wants the handover: it runs here"
            assert app in manager.migrations.get_outgoing()

            # The chain takes the destination for down and RECOVERs the app on THIRD.
            chain.append(
                (AppRecord(app, spec, node=THIRD.node, last_move_slot=Slot(3)),),
                (_entry(PlanAction.RECOVER, app, DESTINATION.node, THIRD.node),),
            )
            assert app not in manager.migrations.get_outgoing(), "the lease stops listing it"
            await manager.reconcile()  # one pass: no second one would stop it otherwise
            await _until(lambda: not _pids(tag), "ME's stale copy to stop")
            assert not manager.tasks.lock(app).locked()
            # Its state stays (the chain may yet give the app back), nothing runs.
            assert manager.runtime.get_state_dir(app).is_dir()
            assert not manager.runtime.is_running(app)
        finally:
            await manager.close()

    asyncio.run(run())
