"""A testnet run's summary (``summary.json``; its fields: :mod:`edgechain.lab.testnet`),
from what the launcher observed while it ran (:class:`Observed`) and what the nodes
answered at the end (figures computed by :mod:`edgechain.lab.summary`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgechain.chain.model import ChainParams
from edgechain.errors import LocalError
from edgechain.lab.apps import summarize_apps
from edgechain.lab.cluster import Cluster, find_live_groups
from edgechain.lab.elections import load_producers
from edgechain.lab.operator import OperatorSetup
from edgechain.lab.package_sources import PACKAGE_DIR, compute_source_digest
from edgechain.lab.skip_causes import compute_skip_causes, read_log_lines
from edgechain.lab.summary import (
    Collected,
    build_chain_summary,
    find_join_slot,
    get_canonical_hashes,
    get_election_slots,
    merge_counters,
    pick_reference,
)
from edgechain.lab.summary_records import ChainEntry, HeadObservation, KillRecord
from edgechain.lab.summary_stats import describe_per_node
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.telemetry.cpu import merge_node_summaries


@dataclass
class Observed:
    """What the launcher has seen so far (mutable state of one run)."""

    genesis_after_s: float | None = None
    slot: int = 0
    head_slot: int | None = None
    validators: int = 0
    skip_blocks: int = 0
    heads: list[HeadObservation] = field(default_factory=list)
    kills: list[KillRecord] = field(default_factory=list)
    killed_indices: list[int] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)
    """Nodes that exited 0 on their own: they left the network (``node leave``)."""


def get_report_interval(config: LaunchConfig) -> int:
    """How often every node of the run reports: what its genesis parameters give
    (``ChainParams.report_interval_slots``)."""
    params = ChainParams("-", 0, 1, 1)
    return replace(
        params,
        epoch_length=config.epoch_length or params.epoch_length,
        down_after_slots=config.down_after_slots or params.down_after_slots,
    ).report_interval_slots


def summarize_run(
    config: LaunchConfig,
    cluster: Cluster,
    observed: Observed,
    collected: Collected | None,
    *,
    interrupted: bool,
    failure: str | None,
    started_at: float,
    source_digest: str,
    operator: OperatorSetup | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The summary of a run that started at ``started_at`` (monotonic) and
    ``source_digest`` (:func:`compute_source_digest`); ``collected`` None: no node
    answered at the end."""
    end_slot = get_end_slot(observed, config.slots)
    summary: dict[str, Any] = {
        "nodes": config.nodes,
        "committee": config.committee,
        "slot_duration": config.slot_duration,
        "report_interval_slots": get_report_interval(config),
        "join_interval": config.join_interval,
        "cpu_capacity": config.cpu_capacity,
        "containers": config.containers,
        "netns": config.netns,
        "run_dir": str(config.run_dir),
        "interrupted": interrupted,
        "until_interrupted": config.slots == 0,
        "failure": failure,
        "genesis": observed.genesis_after_s is not None,
        "genesis_after_s": _round(observed.genesis_after_s),
        "slots": max(end_slot, 0),
        "wall_seconds": round(time.monotonic() - started_at, 1),
        "source_digest": source_digest[:16],
        "source_changed": compute_source_digest(PACKAGE_DIR) != source_digest,
    }
    collected = collected or Collected({}, {}, {})
    summary.update(
        build_chain_summary(
            nodes={n.spec.index: n.spec.name for n in cluster.nodes},
            collected=collected,
            runs={n.spec.name: n.get_runs() for n in cluster.nodes},
            end_slot=end_slot,
            join_slot=find_join_slot(observed.heads, config.nodes),
            kills=observed.kills,
            producers=_load_producers(cluster, observed.kills, collected, end_slot, log),
        )
    )
    # What each skip block's slot looked like to its producer and committee.
    summary["skip_causes"] = [
        cause.to_json()
        for cause in compute_skip_causes(
            summary["skip_slots"],
            {n.spec.name: read_log_lines(n.spec.data_dir / "stderr.log") for n in cluster.nodes},
        )
    ]
    summary["validators_at_end"] = observed.validators
    summary["rss_mb"] = describe_per_node(
        {n.spec.name: n.rss_mb for n in cluster.nodes if n.rss_mb is not None}
    )
    summary["rss_peak_mb"] = describe_per_node(
        {n.spec.name: n.rss_peak_mb for n in cluster.nodes if n.rss_peak_mb}
    )
    summary["cpu_seconds"] = describe_per_node(
        {n.spec.name: n.get_cpu_seconds() for n in cluster.nodes if n.incarnations}, 2
    )
    statuses = [s for s in collected.statuses.values() if s is not None]
    # Paper Table 2: each node's smoothed RTT to random validators (node/rtt.py).
    summary["rtt_ms"] = describe_per_node(
        {
            cluster.nodes[i].spec.name: s["rtt_us"] / 1000
            for i, s in collected.statuses.items()
            if s is not None and s.get("rtt_us")
        },
        2,
    )
    # Finality (chain/finality.py): how far behind each head it is, and what memory
    # holds once pruning keeps only a window below it.
    finality: dict[str, dict[str, Any]] = {}
    lags: dict[str, float] = {}
    for i, s in collected.statuses.items():
        if s is None or not s.get("finality") or s.get("head_slot") is None:
            continue
        name = cluster.nodes[i].spec.name
        finality[name] = s["finality"]
        lags[name] = s["head_slot"] - s["finality"]["finalized_slot"]
    summary["finality"] = {
        "finalized_slot": describe_per_node({k: f["finalized_slot"] for k, f in finality.items()}),
        "lag_slots": describe_per_node(lags),
        "blocks_in_memory": describe_per_node(
            {k: f["blocks_in_memory"] for k, f in finality.items()}
        ),
    }
    summary["cpu_per_slot"] = merge_node_summaries(
        [s["cpu_per_slot"] for s in statuses if s.get("cpu_per_slot")]
    )
    # The same over the slots after the join alone: the steady cost, where the whole
    # run's median at 100 nodes is mostly the join's.
    summary["cpu_per_slot_after_join"] = (
        merge_node_summaries(list(collected.cpu_after_join.values()))
        if collected.cpu_after_join
        else None
    )
    summary["peer_errors"] = merge_counters(s.get("peer_errors") or {} for s in statuses)
    summary["decode_errors"] = merge_counters(s.get("decode_errors") or {} for s in statuses)
    summary["crashes"] = observed.crashes
    summary["left"] = observed.left
    summary["exit_codes"] = {
        n.spec.name: n.current.exit_code
        for n in cluster.nodes
        if n.current is not None
        and n.current.ended_by == "stop"
        and n.current.exit_code not in (0, None)
    }
    summary["stop_sigkilled"] = [n.spec.name for n in cluster.nodes if n.sigkilled_at_stop]
    summary["leftover_process_groups"] = find_live_groups(cluster.get_group_ids())
    summary["client"] = operator.to_json() if operator is not None else None
    summary["apps"] = summarize_apps(
        collected.apps,
        collected.histories,
        {cluster.nodes[i].spec.name: m for i, m in collected.migrations.items()},
        {n.spec.node_id: n.spec.name for n in cluster.nodes},
    )
    summary["ok"] = bool(
        summary["genesis"]
        and summary["distinct_heads"] == 1
        and not summary["nodes_without_genesis"]
        and not summary["crashes"]
        and not failure
    )
    return summary


