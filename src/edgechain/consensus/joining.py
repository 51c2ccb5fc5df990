"""Genesis, joining and leaving (paper §4 steps 6-11).

Before genesis the genesis node gathers inclusion requests and, once it holds enough
for a committee and a producer, creates and signs the genesis; every other node adopts
the first genesis the genesis key signed. After genesis a node outside the validator
set keeps asking to join; inclusion and exit requests wait here until a block carries
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ParamSpec

from edgechain.chain.assembly import make_exit_request, make_inclusion_request
from edgechain.chain.departures import (
    INCLUSION_MAX_AGE_SLOTS,
    check_not_stale,
    is_after_departure,
    is_too_old,
)
from edgechain.chain.encoding import compute_genesis_hash
from edgechain.chain.model import ExitRequest, Genesis, InclusionRequest
from edgechain.chain.validation import (
    is_exit_of_current_stay,
    validate_exit,
    validate_genesis,
    validate_inclusion,
)
from edgechain.consensus.backoff import get_backoff_ms
from edgechain.consensus.block_validation import check_admitted
from edgechain.consensus.context import EngineContext, get_genesis_hash
from edgechain.consensus.messages import (
    HEAD_WANT,
    AdmissionRefused,
    ExitMsg,
    GenesisCreated,
    GenesisMsg,
    InclusionMsg,
    Outgoing,
    Output,
    Route,
    SyncRequestMsg,
)
from edgechain.consensus.state import BlockState, get_current_slot, get_roles
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import PeerError, RejectReason, ValidationError
from edgechain.types import NodeId, PublicKey, Signature, Slot

_P = ParamSpec("_P")

MAX_RETRY_BACKOFF = 4
"""A request waits at most this many base intervals (``inclusion_retry_ms``) to be
sent again. Every node verifies every new request (its signature: a pairing), and a
request is re-signed for each retry, so a crowd of joiners retrying at the base rate
under load (a 100-node testnet starting on 2 cores) spent the CPU the blocks that
would include them needed. Gossip and the pending pools keep a request across
retries; a retry only covers a loss."""

RESIGN_EVERY = 4
"""A retry re-sends the same signed request, which costs the nodes that hold it nothing
(a repeat of a pending request is dropped before any check), and signs a new one only
every this many retries, or at once after an exclusion. Every node verifies each new
request (a pairing check, ~2 ms here): 100 joiners re-signing every retry cost a
100-node host most of a core while they waited. A fresh request now and then still
reaches a node that saw the old one before it had the genesis (gossip drops a message
it has seen for ten minutes)."""

RESIGN_AGE_SLOTS = INCLUSION_MAX_AGE_SLOTS // 2
"""A request whose nonce is this many slots behind the head is signed anew before it is
sent again: a block may carry it only while it is at most ``INCLUSION_MAX_AGE_SLOTS``
old, so a sent request has at least this many slots to be included."""

JOIN_MAX_LAG_SLOTS = 4
"""A head more than this many slots older than the clock is lagging: the node asks for
the network's head before it asks to join (``Joining.regossip_inclusion``)."""

MAX_LAG_ASKS = 3
"""Head requests in a row before a lagging node asks to join anyway."""

DIRECT_TO_PRODUCERS = 3
"""A request also goes straight to the producers of this many next slots. Gossip alone
reached few producers on a loaded host: a re-sent request is the same message, which
every node that saw it drops, and a new one is signed only every ``RESIGN_EVERY``
sends. In a 100-node testnet (session 26) 40 nodes waited to join while blocks carried
about one inclusion every three slots, then 25 in one block whose producer had them."""

PRE_GENESIS_NONCE = 0
"""The nonce of a request signed before its node had the chain: the genesis node pools
it for the genesis, and after the genesis nobody does. A node asks with the slot of its
head (at least 1) once it follows the chain. Consensus checks only that a block's
requests are fresh and signed no earlier than their node's last departure
(``chain/departures.py``), which a nonce-0 request fails 64 slots after the genesis;
dropping them at once is the joining nodes' and the pools' rule."""


def _get_refusal(
    check: Callable[_P, None], *args: _P.args, **kwargs: _P.kwargs
) -> ValidationError | None:
    """What ``check(*args, **kwargs)`` refused with, or None when it passed."""
    try:
        check(*args, **kwargs)
    except ValidationError as exc:
        return exc
    return None


