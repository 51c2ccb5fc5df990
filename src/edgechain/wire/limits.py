"""Hard size limits of the wire, all checked before any parsing.

Two transports (DESIGN.md, "network/"): small latency-critical messages go in one UDP
datagram, everything else in a length-prefixed TCP frame. A peer that exceeds a limit
gets a :class:`~edgechain.errors.DecodeError`; we never buffer or parse past it.
"""

from __future__ import annotations

from edgechain.chain.encoding_limits import Limits

WIRE_VERSION = 1
"""``Envelope.version``; a node rejects any other value (no silent cross-version parse)."""

MAX_DATAGRAM_BYTES = 1232
"""One UDP datagram: the IPv6 minimum MTU (1280) less IPv6 (40) and UDP (8) headers, the
value DNS settled on in its 2020 flag day. It never fragments on any IPv6 path, nor on
IPv4 paths with a common MTU, and tunnels (WireGuard, VXLAN overlays in Docker Swarm or
Kubernetes) keep well above it."""

FRAME_HEADER_BYTES = 4
"""A TCP frame is a u32 big-endian length followed by that many bytes (one Envelope)."""

FRAME_OVERHEAD_BYTES = 64 * 1024
"""Room for the envelopes around a maximal block: the gossip wrapper nests two."""

MAX_FRAME_BYTES = Limits.MAX_BLOCK_BYTES + FRAME_OVERHEAD_BYTES
"""8 MiB of block plus envelopes. A sync response carries as many blocks as fit."""

MAX_SYNC_BLOCKS = 512
"""``SyncRequestMsg.limit`` and ``len(SyncResponseMsg.blocks)`` are at most this."""

MAX_CONTACTS = 32
"""Contacts in one DHT ``Nodes`` answer (the DHT sends at most its reply limit, 16)."""

MAX_ADDRESS_BYTES = 64
"""A ``host:port`` address in UTF-8 (a bracketed IPv6 literal with port is at most 47)."""

MAX_GOSSIP_TTL = 16
"""Larger TTLs are refused: a TTL is a hop budget, and 16 hops exceed the diameter of any
overlay the gossip layer builds (fanout 8 covers 8^16 nodes)."""

MAX_IHAVE_IDS = 32
"""Message ids in one IHave or IWant: 32 ids of 34 bytes keep either in one datagram."""
