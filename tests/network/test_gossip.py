"""Gossip: de-duplication, TTL, fan-out, and coverage of a 1000-node network."""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

import pytest

from edgechain.network.gossip import Gossip, GossipConfig
from edgechain.types import NodeId
from edgechain.wire.limits import MAX_GOSSIP_TTL, MAX_IHAVE_IDS
from edgechain.wire.messages import GossipMsg, IHave, IWant, compute_message_id


def _id(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


def _msg(payload: bytes, ttl: int = 8) -> GossipMsg:
    return GossipMsg(compute_message_id(payload), ttl, payload)


PEERS = [_id(i) for i in range(1, 41)]


def _gossip(fanout: int = 8, ttl: int = 8, seed: int = 0, **kw: int) -> Gossip:
    return Gossip(_id(0), random.Random(seed), GossipConfig(fanout, ttl, **kw), PEERS)


# --- one node ------------------------------------------------------------------------------


def test_first_sight_delivers_and_forwards_to_fanout_peers() -> None:
    g = _gossip()
    deliver, forwards = g.on_message(PEERS[0], _msg(b"block"), now=0)
    assert deliver
    targets = [peer for peer, _ in forwards]
    assert len(targets) == 8
    assert len(set(targets)) == 8
    assert PEERS[0] not in targets  # never back to the sender
    assert all(isinstance(m, GossipMsg) for _, m in forwards)
    assert all(m.ttl == 7 and m.payload == b"block" for _, m in forwards)  # type: ignore[union-attr]


def test_duplicates_are_neither_delivered_nor_forwarded() -> None:
    g = _gossip()
    g.on_message(PEERS[0], _msg(b"block"), now=0)
    assert g.on_message(PEERS[1], _msg(b"block", ttl=5), now=1) == (False, [])
    assert g.stats.duplicates == 1
    assert g.stats.delivered == 1


def test_own_message_is_not_delivered_back() -> None:
    g = _gossip()
    forwards = g.publish(b"mine", now=0)
    assert len(forwards) == 8
    assert all(m.ttl == 8 and m.message_id == compute_message_id(b"mine") for _, m in forwards)
    assert g.on_message(PEERS[3], forwards[0][1], now=1) == (False, [])


def test_last_hop_is_delivered_but_not_forwarded() -> None:
    g = _gossip()
    assert g.on_message(PEERS[0], _msg(b"x", ttl=1), now=0) == (True, [])


def test_oversized_ttl_is_clamped() -> None:
    g = _gossip()
    _, forwards = g.on_message(PEERS[0], _msg(b"x", ttl=1000), now=0)
    assert {m.ttl for _, m in forwards if isinstance(m, GossipMsg)} == {MAX_GOSSIP_TTL - 1}


def test_small_peer_lists_are_flooded() -> None:
    g = Gossip(_id(0), random.Random(1), GossipConfig(fanout=8), PEERS[:5])
    _, forwards = g.on_message(PEERS[0], _msg(b"x"), now=0)
    assert sorted(p for p, _ in forwards) == PEERS[1:5]


def test_peer_list_drops_self_and_repeats() -> None:
    g = _gossip()
    g.set_peers([_id(0), PEERS[0], PEERS[0], PEERS[1]])
    assert g.peers == (PEERS[0], PEERS[1])


def test_seen_cache_expires_by_time() -> None:
    g = _gossip(seen_ttl_ms=1_000)
    g.on_message(PEERS[0], _msg(b"x"), now=0)
    assert g.has_seen(compute_message_id(b"x"), now=999)
    assert not g.has_seen(compute_message_id(b"x"), now=1_000)
    assert g.seen_count == 0
    deliver, _ = g.on_message(PEERS[0], _msg(b"x"), now=1_000)
    assert deliver


def test_seen_cache_is_bounded() -> None:
    g = _gossip(max_seen=100)
    for i in range(1_000):
        g.on_message(PEERS[0], _msg(i.to_bytes(4, "big")), now=i)
    assert g.seen_count == 100
    assert g.has_seen(compute_message_id((999).to_bytes(4, "big")), now=1_000)
    assert not g.has_seen(compute_message_id((0).to_bytes(4, "big")), now=1_000)


def test_same_seed_same_choices() -> None:
    a = _gossip(seed=7).on_message(PEERS[0], _msg(b"x"), now=0)
    b = _gossip(seed=7).on_message(PEERS[0], _msg(b"x"), now=0)
    c = _gossip(seed=8).on_message(PEERS[0], _msg(b"x"), now=0)
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    "kw",
    [
        {"fanout": 0},
        {"ttl": 0},
        {"ttl": MAX_GOSSIP_TTL + 1},
        {"max_seen": 0},
        {"piggyback_ids": MAX_IHAVE_IDS + 1},
        {"announce_after_ms": -1},
    ],
)
def test_config_is_checked(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        GossipConfig(**kw)


# --- pull repair ------------------------------------------------------------------------


def test_heartbeat_announces_recent_ids_to_a_few_peers() -> None:
    # Announcements on the push off: the heartbeat alone (tested below with them on).
    g = _gossip(heartbeat_ms=1_000, history_ms=5_000, piggyback_ids=0)
    assert g.next_wakeup_ms is None
    g.on_message(PEERS[0], _msg(b"a"), now=0)
    g.publish(b"b", now=10)
    assert g.next_wakeup_ms == 1_000
    assert g.on_tick(999) == []
    announcements = g.on_tick(1_000)
    assert len(announcements) == 3
    ids = (compute_message_id(b"a"), compute_message_id(b"b"))
    assert all(m == IHave(ids) for _, m in announcements)
    assert g.next_wakeup_ms == 2_000


def test_heartbeat_stops_when_history_expires() -> None:
    g = _gossip(heartbeat_ms=1_000, history_ms=1_500, piggyback_ids=0)
    g.on_message(PEERS[0], _msg(b"a"), now=0)
    assert len(g.on_tick(1_000)) == 3
    assert g.on_tick(2_000) == []
    assert g.next_wakeup_ms is None


def test_ihave_asks_only_for_unseen_ids_once_per_retry_interval() -> None:
    g = _gossip(iwant_retry_ms=2_000)
    g.on_message(PEERS[0], _msg(b"known"), now=0)
    have = IHave((compute_message_id(b"known"), compute_message_id(b"new")))
    assert g.on_ihave(PEERS[1], have, now=0) == [(PEERS[1], IWant((compute_message_id(b"new"),)))]
    assert g.on_ihave(PEERS[2], have, now=1_999) == []  # already asked
    assert g.on_ihave(PEERS[2], have, now=2_000) == [
        (PEERS[2], IWant((compute_message_id(b"new"),)))
    ]


def test_iwant_is_answered_once_per_peer_with_ttl_one() -> None:
    g = _gossip()
    g.on_message(PEERS[0], _msg(b"block"), now=0)
    want = IWant((compute_message_id(b"block"), compute_message_id(b"unknown")))
    assert g.on_iwant(PEERS[1], want, now=1) == [(PEERS[1], _msg(b"block", ttl=1))]
    assert g.on_iwant(PEERS[1], want, now=2) == []
    assert len(g.on_iwant(PEERS[2], want, now=3)) == 1


def test_pushed_copies_announce_the_ids_held_long_enough() -> None:
    g = _gossip()  # announce_after_ms 1000
    a, b, c = (compute_message_id(x) for x in (b"a", b"b", b"c"))
    g.on_message(PEERS[0], _msg(b"a"), now=0)
    _, forwards = g.on_message(PEERS[0], _msg(b"b"), now=500)
    assert {m.recent_ids for _, m in forwards if isinstance(m, GossipMsg)} == {()}
    _, forwards = g.on_message(PEERS[0], _msg(b"c"), now=1_500)
    announced = {m.recent_ids for _, m in forwards if isinstance(m, GossipMsg)}
    assert announced == {(b, a)}  # newest first, never the pushed message itself
    assert c not in announced.pop()
    own = g.publish(b"d", now=1_600)
    assert {m.recent_ids for _, m in own} == {(b, a)}


def test_announced_ids_we_lack_are_asked_for_once() -> None:
    g = _gossip(iwant_retry_ms=2_000)
    g.on_message(PEERS[0], _msg(b"known"), now=0)
    known, new = compute_message_id(b"known"), compute_message_id(b"new")
    copy = GossipMsg(compute_message_id(b"x"), 5, b"x", (known, new))
    _, forwards = g.on_message(PEERS[1], copy, now=10)
    assert [(p, m) for p, m in forwards if isinstance(m, IWant)] == [(PEERS[1], IWant((new,)))]
    # A duplicate's announcements count too; an id asked for is not asked again yet.
    assert g.on_message(PEERS[2], copy, now=20) == (False, [])
    dup = GossipMsg(copy.message_id, 5, b"x", (new,))
    assert g.on_message(PEERS[3], dup, now=2_010) == (False, [(PEERS[3], IWant((new,)))])


def test_heartbeat_is_skipped_while_pushes_carry_the_announcements() -> None:
    g = _gossip(heartbeat_ms=2_000)
    g.on_message(PEERS[0], _msg(b"a"), now=0)
    g.on_message(PEERS[0], _msg(b"b"), now=1_500)
    assert g.on_tick(2_000) == []  # pushed 500 ms ago
    assert g.stats.heartbeats_skipped == 1
    announcements = g.on_tick(4_000)  # idle since 1500: the heartbeat announces
    assert len(announcements) == 3
    ids = (compute_message_id(b"a"), compute_message_id(b"b"))
    assert all(m == IHave(ids) for _, m in announcements)


def test_without_piggyback_every_heartbeat_announces() -> None:
    g = _gossip(heartbeat_ms=2_000, piggyback_ids=0)
    g.on_message(PEERS[0], _msg(b"a"), now=0)
    g.on_message(PEERS[0], _msg(b"b"), now=1_500)
    assert len(g.on_tick(2_000)) == 3
    assert g.stats.heartbeats_skipped == 0


def test_pulled_message_is_delivered_not_pushed() -> None:
    g = _gossip()
    g.on_ihave(PEERS[0], IHave((compute_message_id(b"x"),)), now=0)
    assert g.on_message(PEERS[0], _msg(b"x", ttl=1), now=1) == (True, [])
    assert g.stats.pulled == 1


def test_payload_cache_is_bounded_in_bytes() -> None:
    g = _gossip(max_cache_bytes=1_000, piggyback_ids=0)
    for i in range(10):
        g.on_message(PEERS[0], _msg(bytes([i]) * 300), now=i)
    (_, announcement), *_ = g.on_tick(g.config.heartbeat_ms)
    assert announcement.message_ids == tuple(
        compute_message_id(bytes([i]) * 300) for i in (7, 8, 9)
    )


# --- a network of gossip objects -------------------------------------------------------------


def _make_network(
    n: int, view: int, seed: int, *, symmetric: bool, config: GossipConfig
) -> dict[NodeId, Gossip]:
    """``n`` gossip objects; each picks ``view`` random peers (links made two-way when
    ``symmetric``, as TCP connections and Kademlia contacts are)."""
    rng = random.Random(seed)
    ids = [NodeId(rng.randbytes(32)) for _ in range(n)]
    peers: dict[NodeId, set[NodeId]] = {i: set() for i in ids}
    for i in ids:
        for p in rng.sample([x for x in ids if x != i], view):
            peers[i].add(p)
            if symmetric:
                peers[p].add(i)
    return {i: Gossip(i, random.Random(rng.getrandbits(64)), config, sorted(peers[i])) for i in ids}


Wire = GossipMsg | IHave | IWant


@dataclass
class Network:
    """Instant in-memory delivery, hop by hop (FIFO: a node's first copy has the most
    hops left), counting every message by kind."""

    nodes: dict[NodeId, Gossip]
    reached: dict[bytes, set[NodeId]] = field(default_factory=dict)
    hops: dict[bytes, int] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)

    def publish(self, origin: NodeId, payload: bytes, now: int) -> None:
        message_id = compute_message_id(payload)
        self.reached[message_id] = {origin}
        self.hops[message_id] = 0
        self._run([(p, origin, m, 1) for p, m in self.nodes[origin].publish(payload, now)], now)

    def heartbeat(self, now: int) -> None:
        queue: list[tuple[NodeId, NodeId, Wire, int]] = []
        for node_id, g in self.nodes.items():
            queue += [(p, node_id, m, 0) for p, m in g.on_tick(now)]
        self._run(queue, now)

    def missed(self) -> int:
        return sum(len(self.nodes) - len(r) for r in self.reached.values())

    def _run(self, initial: list[tuple[NodeId, NodeId, Wire, int]], now: int) -> None:
        queue = deque(initial)
        while queue:
            dst, src, message, hops = queue.popleft()
            self.sent[type(message).__name__] += 1
            g = self.nodes[dst]
            replies: list[tuple[NodeId, Wire]]
            if isinstance(message, GossipMsg):
                deliver, forwards = g.on_message(src, message, now)
                if deliver:
                    reached = self.reached[message.message_id]
                    assert dst not in reached  # de-duplication: delivered at most once
                    reached.add(dst)
                    self.hops[message.message_id] = max(self.hops[message.message_id], hops)
                replies = list(forwards)
            elif isinstance(message, IHave):
                replies = list(g.on_ihave(src, message, now))
            else:
                replies = list(g.on_iwant(src, message, now))
            queue.extend((p, dst, m, hops + 1) for p, m in replies)


