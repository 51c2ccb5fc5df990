"""The network's own messages, as frozen dataclasses (no protobuf needed to use them).

The consensus messages live in :mod:`edgechain.consensus.messages`; these are the
messages of the layers that carry them: the Kademlia DHT (paper §4 step 5: "the
bootstrapping node and all other nodes maintain a Kademlia-style DHT") and the gossip
wrapper with its pull repair (paper §3.1: blocks, inclusion requests and app commands
spread by gossip). The pure objects of :mod:`edgechain.network` and
the simulator exchange these dataclasses directly; :mod:`edgechain.wire.codec` maps
them to and from bytes (with :mod:`edgechain.wire.payload_encoding` and
:mod:`edgechain.wire.payload_decoding`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from edgechain.types import NodeId


@dataclass(frozen=True)
class Contact:
    """A node id and the address it answered from (``host:port`` on a real network)."""

    node_id: NodeId
    address: str


# --- DHT -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    """Liveness check; also the endpoint proof before a contact enters a routing table."""

    request_id: int


@dataclass(frozen=True)
class Pong:
    """Answer to :class:`Ping`, echoing its ``request_id``."""

    request_id: int


@dataclass(frozen=True)
class FindNode:
    """Kademlia FIND_NODE: the contacts closest to ``target`` that the peer knows."""

    request_id: int
    target: NodeId


@dataclass(frozen=True)
class Nodes:
    """Answer to :class:`FindNode`, echoing its ``request_id``."""

    request_id: int
    contacts: tuple[Contact, ...]


DhtMessage = Ping | Pong | FindNode | Nodes


# --- gossip ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GossipMsg:
    """A gossiped payload: ``message_id`` = SHA-256(payload), ``ttl`` = hops left.

    On the wire ``payload`` is a complete encoded Envelope from the origin, so the
    origin's authentication survives forwarding; the gossip layer treats it as opaque.
    """

    message_id: bytes
    ttl: int
    payload: bytes
    recent_ids: tuple[bytes, ...] = ()
    """The forwarding hop's announcements (pull repair on the push,
    ``network/gossip.py``): ids of other messages it holds. A hint, like an IHave; not
    part of ``message_id``."""


@dataclass(frozen=True)
class IHave:
    """Pull repair: ids of messages the sender saw recently (a heartbeat, not a push)."""

    message_ids: tuple[bytes, ...]


@dataclass(frozen=True)
class IWant:
    """Pull repair: send me these (answered with :class:`GossipMsg` of ttl 1)."""

    message_ids: tuple[bytes, ...]


GossipControl = IHave | IWant


def compute_message_id(payload: bytes) -> bytes:
    """The gossip de-duplication key: SHA-256 of the payload bytes."""
    return hashlib.sha256(payload).digest()
