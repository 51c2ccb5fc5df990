"""Migrations out of this node (DESIGN.md, "Migration execution"; ``runtime/manager.py``).

A MIGRATE from this node is offered to the destination's transfer server, retried with
backoff while the head chain still carries the block and still places the app there
(the destination may accept the block a moment after us, and refuses until then). The
transfer protocol guarantees the app is never lost and never runs twice.

:class:`MigrationsOut` runs one retry loop per app (:meth:`~MigrationsOut.start`), keeps
the last results for the API, marks a completed handover on disk
(``runtime/handovers.py``) so it is not offered again, and tells reconcile whether a
copy held here is still being handed over (:meth:`~MigrationsOut.is_handing_over`). A
handover the head no longer wants (the chain placed the app on a third node, e.g.
RECOVERed it because the destination was taken for down while our offer waited on it)
is cancelled by reconcile before anything else
(:meth:`~MigrationsOut.cancel_unwanted`): its attempt holds the app's lock for as long
as the transfer's timeouts allow, and our copy must stop now, not when they run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppSpec, PlanAction, PlanEntry
from edgechain.errors import LocalError
from edgechain.orchestrator.registry import AppRecord
from edgechain.runtime.app_tasks import AppTasks
from edgechain.runtime.handovers import HandoverMarks
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lifecycle import ChainView, HeldApp, find_placing_entry, is_on_head_chain
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer import MigrationResult, TransferClient
from edgechain.telemetry import logs
from edgechain.types import AppId, BlockHash, NodeId, Slot

log = logging.getLogger("edgechain.apps")

MIGRATE_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Backoff between offers of one migration; the last value repeats. An origin never
gives up while the head still places the app at an active destination: the app runs
here until it runs there (DESIGN.md, "Exactly once"); once the destination is down the
chain recovers the app elsewhere and this copy is stale."""
MAX_RESULTS = 100
CANCEL_WAIT_S = 10.0
"""How long reconcile waits for cancelled handovers to end (a save in progress ends
first; a cancellation swallowed by a refused connect ends at the loop's next check)."""