def get_end_slot(observed: Observed, slots: int) -> int:
    """Last slot the run completed: slot ``slots``, or the one before an interruption."""
    if observed.genesis_after_s is None:
        return 0
    last = observed.slot - 1
    return max(0, min(last, slots) if slots else last)


def _load_producers(
    cluster: Cluster,
    kills: list[KillRecord],
    collected: Collected,
    end_slot: int,
    log: Callable[[str], None],
) -> dict[int, str]:
    """Elected producers of the slots killed nodes were down (from a stopped node's
    store); empty without kills, or if the store cannot say."""
    if not kills:
        return {}
    names = {n.spec.name: n for n in cluster.nodes}
    chains = _named(cluster, collected.chains)
    reference = pick_reference(chains, end_slot)
    if reference is None:
        return {}
    slots = sorted({s for k in kills for s in get_election_slots(k, end_slot)})
    store = names[reference].spec.data_dir / "chain.db"
    try:
        return load_producers(store, get_canonical_hashes(chains[reference], end_slot), slots)
    except (LocalError, ValueError) as exc:
        log(f"cannot compute elected producers from {store}: {exc}")
        return {}


def _named(
    cluster: Cluster, answers: Mapping[int, list[ChainEntry] | None]
) -> dict[str, list[ChainEntry]]:
    return {cluster.nodes[i].spec.name: a for i, a in answers.items() if a is not None}


def write_summary(summary: dict[str, Any], run_dir: Path, json_path: Path | None) -> None:
    """``summary.json`` in the run directory, and ``json_path`` if given."""
    text = json.dumps(summary, indent=1) + "\n"
    (run_dir / "summary.json").write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
