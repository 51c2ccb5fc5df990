"""A seeded, deterministic fake network on top of :class:`~edgechain.sim.clock.SimClock`.

The idea comes from trio's ``testing/_fake_net.py``: replace the transport with an
in-process object that decides, per message, whether and when it arrives, so that
faults are ordinary, reproducible test inputs. This network is message-agnostic: it
moves opaque payloads (``SimNetwork[P]``) with a caller-declared ``size`` and never
looks inside, so it carries whatever the consensus engine emits.

Model of one ``send(src, dst, payload, size)`` at virtual time ``now``:

1. ``src`` down → dropped (``src_down``); ``dst`` never registered → dropped
   (``unknown_dst``). Nothing leaves the node.
2. The message leaves ``src``: if ``src`` has an uplink bandwidth, it queues behind the
   node's earlier messages and takes ``ceil(size / bandwidth)`` to serialize, so a 1 MB
   block gossiped to ten peers really costs ten block-times of the uplink. Only the
   uplink is modelled: it is the bottleneck of a producer pushing a block to many peers.
3. On the wire: a cross-partition message is dropped (``partition``); then the link's
   :class:`LinkProfile` applies: loss, a latency draw, an optional extra reordering
   delay, and optionally a duplicate copy with its own latency draw. With a
   ``base_latency(src, dst)`` (e.g. distance on a map, ``sim/geography.py``), it is
   added to the main copy's and the duplicate's delay, so the draw becomes jitter on
   top of a per-pair propagation delay; it is a pure function and draws nothing.
4. At arrival the destination must be up, else dropped (``dst_down``): a crashed node
   receives nothing, including messages that were in flight when it crashed. Messages
   that already left a node that then crashes are still delivered (they were on the
   wire); the partition check is made when the message enters the wire, at send time.

Without ``fifo_links`` a link behaves like UDP: independent latency draws reorder
messages. With it, each directed link delivers in send order (TCP-like: a slow message
holds back the ones behind it); duplicates are exempt (TCP does not duplicate).

Determinism: every random draw comes from one ``random.Random(seed)`` owned by the
network, in a fixed order per ``send`` (loss, latency, reordering, duplication, duplicate
latency), and a draw is skipped only when its probability is configured as zero. So the
same seed and the same sequence of calls give the same deliveries, byte for byte; the
optional trace and :meth:`SimNetwork.trace_digest` make that checkable.
"""

from __future__ import annotations

import enum
import hashlib
import random
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Generic, TypeAlias, TypeVar

from edgechain.sim.clock import MILLISECOND, SECOND, Micros, SimClock
from edgechain.types import NodeId

P = TypeVar("P")

LatencyModel: TypeAlias = Callable[[random.Random], Micros]
"""A delay distribution: draws a non-negative delay in µs from the network's RNG.

It must take all its randomness from the ``random.Random`` it is given (never the
global ``random`` module), or the run stops being reproducible.
"""

DeliverFn: TypeAlias = Callable[[NodeId, NodeId, P, Micros], None]
"""Receiver callback ``on_deliver(src, dst, payload, at)``."""


@dataclass(frozen=True)
class Uniform:
    """Delay uniform on the integers ``[low, high]`` µs (inclusive)."""

    low: Micros
    high: Micros

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"need 0 <= low <= high, got [{self.low}, {self.high}]")

    def __call__(self, rng: random.Random) -> Micros:
        # One rng.random() call: several times faster than randint, and just as stable
        # across Python versions for a given seed.
        return self.low + int(rng.random() * (self.high - self.low + 1))


@dataclass(frozen=True)
class Fixed:
    """A constant delay; draws nothing from the RNG."""

    delay: Micros

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def __call__(self, rng: random.Random) -> Micros:
        return self.delay


def uniform_ms(low_ms: float, high_ms: float) -> Uniform:
    """Uniform delay given in milliseconds (convenience for configs)."""
    return Uniform(round(low_ms * MILLISECOND), round(high_ms * MILLISECOND))


TESTBED_LATENCY = Uniform(0, 5 * MILLISECOND)
"""The paper's testbed: a random 0-5 ms delay on every packet (§5)."""


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


@dataclass(frozen=True)
class LinkProfile:
    """How one directed link (or, as the default, every link) behaves.

    ``loss``: probability a message is dropped. ``duplicate``: probability a delivered
    message arrives a second time (own latency draw). ``reorder``: probability a message
    gets ``reorder_delay`` added on top of its latency, overtaking being the point.
    Change one field with ``dataclasses.replace(profile, loss=0.1)``.
    """

    latency: LatencyModel = TESTBED_LATENCY
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: LatencyModel = Uniform(0, 10 * MILLISECOND)

    def __post_init__(self) -> None:
        _check_probability("loss", self.loss)
        _check_probability("duplicate", self.duplicate)
        _check_probability("reorder", self.reorder)