@dataclass(eq=False)
class Handover:
    """One app's migration out in progress: the MIGRATE it carries out and its task."""

    block_hash: BlockHash
    entry: PlanEntry
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    abandoned: bool = False
    """Set when the head no longer wants it: a cancelled attempt then leaves the app as
    the save left it (stopped, or paused for reconcile to stop) instead of resuming it."""

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class MigrationsOut:
    """The outgoing migrations of node ``node_id``, sent with ``client``; handovers are
    recorded under ``transfer_dir``; ``is_lease_valid``: may an app saved for a
    handover that failed run here again (``TransferClient.migrate``'s ``may_resume``)."""

    def __init__(
        self,
        node_id: NodeId,
        client: TransferClient,
        head: HeadQueries,
        tasks: AppTasks,
        transfer_dir: Path,
        *,
        is_lease_valid: Callable[[], bool] = lambda: True,
    ) -> None:
        self.node_id = node_id
        self.is_lease_valid = is_lease_valid
        self.client = client
        self.head = head
        self.tasks = tasks
        self.transfer_dir = transfer_dir
        self.handovers = HandoverMarks(transfer_dir)
        self.results: deque[dict[str, Any]] = deque(maxlen=MAX_RESULTS)
        self.outcomes: Counter[str] = Counter()
        """Every attempt's outcome since start (``results`` keeps the last few)."""
        self.on_result: Callable[[MigrationResult], None] | None = None
        """Told each attempt's result (the node's metrics)."""
        self._outgoing: dict[AppId, Handover] = {}
        """Migrations out in progress (the app runs here until the destination has it)."""

    def get_outgoing(self) -> Collection[AppId]:
        """The apps being handed over to where the head still places them (the fencing
        lease lists them)."""
        return [app for app, handover in self._outgoing.items() if self._is_wanted(handover)]

    def get_in_progress(self) -> list[AppId]:
        """Every app whose handover from here has not ended, wanted or not."""
        return list(self._outgoing)

    def start(self, block_hash: BlockHash, slot: Slot, entry: PlanEntry, spec: AppSpec) -> None:
        """Hand the app over, once: a second order for it waits for the first."""
        running = self._outgoing.get(entry.app)
        if running is not None and running.running:
            return
        handover = Handover(block_hash, entry)
        task = self.tasks.spawn(self._migrate_out(handover, slot, spec))
        handover.task = task
        self._outgoing[entry.app] = handover
        task.add_done_callback(lambda _: self._forget_outgoing(handover))

    def _forget_outgoing(self, handover: Handover) -> None:
        if self._outgoing.get(handover.entry.app) is handover:
            del self._outgoing[handover.entry.app]

    def _is_wanted(self, handover: Handover) -> bool:
        """Still running, on our head chain, to where the head places the app, and the
        destination not down."""
        return (
            handover.running
            and self._get_wanted_record(handover.block_hash, handover.entry) is not None
            and not self.head.is_node_down(handover.entry.destination)
        )

    async def cancel_unwanted(self) -> None:
        """Cancel every handover the head no longer wants and wait (up to
        ``CANCEL_WAIT_S``) for them to end, so reconcile can stop the copy at once:
        the chain runs the app elsewhere (a RECOVER after our destination was taken for
        down, a later move) or nowhere. Waiting out the attempt instead would run the
        app twice until the transfer's timeouts fire."""
        unwanted = [h for h in self._outgoing.values() if h.running and not self._is_wanted(h)]
        tasks = [h.task for h in unwanted if h.task is not None]
        for handover, task in zip(unwanted, tasks, strict=True):
            handover.abandoned = True
            task.cancel()
            logs.warning(
                log,
                "migration cancelled",
                app=bytes(handover.entry.app).hex()[:16],
                to=bytes(handover.entry.destination).hex()[:16],
                why="the head no longer places the app there",
            )
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)

    def is_handing_over(self, engine: ChainView, record: AppRecord | None, held: HeldApp) -> bool:
        """Are we (still) the origin of the head-chain MIGRATE that placed the app
        elsewhere, with the destination active? Then our copy runs until the destination
        has it: a handover that is not running (we restarted, or an earlier attempt was
        given up while the chain still wanted it) is started again."""
        if record is None or record.node in (None, self.node_id):
            return False
        handover = self._outgoing.get(record.app)
        if handover is not None and handover.running:
            # Only while the head places the app where this handover takes it: a copy
            # whose app the chain re-placed on a third node is stale (cancel_unwanted).
            return self._is_wanted(handover)
        found = find_placing_entry(engine, record, self.head.archive)
        if found is None:
            return False
        block_hash, entry = found
        if entry.action is not PlanAction.MIGRATE or entry.origin != self.node_id:
            return False
        if self.head.is_node_down(entry.destination):
            return False
        if self.handovers.is_marked(block_hash, record.app):
            return False  # done: what we hold is the state as we handed it over
        self.start(block_hash, Slot(record.last_move_slot or 0), entry, held.spec)
        return True

    def _get_wanted_record(self, block_hash: BlockHash, entry: PlanEntry) -> AppRecord | None:
        """The app's head record while the block is on our head chain and the registry
        still places the app at the entry's destination (a reorg, a later move or a
        REMOVE makes the offer pointless); None otherwise."""
        engine = self.head.engine
        if engine is None or not is_on_head_chain(engine, block_hash, self.head.archive):
            return None
        record = self.head.get_head_record(entry.app)
        return record if record is not None and record.node == entry.destination else None

    async def _migrate_out(self, handover: Handover, slot: Slot, spec: AppSpec) -> None:
        block_hash, entry = handover.block_hash, handover.entry
        app = entry.app
        attempt = 0
        fields: dict[str, Any] = {
            "app": bytes(app).hex()[:16],
            "name": spec.name,
            "slot": slot,
            "to": bytes(entry.destination).hex()[:16],
        }
        while not self.tasks.closing:
            record = self._get_wanted_record(block_hash, entry)
            if record is None or self.head.is_node_down(entry.destination):
                break
            address = self.head.get_destination(entry.destination)
            if address is None:
                logs.error(log, "no transfer address for destination", **fields)
                return
            async with self.tasks.lock(app):
                try:
                    # The head's spec, not the order's: the destination checks the offer
                    # against its head registry, and an UPDATE may have come in between.
                    result = await self.client.migrate(
                        block_hash,
                        entry,
                        record.spec,
                        *address,
                        may_resume=lambda: not handover.abandoned and self.is_lease_valid(),
                    )
                except LocalError as exc:
                    # Not running here (never started, or already gone): nothing to send.
                    logs.warning(log, "migration skipped", **fields, why=str(exc))
                    return
            self._record_result(result, fields, attempt)
            if result.ok:
                # Not offered again (is_handing_over); a RECOVER back here weighs our
                # kept copy against the destination's replicas (AppStarter).
                await run_in_thread(self.handovers.mark, block_hash, app, slot)
                return
            await asyncio.sleep(MIGRATE_RETRY_S[min(attempt, len(MIGRATE_RETRY_S) - 1)])
            attempt += 1
        # The head no longer places it there (a reorg, a later move, a REMOVE), the
        # destination is down (the chain recovers the app elsewhere) or this node is
        # stopping: reconcile decides what this copy is now (after a restart).
        logs.warning(log, "migration abandoned", **fields, attempts=attempt)

    def _record_result(self, result: MigrationResult, fields: dict[str, Any], attempt: int) -> None:
        entry = {
            **fields,
            "attempt": attempt,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "save_ms": round(result.save_ms, 1),
            "transmit_ms": round(result.transmit_ms, 1),
            "resume_ms": round(result.resume_ms, 1),
            "raw_bytes": result.raw_bytes,
            "compressed_bytes": result.compressed_bytes,
            "live": result.live,
            "precopy_rounds": result.precopy_rounds,
            "precopy_ms": round(result.precopy_ms, 1),
            "precopy_bytes": result.precopy_bytes,
        }
        self.results.append(entry)
        self.outcomes[result.outcome.value] += 1
        if self.on_result is not None:
            self.on_result(result)
        logs.info(log, "migration", **entry)
