"""State replicas as the app manager carries them out each round (DESIGN.md, "Exactly
once", point 4; ``runtime/manager.py``).

:class:`ReplicaSync` starts the replica sends that ``Replicator`` (``runtime/
replication.py``) finds due for this node's running apps, each in a task, and drops
the stored replicas (``runtime/replica.py``) the head no longer wants here, once those
it should hand on have been.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from typing import Any

from edgechain.consensus.state import BlockState
from edgechain.errors import RejectReason
from edgechain.runtime.app_tasks import AppTasks
from edgechain.runtime.base import AppRuntimeError
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.replica import ReplicaStore
from edgechain.runtime.replication import DueReplica, Handoff, Replicator
from edgechain.runtime.threads import run_in_thread
from edgechain.runtime.transfer import TransferClient
from edgechain.telemetry import logs
from edgechain.types import AppId

log = logging.getLogger("edgechain.apps")


class ReplicaSync:
    """Sends replicas with ``client`` and prunes ``replicas``, as ``replicator`` says."""

    def __init__(
        self,
        client: TransferClient,
        replicas: ReplicaStore,
        replicator: Replicator,
        head: HeadQueries,
        tasks: AppTasks,
    ) -> None:
        self.client = client
        self.replicas = replicas
        self.replicator = replicator
        self.head = head
        self.tasks = tasks

    def send_due(self, running: Collection[AppId]) -> None:
        """Start the replica sends that are due (``runtime/replication.py``);
        ``running``: the apps running here, as last sampled."""
        state = self.head.get_head_state()
        if state is None:
            return
        for due in self.replicator.get_due(state, running):
            address = self.head.get_destination(due.replica_node)
            if address is None:
                continue
            self.replicator.in_flight.add(due.app)
            self.tasks.spawn(self._send_replica(due, *address))

    def hand_off_due(self) -> None:
        """Start the hand-offs of stored replicas (``Replicator.get_handoffs``): to the
        destinations of unlanded moves, and from a former replica node to the new one.
        A former replica node's replica that no receiver would take (not signed by an
        origin it accepts) counts as handed on: it is then dropped."""
        state = self.head.get_head_state()
        if state is None:
            return
        for handoff in self.replicator.get_handoffs(state, self.replicas.list_apps()):
            info = self.replicas.get(handoff.app)
            if info is None or not self.replicator.is_handoff_new(handoff, info.slot):
                continue
            if not info.signature or info.origin not in handoff.origins:
                if handoff.passing_on:  # nobody would take it: nothing to keep it for
                    self.replicator.on_handed(handoff, info.slot, ok=True)
                continue
            address = self.head.get_destination(handoff.to)
            if address is None:
                continue
            self.replicator.handing.add(handoff.app)
            self.tasks.spawn(self._hand_off(handoff, *address))

    async def _hand_off(self, handoff: Handoff, host: str, port: int) -> None:
        ok, slot = False, -1
        fields: dict[str, Any] = {
            "app": bytes(handoff.app).hex()[:16],
            "to": bytes(handoff.to).hex()[:16],
        }
        holding = contextlib.ExitStack()
        try:
            info = await run_in_thread(holding.enter_context, self.replicas.checkout(handoff.app))
            if info is None:
                return  # dropped meanwhile, or corrupt (logged)
            slot = fields["slot"] = info.slot
            result = await self.client.hand_off_replica(info, host, port)
            # A newer replica there (the origin reached it too) does the hand-off's job.
            ok = result.ok or result.reason == RejectReason.STALE_SLOT.value
            fields.update(outcome=result.outcome.value, reason=result.reason)
            logs.info(log, "replica handed on" if ok else "replica hand-off refused", **fields)
        except (AppRuntimeError, OSError) as exc:
            logs.warning(log, "replica hand-off failed", **fields, error=str(exc))
        finally:
            await run_in_thread(holding.close)
            self.replicator.on_handed(handoff, slot, ok, self._get_retain_slots(handoff))

    def _get_retain_slots(self, handoff: Handoff) -> int:
        """How long a former replica node keeps a replica it passed on
        (``Replicator.is_retaining``): K, for the host to go down and the app to be
        recovered from the new replica node, and two replica intervals after, for the
        recovered app's first replica to reach its next replica node."""
        record = self.head.get_head_record(handoff.app)
        interval = record.spec.replica_interval_slots if record is not None else 0
        return (self.head.get_down_after_slots() or 0) + 2 * interval

    async def _send_replica(self, due: DueReplica, host: str, port: int) -> None:
        ok = False
        fields: dict[str, Any] = {
            "app": bytes(due.app).hex()[:16],
            "slot": due.slot,
            "to": bytes(due.replica_node).hex()[:16],
        }
        try:
            result = await self.client.send_replica(due.app, due.slot, host, port)
            ok = result.ok
            fields.update(
                outcome=result.outcome.value,
                reason=result.reason,
                paused_ms=round(result.paused_ms, 1),
                transmit_ms=round(result.transmit_ms, 1),
                compressed_bytes=result.compressed_bytes,
            )
            logs.info(log, "replica sent" if ok else "replica refused", **fields)
        except (AppRuntimeError, OSError) as exc:
            logs.warning(log, "replica failed", **fields, error=str(exc))
        finally:
            self.replicator.on_sent(due, ok)

    def prune(self, state: BlockState, running: Collection[AppId]) -> None:
        """Drop the stored replicas the head no longer wants here (``running``: the apps
        running here, ``Replicator.get_unwanted``)."""
        stored = [info.app for info in self.replicas.list()]
        self.replicator.on_head(state)
        for app in self.replicator.get_unwanted(state, stored, running):
            self.replicas.remove(app)
            logs.info(log, "replica dropped", app=bytes(app).hex()[:16])
