"""Push gossip with de-duplication and pull repair, as a pure object.

Paper §3.1: blocks spread by a gossip protocol "that makes sure all messages reach all
nodes in the network while minimizing network usage"; DESIGN.md routes blocks, skip
blocks, inclusion and exit requests, signed app commands and genesis through it. No I/O, no
clock (every input carries ``now`` in milliseconds), randomness from a seeded RNG.

**Push** ("infect and die", with a hop budget). A node that sees a message for the first
time delivers it locally and forwards it once, to ``fanout`` peers drawn at random from
the peer list the caller provides (e.g. the DHT's routing table), never back to the peer
it came from, with the TTL decremented; with no hops left it delivers but does not
forward; a message seen before is dropped. The message id is SHA-256 of the payload
(``wire.messages.compute_message_id``; the codec checks it on receipt). Ids are
remembered for ``seen_ttl_ms`` in a bounded cache, far longer than a message can
circulate (it dies after ``ttl`` hops of milliseconds each).

**Coverage of push alone.** Every informed node pushes to ``f`` peers, so about ``f·N``
copies are sent; with large peer lists a given node is missed by all of them with
probability about ``e^-f``. The expected number of nodes never reached is then
``N·e^-f`` and ``P(all reached) ≈ exp(-N·e^-f)``; with ``f = ln N + c`` that is
``exp(-e^-c)`` (Kermarrec, Massoulié & Ganesh, *Probabilistic reliable dissemination in
large-scale systems*, IEEE TPDS 2003). For N = 1000, f = 8 misses ≈ 0.34 nodes per
message (P(all) ≈ 0.71); f = 12 gives P(all) ≈ 0.994, f = 14 ≈ 0.9992. Small two-way
peer lists do much better, because a neighbour with ``d`` peers skips a given one with
probability ``1 - f/d``, not ``1 - f/N``; at ``d <= f`` the push is a flood and covers a
connected overlay for certain. The TTL only has to exceed the depth of the push tree
(``≈ log_f N`` plus a few hops: 5-6 for N = 1000, f = 8).

Measured (``tests/network/test_gossip.py``; N = 1000, random peer lists of 100, f = 8,
TTL 8, five seeds of 20 messages): push alone missed 0.34 nodes per message (every
node reached for 74 % of messages), in at most 6 hops; each node sent exactly 8 copies
per message and received about 8 (one delivered, the rest dropped as duplicates). Pull
repair found every missed node within 1-2 heartbeats, at 3 IHave per node per heartbeat
plus one IWant and one copy per missed node.

**Pull repair** turns "with high probability" into "within a heartbeat or two" (the
IHAVE/IWANT scheme of libp2p gossipsub). Every ``heartbeat_ms`` a node that saw messages
in the last ``history_ms`` sends their ids (:class:`IHave`) to ``ihave_peers`` random
peers; a node missing one asks for it (:class:`IWant`, at most once per
``iwant_retry_ms``) and gets it as a gossip message with TTL 1 (delivered, not pushed
again). A node missed by the push with probability ``p`` stays missed after ``r``
heartbeats with probability about ``p^(1 + r·ihave_peers)``.

**Announcements ride on the push** (issue 13's CPU budget). Every pushed copy carries
the ids of up to ``piggyback_ids`` messages the sender has held for at least
``announce_after_ms`` (``GossipMsg.recent_ids``), and a receiver asks for those it lacks
as it would after an IHave; the heartbeat's IHave goes out only when the node pushed
nothing in the last ``heartbeat_ms``. A busy network (a block every slot) then repairs
through the copies it sends anyway: each node gets about ``fanout`` announcements of
every id per later message instead of ``ihave_peers`` per heartbeat, and no datagram of
its own. An IHave had cost its receiver about 0.14 ms (a wake-up of the loop, 20 nodes
on 2 cores); three a slot were 0.4-0.6 ms of an off-duty node's 5-6 ms. The delay keeps
the announcement behind the push it trails: a peer whose copy is still on its way is not
made to ask for it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgechain.types import NodeId
from edgechain.wire.limits import MAX_GOSSIP_TTL, MAX_IHAVE_IDS
from edgechain.wire.messages import GossipMsg, IHave, IWant, compute_message_id

Forward = tuple[NodeId, GossipMsg]


@dataclass(frozen=True)
class GossipConfig:
    fanout: int = 8
    """Peers each node pushes a new message to (see the coverage argument above)."""
    ttl: int = 8
    """Hop budget of a published message."""
    seen_ttl_ms: int = 10 * 60_000
    """How long a message id is remembered (many slots; far beyond propagation time)."""
    max_seen: int = 1 << 16
    """Bound on remembered ids; the oldest are forgotten first when it is reached."""
    heartbeat_ms: int = 2_000
    """Interval of the pull-repair IHave announcements. 1 s until issue 13's CPU budget:
    every heartbeat is a message to ``ihave_peers`` nodes, each a wake-up of its own on a
    loaded host (an IHave cost a receiver about 0.14 ms at 20 nodes on 2 cores), and the
    simulator's fault scenarios had always run at 2 s."""
    ihave_peers: int = 3
    """Peers that get each heartbeat's IHave."""
    history_ms: int = 10_000
    """How long a payload is announced and kept to answer IWant."""
    max_cache_bytes: int = 64 * 1024 * 1024
    """Bound on the payloads kept for IWant (blocks are up to 8 MiB)."""
    iwant_retry_ms: int = 2_000
    """An id asked for is not asked for again (from anyone) before this."""
    piggyback_ids: int = 8
    """Ids of held messages each pushed copy announces (0: pull repair by heartbeat only)."""
    announce_after_ms: int = 1_000
    """A message is announced on our pushes only once we have held it this long."""

    def __post_init__(self) -> None:
        if self.fanout < 1 or self.ihave_peers < 0:
            raise ValueError("fanout must be positive, ihave_peers non-negative")
        if not 0 < self.ttl <= MAX_GOSSIP_TTL:
            raise ValueError(f"ttl must be in 1..{MAX_GOSSIP_TTL}")
        if self.max_seen < 1 or self.seen_ttl_ms < 0:
            raise ValueError("bad seen-cache bounds")
        if self.heartbeat_ms < 1 or self.history_ms < 0 or self.max_cache_bytes < 0:
            raise ValueError("bad pull-repair settings")
        if not 0 <= self.piggyback_ids <= MAX_IHAVE_IDS or self.announce_after_ms < 0:
            raise ValueError(
                f"piggyback_ids must be in 0..{MAX_IHAVE_IDS}, announce_after_ms non-negative"
            )


