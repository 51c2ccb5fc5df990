"""A Kademlia DHT mapping node ids to addresses, as pure objects (no I/O, no clock).

Paper §4 steps 1-5: the first node is a bootstrapping node whose address every node
knows; each node joins by contacting it, and "together, the bootstrapping node and all
other nodes maintain a Kademlia-style DHT, which helps nodes discover each other". This
module is that DHT, after Maymounkov & Mazières, *Kademlia: A Peer-to-peer Information
System Based on the XOR Metric* (IPTPS 2002):

* :class:`RoutingTable` — 256 k-buckets by XOR distance, least-recently seen first; a
  full bucket keeps its old contacts and asks (as an *output*) for the oldest one to be
  pinged before it may be evicted (§2.2: long-lived nodes are the likeliest to stay);
* :class:`NodeLookup` — the iterative FIND_NODE lookup (§2.3): alpha requests in flight,
  always to the closest contacts not yet asked, until the k closest known have answered;
* :class:`DhtNode` — both, driven by ``on_message(src, msg, now)`` / ``on_tick(now)``,
  returning the messages to send and the next time it wants to be woken. Joining is a
  lookup of one's own id through the bootstrap node, then a refresh of every bucket
  farther than the closest neighbour found (§2.3).

Ids are the 32-byte node ids (SHA-256 of the BLS public key), so the id space is 256
bits. Times are integer milliseconds. Randomness (request ids, refresh targets) comes
from a caller-seeded ``random.Random``: the same seed and inputs give the same outputs.

Security (edgechain's addition; Kademlia trusts every sender): every DHT message is
signed in its envelope (``wire/codec.py``), so ``src.node_id`` is authenticated. A
contact enters the routing table only when it *answers* a request that we sent to that
address, with the fresh ``request_id`` echoed: a request (Ping/FindNode) from an
unknown sender is pinged back first, the endpoint proof of Ethereum's discovery
protocol. A replayed signed message from elsewhere therefore can never bind a node id
to an attacker's address; only an on-path relay can, which no DHT without self-signed
address records prevents. A FindNode from an unproven address is answered only after
the proof, so a forged source address cannot turn our answers into a UDP amplifier.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import itertools
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from edgechain.errors import RejectReason
from edgechain.types import HASH_SIZE, NodeId
from edgechain.wire.messages import Contact, DhtMessage, FindNode, Nodes, Ping, Pong

ID_BITS = HASH_SIZE * 8

DEFAULT_K = 20
"""Bucket size and lookup width (Kademlia's k)."""

DEFAULT_ALPHA = 3
"""Parallel requests per lookup (Kademlia's alpha)."""

DEFAULT_REPLY_LIMIT = 16
"""Contacts per Nodes answer: 16 signed contacts with IPv4 addresses fit one 1232-byte
datagram (``tests/wire``); 20 would not. Lookups still keep the k = 20 closest."""

DEFAULT_ATTEMPTS = 3
"""Requests a lookup sends to one contact before giving up on it. A first exchange with
a node that does not know us yet takes four datagrams (FindNode, its endpoint-proof
Ping, our Pong, its Nodes), so at 10 % loss one try fails a third of the time; three
tries bring that to ~4 % (``tests/network/test_dht.py`` measures lookups under loss)."""

STALE_FAILURES = 5
"""Kademlia §4.1: a contact that failed to answer 5 requests in a row is stale."""


def compute_distance(a: bytes, b: bytes) -> int:
    """The XOR metric."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def get_bucket_index(self_id: bytes, other: bytes) -> int:
    """``i`` such that ``2^i <= distance < 2^(i+1)``; -1 for the node itself."""
    return compute_distance(self_id, other).bit_length() - 1


def compute_random_id_in_bucket(self_id: bytes, index: int, rng: random.Random) -> NodeId:
    """A uniformly random id at distance ``[2^index, 2^(index+1))`` from ``self_id``."""
    distance = (1 << index) | rng.getrandbits(index) if index > 0 else 1
    value = int.from_bytes(self_id, "big") ^ distance
    return NodeId(value.to_bytes(HASH_SIZE, "big"))


# --- routing table -------------------------------------------------------------------------


@dataclass
class _Entry:
    contact: Contact
    failures: int = 0
    """Requests in a row it did not answer."""


class RoutingTable:
    """k-buckets over the XOR metric, least-recently seen contact first in each bucket.

    Only contacts that proved themselves (see the module doc) should be added. A full
    bucket never drops a live contact for a new one: :meth:`add` keeps the newcomer in
    the bucket's replacement cache and returns the least-recently seen contact, which
    the caller pings; an answer keeps it (:meth:`touch`), silence evicts it
    (:meth:`remove`) and promotes the newest replacement.
    """

    def __init__(
        self, self_id: NodeId, k: int = DEFAULT_K, replacements: int | None = None
    ) -> None:
        if len(self_id) != HASH_SIZE:
            raise ValueError(f"node ids are {HASH_SIZE} bytes")
        if k < 1:
            raise ValueError("k must be positive")
        self.self_id = self_id
        self.k = k
        self._max_replacements = k if replacements is None else replacements
        self._buckets: list[OrderedDict[NodeId, _Entry]] = [OrderedDict() for _ in range(ID_BITS)]
        self._replacements: list[OrderedDict[NodeId, Contact]] = [
            OrderedDict() for _ in range(ID_BITS)
        ]
        self._looked_up_at: list[int | None] = [None] * ID_BITS
        self._flat: dict[NodeId, tuple[int, _Entry]] = {}
        """Every entry with its id as an integer: ``closest`` scans this, not 256 buckets."""
        self.version = 0
        """Bumped whenever a contact enters or leaves: callers that derive something from
        the membership (the gossip peer list) redo it only when this moves."""

    def __len__(self) -> int:
        return len(self._flat)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self.get(NodeId(node_id)) is not None

    def get_bucket_index(self, node_id: bytes) -> int:
        return get_bucket_index(self.self_id, node_id)

    def get(self, node_id: NodeId) -> Contact | None:
        item = self._flat.get(node_id)
        return None if item is None else item[1].contact

    def get_bucket(self, index: int) -> list[Contact]:
        """Contacts of bucket ``index``, least-recently seen first."""
        return [e.contact for e in self._buckets[index].values()]

    def get_replacements(self, index: int) -> list[Contact]:
        return list(self._replacements[index].values())

    def contacts(self) -> list[Contact]:
        return [e.contact for bucket in self._buckets for e in bucket.values()]

    def add(self, contact: Contact, now: int) -> Contact | None:
        """Insert or refresh ``contact``; return the contact to ping if its bucket is full.

        A known contact moves to the tail (most recently seen) and takes the new address.
        """
        index = self.get_bucket_index(contact.node_id)
        if index < 0:
            return None
        bucket = self._buckets[index]
        entry = bucket.get(contact.node_id)
        if entry is not None:
            entry.contact, entry.failures = contact, 0
            bucket.move_to_end(contact.node_id)
            return None
        if len(bucket) < self.k:
            self._insert(index, contact)
            return None
        self._add_replacement(index, contact)
        oldest = next(iter(bucket.values()))
        return oldest.contact

    def touch(self, node_id: NodeId, now: int) -> bool:
        """``node_id`` answered: it becomes the most recently seen of its bucket."""
        index = self.get_bucket_index(node_id)
        if index < 0:
            return False
        entry = self._buckets[index].get(node_id)
        if entry is None:
            return False
        entry.failures = 0
        self._buckets[index].move_to_end(node_id)
        return True

    def on_failure(self, node_id: NodeId) -> Contact | None:
        """``node_id`` did not answer. Returns the replacement if it was evicted.

        Kademlia §4.1: with a replacement waiting, a silent contact is replaced at once;
        without one it stays until stale (``STALE_FAILURES``), because an empty slot is
        worth less than a contact that may only be briefly unreachable.
        """
        index = self.get_bucket_index(node_id)
        entry = self._buckets[index].get(node_id) if index >= 0 else None
        if entry is None:
            return None
        entry.failures += 1
        if self._replacements[index] or entry.failures >= STALE_FAILURES:
            return self.remove(node_id)
        return None

    def remove(self, node_id: NodeId) -> Contact | None:
        """Drop ``node_id``; promote the newest replacement, which is returned."""
        index = self.get_bucket_index(node_id)
        if index < 0 or self._buckets[index].pop(node_id, None) is None:
            return None
        del self._flat[node_id]
        self.version += 1
        replacements = self._replacements[index]
        if not replacements:
            return None
        _, promoted = replacements.popitem(last=True)
        self._insert(index, promoted)
        return promoted

    def closest(self, target: bytes, n: int) -> list[Contact]:
        """The ``n`` known contacts closest to ``target`` by XOR distance, closest first."""
        key = int.from_bytes(target, "big")
        nearest = heapq.nsmallest(n, self._flat.values(), key=lambda item: item[0] ^ key)
        return [entry.contact for _, entry in nearest]

    def mark_looked_up(self, target: bytes, now: int) -> None:
        """A lookup for ``target`` refreshes its bucket (Kademlia §2.3)."""
        index = self.get_bucket_index(target)
        if index >= 0:
            self._looked_up_at[index] = now

    def get_stale_buckets(self, now: int, interval: int) -> list[int]:
        """Buckets to refresh: no lookup within ``interval``, from the nearest non-empty one.

        Buckets closer than every known contact are empty in any network much smaller
        than 2^256 nodes; refreshing them would only repeat the same lookup.
        """
        nonempty = [i for i, bucket in enumerate(self._buckets) if bucket]
        if not nonempty:
            return []
        return [
            i
            for i in range(nonempty[0], ID_BITS)
            if (last := self._looked_up_at[i]) is None or now - last >= interval
        ]

    def _insert(self, index: int, contact: Contact) -> None:
        self._replacements[index].pop(contact.node_id, None)
        entry = _Entry(contact)
        self._buckets[index][contact.node_id] = entry
        self._flat[contact.node_id] = (int.from_bytes(contact.node_id, "big"), entry)
        self.version += 1

    def _add_replacement(self, index: int, contact: Contact) -> None:
        cache = self._replacements[index]
        cache.pop(contact.node_id, None)
        cache[contact.node_id] = contact
        while len(cache) > self._max_replacements:
            cache.popitem(last=False)


# --- iterative lookup ------------------------------------------------------------------------


class _State(enum.Enum):
    NEW = 0
    IN_FLIGHT = 1
    RESPONDED = 2
    FAILED = 3


@dataclass
class _Candidate:
    contact: Contact
    distance: int
    state: _State = _State.NEW
    attempts: int = 0


class NodeLookup:
    """Kademlia's iterative node lookup for ``target`` (§2.3), as a state machine.

    Starts from the k closest contacts of the routing table, keeps at most alpha requests in
    flight, always asking the closest contact not yet asked, and merges every answer into
    its shortlist; a contact that times out is asked again, ``attempts`` times in all,
    before it counts as failed. It is done when each of the k closest contacts it knows
    (ignoring those that failed) has answered: no closer node can then be learned (the classic
    "round without progress, then ask all k" rule reaches the same fixed point). The
    ``result`` is those k contacts, closest first.
    """

    def __init__(
        self,
        target: NodeId,
        routing_table: RoutingTable,
        rng: random.Random,
        *,
        alpha: int = DEFAULT_ALPHA,
        k: int = DEFAULT_K,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if alpha < 1 or k < 1 or attempts < 1:
            raise ValueError("alpha, k and attempts must be positive")
        self.target = target
        self.alpha = alpha
        self.k = k
        self.attempts = attempts
        self._self_id = routing_table.self_id
        self._key = int.from_bytes(target, "big")
        self._rng = rng
        self._candidates: dict[NodeId, _Candidate] = {}
        self._order: list[_Candidate] = []
        """Every candidate, closest first (kept sorted on insertion)."""
        self._in_flight = 0
        self._started = False
        self.add_contacts(routing_table.closest(target, k))

    def add_contacts(self, contacts: Iterable[Contact]) -> None:
        """Merge contacts into the shortlist (known ones and ourselves are skipped)."""
        for contact in contacts:
            if contact.node_id == self._self_id or contact.node_id in self._candidates:
                continue
            candidate = _Candidate(contact, int.from_bytes(contact.node_id, "big") ^ self._key)
            self._candidates[contact.node_id] = candidate
            bisect.insort(self._order, candidate, key=lambda c: c.distance)

    def start(self, now: int) -> list[tuple[Contact, FindNode]]:
        """The first alpha requests."""
        self._started = True
        return self._next_requests()

    def on_response(
        self, peer: NodeId, nodes: Sequence[Contact], now: int
    ) -> list[tuple[Contact, FindNode]]:
        """``peer`` answered with ``nodes``; returns the requests to send next."""
        candidate = self._candidates.get(peer)
        if candidate is None or candidate.state is not _State.IN_FLIGHT:
            return []  # not asked, or already timed out: its news come too late
        candidate.state = _State.RESPONDED
        self._in_flight -= 1
        self.add_contacts(nodes)
        return self._next_requests()

    def on_timeout(self, peer: NodeId, now: int) -> list[tuple[Contact, FindNode]]:
        """``peer`` did not answer in time; returns the requests to send next."""
        candidate = self._candidates.get(peer)
        if candidate is None or candidate.state is not _State.IN_FLIGHT:
            return []
        # One lost datagram should not cost the lookup its best contact (edge links
        # lose packets): ask again, with a fresh request id, up to ``attempts`` times.
        retry = candidate.attempts < self.attempts
        candidate.state = _State.NEW if retry else _State.FAILED
        self._in_flight -= 1
        return self._next_requests()

    @property
    def is_done(self) -> bool:
        if not self._started:
            return False
        return all(c.state is _State.RESPONDED for c in self._get_closest_alive())

    @property
    def result(self) -> list[Contact]:
        """The k closest contacts that answered, closest first (complete once done)."""
        answered = (c.contact for c in self._order if c.state is _State.RESPONDED)
        return list(itertools.islice(answered, self.k))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _get_closest_alive(self) -> list[_Candidate]:
        alive = (c for c in self._order if c.state is not _State.FAILED)
        return list(itertools.islice(alive, self.k))

    def _next_requests(self) -> list[tuple[Contact, FindNode]]:
        budget = self.alpha - self._in_flight
        requests: list[tuple[Contact, FindNode]] = []
        for candidate in self._get_closest_alive():
            if budget <= 0:
                break
            if candidate.state is _State.NEW:
                candidate.state = _State.IN_FLIGHT
                candidate.attempts += 1
                self._in_flight += 1
                request_id = self._rng.getrandbits(64)
                requests.append((candidate.contact, FindNode(request_id, self.target)))
                budget -= 1
        return requests


# --- the DHT node ---------------------------------------------------------------------------


class LookupPurpose(enum.Enum):
    JOIN = "join"
    """Lookup of our own id through the bootstrap node (paper §4 step 4)."""
    REFRESH = "refresh"
    """Lookup of a random id in a bucket not looked up for a while."""
    FIND = "find"
    """Lookup the node layer asked for (:meth:`DhtNode.find`)."""


@dataclass(frozen=True)
class DhtConfig:
    k: int = DEFAULT_K
    alpha: int = DEFAULT_ALPHA
    attempts: int = DEFAULT_ATTEMPTS
    reply_limit: int = DEFAULT_REPLY_LIMIT
    request_timeout_ms: int = 2_000
    refresh_interval_ms: int = 15 * 60_000
    """Kademlia refreshes hourly; edge networks churn more (devices sleep, move)."""
    max_pending: int = 1_024
    """Outstanding requests; beyond it, requests from unknown senders are not pinged back."""
    known_addresses: int = 4_096
    """Verified contacts remembered for ``get_address`` beyond the routing table."""


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


class _RequestKind(enum.Enum):
    VERIFY = "verify"
    """Endpoint proof of a sender that is not in the table (yet)."""
    EVICT = "evict"
    """Is the least-recently seen contact of a full bucket still alive?"""
    FIND = "find"
    """A FindNode of some lookup."""


@dataclass
class _Pending:
    contact: Contact
    kind: _RequestKind
    deadline: int
    lookup: int | None = None


@dataclass
class _ActiveLookup:
    lookup: NodeLookup
    purpose: LookupPurpose


class DhtNode:
    """One node's DHT: routing table, lookups, answers, timeouts, refresh.

    Drive it with :meth:`join` once, :meth:`on_message` for every authenticated DHT
    message (``src`` = the envelope's sender and the address the message came from),
    and :meth:`on_tick` at ``next_wakeup_ms``. Send every ``(contact, message)`` of the
    outputs to ``contact.address``.
    """

    def __init__(
        self, node_id: NodeId, rng: random.Random, config: DhtConfig | None = None
    ) -> None:
        self.node_id = node_id
        self.config = config or DhtConfig()
        self.table = RoutingTable(node_id, self.config.k)
        self._rng = rng
        self._pending: dict[int, _Pending] = {}
        self._pinging: dict[NodeId, int] = {}
        self._deferred: dict[NodeId, tuple[Contact, FindNode]] = {}
        """FindNode requests waiting for their sender's endpoint proof (one per sender)."""
        self._lookups: dict[int, _ActiveLookup] = {}
        self._next_lookup = 0
        self._known: OrderedDict[NodeId, Contact] = OrderedDict()
        self._answered: OrderedDict[NodeId, tuple[str, int]] = OrderedDict()
        """Who answered a fresh request of ours, at which address, when (bounded)."""
        self._joined = False
        self._next_refresh: int | None = None

    # -- queries --------------------------------------------------------------------------

    def get_address(self, node_id: NodeId) -> str | None:
        """The address ``node_id`` last answered us from, if we know it."""
        contact = self.table.get(node_id) or self._known.get(node_id)
        return None if contact is None else contact.address

    def get_recent_address(self, node_id: NodeId, now: int, max_age_ms: int) -> str | None:
        """The address ``node_id`` proved at (answered a fresh request of ours sent
        there) within the last ``max_age_ms``: fresher than an address on chain when
        the node has just moved (``node/routing.py``)."""
        answered = self._answered.get(node_id)
        if answered is None or now - answered[1] > max_age_ms:
            return None
        return answered[0]

    def get_peers(self) -> list[Contact]:
        """Every contact of the routing table (e.g. the gossip layer's peer list)."""
        return self.table.contacts()

    @property
    def peers_version(self) -> int:
        """Moves whenever :meth:`get_peers` gains or loses a contact."""
        return self.table.version

    @property
    def is_joined(self) -> bool:
        return self._joined

    @property
    def active_lookups(self) -> int:
        return len(self._lookups)

    # -- inputs ---------------------------------------------------------------------------

    def join(self, bootstrap: Contact, now: int) -> DhtOutput:
        """Join through ``bootstrap`` (paper §4 steps 1, 4): look up our own id.

        The bootstrap contact is configuration (its key and address are known to every
        node, paper §5), so it enters the table without an endpoint proof. The
        bootstrap node itself calls this with its own contact: it has no one to ask,
        is joined at once, and starts refreshing as others arrive.
        """
        out = DhtOutput()
        if bootstrap.node_id != self.node_id:
            self._add_verified(bootstrap, now, out)
        self._start_lookup(self.node_id, LookupPurpose.JOIN, now, out)
        return self._finish(out, now)

    def add_seeds(self, contacts: Sequence[Contact], now: int) -> DhtOutput:
        """Join (again) through ``contacts``: each enters the table, then a lookup of our
        own id runs through them (Kademlia §2.3), as ``join`` does for its contact.

        For contacts vouched for without a request of ours: a seed's, whose answer to
        our ping proved its endpoint (``node/seeds.py``), or a validator's address
        signed by its owner on chain. Seeds answer at any time, so a node that joined
        alone (every seed down) joins the network when the first one answers."""
        out = DhtOutput()
        fresh = [c for c in contacts if c.node_id != self.node_id]
        for contact in fresh:
            self._add_verified(contact, now, out)
        if fresh:
            self._start_lookup(self.node_id, LookupPurpose.JOIN, now, out)
        return self._finish(out, now)

    def find(self, target: NodeId, now: int) -> DhtOutput:
        """Look ``target`` up; a :class:`LookupFinished` event reports the result."""
        out = DhtOutput()
        self._start_lookup(target, LookupPurpose.FIND, now, out)
        return self._finish(out, now)

    def on_message(self, src: Contact, message: DhtMessage, now: int) -> DhtOutput:
        out = DhtOutput()
        if src.node_id == self.node_id:
            return self._finish(out, now)
        match message:
            case Ping():
                out.messages.append((src, Pong(message.request_id)))
                self._on_request_from(src, now, out)
            case FindNode():
                if self._on_request_from(src, now, out):
                    out.messages.append((src, self._answer_find_node(src, message)))
                elif self._pinging.get(src.node_id) is not None:
                    # Answered once the sender proves its address: a spoofed source
                    # address never gets the (5x larger) answer, so no amplification.
                    self._deferred[src.node_id] = (src, message)
            case Pong():
                self._on_answer(src, message.request_id, None, now, out)
            case Nodes():
                self._on_answer(src, message.request_id, message.contacts, now, out)
        return self._finish(out, now)

    def on_tick(self, now: int) -> DhtOutput:
        out = DhtOutput()
        expired = [rid for rid, p in self._pending.items() if p.deadline <= now]
        for request_id in expired:
            self._on_request_timeout(request_id, now, out)
        if self._joined and self._next_refresh is not None and now >= self._next_refresh:
            self._refresh_stale_buckets(now, out)
        return self._finish(out, now)

    # -- internals --------------------------------------------------------------------------

    def _is_verified(self, src: Contact) -> bool:
        known = self.table.get(src.node_id) or self._known.get(src.node_id)
        return known is not None and known.address == src.address

    def _on_request_from(self, src: Contact, now: int, out: DhtOutput) -> bool:
        """Whether ``src`` has proved its address; if not, ask it to (a ping)."""
        if self._is_verified(src):
            self.table.touch(src.node_id, now)
            return True
        # Unknown sender, or a known id at a new address: prove the endpoint first.
        if src.node_id not in self._pinging and len(self._pending) < self.config.max_pending:
            self._send_ping(src, _RequestKind.VERIFY, now, out)
        return False

    def _answer_find_node(self, src: Contact, request: FindNode) -> Nodes:
        limit = self.config.reply_limit
        closest = self.table.closest(request.target, limit + 1)
        reply = tuple(c for c in closest if c.node_id != src.node_id)[:limit]
        return Nodes(request.request_id, reply)

    def _on_answer(
        self,
        src: Contact,
        request_id: int,
        contacts: tuple[Contact, ...] | None,
        now: int,
        out: DhtOutput,
    ) -> None:
        pending = self._pending.get(request_id)
        is_nodes = contacts is not None
        if (
            pending is None
            or pending.contact.node_id != src.node_id
            or (pending.kind is _RequestKind.FIND) != is_nodes
        ):
            out.events.append(DhtRejected(RejectReason.UNEXPECTED_ANSWER, src.node_id))
            return
        del self._pending[request_id]
        if self._pinging.get(src.node_id) == request_id:
            del self._pinging[src.node_id]
        # The answer proves that the holder of the id's key receives at the address we
        # sent to; that address (not the answer's source) is the one we record.
        if pending.kind is _RequestKind.EVICT:
            self.table.touch(src.node_id, now)
        else:
            self._add_verified(pending.contact, now, out)
        self._answered[src.node_id] = (pending.contact.address, now)
        self._answered.move_to_end(src.node_id)
        while len(self._answered) > self.config.known_addresses:
            self._answered.popitem(last=False)
        deferred = self._deferred.pop(src.node_id, None)
        if deferred is not None and deferred[0] == pending.contact:
            out.messages.append((deferred[0], self._answer_find_node(*deferred)))
        if contacts is not None and pending.lookup is not None:
            active = self._lookups.get(pending.lookup)
            if active is not None:
                fresh = [c for c in contacts if c.node_id != self.node_id]
                requests = active.lookup.on_response(src.node_id, fresh, now)
                self._send_lookup_requests(pending.lookup, requests, now, out)
                self._finish_lookup_if_done(pending.lookup, now, out)

    def _on_request_timeout(self, request_id: int, now: int, out: DhtOutput) -> None:
        pending = self._pending.pop(request_id)
        node_id = pending.contact.node_id
        if self._pinging.get(node_id) == request_id:
            del self._pinging[node_id]
            self._deferred.pop(node_id, None)
        if pending.kind is _RequestKind.EVICT:
            # Kademlia §2.2: the oldest contact of a full bucket did not answer; the
            # newest waiting contact takes its place.
            self._remove_contact(node_id, out)
        elif pending.kind is _RequestKind.FIND:
            self._on_contact_failure(node_id, out)
            if pending.lookup is not None and pending.lookup in self._lookups:
                lookup = self._lookups[pending.lookup].lookup
                requests = lookup.on_timeout(node_id, now)
                self._send_lookup_requests(pending.lookup, requests, now, out)
                self._finish_lookup_if_done(pending.lookup, now, out)

    def _on_contact_failure(self, node_id: NodeId, out: DhtOutput) -> None:
        present = self.table.get(node_id) is not None
        promoted = self.table.on_failure(node_id)
        if present and self.table.get(node_id) is None:
            out.events.append(PeerRemoved(node_id))
        if promoted is not None:
            out.events.append(PeerAdded(promoted))

    def _remove_contact(self, node_id: NodeId, out: DhtOutput) -> None:
        present = self.table.get(node_id) is not None
        promoted = self.table.remove(node_id)
        if present:
            out.events.append(PeerRemoved(node_id))
        if promoted is not None:
            out.events.append(PeerAdded(promoted))

    def _add_verified(self, contact: Contact, now: int, out: DhtOutput) -> None:
        self._known[contact.node_id] = contact
        self._known.move_to_end(contact.node_id)
        while len(self._known) > self.config.known_addresses:
            self._known.popitem(last=False)
        was_present = self.table.get(contact.node_id) is not None
        oldest = self.table.add(contact, now)
        if not was_present and self.table.get(contact.node_id) is not None:
            out.events.append(PeerAdded(contact))
        if oldest is not None and oldest.node_id not in self._pinging:
            self._send_ping(oldest, _RequestKind.EVICT, now, out)

    def _send_ping(self, contact: Contact, kind: _RequestKind, now: int, out: DhtOutput) -> None:
        request_id = self._new_request_id()
        self._pending[request_id] = _Pending(contact, kind, now + self.config.request_timeout_ms)
        self._pinging[contact.node_id] = request_id
        out.messages.append((contact, Ping(request_id)))

    def _new_request_id(self) -> int:
        while True:
            request_id = self._rng.getrandbits(64)
            if request_id not in self._pending:
                return request_id

    def _start_lookup(
        self, target: NodeId, purpose: LookupPurpose, now: int, out: DhtOutput
    ) -> None:
        lookup_id = self._next_lookup
        self._next_lookup += 1
        lookup = NodeLookup(
            target,
            self.table,
            self._rng,
            alpha=self.config.alpha,
            k=self.config.k,
            attempts=self.config.attempts,
        )
        self._lookups[lookup_id] = _ActiveLookup(lookup, purpose)
        self.table.mark_looked_up(target, now)
        self._send_lookup_requests(lookup_id, lookup.start(now), now, out)
        self._finish_lookup_if_done(lookup_id, now, out)

    def _send_lookup_requests(
        self,
        lookup_id: int,
        requests: list[tuple[Contact, FindNode]],
        now: int,
        out: DhtOutput,
    ) -> None:
        for contact, drawn in requests:
            # The lookup draws its ids from the same RNG; a clash with a pending id is
            # astronomically unlikely, but a silent overwrite would lose a request.
            request = drawn
            if request.request_id in self._pending:
                request = FindNode(self._new_request_id(), drawn.target)
            self._pending[request.request_id] = _Pending(
                contact, _RequestKind.FIND, now + self.config.request_timeout_ms, lookup_id
            )
            out.messages.append((contact, request))

    def _finish_lookup_if_done(self, lookup_id: int, now: int, out: DhtOutput) -> None:
        active = self._lookups.get(lookup_id)
        if active is None or not active.lookup.is_done:
            return
        del self._lookups[lookup_id]
        # Requests of the finished lookup that are still out will be matched and
        # recorded when they answer, and feed nothing.
        for pending in self._pending.values():
            if pending.lookup == lookup_id:
                pending.lookup = None
        result = tuple(active.lookup.result)
        out.events.append(LookupFinished(active.lookup.target, active.purpose, result))
        if active.purpose is LookupPurpose.JOIN:
            self._on_joined(result, now, out)

    def _on_joined(self, result: tuple[Contact, ...], now: int, out: DhtOutput) -> None:
        """Kademlia §2.3: refresh every bucket farther away than the closest neighbour."""
        self._joined = True
        self._next_refresh = now + self.config.refresh_interval_ms
        closest = self.table.closest(self.node_id, 1)
        if not closest:
            return
        first = self.table.get_bucket_index(closest[0].node_id)
        for index in range(first + 1, ID_BITS):
            target = compute_random_id_in_bucket(self.node_id, index, self._rng)
            self._start_lookup(target, LookupPurpose.REFRESH, now, out)

    def _refresh_stale_buckets(self, now: int, out: DhtOutput) -> None:
        interval = self.config.refresh_interval_ms
        for index in self.table.get_stale_buckets(now, interval):
            target = compute_random_id_in_bucket(self.node_id, index, self._rng)
            self._start_lookup(target, LookupPurpose.REFRESH, now, out)
        self._next_refresh = now + interval

    def _finish(self, out: DhtOutput, now: int) -> DhtOutput:
        deadlines = [p.deadline for p in self._pending.values()]
        if self._joined and self._next_refresh is not None:
            deadlines.append(self._next_refresh)
        out.next_wakeup_ms = min(deadlines) if deadlines else None
        return out
