"""What arrives on a node's sockets, decoded and handed to the part it is for.

:class:`NodeInbox` is a mixin of :class:`~edgechain.node.Node`: the transport calls
``_on_data`` with every datagram and frame. DHT messages go to the DHT (UDP only: its
replies name the address they came from), a seed's answer to our ping to the seeds, an
answer to our RTT probe to the probe,
gossip to the gossip layer (and what it delivers to the engine), anything else straight
to the engine. Undecodable input is counted, never raised. A message that moves the
engine's head asks, through the engine's wake-up time, for a pass of the loop at once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edgechain.chain.model import ORIGIN, Coordinate
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import (
    BlockMsg,
    CommandMsg,
    Message,
    Output,
    PeerRejected,
    ReportMsg,
    SyncResponseMsg,
)
from edgechain.crypto.session import SessionKeys
from edgechain.errors import PeerError, StoreError
from edgechain.network.dht import DhtNode
from edgechain.network.dht_events import DhtOutput
from edgechain.network.gossip import Gossip
from edgechain.node.clock import NodeClock
from edgechain.node.duty import DutyPriority
from edgechain.node.metrics import NodeObserver
from edgechain.node.priority import PRODUCER_NICE
from edgechain.node.queries import NodeCounters
from edgechain.node.relayed_blocks import RelayedBlocks
from edgechain.node.report_times import ReportTimes
from edgechain.node.routing import PeerRouting
from edgechain.node.rtt import RttProbe
from edgechain.node.seeds import SeedContacts
from edgechain.telemetry import logs
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import NodeId
from edgechain.wire.codec import decode_gossip_payload, decode_message
from edgechain.wire.message_kinds import Transport
from edgechain.wire.messages import Contact, FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong

log = logging.getLogger("edgechain.node")

TICK_COALESCE_MS = 20
"""A seed's first answer asks for a pass of the loop at most this much later (the join
goes on from the pass). The engine's messages ask through the engine: a pass at once
when one moved the head (consensus/wakeups.py), none otherwise. Until session 31 every
message the engine took asked for a pass 20 ms later, whatever it was (a report, a
vote, a second copy of a block): about one pass a slot more on an idle node of a
20-node testnet, each a pass's full cost. Before that every message asked, and most
of an idle node's passes were for gossip duplicates."""


