"""Seed nodes: the addresses an operator gives a node to find the network through.

There is no single bootstrap node (issue 16): a node is given any number of seed
addresses (``--seeds``), names or IPs, without their keys. It pings each one with a
signed DHT ``Ping``; the seed's signed ``Pong`` names its node id and carries its public
key, and from then on the seed is a DHT contact like any other. Seeds that do not answer
are pinged again every ``SEED_RETRY_MS`` while no seed has answered, and less often
after that, so joining works while any seed (the genesis node's included) is down and a
seed that comes back is found again.

Trust does not come from seeds: the genesis is checked against the genesis key and every
block against its committee, so a false seed can only withhold the network, never forge
it. Pure bookkeeping; the node sends the pings and resolves names (``node/node.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from edgechain.types import NodeId
from edgechain.wire.messages import Contact

SEED_RETRY_MS = 2_000
"""Ping unanswered seeds this often while no seed has answered yet."""
SEED_RECHECK_MS = 30_000
"""Once one has: ping the seeds that never answered this often (one may come back)."""
UNKNOWN_NODE = NodeId(bytes(32))
"""The id a seed ping is addressed to: nobody's (its envelope is signed, not MACed)."""
MAX_SEEDS = 64
"""Seeds kept from configuration (a longer list is cut): each is pinged on every retry."""
PINGS_REMEMBERED = 16
"""A seed's answer to any of its last this many pings counts. Only the latest used to:
a seed on a loaded host answers after the next retry (100 nodes on two cores measured
RTTs up to 3.7 s against the 2 s retry), and late joiners of such a testnet heard no
seed for minutes, so their DHT join did not even start."""


@dataclass
class SeedState:
    """One configured seed address: the ping in flight, and who answered."""

    address: str
    contact: Contact | None = None
    request_ids: list[int] = field(default_factory=list)
    """The pings in flight, oldest first (at most ``PINGS_REMEMBERED``)."""


@dataclass
class SeedContacts:
    """The configured seeds and the contacts learned from their answers."""

    addresses: tuple[str, ...]
    rng: random.Random
    seeds: list[SeedState] = field(default_factory=list)
    next_ping_ms: int = 0
    pings_sent: int = 0
    answers: int = 0

    def __post_init__(self) -> None:
        # A node may be given its own address among the seeds (every replica of a
        # deployment gets one list): its pings to itself go unanswered, harmlessly.
        unique = dict.fromkeys(a for a in self.addresses if a)
        self.seeds = [SeedState(a) for a in list(unique)[:MAX_SEEDS]]

    def get_contacts(self) -> list[Contact]:
        """The seeds that answered, as DHT contacts (configuration order)."""
        return [s.contact for s in self.seeds if s.contact is not None]

    def get_node_ids(self) -> list[NodeId]:
        return [c.node_id for c in self.get_contacts()]

    def get_pings_due(self, now: int) -> list[tuple[str, int]]:
        """(address, request id) of the pings to send now: every seed that has not
        answered, each with a fresh request id (the earlier ones still count)."""
        if now < self.next_ping_ms:
            return []
        learned = any(s.contact is not None for s in self.seeds)
        self.next_ping_ms = now + (SEED_RECHECK_MS if learned else SEED_RETRY_MS)
        pings = []
        for seed in self.seeds:
            if seed.contact is None:
                request_id = self.rng.getrandbits(63) | 1
                seed.request_ids = [*seed.request_ids, request_id][-PINGS_REMEMBERED:]
                pings.append((seed.address, request_id))
        self.pings_sent += len(pings)
        return pings

    def on_pong(self, sender: NodeId, request_id: int, source: str) -> Contact | None:
        """The contact a seed's answer teaches us (None: not an answer to a seed ping).
        ``source`` is where the answer came from: the seed's address as we reach it."""
        for seed in self.seeds:
            if request_id in seed.request_ids:
                seed.request_ids = []
                seed.contact = Contact(sender, source)
                self.answers += 1
                return seed.contact
        return None

    def to_json(self) -> list[dict[str, str | None]]:
        """What ``/status`` says about each seed."""
        return [
            {
                "address": s.address,
                "node_id": s.contact.node_id.hex() if s.contact is not None else None,
                "reached_at": s.contact.address if s.contact is not None else None,
            }
            for s in self.seeds
        ]
