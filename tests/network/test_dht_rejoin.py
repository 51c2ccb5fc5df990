"""A join that no seed answered is tried again (``DhtNode._on_joined``).

Found at 5000 simulated nodes (committee 256, preset genesis): every node joins through
node 0 at once; beyond ``max_pending`` outstanding requests node 0 drops a FindNode from
a sender it cannot ping back, so 783 joiners ended with only node 0 in their table and
in nobody's, the gossip overlay never reached them, and the simulator's agreement check
failed on nodes 5-9 slots behind.
"""

from __future__ import annotations

import random
from collections import Counter

from edgechain.network.dht import DhtNode
from edgechain.network.dht_config import DhtConfig
from edgechain.network.dht_events import LookupFinished, LookupPurpose
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, DhtMessage, FindNode, Nodes

from .dht_harness import DhtHarness

SELF = NodeId(b"\x00" * 32)
BOOT = Contact(NodeId(b"\x80" + b"\x00" * 31), "10.0.0.1:7000")


def _finds(messages: list[tuple[Contact, DhtMessage]]) -> list[FindNode]:
    return [m for c, m in messages if c == BOOT and isinstance(m, FindNode)]


def test_a_join_nobody_answered_is_tried_again_later() -> None:
    node = DhtNode(SELF, random.Random(0), DhtConfig(request_timeout_ms=100))
    assert len(_finds(node.join(BOOT, now=0).messages)) == 1
    now, out = 0, None
    for _ in range(3):  # the bootstrap node stays silent through every attempt
        now += 100
        out = node.on_tick(now)
    assert out is not None
    assert LookupFinished(SELF, LookupPurpose.JOIN, ()) in out.events
    assert not node.is_joined
    assert out.next_wakeup_ms is not None and now + 50 <= out.next_wakeup_ms <= now + 100
    (again,) = _finds(node.on_tick(out.next_wakeup_ms).messages)
    assert again.target == SELF
    out = node.on_message(BOOT, Nodes(again.request_id, ()), now=out.next_wakeup_ms + 5)
    assert LookupFinished(SELF, LookupPurpose.JOIN, (BOOT,)) in out.events
    assert node.is_joined


def test_a_burst_of_joins_through_an_overloaded_bootstrap_leaves_nobody_out() -> None:
    # 60 nodes at once through a bootstrap that can ping back only 8 at a time.
    h = DhtHarness(seed=5, config=DhtConfig(max_pending=8))
    boot = h.add_node()
    h.join(boot, boot)
    nodes = [h.add_node() for _ in range(60)]
    for node in nodes:
        h.join(node, boot)
    h.run_for_ms(60_000)
    known_by = Counter(peer.node_id for node in [boot, *nodes] for peer in node.get_peers())
    assert all(node.is_joined for node in nodes)
    assert min(known_by[node.node_id] for node in nodes) > 0
    assert min(len(node.table) for node in nodes) > 1


def test_a_join_that_found_only_its_seed_is_joined_and_looks_again() -> None:
    """Seen in a 100-node testnet on two cores: the seed answered, every contact it named
    timed out, and the late joiner kept a table of one contact for the rest of the run."""
    node = DhtNode(SELF, random.Random(0), DhtConfig(request_timeout_ms=100))
    (find,) = _finds(node.join(BOOT, now=0).messages)
    named = Contact(NodeId(b"\x40" + b"\x00" * 31), "10.0.0.2:7000")
    out = node.on_message(BOOT, Nodes(find.request_id, (named,)), now=5)
    asked = [m for c, m in out.messages if c == named]
    assert asked, "the lookup asks the contact the seed named"
    now = 5
    while not node.is_joined:  # the named contact never answers
        now += 50
        out = node.on_tick(now)
        assert now < 2_000
    assert [c.node_id for c in node.get_peers()] == [BOOT.node_id]
    # Joined through the seed, but the lookup runs again later, through the seed.
    assert out.next_wakeup_ms is not None
    again: list[FindNode] = []
    for _ in range(40):
        now += 50
        again += [m for m in _finds(node.on_tick(now).messages) if m.target == SELF]
    assert again, "a join that found no one beyond its seeds is tried again"
    # This time the seed names a contact that answers: the node stops looking.
    other = Contact(NodeId(b"\x20" + b"\x00" * 31), "10.0.0.3:7000")
    out = node.on_message(BOOT, Nodes(again[-1].request_id, (other,)), now=now + 1)
    (ask,) = [m for c, m in out.messages if c == other and isinstance(m, FindNode)]
    node.on_message(other, Nodes(ask.request_id, ()), now=now + 2)
    assert other.node_id in {c.node_id for c in node.get_peers()}
    later = []
    for _ in range(400):
        now += 50
        later += [m for m in _finds(node.on_tick(now).messages) if m.target == SELF]
    assert not later, "once the join found someone, it is not tried again"
