"""State replicas as the app manager carries them out each round (DESIGN.md, "Exactly
once", point 4; ``runtime/manager.py``).

:class:`ReplicaSync` starts the replica sends that ``Replicator`` (``runtime/
replication.py``) finds due for this node's running apps, each in a task, and drops
the stored replicas (``runtime/replica.py``) the head no longer wants here.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from edgechain.consensus.state import BlockState
from edgechain.runtime.app_tasks import AppTasks
from edgechain.runtime.base import AppRuntimeError
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.replica import ReplicaStore
from edgechain.runtime.replication import DueReplica, Replicator
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
        for app in self.replicator.get_unwanted(state, stored, running):
            self.replicas.remove(app)
            logs.info(log, "replica dropped", app=bytes(app).hex()[:16])
