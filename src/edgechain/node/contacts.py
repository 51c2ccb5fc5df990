"""Whom the node reaches first and how near they are: joining the DHT, pinging the
operator's seeds, probing a validator's round trip.

:class:`NodeContacts` is a mixin of :class:`~edgechain.node.Node` (split out of
``node.py``, which owns the attributes it uses): the DHT join through the stored
validator set (paper §4 steps 1-5), the seeds' pings until each answers
(``seeds.py``), and the RTT probes whose figures the reports carry (``rtt.py``). The
loop's passes call the periodic ones at the housekeeping grid's time
(``tick_schedule.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import TYPE_CHECKING

from edgechain.consensus.engine import ConsensusEngine
from edgechain.network.dht import MAX_CHAIN_CONTACTS, DhtNode
from edgechain.network.dht_events import DhtOutput
from edgechain.network.transport import NetworkTransport, join_address, split_address
from edgechain.node.clock import NodeClock
from edgechain.node.routing import PeerRouting
from edgechain.node.rtt import RttProbe
from edgechain.node.seeds import UNKNOWN_NODE, SeedContacts
from edgechain.telemetry import logs
from edgechain.types import NodeId
from edgechain.wire.messages import Contact, Ping

log = logging.getLogger("edgechain.node")


class NodeContacts:
    """The DHT join, the seeds' pings and the RTT probes (a mixin of ``Node``, which
    sets these)."""

    engine: ConsensusEngine | None
    node_id: NodeId
    clock: NodeClock
    rng: random.Random
    transport: NetworkTransport
    dht: DhtNode
    routing: PeerRouting
    seeds: SeedContacts
    rtt: RttProbe
    _seed_tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:  # Node's own

        def _apply_dht(self, out: DhtOutput) -> None: ...

    def _join_dht(self) -> None:
        """Join the DHT (paper §4 steps 1-5) through what we already know: a restarted
        node's stored validator set (addresses their owners signed on chain). The seeds
        join in as they answer their pings (``_on_seed_answer``)."""
        now = self.clock.now_ms()
        own = Contact(self.node_id, join_address(self.transport.host, self.transport.port))
        self._apply_dht(self.dht.join(own, now))
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        if state is not None:
            known = [
                Contact(info.node, info.address)
                for info in state.validators.members
                if info.node != self.node_id
            ]
            chosen = self.rng.sample(known, min(len(known), MAX_CHAIN_CONTACTS))
            self._apply_dht(self.dht.add_seeds(chosen, now))

    def _ping_seeds(self, now: int) -> None:
        """Ping the seeds that have not answered yet, when due (node/seeds.py)."""
        for address, request_id in self.seeds.get_pings_due(now):
            task = asyncio.ensure_future(self._send_seed_ping(address, request_id))
            self._seed_tasks.add(task)
            task.add_done_callback(self._seed_tasks.discard)

    async def _send_seed_ping(self, address: str, request_id: int) -> None:
        """A signed Ping to a seed whose node id we do not know yet; a name is resolved
        first (off the loop: a slow resolver must not stall a slot)."""
        try:
            host, port = split_address(address)
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            logs.debug(log, "seed unresolved", seed=address, error=str(exc))
            return
        resolved = join_address(str(infos[0][4][0]), port)
        self.routing.send_dht(Contact(UNKNOWN_NODE, resolved), Ping(request_id))

    def _on_seed_answer(self, contact: Contact, now: int) -> None:
        engine = self.engine
        assert engine is not None
        logs.info(log, "seed answered", node_id=contact.node_id.hex()[:16], at=contact.address)
        self.routing.configured[contact.node_id] = contact.address
        engine.set_seeds(self.seeds.get_node_ids())
        self._apply_dht(self.dht.add_seeds([contact], now))

    def _probe_rtt(self, engine: ConsensusEngine, now: int) -> None:
        """Ping a random validator when it is time (node/rtt.py); every loop pass asks."""
        state = engine.get_head_state()
        if state is None or not self.rtt.is_due(now):
            return
        peers = [info.node for info in state.validators.members]
        choice = self.rtt.choose(now, time.perf_counter_ns(), peers)
        if choice is not None:
            peer, request_id = choice
            address = self.routing.resolve(peer)
            if address is not None:
                self.routing.send_dht(Contact(peer, address), Ping(request_id))
