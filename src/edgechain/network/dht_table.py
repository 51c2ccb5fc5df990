"""The Kademlia routing table (§2.2) and the XOR metric: 256 k-buckets by distance,
least-recently seen first; split out of ``network/dht.py``, which drives it."""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from dataclasses import dataclass

from edgechain.types import HASH_SIZE, NodeId
from edgechain.wire.messages import Contact

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
