"""The per-slot k-means overlay (paper §3.2, §4.3): determinism, partition, k, reps.

The strongest check is the comparison with a deliberately naive reference (O(n*k)
everywhere, brute-force argmin) written from the module's documented rules: the sweep
and the grid pruning in ``kmeans.py`` are optimisations that must never change a result.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.chain.model import COORD_LIMIT_US, Coordinate
from edgechain.cluster import (
    Clustering,
    compute_cluster_count,
    compute_clusters,
    compute_point,
    kmeans,
)
from edgechain.cluster.kmeans import compute_coordinate_point, is_coordinate_mode
from edgechain.errors import LocalError
from edgechain.types import NodeId


def make_nodes(count: int, salt: bytes = b"") -> list[NodeId]:
    return [NodeId(hashlib.sha256(salt + i.to_bytes(4, "big")).digest()) for i in range(count)]


def make_seed(label: bytes) -> bytes:
    return hashlib.sha256(b"seed" + label).digest()


def squared_distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


# --- naive reference -------------------------------------------------------------------


def reference_draw(seed: bytes, index: int, bound: int, purpose: bytes = b"kmeans++") -> int:
    prefix = kmeans.DOMAIN + purpose + len(seed).to_bytes(4, "big") + seed
    digest = hashlib.sha256(prefix + index.to_bytes(4, "big")).digest()
    return int.from_bytes(digest, "big") % bound


def reference_seeding(points: list[tuple[int, int]], k: int, seed: bytes) -> list[int]:
    """k-means++ with every distance recomputed from scratch."""
    chosen = [reference_draw(seed, 0, len(points))]
    while len(chosen) < k:
        dist = [min(squared_distance(p, points[c]) for c in chosen) for p in points]
        total = sum(dist)
        if total == 0:
            chosen.append(next(i for i in range(len(points)) if i not in chosen))
            continue
        target = reference_draw(seed, len(chosen), total)
        running = 0
        for i, d in enumerate(dist):
            running += d
            if running > target:
                chosen.append(i)
                break
    return chosen


def reference_assign(points: list[tuple[int, int]], centroids: list[tuple[int, int]]) -> list[int]:
    """Brute-force argmin (ties: lowest centroid index), then the empty-cluster rule."""
    k = len(centroids)
    assignment = [
        min(range(k), key=lambda j: (squared_distance(p, centroids[j]), j)) for p in points
    ]
    for j in range(k):
        if j in assignment:
            continue
        sizes = [assignment.count(c) for c in range(k)]
        candidates = [p for p in range(len(points)) if sizes[assignment[p]] >= 2]
        donor = max(
            candidates,
            key=lambda p: (squared_distance(points[p], centroids[assignment[p]]), -p),
        )
        assignment[donor] = j
        centroids[j] = points[donor]
    return assignment


def reference_means(
    points: list[tuple[int, int]], assignment: list[int], k: int
) -> list[tuple[int, int]]:
    means = []
    for j in range(k):
        members = [points[p] for p in range(len(points)) if assignment[p] == j]
        means.append(
            (sum(m[0] for m in members) // len(members), sum(m[1] for m in members) // len(members))
        )
    return means


def reference_clusters(
    validators: Sequence[NodeId],
    seed: bytes,
    nodes_per_cluster: int,
    coordinates: dict[NodeId, Coordinate] | None = None,
) -> tuple[list[list[NodeId]], list[NodeId]]:
    nodes = sorted(set(validators))
    n = len(nodes)
    k = min(n, max(1, (2 * n + nodes_per_cluster) // (2 * nodes_per_cluster)))
    if coordinates is not None and 4 * sum(node in coordinates for node in nodes) >= 3 * n:
        # The grid: a coordinate in [-2^21, 2^21) µs, 64 µs a step; no coordinate: origin.
        points = [
            ((c.x_us + 2**21) // 64, (c.y_us + 2**21) // 64)
            for c in (coordinates.get(node, Coordinate(0, 0)) for node in nodes)
        ]
    else:
        points = [compute_point(seed, node) for node in nodes]
    centroids = [points[i] for i in reference_seeding(points, k, seed)]
    assignment = reference_assign(points, centroids)
    for _ in range(kmeans.MAX_LLOYD_ITERATIONS - 1):
        means = reference_means(points, assignment, k)
        if means == centroids:
            break
        centroids = means
        assignment = reference_assign(points, centroids)
    clusters = [[nodes[p] for p in range(n) if assignment[p] == j] for j in range(k)]
    clusters.sort(key=lambda c: c[0])
    reps = [c[reference_draw(seed, i, len(c), b"representative")] for i, c in enumerate(clusters)]
    return clusters, reps


# --- basic properties -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "per_cluster", "expected"),
    [
        (0, 20, 0),
        (1, 20, 1),
        (9, 20, 1),  # 0.45 rounds to 0, then max(1, .)
        (10, 20, 1),  # 0.5 rounds half up to 1
        (29, 20, 1),
        (30, 20, 2),  # 1.5 -> 2 (banker's rounding would also say 2)
        (50, 20, 3),  # 2.5 -> 3 (banker's rounding would say 2)
        (1000, 20, 50),
        (1010, 20, 51),
        (5, 1, 5),
        (3, 2, 2),
    ],
)
def test_cluster_count_rounds_half_up_in_integers(
    count: int, per_cluster: int, expected: int
) -> None:
    assert compute_cluster_count(count, per_cluster) == expected


def test_cluster_count_rejects_non_positive_cluster_size() -> None:
    with pytest.raises(LocalError):
        compute_cluster_count(10, 0)
    with pytest.raises(LocalError):
        compute_clusters(make_nodes(3), make_seed(b"x"), 0)


def test_empty_validator_set_gives_empty_clustering() -> None:
    clustering = compute_clusters([], make_seed(b"x"), 20)
    assert clustering.clusters == ()
    with pytest.raises(LocalError):
        clustering.get_representative(make_nodes(1)[0])


def test_single_validator_is_its_own_representative() -> None:
    (node,) = make_nodes(1)
    clustering = compute_clusters([node], make_seed(b"x"), 20)
    assert clustering.clusters == ((node,),)
    assert clustering.get_representative(node) == node
    assert clustering.is_representative(node)


def assert_well_formed(clustering: Clustering, validators: Sequence[NodeId], k: int) -> None:
    nodes = sorted(set(validators))
    assert len(clustering.clusters) == k
    assert len(clustering.representatives) == k
    members = [node for cluster in clustering.clusters for node in cluster]
    assert sorted(members) == nodes, "every validator in exactly one cluster"
    for cluster, rep in zip(clustering.clusters, clustering.representatives, strict=True):
        assert cluster, "no empty cluster"
        assert list(cluster) == sorted(cluster)
        assert rep in cluster
    assert [c[0] for c in clustering.clusters] == sorted(c[0] for c in clustering.clusters)
    for node in nodes:
        index = clustering.get_cluster_index(node)
        assert node in clustering.clusters[index]
        assert clustering.get_members(node) == clustering.clusters[index]
        assert clustering.get_representative(node) == clustering.representatives[index]


def test_thousand_validators_partition_into_fifty_clusters() -> None:
    validators = make_nodes(1000)
    clustering = compute_clusters(validators, make_seed(b"a"), 20)
    assert_well_formed(clustering, validators, 50)


def test_representatives_are_drawn_afresh_from_each_seed() -> None:
    """Same positions (coordinates), another seed: the representatives change, so none
    can be foreseen or chosen by sitting at a cluster's centre (§4.3)."""
    validators = make_nodes(200)
    coordinates = {
        node: Coordinate(i % 10 * 20_000, i // 10 % 2 * 50_000) for i, node in enumerate(validators)
    }
    seen: list[tuple[NodeId, ...]] = []
    for label in (b"r1", b"r2", b"r3"):
        clustering = compute_clusters(validators, make_seed(label), 10, coordinates)
        assert all(
            rep in cluster
            for cluster, rep in zip(clustering.clusters, clustering.representatives, strict=True)
        )
        seen.append(clustering.representatives)
    assert len(set(seen)) == 3


def test_coordinates_group_nodes_that_are_near() -> None:
    """Four far-apart sites of 25 nodes each (a few ms within a site, 100+ ms between):
    k = 4 clusters are exactly the sites, whatever the seed. With hash positions (no
    coordinates) the same nodes mix the sites."""
    validators = make_nodes(100)
    sites = [(0, 0), (150_000, 0), (0, 150_000), (150_000, 150_000)]
    coordinates = {
        node: Coordinate(sites[i % 4][0] + i * 37 % 3_000, sites[i % 4][1] + i * 53 % 3_000)
        for i, node in enumerate(validators)
    }
    by_site = sorted(sorted(n for i, n in enumerate(validators) if i % 4 == s) for s in range(4))
    for label in (b"s1", b"s2"):
        clustering = compute_clusters(validators, make_seed(label), 25, coordinates)
        assert sorted(list(c) for c in clustering.clusters) == by_site
        clusters, reps = reference_clusters(validators, make_seed(label), 25, coordinates)
        assert [list(c) for c in clustering.clusters] == clusters
        assert list(clustering.representatives) == reps
    hashed = compute_clusters(validators, make_seed(b"s1"), 25)
    assert sorted(list(c) for c in hashed.clusters) != by_site


def test_hash_positions_until_three_quarters_have_coordinates() -> None:
    validators = make_nodes(40)
    seed = make_seed(b"quorum")
    hashed = compute_clusters(validators, seed, 10)
    far = {node: Coordinate(i * 10_000, 0) for i, node in enumerate(validators)}
    few = {node: far[node] for node in validators[:29]}  # 29 of 40 < 75 %
    enough = {node: far[node] for node in validators[:30]}
    assert not is_coordinate_mode(validators, few)
    assert is_coordinate_mode(validators, enough)
    assert compute_clusters(validators, seed, 10, few) == hashed
    assert compute_clusters(validators, seed, 10, enough) != hashed
    clusters, reps = reference_clusters(validators, seed, 10, enough)
    clustering = compute_clusters(validators, seed, 10, enough)
    assert [list(c) for c in clustering.clusters] == clusters
    assert list(clustering.representatives) == reps


def test_extreme_coordinates_stay_on_the_grid() -> None:
    limit = COORD_LIMIT_US
    for c in (Coordinate(-limit, -limit), Coordinate(limit, limit), Coordinate(0, -limit)):
        assert all(0 <= v < 1 << kmeans.COORD_BITS for v in compute_coordinate_point(c))


def test_input_order_and_duplicates_do_not_matter() -> None:
    validators = make_nodes(300)
    seed = make_seed(b"order")
    expected = compute_clusters(validators, seed, 20)
    assert compute_clusters(list(reversed(validators)), seed, 20) == expected
    assert compute_clusters(sorted(validators), seed, 20) == expected
    assert compute_clusters(validators + validators[:50], seed, 20) == expected


def test_topology_changes_with_the_seed() -> None:
    validators = make_nodes(200)
    first = compute_clusters(validators, make_seed(b"slot-1"), 20)
    second = compute_clusters(validators, make_seed(b"slot-2"), 20)
    assert first.clusters != second.clusters
    assert first.representatives != second.representatives


def test_unknown_node_is_a_local_error() -> None:
    clustering = compute_clusters(make_nodes(10), make_seed(b"x"), 5)
    with pytest.raises(LocalError):
        clustering.get_representative(make_nodes(1, salt=b"other")[0])


def test_points_are_sixteen_bit_and_seed_dependent() -> None:
    node = make_nodes(1)[0]
    a = compute_point(make_seed(b"1"), node)
    b = compute_point(make_seed(b"2"), node)
    assert a != b
    for point in (a, b):
        assert all(0 <= v < 1 << kmeans.COORD_BITS for v in point)


def test_golden_vector() -> None:
    """Regression vector: SHA-256 over the clustering of a fixed input, as computed by
    this code when it was written (and equal to the naive reference above). Every node
    must compute the same overlay, so any change here is a protocol change: update the
    vector only together with a version bump of ``kmeans.DOMAIN``."""
    validators = make_nodes(100)
    clustering = compute_clusters(validators, make_seed(b"golden"), 10)
    clusters, reps = reference_clusters(validators, make_seed(b"golden"), 10)
    assert [list(c) for c in clustering.clusters] == clusters
    assert list(clustering.representatives) == reps
    digest = hashlib.sha256()
    for cluster, rep in zip(clustering.clusters, clustering.representatives, strict=True):
        digest.update(len(cluster).to_bytes(4, "big") + rep + b"".join(cluster))
    assert digest.hexdigest() == GOLDEN_CLUSTERING_SHA256


GOLDEN_CLUSTERING_SHA256 = "3a3ee4aaee755e250290f501c1c0dcc098263628fbb022ed8c2923e5431be6b4"


# --- against the naive reference ------------------------------------------------------


@pytest.mark.parametrize(("count", "per_cluster"), [(1000, 20), (257, 7), (40, 40), (12, 1)])
def test_matches_naive_reference_on_larger_inputs(count: int, per_cluster: int) -> None:
    validators = make_nodes(count, salt=b"ref")
    seed = make_seed(b"ref%d" % count)
    clustering = compute_clusters(validators, seed, per_cluster)
    clusters, reps = reference_clusters(validators, seed, per_cluster)
    assert [list(c) for c in clustering.clusters] == clusters
    assert list(clustering.representatives) == reps


node_ids = st.binary(min_size=32, max_size=32).map(NodeId)


@settings(max_examples=150, deadline=None)
@given(
    validators=st.lists(node_ids, min_size=1, max_size=120),
    seed=st.binary(min_size=0, max_size=40),
    per_cluster=st.integers(min_value=1, max_value=30),
)
def test_property_equals_reference_and_is_well_formed(
    validators: list[NodeId], seed: bytes, per_cluster: int
) -> None:
    clustering = compute_clusters(validators, seed, per_cluster)
    k = compute_cluster_count(len(set(validators)), per_cluster)
    assert_well_formed(clustering, validators, k)
    clusters, reps = reference_clusters(validators, seed, per_cluster)
    assert [list(c) for c in clustering.clusters] == clusters
    assert list(clustering.representatives) == reps


@settings(max_examples=100, deadline=None)
@given(
    validators=st.lists(node_ids, min_size=1, max_size=60, unique=True),
    seed=st.binary(min_size=32, max_size=32),
    per_cluster=st.integers(min_value=1, max_value=10),
    data=st.data(),
)
def test_property_input_order_is_irrelevant(
    validators: list[NodeId], seed: bytes, per_cluster: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(validators))
    assert compute_clusters(shuffled, seed, per_cluster) == compute_clusters(
        validators, seed, per_cluster
    )


# Tiny coordinate ranges force coinciding points and equidistant centroids, the cases
# where tie-breaking and the empty-cluster rule decide; real 16-bit points rarely do.
small_points = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(points=small_points, data=st.data())
def test_property_sweep_assignment_equals_brute_force_with_ties(
    points: list[tuple[int, int]], data: st.DataObject
) -> None:
    k = data.draw(st.integers(min_value=1, max_value=len(points)))
    centroids = data.draw(
        st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=k, max_size=k)
    )
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    fast_centroids = list(centroids)
    fast = kmeans._assign_points(xs, ys, fast_centroids, None)
    slow_centroids = list(centroids)
    slow = reference_assign(points, slow_centroids)
    assert fast == slow
    assert fast_centroids == slow_centroids
    assert sorted(set(fast)) == list(range(k)), "no empty cluster"


