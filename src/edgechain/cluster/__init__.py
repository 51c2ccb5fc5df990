"""Per-slot deterministic k-means overlay over the validator set (paper §3.2, §4.3)."""

from edgechain.cluster.kmeans import (
    Clustering,
    compute_cluster_count,
    compute_clusters,
    compute_point,
)

__all__ = ["Clustering", "compute_cluster_count", "compute_clusters", "compute_point"]
