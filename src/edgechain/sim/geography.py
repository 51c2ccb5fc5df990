"""A geographic latency model for the simulator: nodes on a map, delay by distance.

Why: the paper's evaluation (§4) ran on a testbed that added the same uniform 0-5 ms
delay to every packet, so any two nodes were equally far apart and geography was never
modelled. With a uniform delay a cluster overlay cannot be more or less local than
another; to show that latency-aware clusters are tighter than the hash-position ones,
the network needs locality. This module supplies it, and is the ground truth that
network coordinates (Vivaldi) are measured against.

The model, all in integers (km and µs) so that a delay is exact and identical on
every machine:

* **Map**: a plane of :data:`MAP_WIDTH_KM` x :data:`MAP_HEIGHT_KM` (8000 x 4000 km,
  about a continent and its neighbours).
* **Region centres**: ``regions`` points chosen by Mitchell's best-candidate rule:
  for region ``i``, :data:`CENTRE_CANDIDATES` candidates are drawn from SHA-256 of
  (domain, seed, ``i``, attempt) and the one farthest from the centres already placed
  is kept. Plain hashed points sometimes land two regions on top of each other, which
  would erase the locality being measured; best-candidate keeps them spread for any
  ``regions`` without a fixed table or a separation threshold that stops working once
  the map is full. Centres stay :data:`NODE_SPREAD_KM` inside the edges so every node
  is on the map. Cost: O(regions² x candidates), nothing for the few regions a run uses.
* **Nodes**: node ``i`` (in the order given) belongs to region ``i % regions``, at an
  offset uniform over the disc of radius :data:`NODE_SPREAD_KM` around its centre,
  drawn from SHA-256 of (domain, seed, node id) by rejection sampling (a square draw
  falls in the disc with probability π/4; after :data:`OFFSET_ATTEMPTS` misses, odds
  about 1e-21, the node sits on the centre, so the loop always ends).
* **Delay**: ``get_one_way_us(a, b) = 2 x ACCESS_US + distance_km x US_PER_KM``, 0 when
  ``a == b``. :data:`ACCESS_US` (500 µs per endpoint) stands for the last mile and the
  host stack; :data:`US_PER_KM` (10 µs/km) is light in fibre (~5 µs/km) doubled for
  routes that are not straight lines. The distance is ``math.isqrt`` of the squared
  distance scaled to µs², so it is exact to the µs and symmetric. Same region: at most
  9 ms; across the map: up to ~90 ms. Nothing per pair is stored: 1000 nodes would be
  a million pairs, and a delay costs one square root.

In the simulator (``SimConfig.geo_regions``) this delay is the ``base_latency`` of
:class:`~edgechain.sim.network.SimNetwork`, and the link profile's draw is jitter on
top of it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from edgechain.sim.clock import Micros
from edgechain.sim.report_metrics import get_percentiles
from edgechain.types import NodeId

MAP_WIDTH_KM = 8_000
MAP_HEIGHT_KM = 4_000
NODE_SPREAD_KM = 400
"""A node is at most this far from its region's centre."""
ACCESS_US: Micros = 500
"""Fixed delay per endpoint (last mile, host stack): a pair pays it twice."""
US_PER_KM: Micros = 10
"""Light in fibre covers a km in ~5 µs; doubled because routes are not straight."""
CENTRE_CANDIDATES = 16
"""Hashed candidates per region centre; the one farthest from the others wins."""
OFFSET_ATTEMPTS = 32
"""Rejection-sampling draws for a node's offset before it falls back to the centre."""

_DOMAIN = b"edgechain/sim/geography/v1"


class Position(NamedTuple):
    """Where a node sits: integer km on the map, and its region index."""

    x_km: int
    y_km: int
    region: int


@dataclass(frozen=True)
class Geography:
    """Region centres and every node's position; build with :func:`compute_geography`.

    ``positions`` keeps the order of the node ids given (read-only mapping; excluded
    from the hash, compared by value).
    """

    seed: int
    centres: tuple[tuple[int, int], ...]
    positions: Mapping[NodeId, Position] = field(hash=False)

    @property
    def regions(self) -> int:
        return len(self.centres)

    def get_position(self, node: NodeId) -> Position:
        position = self.positions.get(node)
        if position is None:
            raise KeyError(f"node {node.hex()[:12]} has no position in this geography")
        return position

    def get_region(self, node: NodeId) -> int:
        return self.get_position(node).region

    def get_one_way_us(self, a: NodeId, b: NodeId) -> Micros:
        """Propagation delay ``a → b`` (= ``b → a``): access at both ends plus distance."""
        if a == b:
            return 0
        pa, pb = self.get_position(a), self.get_position(b)
        dx, dy = pa.x_km - pb.x_km, pa.y_km - pb.y_km
        # Scaling before the square root keeps sub-km precision: floor(distance x 10 µs).
        return 2 * ACCESS_US + math.isqrt((dx * dx + dy * dy) * US_PER_KM * US_PER_KM)


