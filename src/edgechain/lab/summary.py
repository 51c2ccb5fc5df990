"""Pure computations over what a testnet run collected from its nodes.

Inputs are the nodes' HTTP answers (``/blocks``, ``/chain``, ``/status``) parsed into
small records, plus what the launcher itself knows (when each node process ran, which
nodes it killed). Nothing here does I/O, so every figure in the summary JSON is tested
on hand-made data.

The records and their parsing are in ``lab/summary_records.py``, the statistics in
``lab/summary_stats.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgechain.lab.acceptance_times import get_first_acceptances
from edgechain.lab.report_summary import summarize_reports
from edgechain.lab.skip_lag import compute_excluded_lags
from edgechain.lab.summary_records import (
    BlockRecord,
    CanonicalBlock,
    ChainEntry,
    HeadObservation,
    Interval,
    KillRecord,
)
from edgechain.lab.summary_stats import describe

# --- chain figures --------------------------------------------------------------------


def compute_propagation_samples(
    blocks: Mapping[str, Sequence[BlockRecord]],
    runs: Mapping[str, Sequence[Interval]],
    min_slot: int = 0,
) -> list[float]:
    """Per block and node: the node's accepted_ms minus the block's earliest accepted_ms.

    The earliest acceptance is taken over every node. A node's sample counts only when
    one incarnation of the node ran from that earliest moment until it accepted the
    block: a node started (or restarted) later got the block by syncing history, and a
    node killed in between accepted it only after its restart; neither is propagation.
    The earliest node itself contributes a 0 sample (the definition is "each node's").
    """
    first_seen, earliest = get_first_acceptances(blocks)
    slots = {record.hash: record.slot for records in blocks.values() for record in records}
    samples: list[float] = []
    for (name, block_hash), t_ms in first_seen.items():
        if slots[block_hash] < min_slot:
            continue
        origin = earliest[block_hash]
        if any(i.contains(origin) and i.contains(t_ms) for i in runs.get(name, ())):
            samples.append(float(t_ms - origin))
    return samples


def annotate_chain(
    chain: Sequence[ChainEntry], blocks: Iterable[BlockRecord]
) -> list[CanonicalBlock]:
    """The canonical chain with producer / excluded taken from ``/blocks`` records."""
    by_hash = {record.hash: record for record in blocks}
    annotated = []
    for entry in chain:
        record = by_hash.get(entry.hash)
        annotated.append(
            CanonicalBlock(
                hash=entry.hash,
                slot=entry.slot,
                skip=entry.skip,
                producer=record.producer if record else None,
                excluded=record.excluded if record else None,
            )
        )
    return annotated


def get_tip_at(chain: Sequence[ChainEntry], slot: int) -> str:
    """Hash of the last canonical block at or before ``slot`` ("genesis" if none)."""
    tip = "genesis"
    for entry in chain:
        if entry.slot > slot:
            break
        tip = entry.hash
    return tip


def get_majority(values: Mapping[str, str]) -> str | None:
    """The most common value; a tie goes to the value of the first name in sort order."""
    if not values:
        return None
    counts = Counter(values.values())
    best = max(counts.values())
    return next(values[name] for name in sorted(values) if counts[values[name]] == best)


def find_join_slot(observations: Iterable[HeadObservation], nodes: int) -> int | None:
    """Lowest head slot whose state already held all ``nodes`` validators."""
    slots = [o.head_slot for o in observations if o.validators >= nodes]
    return min(slots) if slots else None


def get_skip_slots(canonical: Iterable[CanonicalBlock], after_slot: int | None = None) -> list[int]:
    """Slots of canonical skip blocks, only those after ``after_slot`` when given."""
    return [b.slot for b in canonical if b.skip and (after_slot is None or b.slot > after_slot)]


def get_down_slots(kill: KillRecord, end_slot: int) -> range:
    """Slots a killed node missed: after the kill slot (it may have produced that one
    before dying) and before its restart slot (which it needs to catch up)."""
    until = kill.restart_slot if kill.restart_slot is not None else end_slot + 1
    return range(kill.kill_slot + 1, min(until, end_slot + 1))


def get_election_slots(kill: KillRecord, end_slot: int) -> range:
    """Slots whose elected producer matters for a kill: the down slots and the kill slot
    itself (killed before its turn, its slot must become a skip block too)."""
    down = get_down_slots(kill, end_slot)
    return range(min(kill.kill_slot, end_slot + 1), down.stop)


def classify_slot(slot: int, node_id: str, by_slot: Mapping[int, CanonicalBlock]) -> str:
    """What the canonical chain holds at a slot ``node_id`` was elected to produce."""
    block = by_slot.get(slot)
    if block is None:
        return "empty"
    if block.skip:
        return "skip_excluding_it" if block.excluded == node_id else "skip_excluding_other"
    return "block_by_it" if block.producer == node_id else "block_by_other"


def assess_kill(
    kill: KillRecord,
    canonical: Sequence[CanonicalBlock],
    tip: str | None,
    majority_tip: str | None,
    end_slot: int,
    producers: Mapping[int, str],
) -> dict[str, Any]:
    """What the chain did about one killed node, and whether it came back in sync.

    ``producers`` maps slots to the elected producer's node id (see
    :mod:`edgechain.lab.elections`); slots missing from it are not judged. In the
    kill slot itself the node may have produced before it died.
    """
    down = get_down_slots(kill, end_slot)
    by_slot = {b.slot: b for b in canonical}
    elected = {
        s: classify_slot(s, kill.node_id, by_slot)
        for s in get_election_slots(kill, end_slot)
        if producers.get(s) == kill.node_id
    }
    # In the kill slot the node may have died after its candidate went out: then the
    # committee has voted, so it signs no skip block (a member with a vote cast never
    # does), and the slot stays empty unless the block was finished first.
    skipped = all(
        outcome == "skip_excluding_it"
        or (slot == kill.kill_slot and outcome in ("block_by_it", "empty"))
        for slot, outcome in elected.items()
    )
    return {
        "name": kill.name,
        "node_id": kill.node_id,
        "kill_slot": kill.kill_slot,
        "restart_slot": kill.restart_slot,
        "down_slots": [down.start, down.stop - 1] if down else [],
        "elected_while_down": elected,
        "elected_slots_skipped": skipped,
        "skip_blocks_excluding_it": [
            s
            for s in down
            if s in by_slot and by_slot[s].skip and by_slot[s].excluded == kill.node_id
        ],
        "blocks_it_produced_while_down": [
            s
            for s in down
            if s in by_slot and not by_slot[s].skip and by_slot[s].producer == kill.node_id
        ],
        "resynced": tip is not None and tip == majority_tip,
    }


def get_unexplained_skips(
    canonical: Iterable[CanonicalBlock], kills: Sequence[KillRecord], after_slot: int | None
) -> list[int]:
    """Skip slots (after ``after_slot``) not excluding a node that was down at the time."""
    unexplained = []
    for block in canonical:
        if not block.skip or (after_slot is not None and block.slot <= after_slot):
            continue
        explained = any(
            block.excluded == k.node_id
            and block.slot >= k.kill_slot
            and (k.restart_slot is None or block.slot <= k.restart_slot)
            for k in kills
        )
        if not explained:
            unexplained.append(block.slot)
    return unexplained


def merge_counters(counters: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum of per-node ``{reason: count}`` maps (non-numeric values are ignored)."""
    total: Counter[str] = Counter()
    for counter in counters:
        for reason, count in counter.items():
            if isinstance(count, int) and not isinstance(count, bool):
                total[reason] += count
    return dict(sorted(total.items()))


