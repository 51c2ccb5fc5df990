"""The per-slot cluster overlay: deterministic k-means over the validator set.

Paper §3.2: resource reports travel over "a distributed k-means clustering algorithm
that requires no communication between nodes to compute ... The seed used to compute
k-means is shared by all nodes, the VDF proof". Every node runs :func:`compute_clusters`
on the same validator set and the same seed and gets the same clusters and the same
representatives, with no message exchanged.

Positions. The reference implementation places nodes at hash positions, which makes the
overlay blind to the network: a report may cross a continent to a representative while
a neighbour sits next door. Here a node is placed at its *network coordinate* once
enough validators have one (:data:`COORDINATE_QUORUM`): a Vivaldi position the node
reports and the chain keeps (``cluster/vivaldi.py``; every input is on the chain, so
every node clusters alike), which the chain moves by a bounded step per report, so no
node can jump into its victims' cluster. Before that (a young chain, or many joiners),
the position is ``SHA-256(domain || seed || node id)``, as in the reference.

§4.3's defence survives either way: "to avoid a potential attack vector on the
clustering, the network topology changes every slot". The k-means++ seeding draws from
the slot's seed (the VDF output of the block just accepted, which nobody can predict,
§3.4), and each cluster's *representative* is a member drawn from that seed, not the
member nearest the centroid, so a node can neither choose nor foresee who relays its
neighbours' reports, even with coordinates that hardly move.

Why 2-D points of 16 bits per axis: the positions carry no meaning, k-means only needs a
metric space in which to form compact, roughly balanced groups, and two dimensions make
the nearest-centroid sweep cheap. 65 536 x 65 536 positions make coinciding points rare
(about n^2 / 2^33 per slot: 1e-4 for 1000 nodes) and harmless (ties go to the smaller
node id). 16 bits keep every squared distance below 2^33 and every coordinate sum below
2^48 for any realistic n, so a second implementation can use plain u64 arithmetic with
no overflow (32-bit coordinates would need 66-bit squared distances), and CPython's
integers stay short (measured: the whole computation is ~25 % faster than with 32 bits).

Everything is integers and SHA-256 (Rule 2): no floats, no Python ``random``, no
``hash()``, no dependence on the order of the input. Ties are always broken by a
position in the list of nodes sorted by id bytes, or by centroid index.

Cost: k-means++ seeding skips grid cells that cannot improve; each Lloyd iteration is
about O(n * sqrt(k)) thanks to a sweep over centroids sorted by x (see
:func:`_assign_points`). 1000 validators (k = 50) take about 10 ms in CPython on one
core (``tests/cluster/test_kmeans.py`` prints the timing).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgechain.chain.model import COORD_LIMIT_US, ORIGIN, Coordinate
from edgechain.errors import LocalError
from edgechain.types import NodeId

DOMAIN = b"edgechain/cluster/v2"
"""Domain separation for every hash this module draws from the seed."""

MAX_LLOYD_ITERATIONS = 5
"""Fixed cap on assignment steps (the seeding's assignment plus four Lloyd updates) so
the cost is bounded whatever the input. After k-means++ seeding the Lloyd updates
reassign fewer and fewer points (measured, 1000 nodes, k = 50: 10 %, 5 %, 3 %, 2.5 % of
them in updates 1-4, still ~1 % at update 8), and exact convergence does not matter for
an overlay: only that every node stops at the same step, which the cap and the
deterministic early exit guarantee."""

COORD_BITS = 16
"""Each coordinate is an unsigned integer of this many bits taken from the hash."""

_COORD_BYTES = COORD_BITS // 8

_INFINITY = 1 << (2 * COORD_BITS + 2)
"""Larger than any squared distance between two points."""

COORDINATE_QUORUM_BP = 7_500
"""Cluster on network coordinates once at least 75 % of the validators have one on the
chain; the rest sit at the origin, where Vivaldi starts them."""

_COORD_OFFSET = COORD_LIMIT_US + 1
_COORD_SHIFT = (2 * _COORD_OFFSET).bit_length() - 1 - COORD_BITS
"""A coordinate in [-2^21, 2^21) µs maps onto the 16-bit grid as (c + 2^21) >> 6: a
64 µs resolution, far finer than the milliseconds that separate regions."""


@dataclass(frozen=True)
class Clustering:
    """The overlay of one slot.

    ``clusters[i]`` is a sorted tuple of node ids and ``representatives[i]`` its
    representative (a member drawn from the slot's seed). Clusters are ordered by
    their smallest member. ``nodes`` (sorted) and ``cluster_of`` (parallel to ``nodes``)
    index the membership so lookups are a binary search, and the dataclass stays
    hashable and comparable.
    """

    clusters: tuple[tuple[NodeId, ...], ...]
    representatives: tuple[NodeId, ...]
    nodes: tuple[NodeId, ...]
    cluster_of: tuple[int, ...]

    def get_cluster_index(self, node: NodeId) -> int:
        """Index into ``clusters`` of ``node``'s cluster; LocalError if not a member."""
        pos = bisect.bisect_left(self.nodes, node)
        if pos == len(self.nodes) or self.nodes[pos] != node:
            raise LocalError(f"node {node.hex()} is not in this clustering")
        return self.cluster_of[pos]

    def get_representative(self, node: NodeId) -> NodeId:
        """The representative ``node`` sends its resource report to (§3.2)."""
        return self.representatives[self.get_cluster_index(node)]

    def get_members(self, node: NodeId) -> tuple[NodeId, ...]:
        """Every member of ``node``'s cluster, itself included, sorted."""
        return self.clusters[self.get_cluster_index(node)]

    def is_representative(self, node: NodeId) -> bool:
        return self.get_representative(node) == node


def compute_cluster_count(validator_count: int, nodes_per_cluster: int) -> int:
    """k = max(1, round(n / nodes_per_cluster)), halves rounding up, at most n.

    Integer form of the rounding: ``(2n + p) // 2p`` (Python's ``round`` would use
    banker's rounding on a float). Never more clusters than nodes, so no cluster can be
    empty.
    """
    if nodes_per_cluster < 1:
        raise LocalError(f"nodes_per_cluster must be >= 1, got {nodes_per_cluster}")
    if validator_count < 1:
        return 0
    k = (2 * validator_count + nodes_per_cluster) // (2 * nodes_per_cluster)
    return min(validator_count, max(1, k))


def compute_point(seed: bytes, node: NodeId) -> tuple[int, int]:
    """The node's 2-D position for this seed: the first two 16-bit big-endian integers
    of ``SHA-256(DOMAIN || "point" || u32(len(seed)) || seed || node)``."""
    return _split_point(_seeded_hasher(seed, b"point"), node)


def is_coordinate_mode(nodes: Sequence[NodeId], coordinates: Mapping[NodeId, Coordinate]) -> bool:
    """Whether enough of ``nodes`` have a coordinate to cluster on coordinates."""
    have = sum(1 for node in nodes if node in coordinates)
    return have * 10_000 >= COORDINATE_QUORUM_BP * len(nodes) > 0


def compute_coordinate_point(c: Coordinate) -> tuple[int, int]:
    """A coordinate on the 16-bit grid (exact: shifts of integers)."""
    return ((c.x_us + _COORD_OFFSET) >> _COORD_SHIFT, (c.y_us + _COORD_OFFSET) >> _COORD_SHIFT)


def compute_clusters(
    validators: Sequence[NodeId],
    seed: bytes,
    nodes_per_cluster: int,
    coordinates: Mapping[NodeId, Coordinate] | None = None,
) -> Clustering:
    """Cluster ``validators`` into k groups with k-means seeded by ``seed`` (§3.2).

    Steps, all integer: positions from the chain's network coordinates when enough
    exist (:func:`is_coordinate_mode`), else from SHA-256 (:func:`compute_point`);
    k-means++ seeding whose draws are SHA-256 of the seed
    (:func:`_choose_initial_centroids`); at most :data:`MAX_LLOYD_ITERATIONS` Lloyd
    iterations with centroids as floor means; an empty cluster takes the point farthest
    from its own centroid; each cluster's representative is a member drawn from the
    seed. Duplicate ids in ``validators`` are counted once; the input order does not
    matter.
    """
    nodes = sorted(set(validators))
    k = compute_cluster_count(len(nodes), nodes_per_cluster)
    if k == 0:
        return Clustering((), (), (), ())
    if coordinates is not None and is_coordinate_mode(nodes, coordinates):
        points = [compute_coordinate_point(coordinates.get(node, ORIGIN)) for node in nodes]
    else:
        point_hasher = _seeded_hasher(seed, b"point")
        points = [_split_point(point_hasher, node) for node in nodes]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]

    centroids = _choose_initial_centroids(xs, ys, k, seed)
    assignment = _run_lloyd(xs, ys, centroids)
    return _build_clustering(nodes, assignment, k, seed)


# --- hashing ---------------------------------------------------------------------------


def _seeded_hasher(seed: bytes, purpose: bytes) -> hashlib._Hash:
    """SHA-256 already fed with ``domain || purpose || u32(len(seed)) || seed``.

    The length prefix keeps ``seed || suffix`` unambiguous for any seed length; callers
    ``copy()`` it and append their suffix, which saves rehashing the prefix per node.
    """
    h = hashlib.sha256(DOMAIN)
    h.update(purpose)
    h.update(len(seed).to_bytes(4, "big"))
    h.update(seed)
    return h


def _split_point(prefix: hashlib._Hash, node: NodeId) -> tuple[int, int]:
    h = prefix.copy()
    h.update(node)
    digest = h.digest()
    return (
        int.from_bytes(digest[0:_COORD_BYTES], "big"),
        int.from_bytes(digest[_COORD_BYTES : 2 * _COORD_BYTES], "big"),
    )


def _draw(prefix: hashlib._Hash, index: int, bound: int) -> int:
    """The ``index``-th draw in [0, bound) from the seed's stream.

    A 256-bit hash reduced modulo ``bound`` (a node count or a sum of squared
    distances, below 2**50): the bias is below 2**-200, irrelevant, and the result is an
    exact integer every node agrees on.
    """
    h = prefix.copy()
    h.update(index.to_bytes(4, "big"))
    return int.from_bytes(h.digest(), "big") % bound


# --- k-means++ seeding -------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """A bucket of points and the bounding box of those points."""

    members: tuple[int, ...]
    min_x: int
    max_x: int
    min_y: int
    max_y: int


def _choose_initial_centroids(
    xs: list[int], ys: list[int], k: int, seed: bytes
) -> list[tuple[int, int]]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is a point drawn
    with probability proportional to its squared distance to the nearest centre so far.

    The draws come from SHA-256 of the seed (never Python's ``random``), and the
    cumulative distances are summed in node-id order, so every node picks the same
    centres. A point already chosen has distance 0 and is never drawn again; if every
    remaining point coincides with a centre (all distances 0), the first unchosen point
    in node-id order is taken, so the k starting points are always k different nodes.
    """
    n = len(xs)
    stream = _seeded_hasher(seed, b"kmeans++")
    cells = _build_cells(xs, ys, k)
    dist = [_INFINITY] * n
    cell_max = [_INFINITY] * len(cells)
    is_chosen = [False] * n
    chosen: list[int] = []
    for i in range(k):
        if i == 0:
            index = _draw(stream, 0, n)
        else:
            cumulative = list(itertools.accumulate(dist))
            total = cumulative[-1]
            if total > 0:
                index = bisect.bisect_right(cumulative, _draw(stream, i, total))
            else:
                index = is_chosen.index(False)
        chosen.append(index)
        is_chosen[index] = True
        _lower_distances(xs, ys, cells, dist=dist, cell_max=cell_max, centre=(xs[index], ys[index]))
    return [(xs[i], ys[i]) for i in chosen]


def _build_cells(xs: list[int], ys: list[int], k: int) -> list[_Cell]:
    """Bucket the points on a g x g grid, g = isqrt(k): about one centre per cell.

    Only an optimisation for :func:`_lower_distances`; which points share a cell never
    changes the result.
    """
    g = max(1, math.isqrt(k))
    buckets: list[list[int]] = [[] for _ in range(g * g)]
    for p, (x, y) in enumerate(zip(xs, ys, strict=True)):
        buckets[((x * g) >> COORD_BITS) * g + ((y * g) >> COORD_BITS)].append(p)
    return [
        _Cell(
            members=tuple(bucket),
            min_x=min(xs[p] for p in bucket),
            max_x=max(xs[p] for p in bucket),
            min_y=min(ys[p] for p in bucket),
            max_y=max(ys[p] for p in bucket),
        )
        for bucket in buckets
        if bucket
    ]


def _lower_distances(
    xs: list[int],
    ys: list[int],
    cells: list[_Cell],
    *,
    dist: list[int],
    cell_max: list[int],
    centre: tuple[int, int],
) -> None:
    """dist[p] = min(dist[p], |p - centre|^2) for every point, in place.

    A cell is skipped when even the nearest point of its bounding box is no closer to
    the new centre than its farthest point is to its own centre: then no member can
    improve, so skipping is exact. Late in the seeding a new centre only touches the
    few cells around it, which is what makes the seeding cheaper than O(n*k).
    """
    cx, cy = centre
    for c, cell in enumerate(cells):
        bx = cell.min_x - cx if cx < cell.min_x else (cx - cell.max_x if cx > cell.max_x else 0)
        by = cell.min_y - cy if cy < cell.min_y else (cy - cell.max_y if cy > cell.max_y else 0)
        if bx * bx + by * by >= cell_max[c]:
            continue
        for p in cell.members:
            dx = xs[p] - cx
            dy = ys[p] - cy
            d = dx * dx + dy * dy
            dist[p] = min(dist[p], d)
        cell_max[c] = max([dist[p] for p in cell.members])


# --- Lloyd iterations --------------------------------------------------------------------


def _run_lloyd(xs: list[int], ys: list[int], centroids: list[tuple[int, int]]) -> list[int]:
    """At most MAX_LLOYD_ITERATIONS assignments, stopping early when centroids settle."""
    centroids = list(centroids)
    assignment = _assign_points(xs, ys, centroids, None)
    for _ in range(MAX_LLOYD_ITERATIONS - 1):
        updated = _compute_centroids(xs, ys, assignment, len(centroids))
        if updated == centroids:
            break
        centroids = updated
        assignment = _assign_points(xs, ys, centroids, assignment)
    return assignment


def _assign_points(
    xs: list[int],
    ys: list[int],
    centroids: list[tuple[int, int]],
    previous: list[int] | None,
) -> list[int]:
    """Each point's nearest centroid index (ties: lowest index); no cluster left empty.

    Sweep: centroids are sorted by x; for a point we start at its x position and walk
    outwards in both directions, stopping in a direction as soon as the x gap alone
    exceeds the best squared distance found. Only centroids in a narrow vertical band
    are examined (about 2*sqrt(k) for spread points) instead of all k, and the result is
    exactly the brute-force argmin, ties included (the stop test is strict, so every
    centroid at the best distance is compared by index). ``previous`` (the last
    iteration's assignment) only gives a tight first bound, since centroids move little
    between iterations; it never changes the result. May move ``centroids`` in place
    (see :func:`_fill_empty_clusters`).
    """
    k = len(centroids)
    order = sorted(range(k), key=lambda j: (centroids[j][0], j))
    sorted_pos = [0] * k
    for pos, j in enumerate(order):
        sorted_pos[j] = pos
    sx = [centroids[j][0] for j in order]
    sy = [centroids[j][1] for j in order]
    assignment = [0] * len(xs)
    for p, (x, y) in enumerate(zip(xs, ys, strict=True)):
        start = bisect.bisect_left(sx, x)
        best_pos = sorted_pos[previous[p]] if previous is not None else min(start, k - 1)
        dx, dy = sx[best_pos] - x, sy[best_pos] - y
        best = dx * dx + dy * dy
        i = start
        while i < k:
            dx = sx[i] - x
            dx2 = dx * dx
            if dx2 > best:
                break
            dy = sy[i] - y
            d = dx2 + dy * dy
            if d < best or (d == best and order[i] < order[best_pos]):
                best, best_pos = d, i
            i += 1
        i = start - 1
        while i >= 0:
            dx = x - sx[i]
            dx2 = dx * dx
            if dx2 > best:
                break
            dy = sy[i] - y
            d = dx2 + dy * dy
            if d < best or (d == best and order[i] < order[best_pos]):
                best, best_pos = d, i
            i -= 1
        assignment[p] = order[best_pos]
    _fill_empty_clusters(xs, ys, centroids, assignment)
    return assignment


def _fill_empty_clusters(
    xs: list[int], ys: list[int], centroids: list[tuple[int, int]], assignment: list[int]
) -> None:
    """Give every empty cluster, in index order, the point farthest from its centroid.

    The donor is taken only from a cluster of two or more members, so no other cluster
    empties; ties go to the smallest node id (lowest index). With k <= n this always
    succeeds. The empty cluster's centroid moves onto the donor (in place). Rare in
    practice: it needs a cluster to lose all its points in one Lloyd step, or
    coinciding points.
    """
    k = len(centroids)
    counts = [0] * k
    for j in assignment:
        counts[j] += 1
    if min(counts) > 0:
        return
    for j in range(k):
        if counts[j] > 0:
            continue
        donor, donor_d = -1, -1
        for p, owner in enumerate(assignment):
            if counts[owner] < 2:
                continue
            cx, cy = centroids[owner]
            d = (xs[p] - cx) ** 2 + (ys[p] - cy) ** 2
            if d > donor_d:
                donor, donor_d = p, d
        counts[assignment[donor]] -= 1
        counts[j] = 1
        assignment[donor] = j
        centroids[j] = (xs[donor], ys[donor])


def _compute_centroids(
    xs: list[int], ys: list[int], assignment: list[int], k: int
) -> list[tuple[int, int]]:
    """Floor mean of each cluster's members (every cluster is non-empty here)."""
    sum_x = [0] * k
    sum_y = [0] * k
    counts = [0] * k
    for x, y, j in zip(xs, ys, assignment, strict=True):
        sum_x[j] += x
        sum_y[j] += y
        counts[j] += 1
    return [(sum_x[j] // counts[j], sum_y[j] // counts[j]) for j in range(k)]


def _build_clustering(
    nodes: list[NodeId], assignment: list[int], k: int, seed: bytes
) -> Clustering:
    """Sorted clusters, their representatives, and the membership index.

    The representative of the i-th cluster (clusters ordered by smallest member) is its
    member at index SHA-256(domain, "representative", seed, i) mod size: a fresh draw
    every slot that nobody can steer, whatever the positions (§4.3)."""
    members: list[list[int]] = [[] for _ in range(k)]
    for p, j in enumerate(assignment):
        members[j].append(p)  # p ascends, so each list is in node-id order
    order = sorted(range(k), key=lambda j: members[j][0])
    new_index = [0] * k
    for new, old in enumerate(order):
        new_index[old] = new
    draws = _seeded_hasher(seed, b"representative")
    clusters = tuple(tuple(nodes[p] for p in members[j]) for j in order)
    return Clustering(
        clusters=clusters,
        representatives=tuple(
            cluster[_draw(draws, i, len(cluster))] for i, cluster in enumerate(clusters)
        ),
        nodes=tuple(nodes),
        cluster_of=tuple(new_index[j] for j in assignment),
    )
