"""What the live form of ``edgechain experiment paper`` draws its figures from: the
real nodes' HTTP answers and the run directory, shaped as ``sim_data.py`` shapes the
simulation's (the same keys, so ``figures.py``, ``figures_apps.py`` and ``report.py``
draw both).

Where each figure's numbers come from:

* Fig. 7 (roles): the canonical chain (``GET /chain`` of the node on the majority tip)
  replayed out of that node's ``chain.db`` after the run (``lab/elections.load_chain``,
  ``consensus/state.apply_block``); per slot the producer and committee Algorithm 2
  elects from the parent state (``consensus/roles.compute_roles``) and the cluster
  representatives of the same k-means the relay uses (``cluster/kmeans.compute_clusters``).
  No API lists committees or representatives; the elected producer of every full block
  is checked against the producer ``GET /blocks`` names (``producers_checked``).
* Fig. 8 (slots): the kind of each slot from the canonical chain, the votes counted in
  each block's attestation, and its time: the earliest ``accepted_ms`` any node's
  ``GET /blocks`` lists, from the slot's start.
* Fig. 9 (CPU load): the ``cpu_bp`` of the reports the canonical blocks carry.
* Fig. 11 (app stacks): ``GET /dashboard/snapshot`` polled during the run: where the
  chain places each app, at the CPU share the latest report of its node lists for it
  (or its spec's request when that report does not list it yet).
* Fig. 12 (reports): each canonical block's reports due and carried, and the times the
  block's producer measured (``GET /blocks`` on the producer's own API).
* Fig. 10 / Table 3: every node's ``GET /migrations`` (the origin times each one).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgechain.chain.attestation import count_signers
from edgechain.chain.model import AnyBlock, Block, ChainParams
from edgechain.cluster.kmeans import compute_clusters
from edgechain.consensus.roles import compute_roles
from edgechain.consensus.state import (
    BlockState,
    apply_block,
    compute_genesis_state,
    get_slot_start_ms,
)
from edgechain.crypto.hashing import compute_node_id
from edgechain.lab.elections import load_chain
from edgechain.lab.faults_live import LiveTestnet, http_get
from edgechain.lab.paper.migration_table import SEGMENTS, MigrationRow, compute_stats
from edgechain.lab.paper.sim_data import (
    BASIS_POINTS_PER_PERCENT,
    ROLES,
    compute_distribution,
)
from edgechain.lab.paper.stacks import choose_bar_nodes, get_node_label
from edgechain.lab.summary import get_canonical_hashes, pick_reference
from edgechain.lab.summary_records import (
    BlockRecord,
    ChainEntry,
    RecordError,
    parse_block_records,
    parse_chain,
)
from edgechain.lab.testnet_collect import parse_or_none
from edgechain.telemetry.cpu import compute_percentile
from edgechain.types import Slot

SHORT_HEX = 16
"""Hex digits of node and app ids in the snapshot and in migration results."""
COLLECT_TIMEOUT_S = 10.0
"""A loaded node answers slowly; a missing answer loses that node's figures."""
LIVE_SOURCE = "live testnet"
"""Table 3's source column for this run's own migrations."""


@dataclass(frozen=True)
class SlotView:
    """One slot of the canonical chain: the state it was elected from and its block
    (None: no canonical block in the slot)."""

    slot: int
    parent: BlockState
    block_hash: str | None
    block: AnyBlock | None


@dataclass(frozen=True)
class Collected:
    """Every node's answers at the end of the run, by node name (None: no answer)."""

    chains: dict[str, list[ChainEntry] | None]
    blocks: dict[str, list[BlockRecord] | None]
    migrations: dict[str, list[dict[str, Any]] | None]


# --- reading the API ------------------------------------------------------------------


def get_answer(url: str, path: str) -> Any:
    """``GET path`` from one node; None when it does not answer."""
    with contextlib.suppress(OSError, ValueError):
        return http_get(url, path, timeout=COLLECT_TIMEOUT_S)
    return None


def collect_nodes(net: LiveTestnet) -> Collected:
    """Every node's ``/chain``, ``/blocks`` and ``/migrations``, asked in parallel."""
    nodes = net.get_nodes()

    def ask(path: str) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            answers = pool.map(lambda n: get_answer(n.url, path), nodes.values())
            return dict(zip(nodes, answers, strict=True))

    migrations = ask("/migrations")
    return Collected(
        chains={k: parse_or_none(parse_chain, v) for k, v in ask("/chain").items()},
        blocks={k: parse_or_none(parse_block_records, v) for k, v in ask("/blocks").items()},
        migrations={k: v if isinstance(v, list) else None for k, v in migrations.items()},
    )


