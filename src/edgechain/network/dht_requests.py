"""The DHT's requests: what is in flight, and what timed out but may still be answered.

A request times out (after at least ``DhtConfig.request_timeout_ms``) so that a lookup
moves on from a dead contact. On a loaded host the live ones answer late: 100 node processes on
two cores measured RTTs of 1 to 3.7 s against a 2 s timeout, so pings that would have
proved a new contact's address, and FindNodes of a join, were answered after they had
been given up, refused as unexpected, and late joiners kept a table of one contact. A
request that timed out is therefore remembered for a while (``LateAnswers``): its
answer still proves the contact alive at that address, and a FindNode's answer still
feeds its lookup (``NodeLookup.on_late_response``). Pure bookkeeping, no clock: ``now``
is passed in.

A timeout that is only a slow answer still costs requests: a lookup whose FindNode
timed out asks the contact again (``DhtConfig.attempts``) and then the next one, so an
overloaded host got more requests the slower it answered. In a 100-node testnet on two
cores (session 33, h2) each node received 350-840 FindNodes for its 7-14 lookups, up to
seven times the 122 per join of the same joins over a lossless simulated network, and
its own FindNodes timed out 60-580 times. The timeout therefore follows the answers
(:class:`RequestTimer`): TCP's retransmission timer over the round trips of this
node's DHT requests, never below the configured one.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from edgechain.wire.messages import Contact

LATE_ANSWER_MS = 30_000
"""How long an answer to a request that timed out still counts."""


class RequestKind(enum.Enum):
    VERIFY = "verify"
    """Endpoint proof of a sender that is not in the table (yet)."""
    EVICT = "evict"
    """Is the least-recently seen contact of a full bucket still alive?"""
    FIND = "find"
    """A FindNode of some lookup."""


@dataclass
class Pending:
    contact: Contact
    kind: RequestKind
    sent: int
    deadline: int
    lookup: int | None = None

    def is_answered_by(self, sender: Contact, is_nodes: bool) -> bool:
        """Is an answer from ``sender`` (a ``Nodes`` if ``is_nodes``, else a ``Pong``)
        one to this request: from the node asked, of the kind asked for?"""
        return (
            self.contact.node_id == sender.node_id and (self.kind is RequestKind.FIND) == is_nodes
        )


class LateAnswers:
    """Requests that timed out, by request id, oldest first, at most ``limit`` of them,
    each for ``LATE_ANSWER_MS``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._expired: OrderedDict[int, tuple[Pending, int]] = OrderedDict()

    def add(self, request_id: int, pending: Pending, now: int) -> None:
        self._expired[request_id] = (pending, now + LATE_ANSWER_MS)
        while len(self._expired) > self.limit:
            self._expired.popitem(last=False)

    def take(self, request_id: int, contact: Contact, is_nodes: bool, now: int) -> Pending | None:
        """The request a late answer from ``contact`` answers, if it is one of ours that
        went to that node and asked for that kind of answer (then it is forgotten)."""
        held = self._expired.get(request_id)
        if held is None:
            return None
        pending, until = held
        if until < now or not pending.is_answered_by(contact, is_nodes):
            return None
        del self._expired[request_id]
        return pending

    def expire(self, now: int) -> None:
        """Forget what can no longer be answered (insertion order is expiry order)."""
        while self._expired:
            request_id, (_, until) = next(iter(self._expired.items()))
            if until >= now:
                return
            del self._expired[request_id]


class RequestTimer:
    """How long to wait for an answer: RFC 6298's retransmission timeout over the round
    trips of answered requests, in integer milliseconds, between ``floor_ms`` (the
    configured timeout, all a fast network ever waits) and ``ceiling_ms``.

    Every answer is a sample, a late one included (it is the one that says the timeout
    is too short). Samples are unambiguous, unlike TCP's: a request asked again gets a
    fresh id, so Karn's rule has nothing to exclude. There is no back-off on a timeout:
    a lost datagram or a dead contact says nothing of the delay, and lookups over a
    lossy network must not slow down for it.
    """

    def __init__(self, floor_ms: int, ceiling_ms: int) -> None:
        if not 0 < floor_ms <= ceiling_ms:
            raise ValueError("need 0 < floor_ms <= ceiling_ms")
        self.floor_ms = floor_ms
        self.ceiling_ms = ceiling_ms
        self.smoothed_ms: int | None = None
        self.variation_ms = 0

    def on_answer(self, round_trip_ms: int) -> None:
        """An answer came ``round_trip_ms`` after its request (RFC 6298 section 2)."""
        sample = max(0, round_trip_ms)
        if self.smoothed_ms is None:
            self.smoothed_ms = sample
            self.variation_ms = sample // 2
            return
        # RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, then SRTT = 7/8 SRTT + 1/8 R.
        self.variation_ms = (3 * self.variation_ms + abs(self.smoothed_ms - sample)) // 4
        self.smoothed_ms = (7 * self.smoothed_ms + sample) // 8

    @property
    def timeout_ms(self) -> int:
        """SRTT + 4 RTTVAR, within the bounds (the floor before any answer)."""
        if self.smoothed_ms is None:
            return self.floor_ms
        return min(self.ceiling_ms, max(self.floor_ms, self.smoothed_ms + 4 * self.variation_ms))
