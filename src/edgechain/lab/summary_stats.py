"""The statistics of a testnet summary: quantiles, distributions of samples
(:class:`Distribution`) and per-node figures. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Distribution:
    p50: float
    p99: float
    max: float
    mean: float
    samples: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "p50": round(self.p50, 1),
            "p99": round(self.p99, 1),
            "max": round(self.max, 1),
            "mean": round(self.mean, 1),
            "samples": self.samples,
        }


# --- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: Sequence[float]) -> Distribution | None:
    if not values:
        return None
    return Distribution(
        p50=percentile(values, 0.5),
        p99=percentile(values, 0.99),
        max=max(values),
        mean=sum(values) / len(values),
        samples=len(values),
    )


def describe_per_node(values: Mapping[str, float], digits: int = 1) -> dict[str, Any]:
    """``{"per_node": {name: v}, "max", "mean", "min", "total"}`` (empty input: nulls)."""
    numbers = list(values.values())
    return {
        "per_node": {name: round(v, digits) for name, v in sorted(values.items())},
        "max": round(max(numbers), digits) if numbers else None,
        "mean": round(sum(numbers) / len(numbers), digits) if numbers else None,
        "min": round(min(numbers), digits) if numbers else None,
        "total": round(sum(numbers), digits),
    }
