"""What a ``DhtNode`` returns (``network/dht.py``): the messages to send, the events
for the node layer, the next wake-up; and why a lookup ran. Kept apart so the node and
the simulator read the DHT's outputs without the table and lookup machinery."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgechain.errors import RejectReason
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, DhtMessage


class LookupPurpose(enum.Enum):
    JOIN = "join"
    """Lookup of our own id through the bootstrap node (paper §4 step 4)."""
    REFRESH = "refresh"
    """Lookup of a random id in a bucket not looked up for a while."""
    FIND = "find"
    """Lookup the node layer asked for (:meth:`DhtNode.find`)."""


@dataclass(frozen=True)
class PeerAdded:
    contact: Contact


@dataclass(frozen=True)
class PeerRemoved:
    node_id: NodeId


@dataclass(frozen=True)
class LookupFinished:
    target: NodeId
    purpose: LookupPurpose
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class DhtRejected:
    """An answer that matched no request of ours (late, replayed, or from someone else)."""

    reason: RejectReason
    sender: NodeId


DhtEvent = PeerAdded | PeerRemoved | LookupFinished | DhtRejected


@dataclass
class DhtOutput:
    messages: list[tuple[Contact, DhtMessage]] = field(default_factory=list)
    events: list[DhtEvent] = field(default_factory=list)
    next_wakeup_ms: int | None = None