def test_1000_nodes_all_receive_every_message() -> None:
    """Fanout 8, TTL 8, random peer lists of 100 (a DHT routing table at N = 1000).

    Push alone misses about N·e^-8 ≈ 0.34 nodes per message; the pull repair of the
    next heartbeats finds every one of them.
    """
    n, messages = 1000, 20
    config = GossipConfig(fanout=8, ttl=8, heartbeat_ms=1_000)
    net = Network(_make_network(n, view=100, seed=1, symmetric=False, config=config))
    origins = random.Random(2).sample(sorted(net.nodes), messages)
    for i, origin in enumerate(origins):
        net.publish(origin, i.to_bytes(4, "big"), now=i)
    missed_by_push = net.missed()
    assert 0 < missed_by_push <= 3 * messages * n * math.exp(-8)
    assert max(net.hops.values()) < 8  # the TTL is not what stopped the push
    push_per_node = net.sent["GossipMsg"] / (n * messages)
    assert 7.9 < push_per_node <= 8.0
    # The first heartbeat comes less than an interval after the nodes' last push, which
    # would have carried the announcements: skipped. The network is idle from then on.
    net.heartbeat(now=1_000)
    assert net.sent["IHave"] == 0
    heartbeats = 0
    while net.missed() and heartbeats < 5:
        heartbeats += 1
        net.heartbeat(now=1_000 + heartbeats * 1_000)
    assert net.missed() == 0
    assert heartbeats <= 3
    # Duplicates suppressed: each node delivered each message exactly once.
    assert sum(g.stats.delivered for g in net.nodes.values()) == (n - 1) * messages
    assert sum(g.stats.pulled for g in net.nodes.values()) == missed_by_push
    # Repair is cheap: 3 IHave per node per heartbeat, IWant and copies only for misses.
    assert net.sent["IHave"] == 3 * n * heartbeats
    assert net.sent["IWant"] <= 2 * missed_by_push