class DropReason(enum.StrEnum):
    """Why a message was not delivered (stable strings: metrics labels, trace kinds)."""

    SRC_DOWN = "src_down"
    UNKNOWN_DST = "unknown_dst"
    PARTITION = "partition"
    LOSS = "loss"
    DST_DOWN = "dst_down"


class TraceKind(enum.StrEnum):
    """What a :class:`TraceRecord` records. Values are part of the digest: keep stable."""

    SEND = "send"
    """The message left ``src`` (recorded at send time, before any wire drop)."""
    DUPLICATE = "duplicate"
    DELIVER = "deliver"
    DROP_SRC_DOWN = "drop:src_down"
    DROP_UNKNOWN_DST = "drop:unknown_dst"
    DROP_PARTITION = "drop:partition"
    DROP_LOSS = "drop:loss"
    DROP_DST_DOWN = "drop:dst_down"


_DROP_KIND: Mapping[DropReason, TraceKind] = {
    DropReason.SRC_DOWN: TraceKind.DROP_SRC_DOWN,
    DropReason.UNKNOWN_DST: TraceKind.DROP_UNKNOWN_DST,
    DropReason.PARTITION: TraceKind.DROP_PARTITION,
    DropReason.LOSS: TraceKind.DROP_LOSS,
    DropReason.DST_DOWN: TraceKind.DROP_DST_DOWN,
}

_TIME_SIZE = struct.Struct(">qQ")


@dataclass(frozen=True)
class TraceRecord:
    """One network event: ``(time, kind, src, dst, size)``."""

    time: Micros
    kind: TraceKind
    src: NodeId
    dst: NodeId
    size: int

    def encode(self) -> bytes:
        """Canonical bytes: time (i64 BE), size (u64 BE), then length-prefixed
        kind (UTF-8), src and dst, each prefix one byte. Unambiguous, so equal digests
        mean equal traces."""
        kind = self.kind.value.encode()
        return b"".join(
            (
                _TIME_SIZE.pack(self.time, self.size),
                _prefixed(kind),
                _prefixed(self.src),
                _prefixed(self.dst),
            )
        )