class NodeInbox:
    """Incoming data into the node's parts (a mixin of ``Node``, which sets these)."""

    engine: ConsensusEngine | None
    store_failure: StoreError | None
    closed: bool
    clock: NodeClock
    sessions: SessionKeys
    counters: NodeCounters
    routing: PeerRouting
    rtt: RttProbe
    seeds: SeedContacts
    dht: DhtNode
    gossip: Gossip
    relayed_blocks: RelayedBlocks
    duty: DutyPriority
    observer: NodeObserver
    report_times: ReportTimes

    if TYPE_CHECKING:  # Node's own

        def _apply(self, out: Output) -> None: ...

        def _apply_dht(self, out: DhtOutput) -> None: ...

        def _request_tick(self, at_ms: int) -> None: ...

        def _on_seed_answer(self, contact: Contact, now: int) -> None: ...

        def _settle_priority(self, now: int) -> int | None: ...

    def _on_data(self, data: bytes, transport: Transport, source: str) -> None:
        engine = self.engine
        if engine is None or self.store_failure is not None or self.closed:
            return
        try:
            # Decoding is the gossip layer's work; a DHT envelope's signature check is
            # the DHT's (wire/codec.py opens that span).
            with cpu_span(Component.GOSSIP):
                message, sender = decode_message(data, transport, self.sessions)
        except PeerError as exc:
            self.counters.decode_errors[exc.reason] += 1
            logs.debug(log, "undecodable message", reason=exc.reason, **{"from": source})
            return
        now = self.clock.now_ms()
        if transport is Transport.DATAGRAM:
            self.routing.on_datagram_from(sender, source)
        if (
            isinstance(message, Pong)
            and transport is Transport.DATAGRAM
            and (seed := self.seeds.on_pong(sender, message.request_id, source))
        ):
            self._on_seed_answer(seed, now)  # a seed's answer to our ping (node/seeds.py)
            self._request_tick(now + TICK_COALESCE_MS)
        elif isinstance(message, Pong) and self.rtt.on_pong(
            sender, message.request_id, time.perf_counter_ns(), self._get_coordinate_of
        ):
            pass  # the answer to our RTT probe (node/rtt.py), not the DHT's
        elif isinstance(message, Ping | Pong | FindNode | Nodes):
            if transport is Transport.DATAGRAM:
                with cpu_span(Component.DHT):
                    self._apply_dht(self.dht.on_message(Contact(sender, source), message, now))
        elif isinstance(message, GossipMsg):
            with cpu_span(Component.GOSSIP):
                self._on_gossip(sender, message, now)
        elif isinstance(message, IHave):
            with cpu_span(Component.GOSSIP):
                self.routing.send_copies(self.gossip.on_ihave(sender, message, now))
        elif isinstance(message, IWant):
            with cpu_span(Component.GOSSIP):
                self.routing.send_copies(self.gossip.on_iwant(sender, message, now))
        else:
            if isinstance(message, BlockMsg) and (self.duty.nice or 0) > PRODUCER_NICE:
                # Blocks come directly only to the next slot's producer and committee
                # (acceptance.publish): we are one of them, and checking this block is
                # the first step of the duty, so it runs as raised as the producer's
                # (we learn which of them we are only from the block's state). At the
                # committee's raise it shared the CPU with a crowd of catching-up nodes
                # just below it: in a 100-node join (session 29, k5) the next producers
                # of skip blocks accepted their parents 0.5-2.6 s after the first node,
                # and finished their VDFs after the candidate deadline. ``_take``
                # settles the priority on our actual role as soon as the block is in.
                self.duty.set(PRODUCER_NICE)
            self._take(message, sender, now)

    def _on_gossip(self, sender: NodeId, message: GossipMsg, now: int) -> None:
        engine = self.engine
        assert engine is not None
        # Its heartbeat, if it has news, runs at a housekeeping pass (node/tick_schedule.py):
        # one is always due within a grid interval.
        deliver, forwards = self.gossip.on_message(sender, message, now)
        try:
            inner, origin = decode_gossip_payload(message.payload) if deliver else (None, None)
        except PeerError as exc:
            # Undecodable for us, undecodable for every honest peer: not relayed.
            self.counters.decode_errors[exc.reason] += 1
            return
        if (
            isinstance(inner, BlockMsg)
            and inner.block_hash is not None
            and self.relayed_blocks.is_repeat(inner.block_hash, inner.block_hash in engine.states)
        ):
            return  # another origin's copy of a block we relayed and hold (relayed_blocks.py)
        if isinstance(inner, CommandMsg):
            # Cheap to check, and anyone can make one: a command is relayed only once it
            # passed our checks, so a refused one dies at the first honest hop. Blocks are
            # relayed before validation: their propagation time is the slot's budget.
            out = engine.on_message(inner, origin, now)
            self._apply(out)
            if any(isinstance(e, PeerRejected) for e in out.events):
                return
            inner = None
        self.routing.send_copies(forwards)
        if inner is not None:
            self._take(inner, origin, now)

    def _get_coordinate_of(self, node: NodeId) -> Coordinate | None:
        """``node``'s network coordinate on our head (the origin for a validator that
        has not reported one), or None when it is not a validator there."""
        head = self.engine.get_head_state() if self.engine is not None else None
        if head is None or node not in head.validators:
            return None
        return head.coordinates.get(node, ORIGIN)

    def _take(self, message: Message, sender: NodeId | None, now: int) -> None:
        """Hand a consensus message to the engine (a block's time goes to the metrics)."""
        engine = self.engine
        assert engine is not None
        if isinstance(message, ReportMsg):
            self.report_times.on_received(message.reports, now)
        elif isinstance(message, SyncResponseMsg):
            # The answer to our ask for the chain or for missing blocks (node/events.
            # log_duty logs the ask).
            logs.info(
                log,
                "chain received" if engine.params is None else "sync received",
                blocks=len(message.blocks),
                **{"from": sender.hex()[:16] if sender else None},
            )
        head = engine.head
        started = time.perf_counter()
        out = engine.on_message(message, sender, now)
        if isinstance(message, BlockMsg):
            self.observer.on_block_taken(time.perf_counter() - started)
        self._apply(out)
        if engine.head != head:
            # A new head may give us the current slot's duty (its VDF is the slot's
            # critical path): raised now, not after the loop's next pass, which on a
            # loaded host came 0.3 s later at the default priority.
            self._settle_priority(now)
