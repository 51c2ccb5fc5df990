"""The paper's own figures (§4), each with the place it comes from, for the headline
table of ``report.md`` and the reference rows of Table 3.

The paper ("Blockchain-based application migration for the edge", §4) ran real nodes
on a Docker Swarm of eight hosts; most of its figures are plots read by eye, so only
what its text and Table 3 state as numbers is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

FIG8_NODES = 1000
FIG8_COMMITTEE = 256
FIG8_SLOT_S = 16
"""§4.1, Fig. 8: 1000 nodes, a committee of 256, a target block time of 16 s."""

FIG8_SKIP_BLOCKS = 0
"""§4.1: "all proposed blocks were accepted ... no skip blocks were produced"."""

FIG7_SLOTS = 1000
"""§4.1, Fig. 7: "the small sample size of 1000 slots"; every node elected into every
role (the producer role with some variance)."""

FIG12_CLUSTERS = 50
FIG12_BOUND_S = 5.4
"""§4.3, Fig. 12: 50 clusters a slot, 16 s slots, "which sets the upper bound for
resource propagation at 5.4 s" (about a third of the slot)."""

FIG12_BOUND_SHARE = FIG12_BOUND_S / FIG8_SLOT_S
"""The bound as a share of the slot, to set beside runs with other slot lengths."""

CRIU_STATE_MB = 15.2
STANDARD_STATE_MB = 142.2
"""§4.2: median uncompressed state of a CRIU checkpoint and of an exported container."""


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 3 (ms)."""

    kind: str
    segment: str
    min_ms: float
    max_ms: float
    median_ms: float
    mean_ms: float
    sd_ms: float


TABLE3 = (
    PaperRow("CRIU", "save", 1975, 8368, 2701, 3126, 1111),
    PaperRow("CRIU", "transmit", 46, 833, 79, 88, 61),
    PaperRow("CRIU", "resume", 2366, 10012, 3259, 3540, 1166),
    PaperRow("Standard", "save", 4010, 49080, 11231, 12875, 6942),
    PaperRow("Standard", "transmit", 506, 15007, 1624, 2047, 1467),
    PaperRow("Standard", "resume", 1449, 34337, 7414, 9550, 6637),
)
"""§4.2, Table 3 ("Summary of migration times in milliseconds"), in the order save,
transmit, resume (the paper lists resume first)."""


def get_paper_state_mb(kind: str) -> float:
    """The state size behind a Table 3 row: CRIU 15.2 MB, standard 142.2 MB (§4.2)."""
    return CRIU_STATE_MB if kind == "CRIU" else STANDARD_STATE_MB
