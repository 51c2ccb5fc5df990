"""An app a node started itself because its move's origin was down ("origin down",
``lifecycle.get_start_reason``) starts there again whenever it stops, also once the
origin is back: the start enters the move in the transfer ledger
(``reconcile._record_takeover``), as a migration received does.

Seen in a chaos run (session 49, 14-slot faults): the destination's copy was retired by
its watchdog during a partition, the origin had come back meanwhile, and the start
reason no longer held (the origin was not down, nothing had been received): the app
ran nowhere while the chain placed it on the destination, for 100 slots.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from edgechain.chain.model import ChainParams, PlanAction, PlanEntry
from edgechain.orchestrator.registry import AppRecord
from edgechain.runtime.manager import AppManager
from edgechain.runtime.transfer_common import get_ledger_path
from edgechain.types import Slot

from .helpers import wait_until
from .test_lifecycle import ME, OTHER, FakeChain, _new_app, _pids, _single_pid


def test_an_app_taken_over_from_a_down_origin_starts_again_once_the_origin_is_back(
    manager: tuple[AppManager, FakeChain],
) -> None:
    apps, chain = manager
    # Genesis now and ME seen in every block: ME's lease is valid. OTHER, the origin,
    # is never seen: down.
    chain.params = ChainParams("origin-down-test", int(time.time() * 1000), 1_000, 3)
    chain.members = (ME.node,)
    app, spec, tag = _new_app()
    record = AppRecord(
        app, spec, node=ME.node, last_move_slot=Slot(1), previous_node=OTHER, move_landed=False
    )
    chain.append((record,), (PlanEntry(PlanAction.MIGRATE, app, OTHER, ME.node),))
    assert chain.head is not None
    moved_in = chain.head
    asyncio.run(apps.reconcile())
    first = _single_pid(tag)
    assert get_ledger_path(apps.transfer_dir, moved_in, app).exists()

    # The origin is back (seen in every block from now on); the copy here is killed.
    chain.members = (ME.node, OTHER)
    chain.append((record,))
    os.killpg(first, signal.SIGKILL)
    wait_until(lambda: not _pids(tag))

    def is_started_again() -> bool:
        asyncio.run(apps.reconcile())  # the restart backoff lets it start after ~1 s
        return bool(_pids(tag) - {first})

    wait_until(is_started_again, timeout_s=20.0)
    assert _single_pid(tag) != first
