"""How messages travel between simulated nodes over the seeded network (``sim/network.py``).

An engine's direct messages go over one simulated link each. Its gossiped ones, on the
``gossip`` overlay, go through the node's real :class:`Gossip` object, which spreads
through the node's DHT neighbours (the real :class:`DhtNode`, whose own messages travel
here too); on the ``broadcast`` overlay they go to every node, and each node forwards a
block it sees first to a few random peers. Every message is charged an approximate wire
size, so the network's bandwidth and trace see what a real node would send.

The transport only carries messages: what an engine returns when one arrives goes back
to the simulation (``Simulation._handle``), which also owns the nodes' timers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from edgechain.chain.encoding import encode_block
from edgechain.consensus.messages import (
    BlockMsg,
    CandidateMsg,
    ForwardSyncResponseMsg,
    Message,
    Outgoing,
    Output,
    ReportMsg,
    Route,
    StateResponseMsg,
    SyncResponseMsg,
)
from edgechain.consensus.state import Memo
from edgechain.network.dht import MAX_CHAIN_CONTACTS
from edgechain.network.dht_events import DhtOutput
from edgechain.sim.clock import MILLISECOND, SimClock
from edgechain.sim.config import SimConfig
from edgechain.sim.network import SimNetwork
from edgechain.sim.report_metrics import ReportMetrics
from edgechain.sim.world import SimNode
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, FindNode, GossipMsg, IHave, IWant, Nodes, Ping, Pong

SimPayload = Message | GossipMsg | IHave | IWant | Ping | Pong | FindNode | Nodes


def _get_ids_size(msg: IHave | IWant) -> int:
    """Approximate wire size of a pull-repair message: a header and 32 bytes an id."""
    return 64 + 32 * len(msg.message_ids)


def _message_size(msg: Any, memo: Memo) -> int:
    """Approximate wire size; blocks are charged their canonical encoding."""
    if isinstance(msg, BlockMsg | CandidateMsg):
        return memo.get(("size", id(msg.block)), lambda: (msg.block, len(encode_block(msg.block))))[
            1
        ]
    if isinstance(msg, ReportMsg):
        return 64 + 180 * len(msg.reports)
    if isinstance(msg, SyncResponseMsg | ForwardSyncResponseMsg):
        return 64 + sum(_message_size(BlockMsg(b), memo) for b in msg.blocks)
    if isinstance(msg, StateResponseMsg):
        return 64 + len(msg.state)
    return 200


class Transport:
    """Carries the messages of the simulation's nodes over its network."""

    def __init__(
        self,
        config: SimConfig,
        *,
        net: SimNetwork[SimPayload],
        clock: SimClock,
        memo: Memo,
        rng: random.Random,
        nodes: list[SimNode],
        by_id: dict[NodeId, SimNode],
        bootstrap: NodeId,
        report_metrics: ReportMetrics,
        handle: Callable[[SimNode, Output], None],
        arm: Callable[[SimNode, int | None], None],
    ) -> None:
        self.config = config
        self.net = net
        self.clock = clock
        self.memo = memo
        """Shared with the engines: a block's size is computed once per network."""
        self.rng = rng
        """The run's generator (``Simulation.rng``), for the ``broadcast`` relay's peers."""
        self.nodes = nodes
        self.by_id = by_id
        self.bootstrap = bootstrap
        """The node every DHT joins through."""
        self.report_metrics = report_metrics
        self.handle = handle
        """Takes what a node's engine returned for a delivered message."""
        self.arm = arm
        """Wakes a node at a virtual millisecond (for its DHT's timers)."""
        self.relayed: dict[int, set[int]] = {}
        """Node index -> ids of the blocks it already forwarded (``broadcast`` overlay)."""
        self.tokens: dict[bytes, tuple[Message, NodeId]] = {}
        """Gossip payload token -> (message, origin): the gossip objects run for real on
        small tokens instead of re-encoding a block at every hop."""

    def now_ms(self) -> int:
        return self.clock.now // MILLISECOND

    def connect(self, node: SimNode) -> None:
        """Put a starting node on the network and join its DHT (if any).

        As a real node does (``Node._join_dht``), a node that already holds a head (a
        preset genesis) joins through up to ``MAX_CHAIN_CONTACTS`` random validators of
        it: 10,000 nodes asking one bootstrap node at once mostly go unanswered. A node
        without one joins through the bootstrap node."""
        self.net.register(node.ident.node, self.deliver)
        self.net.node_up(node.ident.node)
        if node.dht is None:
            return
        now = self.now_ms()
        state = node.engine.get_head_state()
        if state is None:
            bootstrap = Contact(self.bootstrap, self.bootstrap.hex())
            self._handle_dht(node, node.dht.join(bootstrap, now))
            return
        me = node.ident.node
        self._handle_dht(node, node.dht.join(Contact(me, me.hex()), now))
        members = state.validators.members
        # Indexes, not a list of every member per node: 10,000 x 10,000 otherwise.
        rng = random.Random(self.config.seed * 1_000_003 + node.index)
        picked = rng.sample(range(len(members)), min(len(members), MAX_CHAIN_CONTACTS + 1))
        chosen = [members[i].node for i in picked if members[i].node != me]
        contacts = [Contact(n, n.hex()) for n in chosen[:MAX_CHAIN_CONTACTS]]
        self._handle_dht(node, node.dht.add_seeds(contacts, now))

    def on_tick(self, node: SimNode, now: int) -> None:
        """A node's timer fired: its DHT and gossip objects do their periodic work."""
        if node.dht is not None:
            self._handle_dht(node, node.dht.on_tick(now))
        if node.gossip is not None:
            self._refresh_peers(node)
            for peer, ihave in node.gossip.on_tick(now):
                self.net.send(node.ident.node, peer, ihave, _get_ids_size(ihave))

    def send(self, node: SimNode, messages: Iterable[Outgoing]) -> None:
        """Send what a node's engine returned: gossip to everyone, the rest to its targets."""
        src = node.ident.node
        for outgoing in messages:
            size = _message_size(outgoing.message, self.memo)
            if outgoing.route is Route.GOSSIP and node.gossip is not None:
                self._publish(node, outgoing.message)
                continue
            if outgoing.route is Route.GOSSIP:
                targets: Any = (n.ident.node for n in self.nodes if n is not node)
            else:
                targets = outgoing.to
            for dst in targets:
                if dst != src and dst in self.by_id:
                    self.net.send(src, dst, outgoing.message, size)

    def send_direct(self, node: SimNode, message: Message, dst: NodeId) -> None:
        """One message from ``node`` to ``dst`` (sized like any other)."""
        if dst != node.ident.node and dst in self.by_id:
            self.net.send(node.ident.node, dst, message, _message_size(message, self.memo))

    def deliver(self, src: NodeId, dst: NodeId, payload: SimPayload, at: int) -> None:
        """The network's delivery callback: hand the payload to the DHT, the gossip object
        or the engine of ``dst``."""
        node = self.by_id[dst]
        if not node.up:
            return
        now = self.now_ms()
        if isinstance(payload, Ping | Pong | FindNode | Nodes):
            if node.dht is not None:
                self._handle_dht(node, node.dht.on_message(Contact(src, src.hex()), payload, now))
            return
        if isinstance(payload, GossipMsg | IHave | IWant):
            self._on_gossip(node, src, payload, now)
            return
        if isinstance(payload, ReportMsg):
            self.report_metrics.on_delivered(dst, payload.reports, now)
        if (
            isinstance(payload, BlockMsg)
            and self.config.overlay == "broadcast"
            and self.config.gossip_relay
        ):
            self._relay(node, payload)
        self.handle(node, node.engine.on_message(payload, src, now))

    def _refresh_peers(self, node: SimNode) -> None:
        assert node.gossip is not None and node.dht is not None
        # Rebuilding the list walks 256 buckets; at 1000 nodes it was a quarter of the run.
        if node.dht.peers_version != node.peers_version:
            node.peers_version = node.dht.peers_version
            node.gossip.set_peers(c.node_id for c in node.dht.get_peers())

    def _handle_dht(self, node: SimNode, out: DhtOutput) -> None:
        if out.next_wakeup_ms is not None:
            node.dht_wakeup = out.next_wakeup_ms
        for contact, message in out.messages:
            self.net.send(node.ident.node, NodeId(bytes.fromhex(contact.address)), message, 120)
        if out.next_wakeup_ms is not None:
            self.arm(node, out.next_wakeup_ms)

    def _on_gossip(
        self, node: SimNode, src: NodeId, payload: GossipMsg | IHave | IWant, now: int
    ) -> None:
        gossip = node.gossip
        if gossip is None:
            return
        me = node.ident.node
        if isinstance(payload, IHave):
            for peer, want in gossip.on_ihave(src, payload, now):
                self.net.send(me, peer, want, _get_ids_size(want))
            return
        if isinstance(payload, IWant):
            for peer, copy in gossip.on_iwant(src, payload, now):
                self.net.send(me, peer, copy, self._gossip_size(copy))
            return
        deliver, forwards = gossip.on_message(src, payload, now)
        for peer, onward in forwards:
            if isinstance(onward, IWant):  # for ids the copy announced (pull repair)
                self.net.send(me, peer, onward, _get_ids_size(onward))
            else:
                self.net.send(me, peer, onward, self._gossip_size(onward))
        if deliver:
            message, origin = self.tokens[payload.payload]
            self.handle(node, node.engine.on_message(message, origin, now))

    def _gossip_size(self, msg: GossipMsg) -> int:
        announced = 34 * len(msg.recent_ids)  # 32 bytes and a field header each
        return 48 + announced + _message_size(self.tokens[msg.payload][0], self.memo)

    def _publish(self, node: SimNode, message: Message) -> None:
        assert node.gossip is not None
        token = len(self.tokens).to_bytes(8, "big")
        self.tokens[token] = (message, node.ident.node)
        self._refresh_peers(node)
        for peer, copy in node.gossip.publish(token, self.now_ms()):
            self.net.send(node.ident.node, peer, copy, self._gossip_size(copy))

    def _relay(self, node: SimNode, msg: BlockMsg) -> None:
        """Gossip forwarding on first sight (de-duplicated by block identity)."""
        seen = self.relayed.setdefault(node.index, set())
        key = id(msg.block)
        if key in seen:
            return
        seen.add(key)
        if len(seen) > 4096:
            seen.clear()
        size = _message_size(msg, self.memo)
        for _ in range(self.config.gossip_relay):
            peer = self.nodes[self.rng.randrange(len(self.nodes))]
            if peer is not node:
                self.net.send(node.ident.node, peer.ident.node, msg, size)