@dataclass
class GossipStats:
    published: int = 0
    delivered: int = 0
    """Messages delivered locally (each at most once)."""
    duplicates: int = 0
    forwarded: int = 0
    """Copies pushed (by publish and on_message)."""
    pulled: int = 0
    """Delivered messages that arrived through pull repair."""
    ihave_sent: int = 0
    iwant_sent: int = 0
    served: int = 0
    """Copies sent in answer to IWant."""
    heartbeats_skipped: int = 0
    """Heartbeats without an IHave: our pushes had carried the announcements."""


@dataclass
class _Cached:
    payload: bytes
    expiry: int
    served: set[NodeId] = field(default_factory=set)


class Gossip:
    """One node's gossip state: seen-cache, payload cache, peer list and RNG."""

    def __init__(
        self,
        self_id: NodeId,
        rng: random.Random,
        config: GossipConfig | None = None,
        peers: Iterable[NodeId] = (),
    ) -> None:
        self.self_id = self_id
        self.config = config or GossipConfig()
        self.stats = GossipStats()
        self._rng = rng
        self._peers: tuple[NodeId, ...] = ()
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        """message id → expiry; insertion order is expiry order (the TTL is constant)."""
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._cache_bytes = 0
        self._wanted: dict[bytes, int] = {}
        """message id → time before which we do not ask for it again."""
        self._next_heartbeat: int | None = None
        self._last_push: int | None = None
        """When we last pushed a copy (and with it our announcements)."""
        self.set_peers(peers)

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return self._peers

    def set_peers(self, peers: Iterable[NodeId]) -> None:
        """Replace the peer list (ourselves and repeats are dropped; order is kept)."""
        self._peers = tuple(dict.fromkeys(p for p in peers if p != self.self_id))

    # -- push -------------------------------------------------------------------------------

    def publish(self, payload: bytes, now: int) -> list[Forward]:
        """Start spreading ``payload`` (an encoded envelope): the first ``fanout`` pushes."""
        message = GossipMsg(compute_message_id(payload), self.config.ttl, payload)
        self._remember(message, now)
        self.stats.published += 1
        return self._push(message, exclude=None, now=now)

    def on_message(
        self, src: NodeId, message: GossipMsg, now: int
    ) -> tuple[bool, list[tuple[NodeId, GossipMsg | IWant]]]:
        """A gossip message from ``src``: (deliver it locally?, copies to send on, and an
        IWant to ``src`` for the ids it announced that we lack).

        ``message.message_id`` must already have been checked against the payload (the
        codec does); a forged id could otherwise shadow the real message.
        """
        if self.has_seen(message.message_id, now):
            self.stats.duplicates += 1
            return False, [*self._ask_for(src, message.recent_ids, now)]
        self._remember(message, now)
        self.stats.delivered += 1
        if self._wanted.pop(message.message_id, None) is not None:
            self.stats.pulled += 1
        wants = self._ask_for(src, message.recent_ids, now)
        hops_left = min(message.ttl, MAX_GOSSIP_TTL) - 1
        if hops_left <= 0:
            return True, [*wants]
        onward = GossipMsg(message.message_id, hops_left, message.payload)
        return True, [*self._push(onward, exclude=src, now=now), *wants]

    def has_seen(self, message_id: bytes, now: int) -> bool:
        self._expire_seen(now)
        return message_id in self._seen

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    # -- pull repair --------------------------------------------------------------------------

    def on_tick(self, now: int) -> list[tuple[NodeId, IHave]]:
        """The heartbeat: announce recent message ids to ``ihave_peers`` random peers."""
        self._expire_cache(now)
        self._wanted = {i: t for i, t in self._wanted.items() if t > now}
        if self._next_heartbeat is None or now < self._next_heartbeat:
            return []
        self._next_heartbeat = now + self.config.heartbeat_ms if self._cache else None
        if not self._cache:
            return []
        if (
            self.config.piggyback_ids
            and self._last_push is not None
            and now - self._last_push < self.config.heartbeat_ms
        ):
            # Our copies of the last interval announced what we held (module doc); what
            # arrived since rides on the next push, or on the first idle heartbeat.
            self.stats.heartbeats_skipped += 1
            return []
        ids = tuple(self._cache)[-MAX_IHAVE_IDS:]
        targets = self._sample(list(self._peers), self.config.ihave_peers)
        self.stats.ihave_sent += len(targets)
        return [(peer, IHave(ids)) for peer in targets]

    def on_ihave(self, src: NodeId, message: IHave, now: int) -> list[tuple[NodeId, IWant]]:
        """Ask ``src`` for the announced messages we have neither seen nor asked for."""
        return self._ask_for(src, message.message_ids, now)

    def on_iwant(self, src: NodeId, message: IWant, now: int) -> list[Forward]:
        """Send ``src`` the asked-for messages we still hold, each at most once per peer."""
        self._expire_cache(now)
        answers: list[Forward] = []
        for message_id in dict.fromkeys(message.message_ids[:MAX_IHAVE_IDS]):
            cached = self._cache.get(message_id)
            if cached is None or src in cached.served:
                continue  # bounded work per peer: a repeated IWant is not a reflector
            cached.served.add(src)
            answers.append((src, GossipMsg(message_id, 1, cached.payload)))
        self.stats.served += len(answers)
        return answers

    @property
    def next_wakeup_ms(self) -> int | None:
        """When :meth:`on_tick` has work (the next heartbeat), if ever."""
        return self._next_heartbeat

    # -- internals ------------------------------------------------------------------------------

    def _push(self, message: GossipMsg, exclude: NodeId | None, now: int) -> list[Forward]:
        candidates = [p for p in self._peers if p != exclude]
        targets = self._sample(candidates, self.config.fanout)
        self.stats.forwarded += len(targets)
        if targets and self.config.piggyback_ids:
            self._last_push = now
            recent = self._get_announced_ids(now, message.message_id)
            if recent:
                message = GossipMsg(message.message_id, message.ttl, message.payload, recent)
        return [(peer, message) for peer in targets]

    def _get_announced_ids(self, now: int, pushed: bytes) -> tuple[bytes, ...]:
        """The newest ``piggyback_ids`` ids we have held for ``announce_after_ms``, other
        than the one being pushed (the cache is in arrival order)."""
        # A payload is cached until its arrival plus history_ms: held since at most
        # now - announce_after_ms when it expires by this.
        latest_expiry = now - self.config.announce_after_ms + self.config.history_ms
        ids: list[bytes] = []
        for message_id, cached in reversed(self._cache.items()):
            if len(ids) == self.config.piggyback_ids:
                break
            if cached.expiry <= latest_expiry and message_id != pushed:
                ids.append(message_id)
        return tuple(ids)

    def _ask_for(
        self, src: NodeId, announced: tuple[bytes, ...], now: int
    ) -> list[tuple[NodeId, IWant]]:
        """An IWant to ``src`` for the announced ids we have neither seen nor asked for."""
        if not announced:
            return []
        self._expire_seen(now)
        missing = tuple(
            i
            for i in dict.fromkeys(announced[:MAX_IHAVE_IDS])
            if i not in self._seen and self._wanted.get(i, now) <= now
        )
        if not missing:
            return []
        for message_id in missing:
            self._wanted[message_id] = now + self.config.iwant_retry_ms
        self.stats.iwant_sent += 1
        return [(src, IWant(missing))]

    def _sample(self, candidates: list[NodeId], n: int) -> list[NodeId]:
        """``n`` distinct random candidates, or all of them when there are at most ``n``."""
        if len(candidates) <= n:
            return candidates
        return self._rng.sample(candidates, n)

    def _remember(self, message: GossipMsg, now: int) -> None:
        self._expire_seen(now)
        self._seen[message.message_id] = now + self.config.seen_ttl_ms
        while len(self._seen) > self.config.max_seen:
            self._seen.popitem(last=False)
        self._cache_payload(message, now)

    def _cache_payload(self, message: GossipMsg, now: int) -> None:
        if self.config.ihave_peers == 0 or len(message.payload) > self.config.max_cache_bytes:
            return
        self._expire_cache(now)
        stale = self._cache.pop(message.message_id, None)  # forgotten as seen, then re-seen
        if stale is not None:
            self._cache_bytes -= len(stale.payload)
        self._cache[message.message_id] = _Cached(message.payload, now + self.config.history_ms)
        self._cache_bytes += len(message.payload)
        while self._cache_bytes > self.config.max_cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= len(evicted.payload)
        if self._next_heartbeat is None:
            self._next_heartbeat = now + self.config.heartbeat_ms

    def _expire_seen(self, now: int) -> None:
        seen = self._seen
        while seen:
            message_id, expiry = next(iter(seen.items()))
            if expiry > now:
                break
            del seen[message_id]

    def _expire_cache(self, now: int) -> None:
        cache = self._cache
        while cache:
            message_id, cached = next(iter(cache.items()))
            if cached.expiry > now:
                break
            del cache[message_id]
            self._cache_bytes -= len(cached.payload)