def take_snapshot(net: LiveTestnet, slot: int) -> dict[str, Any] | None:
    """Fig. 11's moment: the chain's placement and the nodes' latest reports, from one
    node's ``/dashboard/snapshot`` (one head, so the two agree)."""
    for node in net.get_nodes().values():
        answer = get_answer(node.url, "/dashboard/snapshot")
        if isinstance(answer, dict):
            return {
                "slot": slot,
                "head_slot": answer["node"]["head_slot"],
                "apps": answer["apps"],
                "nodes": answer["nodes"],
            }
    return None


# --- the canonical chain, replayed ----------------------------------------------------


def get_reference(collected: Collected, end_slot: int) -> tuple[str, list[str]]:
    """The node whose chain tip at ``end_slot`` is the majority's, and its canonical
    block hashes up to there."""
    chains = {k: v for k, v in collected.chains.items() if v is not None}
    reference = pick_reference(chains, end_slot)
    if reference is None:
        raise RecordError("no node answered GET /chain")
    return reference, get_canonical_hashes(chains[reference], end_slot)


def replay_chain(store: Path, hashes: Sequence[str], end_slot: int) -> list[SlotView]:
    """Slots 1..``end_slot`` of the canonical chain ``hashes`` from a stopped node's
    store, each with the state its roles are elected from."""
    genesis, chain = load_chain(store, hashes)
    by_slot = {int(block.slot): (block_hash, block) for block_hash, block in chain}
    state = compute_genesis_state(genesis)
    views = []
    for slot in range(1, end_slot + 1):
        found = by_slot.get(slot)
        views.append(
            SlotView(slot, state, found[0].hex() if found else None, found[1] if found else None)
        )
        if found is not None:
            state = apply_block(state, found[1], found[0], genesis.params)
    return views


def get_labels(names: Mapping[str, str]) -> dict[str, str]:
    """Node id (hex) -> ``n<index>`` (``node-003`` is ``n3``), as the figures label
    nodes."""
    return {node_id: get_node_label(int(name.rsplit("-", 1)[1])) for node_id, name in names.items()}


def get_roles_by_node(
    views: Sequence[SlotView], params: ChainParams, labels: Mapping[str, str]
) -> dict[str, Any]:
    """Fig. 7: per role, how often each node was elected, with the check of the
    elected producers against the blocks' own."""
    order = sorted(labels.values(), key=lambda label: int(label[1:]))
    index = {label: i for i, label in enumerate(order)}
    counts = {role: [0] * len(order) for role in ROLES}
    checked = mismatched = 0

    def count(role: str, node_id: str) -> None:
        label = labels.get(node_id)
        if label is not None:
            counts[role][index[label]] += 1

    for view in views:
        parent = view.parent
        roles = compute_roles(
            parent.validators.get_public_keys(), parent.seed, Slot(view.slot),
            params.committee_size,
        )  # fmt: skip
        producer = compute_node_id(roles.producer).hex()
        count("producer", producer)
        for key in roles.committee:
            count("committee", compute_node_id(key).hex())
        clustering = compute_clusters(
            parent.validators.get_node_ids(), parent.seed, params.nodes_per_cluster,
            parent.coordinates,
        )  # fmt: skip
        for node_id in clustering.representatives:
            count("representative", node_id.hex())
        if isinstance(view.block, Block):
            checked += 1
            mismatched += view.block.producer.hex() != producer
    return {
        "nodes": order,
        "counts": counts,
        "elected_at_least_once": {role: sum(1 for c in counts[role] if c > 0) for role in ROLES},
        "producers_checked": checked,
        "producers_not_elected": mismatched,
    }


def get_records_by_hash(collected: Collected) -> dict[str, list[BlockRecord]]:
    out: dict[str, list[BlockRecord]] = {}
    for records in collected.blocks.values():
        for record in records or ():
            out.setdefault(record.hash, []).append(record)
    return out


