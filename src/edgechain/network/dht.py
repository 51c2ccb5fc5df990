"""A Kademlia DHT mapping node ids to addresses, as pure objects (no I/O, no clock).

Paper §4 steps 1-5: the first node is a bootstrapping node whose address every node
knows; each node joins by contacting it, and "together, the bootstrapping node and all
other nodes maintain a Kademlia-style DHT, which helps nodes discover each other". This
module, with ``dht_table.py`` and ``dht_lookup.py``, is that DHT, after Maymounkov &
Mazières, *Kademlia: A Peer-to-peer Information System Based on the XOR Metric* (IPTPS
2002):

* ``dht_table.RoutingTable`` — 256 k-buckets by XOR distance, least-recently seen first;
  a full bucket keeps its old contacts and asks (as an *output*) for the oldest one to be
  pinged before it may be evicted (§2.2: long-lived nodes are the likeliest to stay);
* ``dht_lookup.NodeLookup`` — the iterative FIND_NODE lookup (§2.3): alpha requests in
  flight, always to the closest contacts not yet asked, until the k closest known have
  answered;
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

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from edgechain.errors import RejectReason
from edgechain.network.dht_config import DhtConfig
from edgechain.network.dht_events import (
    DhtOutput,
    DhtRejected,
    LookupFinished,
    LookupPurpose,
    PeerAdded,
    PeerRemoved,
)
from edgechain.network.dht_lookup import NodeLookup
from edgechain.network.dht_requests import LateAnswers, Pending, RequestKind, RequestTimer
from edgechain.network.dht_table import (
    ID_BITS,
    RoutingTable,
    compute_random_id_in_bucket,
)
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, DhtMessage, FindNode, Nodes, Ping, Pong

MAX_CHAIN_CONTACTS = 16
"""A node that knows the validator set (a restart's stored head, a preset genesis) joins
the DHT through at most this many validators, chosen at random: their addresses are on
chain, signed by their owners, and a fleet started at once does not all ask one seed."""


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
        self._pending: dict[int, Pending] = {}
        self._late = LateAnswers(self.config.max_pending)
        """Requests that timed out and may still be answered (``dht_requests.py``)."""
        self.timer = RequestTimer(
            self.config.request_timeout_ms, self.config.max_request_timeout_ms
        )
        """How long a request is waited for (``dht_requests.py``)."""
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
        self._seeds: dict[NodeId, Contact] = {}
        """The contacts we joined through (``join``, ``add_seeds``), asked again by a rejoin."""
        self._rejoin_at: int | None = None
        self._rejoins = 0

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
            self._seeds[bootstrap.node_id] = bootstrap
            self._add_verified(bootstrap, now, out)
        self._start_lookup(self.node_id, LookupPurpose.JOIN, now, out)
        return self._finish(out, now)

    def add_seeds(self, contacts: Sequence[Contact], now: int) -> DhtOutput:
        """Join (again) through ``contacts``: each enters the table, then a lookup of our
        own id runs through them (Kademlia §2.3), as ``join`` does for its contact: the
        join lookup under way if there is one; none if we are joined already.

        For contacts vouched for without a request of ours: a seed's, whose answer to
        our ping proved its endpoint (``node/seeds.py``), or a validator's address
        signed by its owner on chain. Seeds answer at any time, so a node that joined
        alone (every seed down) joins the network when the first one answers."""
        out = DhtOutput()
        fresh = [c for c in contacts if c.node_id != self.node_id]
        # Joined through others than the seeds: the new seeds only enter the table.
        settled = self._joined and self._rejoin_at is None
        settled = settled and any(c.node_id not in self._seeds for c in self.get_peers())
        for contact in fresh:
            self._seeds[contact.node_id] = contact
            self._add_verified(contact, now, out)
        if not fresh:
            return self._finish(out, now)
        joining = next(
            (i for i, a in self._lookups.items() if a.purpose is LookupPurpose.JOIN), None
        )
        if joining is not None:
            # Seeds answer one by one: each joins the lookup already running instead
            # of starting its own (three seeds tripled a testnet's joins and refreshes).
            requests = self._lookups[joining].lookup.add_and_continue(fresh)
            self._send_lookup_requests(joining, requests, now, out)
        elif not settled:
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
        self._late.expire(now)
        if self._joined and self._next_refresh is not None and now >= self._next_refresh:
            self._refresh_stale_buckets(now, out)
        if self._rejoin_at is not None and now >= self._rejoin_at:
            self._rejoin_at = None
            for seed in self._seeds.values():
                self._add_verified(seed, now, out)  # back in the table, failures reset
            self._start_lookup(self.node_id, LookupPurpose.JOIN, now, out)
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
            self._send_ping(src, RequestKind.VERIFY, now, out)
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
        if pending is None or not pending.is_answered_by(src, is_nodes):
            late = self._late.take(request_id, src, is_nodes, now)
            if late is None:
                out.events.append(DhtRejected(RejectReason.UNEXPECTED_ANSWER, src.node_id))
            else:  # alive at the address we asked, only slow: a contact all the same
                self.timer.on_answer(now - late.sent)
                self._add_verified(late.contact, now, out)
                self._record_answer(src.node_id, late.contact, now)
                if contacts is not None and late.lookup is not None:
                    self._continue_lookup(late.lookup, src, contacts, now, out, late=True)
            return
        del self._pending[request_id]
        self.timer.on_answer(now - pending.sent)
        if self._pinging.get(src.node_id) == request_id:
            del self._pinging[src.node_id]
        # The answer proves that the holder of the id's key receives at the address we
        # sent to; that address (not the answer's source) is the one we record.
        if pending.kind is RequestKind.EVICT:
            self.table.touch(src.node_id, now)
        else:
            self._add_verified(pending.contact, now, out)
        self._record_answer(src.node_id, pending.contact, now)
        deferred = self._deferred.pop(src.node_id, None)
        if deferred is not None and deferred[0] == pending.contact:
            out.messages.append((deferred[0], self._answer_find_node(*deferred)))
        if contacts is not None and pending.lookup is not None:
            self._continue_lookup(pending.lookup, src, contacts, now, out, late=False)

    def _continue_lookup(
        self,
        lookup_id: int,
        src: Contact,
        contacts: tuple[Contact, ...],
        now: int,
        out: DhtOutput,
        *,
        late: bool,
    ) -> None:
        """A lookup's FindNode was answered (``late``: after it timed out), if the
        lookup is still running."""
        active = self._lookups.get(lookup_id)
        if active is None:
            return
        lookup = active.lookup
        fresh = [c for c in contacts if c.node_id != self.node_id]
        if late:
            requests = lookup.on_late_response(src.node_id, fresh, now)
        else:
            requests = lookup.on_response(src.node_id, fresh, now)
        self._send_lookup_requests(lookup_id, requests, now, out)
        self._finish_lookup_if_done(lookup_id, now, out)

    def _record_answer(self, node_id: NodeId, asked: Contact, now: int) -> None:
        self._answered[node_id] = (asked.address, now)
        self._answered.move_to_end(node_id)
        while len(self._answered) > self.config.known_addresses:
            self._answered.popitem(last=False)

    def _on_request_timeout(self, request_id: int, now: int, out: DhtOutput) -> None:
        pending = self._pending.pop(request_id)
        self._late.add(request_id, pending, now)
        node_id = pending.contact.node_id
        if self._pinging.get(node_id) == request_id:
            del self._pinging[node_id]
            self._deferred.pop(node_id, None)
        if pending.kind is RequestKind.EVICT:
            # Kademlia §2.2: the oldest contact of a full bucket did not answer; the
            # newest waiting contact takes its place.
            self._remove_contact(node_id, out)
        elif pending.kind is RequestKind.FIND:
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
            self._send_ping(oldest, RequestKind.EVICT, now, out)

    def _send_ping(self, contact: Contact, kind: RequestKind, now: int, out: DhtOutput) -> None:
        request_id = self._new_request_id()
        self._pending[request_id] = Pending(contact, kind, now, now + self.timer.timeout_ms)
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
            self._pending[request.request_id] = Pending(
                contact, RequestKind.FIND, now, now + self.timer.timeout_ms, lookup_id
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
            self._on_joined(result, active.lookup.failures, now, out)

    def _on_joined(
        self, result: tuple[Contact, ...], failures: int, now: int, out: DhtOutput
    ) -> None:
        """Kademlia §2.3: refresh every bucket farther away than the closest neighbour.

        A join that no seed answered (an overloaded bootstrap node drops a FindNode from
        a sender it cannot ping back, ``max_pending``) leaves us in nobody's table and
        only the seeds in ours; refreshing from there would wait ``refresh_interval_ms``.
        It is tried again instead, after a random wait that doubles each time (up to
        ``rejoin_max_ms``): nodes that joined in one burst do not retry in one burst.

        So is a join that found no one but its seeds (the seeds answered, every contact
        they named timed out): 100 nodes on two cores answer in seconds, and late joiners
        of such a testnet kept a table of one contact until the refresh 15 minutes on.
        That node is joined (the seeds know it), but looks again. A network of only the
        seeds (a restart with every validator a seed) names no one who fails: joined."""
        only_seeds = all(contact.node_id in self._seeds for contact in result)
        thin = not result or (only_seeds and failures > 0)
        if thin and self._seeds:
            delay = min(self.config.request_timeout_ms << self._rejoins, self.config.rejoin_max_ms)
            self._rejoins = min(self._rejoins + 1, 16)
            self._rejoin_at = now + delay // 2 + self._rng.randrange(delay // 2 + 1)
            if not result:
                return
        else:
            self._rejoin_at, self._rejoins = None, 0
        was_joined, self._joined = self._joined, True
        if was_joined and thin:
            return  # nothing new to refresh the buckets through
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
        if self._rejoin_at is not None:
            deadlines.append(self._rejoin_at)
        out.next_wakeup_ms = min(deadlines) if deadlines else None
        return out
