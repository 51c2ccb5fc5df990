"""Migration and replica transfer, node to node over TCP (paper §3.3; DESIGN.md
"Migration execution" and "Exactly once").

One import point for the transfer: the origin side is ``transfer_client.py``
(:class:`TransferClient`: ``migrate`` an app out, with ``precopy_rounds.py`` for a
pre-copy; ``send_replica`` of an app's state, ``replica_send.py``),
the destination side ``transfer_server.py`` (:class:`TransferServer`: migrations into
the runtime, replicas into a ``ReplicaStore``), what both share ``transfer_common.py``,
the wire format ``protocol.py``. The modules were one until the replica path made the
file too long to read as a whole; importers keep using this one.
"""

from __future__ import annotations

from edgechain.runtime.replica_send import ReplicaOutcome, ReplicaResult
from edgechain.runtime.transfer_client import MigrationOutcome, MigrationResult, TransferClient
from edgechain.runtime.transfer_common import (
    OriginCheck,
    PlanCheck,
    ProgressCallback,
    ReplicaCheck,
    SpecCheck,
    TransferTimeouts,
)
from edgechain.runtime.transfer_server import ServerStats, TransferServer

__all__ = [
    "MigrationOutcome",
    "MigrationResult",
    "OriginCheck",
    "PlanCheck",
    "ProgressCallback",
    "ReplicaCheck",
    "ReplicaOutcome",
    "ReplicaResult",
    "ServerStats",
    "SpecCheck",
    "TransferClient",
    "TransferServer",
    "TransferTimeouts",
]
