"""Drives many :class:`DhtNode` objects over the simulator's seeded network.

The same objects a real node drives with sockets and a clock are driven here by
``sim.SimClock`` and ``sim.SimNetwork``: that is the point of keeping the DHT pure. A
node's address is the hex of its id; messages go to whatever node owns the address
(so a contact with a wrong id reaches the wrong node, as on a real network).
"""

from __future__ import annotations

import random
from collections import Counter

from edgechain.network.dht import DhtNode
from edgechain.network.dht_config import DhtConfig
from edgechain.network.dht_events import DhtEvent, DhtOutput
from edgechain.sim.clock import MILLISECOND, Callback, SimClock, Timer
from edgechain.sim.network import LinkProfile, SimNetwork
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, DhtMessage

DHT_DATAGRAM_SIZE = 200
"""Declared size of one DHT message on the simulated wire (a signed envelope)."""


def get_address(node_id: NodeId) -> str:
    return node_id.hex()


class DhtHarness:
    def __init__(
        self,
        seed: int,
        profile: LinkProfile | None = None,
        config: DhtConfig | None = None,
        *,
        trace: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = SimClock()
        self.net: SimNetwork[DhtMessage] = SimNetwork(
            seed, self.clock, profile=profile, trace=trace
        )
        self.config = config
        self.nodes: dict[NodeId, DhtNode] = {}
        self.events: dict[NodeId, list[DhtEvent]] = {}
        self.sent: Counter[str] = Counter()
        self._timers: dict[NodeId, Timer[Callback]] = {}

    @property
    def now_ms(self) -> int:
        return self.clock.now // MILLISECOND

    def new_id(self) -> NodeId:
        return NodeId(self.rng.randbytes(32))

    def add_node(self, node_id: NodeId | None = None) -> DhtNode:
        node_id = node_id or self.new_id()
        node = DhtNode(node_id, random.Random(self.rng.getrandbits(64)), self.config)
        self.nodes[node_id] = node
        self.events[node_id] = []
        self.net.register(node_id, self._deliver)
        return node

    def join(self, node: DhtNode, bootstrap: DhtNode) -> None:
        contact = Contact(bootstrap.node_id, get_address(bootstrap.node_id))
        self.apply(node.node_id, node.join(contact, self.now_ms))

    def find(self, node: DhtNode, target: NodeId) -> None:
        self.apply(node.node_id, node.find(target, self.now_ms))

    def run_for_ms(self, ms: int) -> None:
        self.clock.run_for(ms * MILLISECOND)

    def apply(self, node_id: NodeId, out: DhtOutput) -> None:
        for contact, message in out.messages:
            self.sent[type(message).__name__] += 1
            dst = NodeId(bytes.fromhex(contact.address))
            self.net.send(node_id, dst, message, DHT_DATAGRAM_SIZE)
        self.events[node_id].extend(out.events)
        self._arm(node_id, out.next_wakeup_ms)

    def _arm(self, node_id: NodeId, wakeup_ms: int | None) -> None:
        timer = self._timers.pop(node_id, None)
        if timer is not None:
            timer.cancel()
        if wakeup_ms is None:
            return
        at = max(self.clock.now, wakeup_ms * MILLISECOND)
        self._timers[node_id] = self.clock.schedule(at, lambda: self._tick(node_id))

    def _tick(self, node_id: NodeId) -> None:
        self._timers.pop(node_id, None)
        self.apply(node_id, self.nodes[node_id].on_tick(self.now_ms))

    def _deliver(self, src: NodeId, dst: NodeId, message: DhtMessage, at: int) -> None:
        node = self.nodes[dst]
        self.apply(dst, node.on_message(Contact(src, get_address(src)), message, self.now_ms))