def test_busy_network_repairs_through_announcements_on_the_push() -> None:
    """A message a second, heartbeats in between: each miss is found through the ids
    that the next message's copies carry, and the heartbeats that would have announced
    them are skipped; only the last message's misses wait for the idle heartbeats."""
    n, messages = 1000, 20
    config = GossipConfig(fanout=8, ttl=8, heartbeat_ms=1_000)
    net = Network(_make_network(n, view=100, seed=1, symmetric=False, config=config))
    origins = random.Random(2).sample(sorted(net.nodes), messages)
    for i, origin in enumerate(origins):
        net.publish(origin, i.to_bytes(4, "big"), now=i * 1_000)
        net.heartbeat(now=i * 1_000 + 500)
    ids = [compute_message_id(i.to_bytes(4, "big")) for i in range(messages)]
    # Every message but the last reached every node: its misses were pulled.
    assert all(len(net.reached[i]) == n for i in ids[:-1])
    assert sum(g.stats.pulled for g in net.nodes.values()) > 0
    # Heartbeats: 20 rounds of 1000 nodes, nearly all skipped (a node that missed the
    # latest message pushed nothing in the interval and still announces).
    skipped = sum(g.stats.heartbeats_skipped for g in net.nodes.values())
    assert skipped > 0.9 * n * (messages - 1)
    assert net.sent["IHave"] < 0.1 * 3 * n * messages
    for k in range(1, 5):
        net.heartbeat(now=messages * 1_000 + k * 1_000)
    assert net.missed() == 0


