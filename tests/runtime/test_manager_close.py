"""A node stops while a migration of one of its apps is being retried.

On Python 3.11, ``asyncio.wait_for`` may return a refused connect instead of raising
the cancellation that arrived with it, so a retry loop can lose the cancellation that
``AppManager.close`` sends; the loop then retried for as long as the head wanted the
move, and the node never stopped (its apps were left to the launcher's SIGKILL). The
client here loses every cancellation, the worst case.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.orchestrator.registry import AppRecord
from edgechain.runtime.manager import AppManager
from edgechain.runtime.samples import get_counter_spec
from edgechain.runtime.transfer import MigrationResult
from edgechain.runtime.transfer_client import MigrationOutcome
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, Slot

from .helpers import get_node_id

ME = make_identity(1)
APP = AppId(b"\x07" * 32)
BLOCK = BlockHash(b"\x01" * 32)


def test_close_ends_a_retrying_migration_that_swallows_cancellation(tmp_path: Path) -> None:
    manager = AppManager(tmp_path / "node", ME.node, ME.sk)
    spec = get_counter_spec(manager.runtime.kind)
    destination = get_node_id("destination")
    entry = PlanEntry(PlanAction.MIGRATE, APP, ME.node, destination)
    attempts: list[int] = []

    async def migrate(*args: Any, **kwargs: Any) -> MigrationResult:
        attempts.append(1)
        try:
            await asyncio.sleep(60)  # an attempt in progress: close() cancels it here
        except asyncio.CancelledError:
            if len(attempts) > 1:
                raise  # lose one cancellation only: a broken close() then fails, not hangs
            # What wait_for does when the connect failed at the moment it was cancelled.
        return MigrationResult(
            APP, BLOCK, MigrationOutcome.REFUSED, "connect_failed", 0, 0, 0, 0, 0, False, False
        )

    manager.client.migrate = migrate  # type: ignore[method-assign]
    manager.migrations._get_wanted_record = lambda *_: AppRecord(APP, spec, node=destination)  # type: ignore[method-assign]
    manager.head.is_node_down = lambda _: False  # type: ignore[method-assign,assignment]
    manager.head.get_destination = lambda _: ("127.0.0.1", 9)  # type: ignore[method-assign,assignment]

    async def run() -> None:
        manager.migrations.start(BLOCK, Slot(5), entry, spec)
        while not attempts:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(manager.close(), timeout=20)

    asyncio.run(run())
    assert attempts
