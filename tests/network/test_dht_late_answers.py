"""Answers that arrive after their request timed out (``network/dht_requests.py``).

Seen in a 100-node testnet on two cores: RTTs of 1-3.7 s against the 2 s timeout, so
the ping that proves a new sender's address was answered after it had been given up,
and the sender never entered the table."""

from __future__ import annotations

import random

from edgechain.network.dht import DhtNode
from edgechain.network.dht_config import DhtConfig
from edgechain.network.dht_events import DhtRejected
from edgechain.network.dht_requests import LATE_ANSWER_MS
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, FindNode, Nodes, Ping, Pong

SELF = NodeId(b"\x00" * 32)
PEER = Contact(NodeId(b"\x80" + b"\x00" * 31), "10.0.0.1:7000")
OTHER = Contact(NodeId(b"\x40" + b"\x00" * 31), "10.0.0.2:7000")


def _node() -> DhtNode:
    node = DhtNode(SELF, random.Random(0), DhtConfig(request_timeout_ms=100))
    node.join(Contact(SELF, "10.0.0.9:7000"), now=0)  # alone: joined at once
    return node


def _ping_back(node: DhtNode, now: int) -> Ping:
    """PEER asks us something; we ping it back to prove its address."""
    out = node.on_message(PEER, FindNode(7, SELF), now)
    (ping,) = [m for c, m in out.messages if c == PEER and isinstance(m, Ping)]
    return ping


def test_a_pong_after_the_timeout_still_proves_the_contact() -> None:
    node = _node()
    ping = _ping_back(node, now=0)
    node.on_tick(150)  # the ping timed out
    assert PEER.node_id not in {c.node_id for c in node.get_peers()}
    out = node.on_message(PEER, Pong(ping.request_id), now=2_500)
    assert not [e for e in out.events if isinstance(e, DhtRejected)]
    assert PEER.node_id in {c.node_id for c in node.get_peers()}
    assert node.get_address(PEER.node_id) == PEER.address


def test_a_late_answer_counts_once_from_the_node_asked_and_not_forever() -> None:
    node = _node()
    ping = _ping_back(node, now=0)
    node.on_tick(150)
    # From someone else, or of the wrong kind: refused, and the request still open.
    out = node.on_message(OTHER, Pong(ping.request_id), now=200)
    assert [e for e in out.events if isinstance(e, DhtRejected)]
    # Too late: refused.
    node.on_tick(150 + LATE_ANSWER_MS + 1)
    out = node.on_message(PEER, Pong(ping.request_id), now=150 + LATE_ANSWER_MS + 2)
    assert [e for e in out.events if isinstance(e, DhtRejected)]
    assert PEER.node_id not in {c.node_id for c in node.get_peers()}
    # In time, then replayed: the replay is refused.
    node2 = _node()
    ping2 = _ping_back(node2, now=0)
    node2.on_tick(150)
    assert not [
        e
        for e in node2.on_message(PEER, Pong(ping2.request_id), 300).events
        if isinstance(e, DhtRejected)
    ]
    replay = node2.on_message(PEER, Pong(ping2.request_id), 400)
    assert [e for e in replay.events if isinstance(e, DhtRejected)]


def test_a_findnode_answered_late_still_feeds_its_lookup() -> None:
    node = _node()
    out = node.add_seeds([PEER], now=0)  # a lookup of our own id through PEER
    (first,) = [m for c, m in out.messages if c == PEER and isinstance(m, FindNode)]
    out = node.on_tick(150)  # timed out: PEER is asked again
    (again,) = [m for c, m in out.messages if c == PEER and isinstance(m, FindNode)]
    assert again.request_id != first.request_id
    # The first answer comes after all: the contact it names is asked next, as it
    # would have been in time (before session 33 the lookup ignored it).
    out = node.on_message(PEER, Nodes(first.request_id, (OTHER,)), now=300)
    assert not [e for e in out.events if isinstance(e, DhtRejected)]
    assert [m for c, m in out.messages if c == OTHER and isinstance(m, FindNode)]
    # The request asked again is then answered to no effect.
    out = node.on_message(PEER, Nodes(again.request_id, ()), now=400)
    assert not [m for c, m in out.messages if c == PEER and isinstance(m, FindNode)]
