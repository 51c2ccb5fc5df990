"""The end of a testnet run's asking: every node's ``/status``, ``/chain``, ``/blocks``
and ``/migrations``, the fleet's apps with their histories, written as received
(``collected.json``, ``collected-apps.json``) and parsed for the summary
(:class:`~edgechain.lab.summary.Collected`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from edgechain.lab.cluster import Cluster
from edgechain.lab.summary import Collected
from edgechain.lab.summary_records import RecordError, parse_block_records, parse_chain

COLLECT_TIMEOUT_S = 10.0
COLLECT_TRIES = 2

NodeGet = Callable[[int, str, float, int], Any]
"""``get(index, path, timeout, tries)``: node ``index``'s JSON answer to ``GET path``,
None if the node is not up or did not answer."""


def collect(
    cluster: Cluster, run_dir: Path, get: NodeGet, pool: Executor, join_slot: int | None = None
) -> Collected:
    """Every node's answers, patiently: an overloaded node answers slowly, and a missing
    answer loses that node's figures. With ``join_slot``, every node's CPU table over
    the slots after it as well (``SlotCpuLog.summarize``: the join is a phase of its
    own, most of a 150-slot run at 100 nodes)."""

    def get_all(path: str) -> dict[int, Any]:
        indices = range(len(cluster.nodes))
        answers = pool.map(lambda i: get(i, path, COLLECT_TIMEOUT_S, COLLECT_TRIES), indices)
        return dict(zip(indices, answers, strict=True))

    statuses = get_all("/status")
    chains = get_all("/chain")
    blocks = get_all("/blocks?since=0")
    apps, histories = _collect_apps(len(cluster.nodes), get, pool)
    migrations = get_all("/migrations")
    after_join = {} if join_slot is None else get_all(f"/status?cpu_since_slot={join_slot}")
    _write_raw(cluster, run_dir, statuses, chains, blocks, migrations)
    fleet = {"apps": apps, "histories": histories}
    (run_dir / "collected-apps.json").write_text(json.dumps(fleet) + "\n")
    return Collected(
        statuses={i: s if isinstance(s, dict) else None for i, s in statuses.items()},
        chains={i: parse_or_none(parse_chain, c) for i, c in chains.items()},
        blocks={i: parse_or_none(parse_block_records, b) for i, b in blocks.items()},
        apps=apps,
        histories=histories,
        migrations=migrations,
        cpu_after_join={
            i: s["cpu_per_slot"]
            for i, s in after_join.items()
            if isinstance(s, dict) and isinstance(s.get("cpu_per_slot"), dict)
        },
    )


def _collect_apps(
    nodes: int, get: NodeGet, pool: Executor
) -> tuple[list[Any] | None, dict[str, Any]]:
    """The fleet view and every app's history, from the first node that answers."""
    for index in range(nodes):
        apps = get(index, "/apps", COLLECT_TIMEOUT_S, COLLECT_TRIES)
        if isinstance(apps, list):
            ids = [
                v["app_id"]
                for v in apps
                if isinstance(v, dict) and isinstance(v.get("app_id"), str)
            ]
            return apps, _get_histories(ids, index, nodes, get, pool)
    return None, {}


def _get_histories(
    ids: list[str], index: int, nodes: int, get: NodeGet, pool: Executor
) -> dict[str, Any]:
    """Each app's history, asked of another node in turn (all hold the same finalized
    history; node ``index`` where one gives none), all at once: node ``index`` asked
    for 200 in a row, on a host saturated by 100 nodes with 200 apps, took longer than
    the launcher's time to stop."""

    def get_history(k: int) -> Any:
        path = f"/apps/{ids[k]}/history"
        answer = get((index + k) % nodes, path, COLLECT_TIMEOUT_S, COLLECT_TRIES)
        if answer is None:
            answer = get(index, path, COLLECT_TIMEOUT_S, COLLECT_TRIES)
        return answer

    return dict(zip(ids, pool.map(get_history, range(len(ids))), strict=True))


def _write_raw(cluster: Cluster, run_dir: Path, *answers: Mapping[int, Any]) -> None:
    """The answers as received, per node: for analyses the summary does not do."""
    raw = {
        node.spec.name: {
            "runs": [dataclasses.asdict(run) for run in node.get_runs()],
            "status": answers[0].get(index),
            "chain": answers[1].get(index),
            "blocks": answers[2].get(index),
            "migrations": answers[3].get(index),
        }
        for index, node in enumerate(cluster.nodes)
    }
    (run_dir / "collected.json").write_text(json.dumps(raw) + "\n")


def parse_or_none(parse: Callable[[Any], Any], data: Any) -> Any:
    if data is None:
        return None
    try:
        return parse(data)
    except RecordError:
        return None