@settings(max_examples=200, deadline=None)
@given(points=small_points, seed=st.binary(max_size=8), data=st.data())
def test_property_seeding_equals_naive_kmeanspp_with_coinciding_points(
    points: list[tuple[int, int]], seed: bytes, data: st.DataObject
) -> None:
    k = data.draw(st.integers(min_value=1, max_value=len(points)))
    xs = [p[0] << 12 for p in points]  # spread over the 16-bit grid so cells differ
    ys = [p[1] << 12 for p in points]
    scaled = list(zip(xs, ys, strict=True))
    chosen = reference_seeding(scaled, k, seed)
    assert kmeans._choose_initial_centroids(xs, ys, k, seed) == [scaled[i] for i in chosen]
    assert len(set(chosen)) == k


def test_all_points_coinciding_still_gives_k_clusters() -> None:
    xs = [7] * 10
    ys = [9] * 10
    centroids = kmeans._choose_initial_centroids(xs, ys, 4, b"seed")
    assignment = kmeans._run_lloyd(xs, ys, centroids)
    assert sorted(set(assignment)) == [0, 1, 2, 3]


# --- timing (printed, never asserted: the machine is shared) ---------------------------


def test_timing_thousand_validators(capsys: pytest.CaptureFixture[str]) -> None:
    validators = make_nodes(1000, salt=b"timing")
    samples = []
    for i in range(15):
        seed = make_seed(b"timing%d" % i)
        start = time.perf_counter()
        compute_clusters(validators, seed, 20)
        samples.append(time.perf_counter() - start)
    with capsys.disabled():
        print(
            f"\ncompute_clusters(1000 validators, nodes_per_cluster=20, k=50): "
            f"median {statistics.median(samples) * 1000:.1f} ms, "
            f"min {min(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"
        )
