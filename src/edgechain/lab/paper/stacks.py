"""Fig. 11's shared pieces (paper §4.2): node labels, the slots its panels show, and
which nodes get a bar when there are too many to draw.

Used by the simulated run's stacks (``sim_data.py``) and the worst case's
(``worst_case.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

STACK_MOMENTS = 4
"""Fig. 11 shows the app stacks at this many slots spread over the run."""

MAX_BAR_NODES = 48
"""At most this many nodes get a bar (the most loaded): 1000 bars are unreadable."""


def get_node_label(index: int) -> str:
    """``n<index>``: the node's index in the simulation or the model's fleet."""
    return f"n{index}"


def get_label_index(label: str) -> int:
    return int(label[1:])


def pick_even_moments(first: int, last: int, count: int = STACK_MOMENTS) -> list[int]:
    """``count`` slots spread evenly from ``first`` to ``last`` (fewer when the span is
    short), in order, without repeats."""
    if last <= first:
        return [max(first, last)]
    return sorted({first + (last - first) * i // (count - 1) for i in range(count)})


def choose_bar_nodes(
    moments: Iterable[Mapping[str, Sequence[float]]], nodes: int, limit: int = MAX_BAR_NODES
) -> list[str]:
    """Every node when there are at most ``limit``, else the ``limit`` nodes with the
    highest summed load at any of ``moments`` (node → app loads), in index order."""
    if nodes <= limit:
        return [get_node_label(i) for i in range(nodes)]
    peak: dict[str, float] = {}
    for moment in moments:
        for label, loads in moment.items():
            peak[label] = max(peak.get(label, 0.0), sum(loads))
    top = sorted(peak, key=lambda label: (-peak[label], get_label_index(label)))[:limit]
    return sorted(top, key=get_label_index)