def _prefixed(data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError(f"trace field too long: {len(data)} bytes")
    return bytes((len(data),)) + data


@dataclass(frozen=True)
class NetworkStats:
    """Snapshot of the network's counters.

    Conservation: ``sent + duplicated == delivered + dropped_total + in_flight``.
    ``bytes_sent`` counts messages that left their node; ``bytes_delivered`` counts
    every delivered copy.
    """

    sent: int
    delivered: int
    duplicated: int
    dropped: Mapping[DropReason, int]
    bytes_sent: int
    bytes_delivered: int
    in_flight: int

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class SimNetwork(Generic[P]):
    """Seeded fake network moving payloads of type ``P`` between registered nodes."""

    def __init__(
        self,
        seed: int,
        clock: SimClock,
        *,
        profile: LinkProfile | None = None,
        bandwidth: int | None = None,
        fifo_links: bool = False,
        trace: bool = False,
        trace_hook: Callable[[TraceRecord], None] | None = None,
        base_latency: Callable[[NodeId, NodeId], Micros] | None = None,
    ) -> None:
        """``profile``: default for every link (testbed latency, no faults).
        ``bandwidth``: default uplink bytes/s for every node (``None``: unlimited).
        ``trace``: keep a running SHA-256 of the trace for :meth:`trace_digest`.
        ``trace_hook``: called with every :class:`TraceRecord` (e.g. ``list.append``).
        ``base_latency``: per-pair delay (µs) added under every latency draw; must be
        deterministic and use no RNG (``None``: none, the draw is the whole delay).
        """
        if bandwidth is not None:
            _check_bandwidth(bandwidth)
        self._seed = seed
        self._rng = random.Random(seed)
        self._clock = clock
        self._default_profile = profile if profile is not None else LinkProfile()
        self._base_latency = base_latency
        self._link_profiles: dict[tuple[NodeId, NodeId], LinkProfile] = {}
        self._default_bandwidth = bandwidth
        self._bandwidth: dict[NodeId, int | None] = {}
        self._uplink_free_at: dict[NodeId, Micros] = {}
        self._fifo = fifo_links
        self._last_arrival: dict[tuple[NodeId, NodeId], Micros] = {}
        self._receivers: dict[NodeId, DeliverFn[P]] = {}
        self._down: set[NodeId] = set()
        self._group_of: dict[NodeId, int] = {}
        self._partitioned = False
        self._trace_hash = hashlib.sha256() if trace else None
        self._trace_hook = trace_hook
        self._tracing = trace or trace_hook is not None
        self._sent = 0
        self._delivered = 0
        self._duplicated = 0
        self._dropped: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
        self._bytes_sent = 0
        self._bytes_delivered = 0

    # -- configuration -----------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def clock(self) -> SimClock:
        return self._clock

    def register(self, node: NodeId, on_deliver: DeliverFn[P]) -> None:
        """Attach ``node``'s receiver; messages to unregistered nodes are dropped."""
        self._receivers[node] = on_deliver

    def unregister(self, node: NodeId) -> None:
        """Detach ``node``: it leaves the network for good (use :meth:`node_down` for a
        crash it may recover from)."""
        self._receivers.pop(node, None)

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        """Registered nodes, in registration order."""
        return tuple(self._receivers)

    @property
    def default_profile(self) -> LinkProfile:
        return self._default_profile

    def set_default_profile(self, profile: LinkProfile) -> None:
        """Profile of every link that has no override of its own."""
        self._default_profile = profile

    def set_link_profile(
        self, a: NodeId, b: NodeId, profile: LinkProfile, *, symmetric: bool = True
    ) -> None:
        """Override the link ``a → b`` (and ``b → a`` when ``symmetric``)."""
        self._link_profiles[(a, b)] = profile
        if symmetric:
            self._link_profiles[(b, a)] = profile

    def clear_link_profile(self, a: NodeId, b: NodeId, *, symmetric: bool = True) -> None:
        """Return the link to the default profile."""
        self._link_profiles.pop((a, b), None)
        if symmetric:
            self._link_profiles.pop((b, a), None)

    def link_profile(self, src: NodeId, dst: NodeId) -> LinkProfile:
        """The profile in force for ``src → dst``."""
        return self._link_profiles.get((src, dst), self._default_profile)

    def set_bandwidth(self, node: NodeId, bytes_per_second: int | None) -> None:
        """Uplink bandwidth of one node (``None``: unlimited)."""
        if bytes_per_second is not None:
            _check_bandwidth(bytes_per_second)
        self._bandwidth[node] = bytes_per_second

    # -- faults ------------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[NodeId]]) -> None:
        """Split the network: messages between different groups are dropped.

        Nodes named in no group together form one more implicit group, so
        ``partition([{a}])`` isolates ``a`` from everyone else. Replaces any previous
        partition.
        """
        group_of: dict[NodeId, int] = {}
        for index, group in enumerate(groups):
            for node in group:
                if node in group_of:
                    raise ValueError(f"node {node.hex()[:12]} is in two partition groups")
                group_of[node] = index
        self._group_of = group_of
        self._partitioned = True

    def heal(self) -> None:
        """Remove the partition: every link works again (for messages sent from now)."""
        self._group_of = {}
        self._partitioned = False

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def can_reach(self, src: NodeId, dst: NodeId) -> bool:
        """Whether the current partition lets ``src → dst`` through."""
        return not self._partitioned or self._group_of.get(src, -1) == self._group_of.get(dst, -1)

    def node_down(self, node: NodeId) -> None:
        """Crash ``node``: it sends nothing and receives nothing until :meth:`node_up`."""
        self._down.add(node)

    def node_up(self, node: NodeId) -> None:
        """Recover ``node`` (the driver decides what state its protocol object keeps)."""
        self._down.discard(node)

    def is_up(self, node: NodeId) -> bool:
        return node not in self._down

    # -- sending -----------------------------------------------------------------------

    def send(self, src: NodeId, dst: NodeId, payload: P, size: int) -> None:
        """Hand ``payload`` (declared ``size`` bytes on the wire) to the network.

        The outcome is decided now, from the seeded RNG; a delivery becomes a callback
        on the clock, ``on_deliver(src, dst, payload, at)`` at arrival time.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        now = self._clock.now
        self._sent += 1
        if src in self._down:
            self._drop(DropReason.SRC_DOWN, now, src, dst, size)
            return
        if dst not in self._receivers:
            self._drop(DropReason.UNKNOWN_DST, now, src, dst, size)
            return
        self._bytes_sent += size
        if self._tracing:
            self._record(TraceRecord(now, TraceKind.SEND, src, dst, size))
        departs = self._departure_time(src, size, now)
        if not self.can_reach(src, dst):
            self._drop(DropReason.PARTITION, now, src, dst, size)
            return
        profile = self._link_profiles.get((src, dst), self._default_profile)
        rng = self._rng
        if profile.loss and rng.random() < profile.loss:
            self._drop(DropReason.LOSS, now, src, dst, size)
            return
        # Not an RNG draw: the same seed makes the same draws with or without it.
        base = 0 if self._base_latency is None else _check_delay(self._base_latency(src, dst))
        delay = base + _draw_delay(profile.latency, rng)
        if profile.reorder and rng.random() < profile.reorder:
            delay += _draw_delay(profile.reorder_delay, rng)
        arrives = self._fifo_arrival(src, dst, departs + delay)
        self._schedule_delivery(arrives, src, dst, payload, size)
        if profile.duplicate and rng.random() < profile.duplicate:
            self._duplicated += 1
            if self._tracing:
                self._record(TraceRecord(now, TraceKind.DUPLICATE, src, dst, size))
            copy_arrives = departs + base + _draw_delay(profile.latency, rng)
            self._schedule_delivery(copy_arrives, src, dst, payload, size)

    def _departure_time(self, src: NodeId, size: int, now: Micros) -> Micros:
        """When the last byte leaves ``src``: FIFO serialization on its uplink."""
        bandwidth = self._bandwidth.get(src, self._default_bandwidth)
        if bandwidth is None:
            return now
        start = max(now, self._uplink_free_at.get(src, now))
        # Ceiling division: a non-empty message never serializes in zero time.
        done = start + -(-size * SECOND // bandwidth)
        self._uplink_free_at[src] = done
        return done

    def _fifo_arrival(self, src: NodeId, dst: NodeId, arrives: Micros) -> Micros:
        if not self._fifo:
            return arrives
        link = (src, dst)
        # Equal arrival times keep send order: the clock breaks ties by insertion.
        arrives = max(arrives, self._last_arrival.get(link, arrives))
        self._last_arrival[link] = arrives
        return arrives

    def _schedule_delivery(
        self, at: Micros, src: NodeId, dst: NodeId, payload: P, size: int
    ) -> None:
        self._clock.schedule(at, partial(self._deliver, src, dst, payload, size))

    def _deliver(self, src: NodeId, dst: NodeId, payload: P, size: int) -> None:
        now = self._clock.now
        if dst in self._down:
            self._drop(DropReason.DST_DOWN, now, src, dst, size)
            return
        receiver = self._receivers.get(dst)
        if receiver is None:  # unregistered while the message was in flight
            self._drop(DropReason.UNKNOWN_DST, now, src, dst, size)
            return
        self._delivered += 1
        self._bytes_delivered += size
        if self._tracing:
            self._record(TraceRecord(now, TraceKind.DELIVER, src, dst, size))
        receiver(src, dst, payload, now)

    def _drop(self, reason: DropReason, now: Micros, src: NodeId, dst: NodeId, size: int) -> None:
        self._dropped[reason] += 1
        if self._tracing:
            self._record(TraceRecord(now, _DROP_KIND[reason], src, dst, size))

    # -- observation -------------------------------------------------------------------

    def stats(self) -> NetworkStats:
        """A snapshot of the counters (later traffic does not change it)."""
        dropped = dict(self._dropped)
        in_flight = self._sent + self._duplicated - self._delivered - sum(dropped.values())
        return NetworkStats(
            sent=self._sent,
            delivered=self._delivered,
            duplicated=self._duplicated,
            dropped=MappingProxyType(dropped),
            bytes_sent=self._bytes_sent,
            bytes_delivered=self._bytes_delivered,
            in_flight=in_flight,
        )

    def trace_digest(self) -> str:
        """Hex SHA-256 over the canonical encoding of every trace record so far."""
        if self._trace_hash is None:
            raise ValueError("trace digest needs SimNetwork(..., trace=True)")
        return self._trace_hash.copy().hexdigest()

    def _record(self, record: TraceRecord) -> None:
        if self._trace_hash is not None:
            self._trace_hash.update(record.encode())
        if self._trace_hook is not None:
            self._trace_hook(record)


def _draw_delay(model: LatencyModel, rng: random.Random) -> Micros:
    return _check_delay(model(rng))


def _check_delay(delay: Micros) -> Micros:
    if delay < 0 or not isinstance(delay, int):
        raise ValueError(f"a latency (model or base) gave {delay!r}: need an int >= 0 (µs)")
    return delay


def _check_bandwidth(bytes_per_second: int) -> None:
    if bytes_per_second <= 0:
        raise ValueError(f"bandwidth must be > 0 bytes/s, got {bytes_per_second}")
