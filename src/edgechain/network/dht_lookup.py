"""The iterative FIND_NODE lookup of Kademlia (§2.3): alpha requests in flight, always
to the closest contacts not yet asked, until the k closest known have answered; split out
of ``network/dht.py``, which drives it."""

from __future__ import annotations

import bisect
import enum
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgechain.network.dht_table import DEFAULT_ALPHA, DEFAULT_ATTEMPTS, DEFAULT_K, RoutingTable
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, FindNode


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

    def add_and_continue(self, contacts: Iterable[Contact]) -> list[tuple[Contact, FindNode]]:
        """Merge contacts learned elsewhere (a seed that answered late) into a running
        lookup; returns the requests to send next."""
        self.add_contacts(contacts)
        return self._next_requests() if self._started else []

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

    def on_late_response(
        self, peer: NodeId, nodes: Sequence[Contact], now: int
    ) -> list[tuple[Contact, FindNode]]:
        """``peer`` answered a request of this lookup that had timed out: it is alive
        and its news count (waiting to be asked again, asked again, or given up on).
        On a loaded host most answers that come late come all the same; without this
        the lookup asked the slow contact again and then the next one. The request asked
        again, if any, is then answered or times out to no effect (``on_response`` and
        ``on_timeout`` take only a request in flight)."""
        candidate = self._candidates.get(peer)
        if candidate is None or candidate.state is _State.RESPONDED:
            return []
        if candidate.state is _State.IN_FLIGHT:
            self._in_flight -= 1
        candidate.state = _State.RESPONDED
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
    def failures(self) -> int:
        """Contacts that never answered (each asked ``attempts`` times)."""
        return sum(1 for c in self._order if c.state is _State.FAILED)

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