def test_small_two_way_peer_lists_need_no_repair() -> None:
    """Two-way lists of about 12 peers: each neighbour pushes to 8 of its ~12, so push
    alone reaches everyone (a node is missed with probability about (4/11)^12)."""
    n, messages = 1000, 20
    config = GossipConfig(fanout=8, ttl=8, ihave_peers=0)
    net = Network(_make_network(n, view=6, seed=1, symmetric=True, config=config))
    for i, origin in enumerate(random.Random(2).sample(sorted(net.nodes), messages)):
        net.publish(origin, i.to_bytes(4, "big"), now=0)
    assert net.missed() == 0
    assert max(net.hops.values()) < 8
    assert net.sent["GossipMsg"] / (n * messages) <= 8.0


def test_push_alone_with_large_views_misses_about_n_exp_minus_f() -> None:
    """The e^-f regime of the coverage argument, measured (views of 100, no repair)."""
    n, messages = 1000, 30
    for fanout, bound in ((8, 3 * n * math.exp(-8)), (14, 0.1)):
        config = GossipConfig(fanout=fanout, ttl=8, ihave_peers=0)
        net = Network(_make_network(n, view=100, seed=3, symmetric=False, config=config))
        for i, origin in enumerate(random.Random(4).sample(sorted(net.nodes), messages)):
            net.publish(origin, bytes([i]), now=0)
        assert net.missed() / messages <= bound