def compute_geography(node_ids: Sequence[NodeId], regions: int, seed: int) -> Geography:
    """Place ``regions`` region centres and every node (node ``i`` in region
    ``i % regions``), all from SHA-256 of ``seed``: same inputs, same map."""
    if regions < 1:
        raise ValueError(f"regions must be >= 1, got {regions}")
    centres = _compute_centres(regions, seed)
    positions: dict[NodeId, Position] = {}
    for index, node in enumerate(node_ids):
        if node in positions:
            raise ValueError(f"node {node.hex()[:12]} is listed twice")
        region = index % regions
        cx, cy = centres[region]
        dx, dy = _compute_offset(node, seed)
        positions[node] = Position(cx + dx, cy + dy, region)
    return Geography(seed, centres, MappingProxyType(positions))


def compute_cluster_latency_us(
    clusters: Sequence[Sequence[NodeId]],
    representatives: Sequence[NodeId],
    geography: Geography,
) -> list[int]:
    """One-way delay from every member to its cluster's representative (the hop a
    resource report travels, paper §3.2), cluster by cluster, members in order; the
    representative itself contributes nothing. ``representatives[i]`` is cluster
    ``i``'s (as in :class:`~edgechain.cluster.kmeans.Clustering`)."""
    if len(clusters) != len(representatives):
        raise ValueError(f"{len(clusters)} clusters but {len(representatives)} representatives")
    return [
        geography.get_one_way_us(member, representative)
        for cluster, representative in zip(clusters, representatives, strict=True)
        for member in cluster
        if member != representative
    ]


def compute_mean_ms(values: Sequence[int]) -> float:
    """The mean of µs values, in ms rounded to 2 decimals (0.0 when empty)."""
    return round(sum(values) / len(values) / 1_000, 2) if values else 0.0


def summarize_us(values: Sequence[int]) -> dict[str, float | int]:
    """Mean, p50 and p99 of µs values, in ms rounded to 2 decimals, and the count
    (all zero when empty). Percentiles by nearest rank, as the report-travel figures
    (``sim/report_metrics.get_percentiles``)."""
    if not values:
        return {"mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "count": 0}
    ranks = get_percentiles(list(values))
    return {
        "mean_ms": compute_mean_ms(values),
        "p50_ms": round((ranks["p50"] or 0) / 1_000, 2),
        "p99_ms": round((ranks["p99"] or 0) / 1_000, 2),
        "count": len(values),
    }


def _compute_centres(regions: int, seed: int) -> tuple[tuple[int, int], ...]:
    """Best-candidate placement (see the module docstring)."""
    low_x, high_x = NODE_SPREAD_KM, MAP_WIDTH_KM - NODE_SPREAD_KM
    low_y, high_y = NODE_SPREAD_KM, MAP_HEIGHT_KM - NODE_SPREAD_KM
    centres: list[tuple[int, int]] = []
    for index in range(regions):
        best = (0, 0)
        best_gap = -1
        for attempt in range(CENTRE_CANDIDATES):
            u, v = _draw(b"centre", seed, _encode_int(index), attempt)
            candidate = (_scale(u, low_x, high_x), _scale(v, low_y, high_y))
            # Squared distance to the nearest centre so far; strict ">" keeps the
            # earliest candidate on ties (the first region takes attempt 0).
            gap = min(
                ((candidate[0] - x) ** 2 + (candidate[1] - y) ** 2 for x, y in centres),
                default=0,
            )
            if gap > best_gap:
                best, best_gap = candidate, gap
        centres.append(best)
    return tuple(centres)


def _compute_offset(node: NodeId, seed: int) -> tuple[int, int]:
    """A point uniform on the integer disc of radius ``NODE_SPREAD_KM``."""
    radius = NODE_SPREAD_KM
    for attempt in range(OFFSET_ATTEMPTS):
        u, v = _draw(b"node", seed, bytes(node), attempt)
        dx, dy = _scale(u, -radius, radius), _scale(v, -radius, radius)
        if dx * dx + dy * dy <= radius * radius:
            return dx, dy
    return 0, 0


def _draw(kind: bytes, seed: int, subject: bytes, attempt: int) -> tuple[int, int]:
    """Two 64-bit integers from SHA-256 of length-prefixed (domain, kind, seed, subject,
    attempt): unambiguous, so distinct inputs never share a preimage."""
    fields = (_DOMAIN, kind, _encode_int(seed), subject, _encode_int(attempt))
    digest = hashlib.sha256(b"".join(len(f).to_bytes(2, "big") + f for f in fields)).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


def _scale(value: int, low: int, high: int) -> int:
    """``value`` (64 bits) onto ``[low, high]``; the modulo bias is below 1e-15."""
    return low + value % (high - low + 1)


def _encode_int(value: int) -> bytes:
    """Minimal two's-complement bytes: any seed works, negative or past 64 bits."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
