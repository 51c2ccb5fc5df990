"""The report of a chaos run (``lab/chaos.py``): one record per fault, the limits the
invariants were held to, re-convergence figures (median, max) and the violations."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgechain.lab.chaos_faults import Fault
from edgechain.lab.chaos_watch import APPS_EXTRA_SLOTS, HEAD_LIMIT_SLOTS, Recovery
from edgechain.lab.cluster import get_node_name


@dataclass
class FaultRecord:
    fault: Fault
    start_slot: float
    end_slot: float
    heads: Recovery
    apps: Recovery
    cut_off_apps: int
    """Apps placed on a cut-off node when the fault began."""
    replaced_apps: int
    """Of those, the ones the chain (the majority) had placed elsewhere by its end."""
    fenced_apps: int
    """Of those, the ones whose copy on the cut-off node was frozen or gone by its end."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Kind-specific facts: a clock skew's offset; a full disk's outcome (the node's
    exit status, or None when it went on) and the accepted blocks checked and lost."""

    def to_json(self, slot_s: float) -> dict[str, Any]:
        def slots(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds / slot_s, 2)

        return {
            "number": self.fault.number,
            "kind": self.fault.kind,
            "nodes": [get_node_name(i) for i in self.fault.targets],
            "duration_slots": self.fault.duration_slots,
            "start_slot": round(self.start_slot, 2),
            "end_slot": round(self.end_slot, 2),
            "heads_converged_s": _round(self.heads.seconds),
            "heads_converged_slots": slots(self.heads.seconds),
            "apps_once_s": _round(self.apps.seconds),
            "apps_once_slots": slots(self.apps.seconds),
            "cut_off_apps": self.cut_off_apps,
            "replaced_apps": self.replaced_apps,
            "fenced_apps": self.fenced_apps,
            **self.detail,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


@dataclass(frozen=True)
class RunFacts:
    """What a finished chaos run hands to :func:`build_report`."""

    config: dict[str, Any]
    slot_s: float
    k: int | None
    records: Sequence[FaultRecord]
    violations: list[dict[str, Any]]
    workload: dict[str, int]
    process_table: dict[str, Any] | None
    audit: dict[str, Any]
    peer_errors: dict[str, int]
    launcher_summary: dict[str, Any] | None
    state: dict[str, Any] | None = None
    """State continuity (``lab/chaos_state.py``): the count each new copy started from."""


def build_report(facts: RunFacts) -> dict[str, Any]:
    k, slot_s = facts.k, facts.slot_s
    by_kind: dict[str, int] = {}
    for record in facts.records:
        by_kind[record.fault.kind] = by_kind.get(record.fault.kind, 0) + 1
    heads = [r.heads.seconds for r in facts.records if r.heads.seconds is not None]
    apps = [r.apps.seconds for r in facts.records if r.apps.seconds is not None]
    return {
        "config": facts.config,
        "limits": {
            "heads_converge_slots": HEAD_LIMIT_SLOTS,
            "apps_exactly_once_slots": None if k is None else k + APPS_EXTRA_SLOTS,
            "k_slots": k,
            "unfrozen_copies_per_app": 1,
            "node_crashes": 0,
            "invalid_blocks_accepted": 0,
        },
        "faults": {
            "total": len(facts.records),
            "by_kind": dict(sorted(by_kind.items())),
            "list": [r.to_json(slot_s) for r in facts.records],
        },
        "reconvergence_s": {"heads": _stats(heads), "apps_exactly_once": _stats(apps)},
        "reconvergence_slots": {
            "heads": _stats([h / slot_s for h in heads]),
            "apps_exactly_once": _stats([a / slot_s for a in apps]),
        },
        "workload": facts.workload,
        "process_table": facts.process_table,
        "state": facts.state,
        "chain_audit": facts.audit,
        "peer_errors": facts.peer_errors,
        "launcher": _launcher_part(facts.launcher_summary),
        "violations": facts.violations,
        "ok": not facts.violations,
    }


def _launcher_part(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    keys = ("slots", "blocks", "skip_blocks", "distinct_heads", "crashes", "rss_mb")
    return {key: summary.get(key) for key in keys}