# --- the whole chain summary -------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    """Every node's final answers (None where the node did not answer)."""

    statuses: dict[int, dict[str, Any] | None]
    chains: dict[int, list[ChainEntry] | None]
    blocks: dict[int, list[BlockRecord] | None]
    apps: list[Any] | None = None
    """The fleet view (``GET /apps``) of the first node that answered."""
    histories: dict[str, Any] = field(default_factory=dict)
    """App id -> that node's ``GET /apps/{id}/history``."""
    migrations: dict[int, Any] = field(default_factory=dict)
    """Every node's ``GET /migrations``."""
    cpu_after_join: dict[int, Any] = field(default_factory=dict)
    """Every node's ``cpu_per_slot`` over the slots after the join
    (``GET /status?cpu_since_slot=``); empty when the run never joined."""


def pick_reference(chains: Mapping[str, Sequence[ChainEntry]], end_slot: int) -> str | None:
    """The first node (by name) whose chain tip at ``end_slot`` is the majority tip."""
    tips = {name: get_tip_at(chain, end_slot) for name, chain in chains.items()}
    majority = get_majority(tips)
    return next((name for name in sorted(tips) if tips[name] == majority), None)


def get_canonical_hashes(chain: Sequence[ChainEntry], end_slot: int) -> list[str]:
    return [entry.hash for entry in chain if entry.slot <= end_slot]


