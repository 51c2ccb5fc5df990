"""The live form of ``edgechain experiment paper``: its result (``result.json``)
from what the run collected (``live_run.run_testnet``): the figures' data, the checks,
the testnet's own summary, the worst cases, and the figures drawn."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from edgechain.lab.faults_live import LiveTestnet
from edgechain.lab.fleet_claim import read_testnet_summary
from edgechain.lab.paper import live_data
from edgechain.lab.paper.live_config import (
    CPU_CAPACITY,
    PERIOD_MS,
    LiveConfig,
    Progress,
    get_app_shares,
)

SUMMARY_KEYS = ("join_slot", "blocks", "skip_blocks", "skip_blocks_after_join", "skip_causes",
                "distinct_heads", "nodes_without_genesis", "reports", "signers_per_block",
                "block_propagation_ms_after_join", "rss_mb", "cpu_seconds", "crashes",
                "leftover_process_groups", "stop_sigkilled", "ok")  # fmt: skip
"""What ``result.json`` keeps of the testnet's own ``summary.json``."""


def build_live_data(config: LiveConfig, raw: Mapping[str, Any], net: LiveTestnet) -> dict[str, Any]:
    """The figures' data (``sim_data.get_sim_data``'s keys) and the headline numbers."""
    collected: live_data.Collected = raw["collected"]
    params = net.get_params()
    reference, hashes = live_data.get_reference(collected, raw["end_slot"])
    views = live_data.replay_chain(net.run_dir / reference / "chain.db", hashes, raw["end_slot"])
    records = live_data.get_records_by_hash(collected)
    labels = live_data.get_labels(raw["names"])
    slots = live_data.get_slot_series(views, records, params)
    reports = live_data.get_report_samples(views, records)
    progress: Progress = raw["progress"]
    attempts = live_data.get_migration_list(collected.migrations, raw["names"])
    return {
        "roles": live_data.get_roles_by_node(views, params, labels),
        "slots": slots,
        "cpu_load": live_data.get_cpu_load_series(views),
        "app_stacks": live_data.get_app_stacks(progress.snapshots, labels, raw["requests"]),
        "reports": reports,
        "migrations": attempts,
        "reference_node": reference,
        "nodes_answering": sum(1 for c in collected.chains.values() if c is not None),
        "summary": {
            **live_data.summarize_slots(slots),
            **live_data.summarize_reports(reports),
            "violations": get_violations(raw),
        },
    }


def get_violations(raw: Mapping[str, Any]) -> list[str]:
    """What the process table and the stop showed wrong: an app running twice, an app
    not running once where the chain places it at the end, processes left behind."""
    out = []
    observer = raw["observer"]
    if observer["max_unfrozen_copies"] > 1:
        out.append(f"an app ran twice: {observer['doubles'][:5]}")
    out += [f"at the end: {p}" for p in raw["problems"]]
    if raw["stopped"]["leftover_processes"]:
        out.append(f"left behind: {raw['stopped']['leftover_processes']}")
    return out


def get_testnet_record(net: LiveTestnet) -> dict[str, Any]:
    """What ``result.json`` keeps of the testnet's ``summary.json``."""
    summary = read_testnet_summary(net.run_dir) or {}
    return {key: summary[key] for key in SUMMARY_KEYS if key in summary}


def get_config_record(
    config: LiveConfig, raw: Mapping[str, Any], net: LiveTestnet
) -> dict[str, Any]:
    record = asdict(config)
    progress: Progress = raw["progress"]
    record.update(
        mode="live",
        out=str(config.out),
        migration_json=[str(p) for p in config.migration_json],
        slots_run=raw["end_slot"],
        first_slot=progress.first_slot,
        undrain_sent_slot=progress.undrain_sent_slot,
        testnet_dir=str(net.run_dir),
        cpu_capacity=CPU_CAPACITY,
        app_shares_pct=get_app_shares(config.apps, config.seed),
        app_period_ms=PERIOD_MS,
        host_cpus=os.cpu_count(),
    )
    return record
