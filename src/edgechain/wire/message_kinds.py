"""Every message type an envelope carries and the rules fixed per type: which the envelope
signs, which are gossiped, and which travel in one UDP datagram (``Transport``)."""

from __future__ import annotations

import enum

from edgechain.consensus.messages import (
    AddressMsg,
    BlockMsg,
    CommandMsg,
    ExitMsg,
    GenesisMsg,
    InclusionMsg,
    Message,
    ReportMsg,
    SkipVoteMsg,
    VoteMsg,
)
from edgechain.wire.limits import MAX_DATAGRAM_BYTES, MAX_FRAME_BYTES
from edgechain.wire.messages import FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong

WireMessage = Message | Ping | Pong | FindNode | Nodes | GossipMsg | IHave | IWant
"""Everything that travels in an Envelope."""

GossipableMessage = BlockMsg | InclusionMsg | ExitMsg | AddressMsg | CommandMsg | GenesisMsg
"""What may sit inside a gossip wrapper (DESIGN.md: what is "gossiped")."""

ENVELOPE_SIGNED: frozenset[type] = frozenset({Ping, Pong, FindNode, Nodes})
"""Types whose envelope carries the sender's public key and signature: the DHT's, whose
whole job is binding node ids to addresses (``edgechain.proto`` explains).

Between two nodes that know each other's key, a 16-byte MAC under their session key
(``crypto/session.py``) stands in for the signature: the same authentication for
microseconds of CPU instead of two pairings. Every other message, signed app commands
included, is self-authenticating (a BLS signature on the chain object or vote inside),
so signing its envelope would only cost a pairing per hop; for those, the envelope's
``sender`` is an unauthenticated hint. Gossip, IHave and IWant are unsigned hints too:
what they lead to is checked by its id (SHA-256 of the payload) and by the payload's own
rule.
"""

GOSSIP_TYPES: tuple[type, ...] = (
    BlockMsg, InclusionMsg, ExitMsg, AddressMsg, CommandMsg, GenesisMsg
)  # fmt: skip

DATAGRAM_TYPES: tuple[type, ...] = (
    VoteMsg, SkipVoteMsg, ReportMsg, Ping, Pong, FindNode, Nodes, IHave, IWant
)  # fmt: skip
"""Sent over UDP when their encoding fits one datagram; see :func:`select_transport`."""


class Transport(enum.Enum):
    DATAGRAM = "udp"
    """One UDP datagram, at most ``MAX_DATAGRAM_BYTES``."""
    STREAM = "tcp"
    """One length-prefixed TCP frame, at most ``MAX_FRAME_BYTES``."""


def get_max_size(transport: Transport) -> int:
    return MAX_DATAGRAM_BYTES if transport is Transport.DATAGRAM else MAX_FRAME_BYTES


def is_envelope_signed(message_type: type) -> bool:
    return message_type in ENVELOPE_SIGNED


def is_gossipable(message: object) -> bool:
    return isinstance(message, GOSSIP_TYPES)


def select_transport(message: WireMessage, encoded: bytes) -> Transport:
    """UDP for a datagram type whose encoding fits one datagram, TCP otherwise.

    Size decides, not only the type: a report with many applications, or a DHT answer
    with unusually long addresses, is still delivered (over TCP) rather than truncated.
    """
    if isinstance(message, DATAGRAM_TYPES) and len(encoded) <= MAX_DATAGRAM_BYTES:
        return Transport.DATAGRAM
    return Transport.STREAM