class Joining:
    """Inclusion and exit requests, and the genesis that starts the chain."""

    def __init__(
        self,
        ctx: EngineContext,
        adopt_genesis: Callable[[Genesis, Signature], None],
        has_orphan_after: Callable[[Slot], bool],
    ) -> None:
        self.ctx = ctx
        self.adopt_genesis = adopt_genesis
        self.has_orphan_after = has_orphan_after
        """Whether a block later than the slot waits for its ancestors (``Sync``)."""
        config = ctx.config
        self.own_request = make_inclusion_request(
            ctx.sk, config.address, config.labels, config.ticket
        )
        self.pending_inclusions: dict[bytes, InclusionRequest] = {}
        self.pending_exits: dict[NodeId, ExitRequest] = {}
        self.leaving = False
        self.last_inclusion_sent_ms: int | None = None
        self.seed_ids: list[NodeId] = []
        """Seeds that answered (the node learns them: node/seeds.py); asked for the
        chain before genesis."""
        self.inclusion_attempts = 0
        """Requests sent since we last were a validator (or since genesis): the retry
        interval doubles with each, up to ``MAX_RETRY_BACKOFF`` times the base."""
        self.sends_since_signed = 0
        """Times ``own_request`` was sent since it was signed (``RESIGN_EVERY``)."""
        self.was_validator = False
        """We were a validator since ``own_request`` was signed: an exclusion."""
        self.lag_asks = 0
        """Head requests sent in a row instead of an inclusion request, the head lagging
        the clock (``MAX_LAG_ASKS``)."""
        self.admission_problem: ValidationError | None = None
        """Why the chain would refuse ``own_request`` (:meth:`_check_own_request`)."""

    # --- genesis -----------------------------------------------------------------------

    def pre_genesis_tick(self, now: int, out: Output) -> None:
        ctx = self.ctx
        template = ctx.config.genesis_template
        if template is None:
            self.regossip_inclusion(now, out)
            return
        self.pending_inclusions.setdefault(bytes(ctx.pk), self.own_request)
        if len(self.pending_inclusions) < template.committee_size + 1:
            return
        # Round the start up to a whole second so logs line up across nodes.
        start = (now + ctx.config.genesis_delay_ms + 999) // 1000 * 1000
        params = dataclasses.replace(template, genesis_time_ms=start)
        inclusions = tuple(sorted(self.pending_inclusions.values(), key=lambda r: r.public_key))
        genesis = Genesis(params, inclusions, now)
        signature = bls.sign(ctx.sk, compute_genesis_hash(genesis))
        self.adopt_genesis(genesis, signature)
        assert ctx.genesis_msg is not None
        out.messages.append(Outgoing(ctx.genesis_msg, Route.GOSSIP))
        out.events.append(GenesisCreated(compute_genesis_hash(genesis)))

    def on_genesis(self, msg: GenesisMsg, out: Output) -> None:
        ctx = self.ctx
        if ctx.genesis is not None:
            return
        genesis_hash = get_genesis_hash(ctx.memo, msg.genesis)
        if msg.genesis.params.chain_id != ctx.config.chain_id:
            raise PeerError(RejectReason.FOREIGN_GENESIS, msg.genesis.params.chain_id)
        if not bls.verify(ctx.config.genesis_key, genesis_hash, msg.signature):
            raise PeerError(RejectReason.BAD_GENESIS_SIGNATURE)
        ctx.memo.get(("genesis-valid", genesis_hash), lambda: validate_genesis(msg.genesis))
        self.adopt_genesis(msg.genesis, msg.signature)
        out.events.append(GenesisCreated(genesis_hash))

    def on_genesis_adopted(self) -> None:
        """The requests gathered for the genesis are done with; a node the genesis left
        out asks again at once, for the chain (``PRE_GENESIS_NONCE``), not after the
        retry interval its last pre-genesis request started."""
        self.pending_inclusions.clear()
        self.last_inclusion_sent_ms = None
        self.inclusion_attempts = 0

    # --- joining -----------------------------------------------------------------------

    def on_inclusion(self, req: InclusionRequest) -> None:
        ctx = self.ctx
        key = bytes(req.public_key)
        known = self.pending_inclusions.get(key)
        if known is not None and known.nonce >= req.nonce:
            return
        if ctx.params is None:
            template = ctx.config.genesis_template
            if template is None:
                return  # only the genesis node gathers requests before genesis
            params = template
        else:
            if req.nonce == PRE_GENESIS_NONCE:
                # Signed before its sender had the chain (``PRE_GENESIS_NONCE``): meant
                # for the genesis only. A node that asks once it holds the chain signs
                # for its head's slot.
                return
            params = ctx.params
            state = ctx.get_head_state()
            if state is not None:
                # An old copy (gossip's pull repair hands them around, a peer may replay
                # one): no later block on this head may carry it (``chain/departures.py``),
                # even when its node is back in the set with a newer request.
                check_not_stale(req, state.slot, state.departures)
                if compute_node_id(req.public_key) in state.validators:
                    return
        ctx.memo.get(
            ("inclusion-valid", req),
            lambda: validate_inclusion(req, params, ctx.memo.signatures),
        )
        self.pending_inclusions[key] = req

    def ask_seeds_for_chain(self, out: Output) -> None:
        """Before genesis, with each inclusion retry: ask the seeds (and the genesis
        key's node) directly for the genesis and its head (``Sync.on_sync_request``,
        ``HEAD_WANT``).

        A node learns of the chain from gossip, which reaches it only once some node
        holds it as a peer (its DHT contacts, or the validators). In a 100-node join on
        2 cores, 14 nodes got no answer but the bootstrap's to their DHT lookups,
        stayed out of every peer list, and never saw a block or the genesis; the seeds
        are the nodes every joiner is told about, so they are asked directly. Any one
        that answers is enough: the genesis is checked against the genesis key."""
        targets = dict.fromkeys([*self.seed_ids, compute_node_id(self.ctx.config.genesis_key)])
        targets.pop(self.ctx.node_id, None)
        if targets:
            request = SyncRequestMsg(HEAD_WANT, self.ctx.config.sync_limit)
            out.messages.append(Outgoing(request, Route.DIRECT, tuple(targets)))

    def regossip_inclusion(self, now: int, out: Output) -> None:
        """A node outside the validator set keeps asking to join (paper §4 step 7), once
        it holds the chain: not while it is behind (a block later than its head waits
        for its ancestors), and after the genesis never with the request it signed
        before it (``PRE_GENESIS_NONCE``).

        A validator elected before it can follow the chain stays silent in its slots,
        each one a skip block that excludes it, and it must ask again. In a 100-node
        testnet on 2 cores (session 26), 39 of 51 skip blocks excluded a node that at
        its slot had accepted no block yet (24) or was more than 3 slots behind (15):
        nodes started after the genesis gossiped the request they signed while waiting
        for it, and were included before they had the genesis.

        Lagging: the head is more than ``JOIN_MAX_LAG_SLOTS`` behind the clock with
        nothing newer in sight; 13 more of 40 skip blocks in the next run excluded such
        a node (a joiner outside the gossip mesh learns of newer blocks late). It asks
        the seeds for their head instead, up to ``MAX_LAG_ASKS`` times in a row, then
        asks to join anyway: the network's head may be as old (a stalled chain)."""
        ctx = self.ctx
        if ctx.is_validator():
            self.inclusion_attempts = 0  # an exclusion later asks again promptly
            self.was_validator = True
            return
        if self.leaving:
            return
        retry = self.get_retry_time()
        if retry is not None and now < retry:
            return
        state = ctx.get_head_state()
        lagging = False
        if ctx.params is not None:
            if state is None or self.has_orphan_after(state.slot):
                return  # behind
            lagging = state.slot + JOIN_MAX_LAG_SLOTS < get_current_slot(ctx.params, now)
        self.last_inclusion_sent_ms = now
        if ctx.params is None:
            self.ask_seeds_for_chain(out)
        elif lagging and self.lag_asks < MAX_LAG_ASKS:
            self.lag_asks += 1
            self.ask_seeds_for_chain(out)
            return
        else:
            self.inclusion_attempts += 1
        if not lagging:
            self.lag_asks = 0
        # A validator of this chain lately (``last_seen`` keeps one that left until it
        # is down) that restarted outside the set has no ``was_validator`` to tell it.
        excluded = self.was_validator or (state is not None and ctx.node_id in state.last_seen)
        stale = (
            excluded
            or self.sends_since_signed >= RESIGN_EVERY
            or (state is not None and state.slot - self.own_request.nonce >= RESIGN_AGE_SLOTS)
        )
        pre_genesis = self.own_request.nonce == PRE_GENESIS_NONCE
        if state is not None and (pre_genesis or (self.own_request.nonce < state.slot and stale)):
            # Signed before the genesis, excluded since our last request, it went out
            # RESIGN_EVERY times, or it nears the age past which no block may carry it:
            # ask anew, so gossip carries it as a new message rather than a duplicate.
            config = ctx.config
            self.own_request = make_inclusion_request(
                ctx.sk, config.address, config.labels, config.ticket, nonce=max(1, state.slot)
            )
            self.sends_since_signed = 0
            self.was_validator = False
        if state is not None and not self._check_own_request(state, out):
            return
        self.sends_since_signed += 1
        self.pending_inclusions[bytes(ctx.pk)] = self.own_request
        message = InclusionMsg(self.own_request)
        out.messages.append(Outgoing(message, Route.GOSSIP))
        if state is not None:
            producers = self.get_next_producers(state)
            if producers:
                out.messages.append(Outgoing(message, Route.DIRECT, producers))

    def _check_own_request(self, state: BlockState, out: Output) -> bool:
        """Whether the next block on ``state`` could carry ``own_request``, checked as
        every peer checks it (``validate_inclusion``, ``block_validation.check_admitted``).
        A node restarted without its ticket, or whose enrollment token expired or was
        revoked, asked every retry and each peer refused it in silence (counted there
        as ``bad_admission_ticket``): it followed the chain for good with nothing in its
        own log. Now it says why once (``AdmissionRefused``, ``/status``
        ``admission_problem``) and sends nothing the chain would refuse."""
        ctx = self.ctx
        params = ctx.params
        if params is None:
            return True
        request = self.own_request
        # Its signatures and ticket once per request signed, not per retry; the verdict
        # kept, a refusal too.
        problem = ctx.memo.get(
            ("own-inclusion", request),
            lambda: _get_refusal(validate_inclusion, request, params, ctx.memo.signatures),
        )
        if problem is None:
            problem = _get_refusal(check_admitted, request, params, state, Slot(state.slot + 1))
        told = self.admission_problem
        self.admission_problem = problem
        if problem is not None and (told is None or str(told) != str(problem)):
            out.events.append(AdmissionRefused(problem.reason, problem.detail))
        return problem is None

    def get_next_producers(self, state: BlockState) -> tuple[NodeId, ...]:
        """The producers of the ``DIRECT_TO_PRODUCERS`` slots after ``state`` on it (the
        first is the next block's producer; the later ones hold if the next blocks do
        not change the seed or the set), ourselves excluded."""
        params = self.ctx.params
        if params is None or not len(state.validators):
            return ()
        slots = range(state.slot + 1, state.slot + 1 + DIRECT_TO_PRODUCERS)
        elected = (get_roles(self.ctx.memo, state, Slot(s), params.committee_size) for s in slots)
        producers = dict.fromkeys(compute_node_id(roles.producer) for roles in elected)
        producers.pop(self.ctx.node_id, None)
        return tuple(producers)

    def get_retry_time(self) -> int | None:
        """When to ask to join again, while outside the validator set."""
        last = self.last_inclusion_sent_ms
        if last is None or self.ctx.is_validator():
            return None
        # Attempts count since genesis, or since we were last a validator.
        return last + get_backoff_ms(
            self.ctx.config.inclusion_retry_ms, self.inclusion_attempts, MAX_RETRY_BACKOFF
        )

    # --- leaving -----------------------------------------------------------------------

    def request_exit(self, slot: Slot, out: Output) -> None:
        req = make_exit_request(self.ctx.sk, slot)
        self.pending_exits[req.node] = req
        self.leaving = True
        out.messages.append(Outgoing(ExitMsg(req), Route.GOSSIP))

    def on_exit(self, req: ExitRequest) -> None:
        state = self.ctx.get_head_state()
        assert state is not None
        if not is_exit_of_current_stay(req, state.validators):
            # Its node left already or joined again since: honest relays carry these
            # (pull repair) for as long as gossip remembers them. Refused unchecked.
            raise ValidationError(RejectReason.STALE_EXIT, "its node's stay ended")
        validate_exit(req, state.validators, Slot(2**62))
        pending = self.pending_exits.get(req.node)
        if pending is None or req.slot > pending.slot:
            self.pending_exits[req.node] = req

    def prune(self, state: BlockState) -> None:
        """Drop requests a block on the head chain (``state``) already carries, and
        those that can no longer apply: inclusions too old or signed before their node
        left (``chain/departures.py``), exits of an earlier stay
        (``is_exit_of_current_stay``)."""
        for key in [
            k
            for k, req in self.pending_inclusions.items()
            if compute_node_id(PublicKey(k)) in state.validators
            or is_too_old(req, state.slot)
            or not is_after_departure(req, state.departures)
        ]:
            del self.pending_inclusions[key]
        for node in [
            n
            for n, req in self.pending_exits.items()
            if not is_exit_of_current_stay(req, state.validators)
        ]:
            del self.pending_exits[node]