def build_chain_summary(
    *,
    nodes: Mapping[int, str],
    collected: Collected,
    runs: Mapping[str, Sequence[Interval]],
    end_slot: int,
    join_slot: int | None,
    kills: Sequence[KillRecord],
    producers: Mapping[int, str],
) -> dict[str, Any]:
    """Chain figures of the summary from the collected answers (pure); ``producers``:
    elected producer per slot, for the kill assessment."""
    # A node without genesis has an empty chain, like one with genesis and no block;
    # it is counted apart, not as a head.
    without_genesis = sorted(
        nodes[i] for i, s in collected.statuses.items() if s is not None and not s.get("genesis")
    )
    chains = {
        nodes[i]: c
        for i, c in collected.chains.items()
        if c is not None and nodes[i] not in without_genesis
    }
    blocks = {nodes[i]: b for i, b in collected.blocks.items() if b is not None}
    tips = {name: get_tip_at(chain, end_slot) for name, chain in chains.items()}
    majority = get_majority(tips)
    reference = pick_reference(chains, end_slot)
    all_records = [record for records in blocks.values() for record in records]
    canonical = [
        b
        for b in annotate_chain(chains[reference] if reference else [], all_records)
        if b.slot <= end_slot
    ]
    names_by_id = {
        str(s["node_id"]): nodes[i]
        for i, s in collected.statuses.items()
        if s is not None and "node_id" in s
    }
    live_heads = {
        s.get("head") for s in collected.statuses.values() if s is not None and s.get("head")
    }
    propagation = describe(compute_propagation_samples(blocks, runs))
    after_join = describe(
        compute_propagation_samples(blocks, runs, min_slot=(join_slot or 0) + 1)
        if join_slot is not None
        else []
    )
    signers = {r.hash: r.signers for r in all_records}
    # A node may answer /chain and not /blocks (stopped while asked): a block no answer
    # describes has no signer count.
    signer_counts = describe(
        [float(signers[b.hash]) for b in canonical if not b.skip and b.hash in signers]
    )
    skip_slots = get_skip_slots(canonical)
    return {
        "nodes_answering": len(chains) + len(without_genesis),
        "nodes_without_genesis": without_genesis,
        "reference_node": reference,
        "join_slot": join_slot,
        "blocks": sum(1 for b in canonical if not b.skip),
        "skip_blocks": len(skip_slots),
        "skip_slots": skip_slots,
        "missing_slots": max(0, end_slot - len(canonical)),
        "skip_excluded_lag": [
            lag.to_json() for lag in compute_excluded_lags(canonical, blocks, names_by_id)
        ],
        "skip_blocks_after_join": (
            len(get_skip_slots(canonical, join_slot)) if join_slot is not None else None
        ),
        "unexplained_skip_slots": (
            get_unexplained_skips(canonical, kills, join_slot) if join_slot is not None else None
        ),
        "distinct_heads": len(set(tips.values())),
        "live_heads": len(live_heads),
        "heads": tips,
        "block_propagation_ms": propagation.to_json() if propagation else None,
        "block_propagation_ms_after_join": after_join.to_json() if after_join else None,
        "signers_per_block": signer_counts.to_json() if signer_counts else None,
        "reports": summarize_reports(canonical, all_records, join_slot),
        "kills": [
            assess_kill(k, canonical, tips.get(k.name), majority, end_slot, producers)
            for k in kills
        ],
    }


__all__ = [
    "Collected",
    "build_chain_summary",
    "get_canonical_hashes",
    "pick_reference",
    "annotate_chain",
    "assess_kill",
    "classify_slot",
    "compute_propagation_samples",
    "find_join_slot",
    "get_down_slots",
    "get_election_slots",
    "get_majority",
    "get_skip_slots",
    "get_tip_at",
    "get_unexplained_skips",
    "merge_counters",
]
