"""The DHT's requests: what is in flight, and what timed out but may still be answered.

A request times out after ``DhtConfig.request_timeout_ms`` so that a lookup moves on
from a dead contact. On a loaded host the live ones answer late: 100 node processes on
two cores measured RTTs of 1 to 3.7 s against a 2 s timeout, so pings that would have
proved a new contact's address, and FindNodes of a join, were answered after they had
been given up, refused as unexpected, and late joiners kept a table of one contact. A
request that timed out is therefore remembered for a while (``LateAnswers``): its
answer still proves the contact alive at that address. It does not feed a lookup that
has moved on. Pure bookkeeping, no clock: ``now`` is passed in.
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