def get_slot_series(
    views: Sequence[SlotView], records: Mapping[str, Sequence[BlockRecord]], params: ChainParams
) -> dict[str, Any]:
    """Fig. 8: per slot the kind of block (block, skip, none), its votes and the time
    from the slot's start to its first acceptance by any node."""
    kinds: list[str] = []
    votes: list[int] = []
    times: list[int | None] = []
    for view in views:
        if view.block is None or view.block_hash is None:
            kinds.append("none")
            votes.append(0)
            times.append(None)
            continue
        kinds.append("block" if isinstance(view.block, Block) else "skip")
        votes.append(count_signers(view.block.signers))
        accepted = [r.accepted_ms for r in records.get(view.block_hash, ())]
        start = get_slot_start_ms(params, view.slot)
        times.append(min(accepted) - start if accepted else None)
    return {
        "slot": [v.slot for v in views],
        "kind": kinds,
        "votes": votes,
        "block_time_ms": times,
    }


def get_cpu_load_series(views: Sequence[SlotView]) -> dict[str, Any]:
    """Fig. 9: per slot, the distribution over the nodes of each node's latest
    ``cpu_bp`` (in %) the canonical chain carries up to that slot."""
    latest: dict[bytes, int] = {}
    carried = changed = 0
    per_slot, reporting = [], []
    for view in views:
        if isinstance(view.block, Block):
            for report in view.block.reports:
                carried += 1
                changed += latest.get(report.node, report.cpu_bp) != report.cpu_bp
                latest[report.node] = report.cpu_bp
        loads = [bp / BASIS_POINTS_PER_PERCENT for bp in latest.values()]
        per_slot.append(compute_distribution(loads))
        reporting.append(len(loads))
    return {
        "slot": [v.slot for v in views],
        "distribution_pct": per_slot,
        "nodes_reporting": reporting,
        "reports_carried": carried,
        "reports_changed": changed,
        # Real nodes report what their apps' processes used (runtime/usage.py).
        "time_varying_app_load": True,
    }


def get_report_samples(
    views: Sequence[SlotView], records: Mapping[str, Sequence[BlockRecord]]
) -> dict[str, Any]:
    """Fig. 12: each carried report's time to the producer (as the producer measured
    it) with its block's slot, and each canonical block's reports due and carried.
    No node measures a report's time to its representative."""
    to_producer: list[int] = []
    sample_slots: list[int] = []
    block_slot, block_due, block_included = [], [], []
    for view in views:
        seen = records.get(view.block_hash or "", ())
        counted = next((r for r in seen if r.reports_due is not None), None)
        if counted is not None:
            block_slot.append(view.slot)
            block_due.append(counted.reports_due or 0)
            block_included.append(counted.reports_due_carried or 0)
        times = next((r.report_to_producer_ms for r in seen if r.report_to_producer_ms), ())
        to_producer.extend(times)
        sample_slots.extend([view.slot] * len(times))
    return {
        "to_representative_ms": [],
        "to_producer_ms": to_producer,
        "sample_slot": sample_slots,
        "block_slot": block_slot,
        "block_due": block_due,
        "block_included": block_included,
        "interval_slots": None,
    }


# --- Fig. 11 from the snapshots -------------------------------------------------------


def get_stack_moment(
    snapshot: Mapping[str, Any], labels: Mapping[str, str], requests: Mapping[str, float]
) -> tuple[dict[str, list[float]], int, dict[str, int]]:
    """One moment's stacks (node label -> its apps' CPU in %, largest first), the apps
    queued, and how many loads came from a report or from the spec's request."""
    by_short = {node_id[:SHORT_HEX]: label for node_id, label in labels.items()}
    reported: dict[tuple[str, str], int] = {}
    for node in snapshot["nodes"]:
        for usage in node["apps"]:
            reported[(node["id"], usage["id"])] = int(usage["cpu_bp"])
    stacks: dict[str, list[float]] = {}
    queued = 0
    sources = {"reported": 0, "request": 0}
    for app in snapshot["apps"]:
        if app["node"] is None:
            queued += 1
            continue
        label = by_short.get(app["node"], app["node"])
        bp = reported.get((app["node"], app["id"]))
        if bp is None:
            sources["request"] += 1
            load = requests.get(app["name"], 0.0)
        else:
            sources["reported"] += 1
            load = bp / BASIS_POINTS_PER_PERCENT
        stacks.setdefault(label, []).append(load)
    return {k: sorted(v, reverse=True) for k, v in stacks.items()}, queued, sources


def get_app_stacks(
    snapshots: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    requests: Mapping[str, float],
) -> dict[str, Any]:
    """Fig. 11: the apps on each node at the polled moments; ``requests``: app name ->
    its spec's CPU request in %."""
    stacks: dict[str, dict[str, list[float]]] = {}
    queued: dict[str, int] = {}
    sources = {"reported": 0, "request": 0}
    for snapshot in snapshots:
        key = str(snapshot["slot"])
        stacks[key], queued[key], found = get_stack_moment(snapshot, labels, requests)
        for source, n in found.items():
            sources[source] += n
    return {
        "moments": [int(s["slot"]) for s in snapshots],
        "head_slots": [s["head_slot"] for s in snapshots],
        "stacks": stacks,
        "queued": queued,
        "shown_nodes": choose_bar_nodes(stacks.values(), len(labels)),
        "total_nodes": len(labels),
        "load_sources": sources,
    }


# --- migrations -----------------------------------------------------------------------


def get_migration_list(
    migrations: Mapping[str, Sequence[Mapping[str, Any]] | None], names: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every migration attempt any node timed (its origin), in slot order."""
    by_short = {node_id[:SHORT_HEX]: name for node_id, name in names.items()}
    out = []
    for origin, results in sorted(migrations.items()):
        for entry in results or ():
            out.append(
                {
                    "slot": entry.get("slot"),
                    "app": entry.get("name"),
                    "from": origin,
                    "to": by_short.get(str(entry.get("to")), entry.get("to")),
                    "outcome": entry.get("outcome"),
                    **{f"{s}_ms": entry.get(f"{s}_ms") for s in SEGMENTS},
                    "raw_bytes": entry.get("raw_bytes"),
                }
            )
    return sorted(out, key=lambda m: (int(m["slot"] or 0), str(m["app"])))


def get_live_migration_rows(attempts: Sequence[Mapping[str, Any]], runtime: str) -> list[Any]:
    """Table 3's rows (``migration_table.MigrationRow`` as dicts) of this run's
    completed migrations; none when there was none."""
    done = [m for m in attempts if m["outcome"] == "completed"]
    if not done:
        return []
    sizes = [m["raw_bytes"] for m in done if isinstance(m["raw_bytes"], int)]
    state_mb = round(statistics.median(sizes) / 1e6, 3) if sizes else None
    rows = []
    for segment in SEGMENTS:
        samples = [float(m[f"{segment}_ms"]) for m in done if m[f"{segment}_ms"] is not None]
        if samples:
            stats = compute_stats(samples)
            rows.append(asdict(MigrationRow(LIVE_SOURCE, runtime, state_mb, segment, stats)))
    return rows


def merge_migration(
    live_rows: Sequence[Any], files: Mapping[str, Any] | None, runtime: str
) -> dict[str, Any] | None:
    """Table 3's data: this run's rows, then those of the ``--migration-json`` files."""
    if not live_rows and files is None:
        return None
    return {
        "runtime": runtime,
        "rows": [*live_rows, *(files["rows"] if files else [])],
        "notes": list(files["notes"]) if files else [],
        "files": [LIVE_SOURCE] * bool(live_rows) + (list(files["files"]) if files else []),
    }


# --- the headline numbers -------------------------------------------------------------


def summarize_slots(series: Mapping[str, Any]) -> dict[str, Any]:
    kinds = series["kind"]
    votes = [v for v, k in zip(series["votes"], kinds, strict=True) if k == "block"]
    times = sorted(t for t in series["block_time_ms"] if t is not None)
    return {
        "blocks": kinds.count("block"),
        "skip_blocks": kinds.count("skip"),
        "empty_slots": kinds.count("none"),
        "votes_per_block": {
            "min": min(votes, default=0),
            "max": max(votes, default=0),
            "mean": round(statistics.fmean(votes), 2) if votes else 0,
        },
        "block_time_ms": {
            "p50": times[len(times) // 2] if times else None,
            "max": times[-1] if times else None,
        },
    }


def summarize_reports(reports: Mapping[str, Any]) -> dict[str, Any]:
    delays = reports["to_producer_ms"]
    due = sum(reports["block_due"])
    return {
        "reports_due": due,
        "report_inclusion": round(sum(reports["block_included"]) / due, 4) if due else None,
        "report_to_producer_ms": {
            "p50": compute_percentile(delays, 0.5) if delays else None,
            "p99": compute_percentile(delays, 0.99) if delays else None,
            "samples": len(delays),
        },
        "report_to_representative_ms": {"p50": None, "p99": None, "samples": 0},
    }
