"""Hostile nodes among real node processes (issue 12): one testnet of 8 nodes, 7 of
them each with hostile behaviours (``edgechain testnet --hostile``, ``hostile.py``),
run for 60 slots of 1.2 s (about 95 s in all). Each test checks one behaviour on the
figures the nodes gave at the end (their ``/status``) and on the chain they stored: the
hostile node did it, the other nodes refused it and counted it by reason, the chain
carries nothing of it, and the offender was excluded where the protocol says so (a
producer whose candidate no honest member can vote for misses its slot, and the slot's
skip block excludes it, paper §3.4). Every other behaviour of a hostile node is honest,
so one node's misbehaviour is judged by all the others.

Each behaviour waits on a role: a producer's on being elected (1/8 of the slots), a
representative's on being drawn (1/8), a voter's on a committee seat; in 60 slots the
chance that a producer's or a voter's never comes is about 3 in 10 000 per behaviour
(the relay behaviours: see ``HOSTILE``). The two behaviours about
apps (``announce-apps``, ``unplanned-migrations``) need apps on chain: once the testnet
has granted its operator key, three counter apps are submitted through the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli.live_testnet import VDF_FRACTION

from edgechain.chain.model import Block, SkipBlock
from edgechain.lab.chain_audit import AuditResult, audit_stores
from edgechain.lab.elections import load_chain
from edgechain.lab.faults_live import LiveTestnet
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.lab.testnet_launcher import run_testnet
from edgechain.runtime.samples import get_apps_dir

pytestmark = pytest.mark.xdist_group("testnet")

HOSTILE = {
    1: "invalid-vdf",
    2: "forged-votes,unplanned-migrations,drop-reports",
    3: "outsider-votes,duplicate-votes,alter-reports",
    4: "replay-commands,replay-inclusions,drop-reports",
    5: "equivocate,announce-apps",
    6: "wrong-plan",
    7: "alter-reports",
}
"""The relay behaviours act only when their node is drawn as a representative while
members of its cluster report (each every 4 slots): a few times in 60 slots, and once in
seven runs here ``drop-reports`` never did, so each is given to two nodes (ones the
protocol does not exclude for their other behaviours)."""
SLOTS = 60
APPS = 3
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Run:
    summary: dict[str, Any]
    statuses: dict[int, dict[str, Any]]
    """Node index -> its final ``/status``."""
    node_ids: dict[int, str]
    chain: list[Any]
    """The reference node's chain, genesis exclusive: (hash, block) pairs."""
    audit: AuditResult
    apps: list[str]
    """The apps submitted (ids)."""

    def counted_by_others(self, offender: int, reason: str) -> int:
        return sum(
            int(status["peer_errors"].get(reason, 0))
            for index, status in self.statuses.items()
            if index != offender
        )

    def refused_by_others(self, offender: int, reason: str) -> int:
        return sum(
            int(status["transfer_refusals"].get(reason, 0))
            for index, status in self.statuses.items()
            if index != offender
        )

    def acts(self, offender: int, behaviour: str) -> int:
        hostile = self.statuses[offender]["hostile"]
        assert hostile is not None and behaviour in hostile["behaviours"]
        return int(hostile["acts"].get(behaviour, 0))

    def excluded_by_skip_blocks(self) -> set[str]:
        return {b.excluded.hex() for _, b in self.chain if isinstance(b, SkipBlock)}


def _submit_apps(run_dir: Path, launcher: threading.Thread) -> list[str]:
    """Once the operator key is granted (``client.toml``), submit the counter apps
    through the CLI, one by one, to the first node (an honest one)."""
    net = LiveTestnet(run_dir, nodes=8, committee=3, slot_s=1.2)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not (run_dir / "client.toml").exists():
        assert launcher.is_alive(), "the testnet ended before its operator key was granted"
        assert time.monotonic() < deadline, "no client.toml: the operator key was not granted"
        time.sleep(0.2)
    client = net.write_one_node_client()
    script = get_apps_dir() / "counter" / "counter.sh"
    apps = []
    for index in range(APPS):
        spec = run_dir.parent / f"counter-{index}.yaml"
        spec.write_text(
            f"name: hostile-counter-{index}\nruntime: process\n"
            f'command: ["/bin/sh", "{script}", "0", "0.2", "hostile-{os.getpid()}-{index}"]\n'
            "stateful: true\n"
        )
        apps.append(net.cli("apps", "submit", str(spec), client=client)["app_id"])
    return apps


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    # Searchable by others: the nodes run their apps as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="edgechain-hostile-"))
    base.chmod(0o711)
    config = LaunchConfig(
        nodes=8,
        committee=3,
        slot_duration=1.2,
        slots=SLOTS,
        join_interval=0.3,
        run_dir=base / "run",
        progress=False,
        hostile=tuple(HOSTILE.items()),
        vdf_fraction=VDF_FRACTION,
    )
    outcome: list[dict[str, Any] | BaseException] = []

    def launch() -> None:
        try:
            outcome.append(run_testnet(config))
        except BaseException as exc:  # raised below, in the test's thread
            outcome.append(exc)

    launcher = threading.Thread(target=launch, name="testnet")
    launcher.start()
    try:
        apps = _submit_apps(config.run_dir, launcher)
    finally:
        launcher.join()
    (summary,) = outcome
    if isinstance(summary, BaseException):
        raise summary
    assert summary["genesis"], summary["failure"]
    collected = json.loads((config.run_dir / "collected.json").read_text())
    manifest = json.loads((config.run_dir / "testnet.json").read_text())
    names = {entry["name"]: i for i, entry in enumerate(manifest["nodes"])}
    statuses = {names[name]: entry["status"] for name, entry in collected.items()}
    node_ids = {i: entry["node_id"] for i, entry in enumerate(manifest["nodes"])}
    reference = collected[summary["reference_node"]]["chain"]
    _, chain = load_chain(
        config.run_dir / summary["reference_node"] / "chain.db", [e["hash"] for e in reference]
    )
    audit = audit_stores(sorted(config.run_dir.glob("node-*/chain.db")))
    yield Run(summary, statuses, node_ids, chain, audit, apps)
    shutil.rmtree(base, ignore_errors=True)


def test_every_node_answered_and_none_crashed(run: Run) -> None:
    assert set(run.statuses) == set(range(8))
    assert all(s is not None for s in run.statuses.values())
    assert run.summary["crashes"] == []
    assert run.summary["distinct_heads"] == 1, run.summary["heads"]
    assert len(run.chain) >= SLOTS // 3  # the chain went on among them
    # An honest node never loads the hostile module.
    assert run.statuses[0]["hostile"] is None
    # No node stored a block that does not verify: every stored block of every node
    # is validated again from genesis.
    assert run.audit.invalid == [] and run.audit.unreadable == []
    assert run.audit.stores == 8


def test_an_invalid_vdf_is_refused_and_its_producer_excluded(run: Run) -> None:
    assert run.acts(1, "invalid-vdf") >= 1
    assert run.counted_by_others(1, "bad_vdf") >= 1
    assert run.node_ids[1] in run.excluded_by_skip_blocks()


def test_a_wrong_plan_is_refused_and_its_producer_excluded(run: Run) -> None:
    assert run.acts(6, "wrong-plan") >= 1
    assert run.counted_by_others(6, "wrong_plan") >= 1
    assert run.node_ids[6] in run.excluded_by_skip_blocks()


def test_an_equivocating_producer_is_caught(run: Run) -> None:
    assert run.acts(5, "equivocate") >= 1
    assert run.counted_by_others(5, "equivocating_producer") >= 1


def test_forged_votes_are_refused(run: Run) -> None:
    assert run.acts(2, "forged-votes") >= 1
    assert run.counted_by_others(2, "bad_vote_signature") >= 1


def test_duplicate_votes_are_counted_once(run: Run) -> None:
    assert run.acts(3, "duplicate-votes") >= 1
    assert run.counted_by_others(3, "duplicate_vote") >= 1


def test_outsider_votes_are_refused(run: Run) -> None:
    assert run.acts(3, "outsider-votes") >= 1
    assert run.counted_by_others(3, "vote_outside_committee") >= 1


def test_replayed_commands_are_refused(run: Run) -> None:
    assert run.acts(4, "replay-commands") >= 1
    assert run.counted_by_others(4, "command_replayed") >= 1


def test_replayed_inclusion_requests_are_refused(run: Run) -> None:
    """Node 4 re-gossips the request that admitted a node excluded since (the producers
    of bad candidates, 5 and 6, joined after the genesis); block format 15 refuses it
    (``chain/departures.py``), and no block carries a request signed before its node
    left: the audit re-validated every stored block (``test_every_node_answered...``)."""
    assert run.acts(4, "replay-inclusions") >= 1
    assert run.counted_by_others(4, "bad_inclusion") >= 1


def test_altered_reports_are_refused(run: Run) -> None:
    assert run.acts(7, "alter-reports") + run.acts(3, "alter-reports") >= 1
    honest_to_reports = [i for i in run.statuses if i not in (3, 7)]
    assert (
        sum(
            int(run.statuses[i]["peer_errors"].get("bad_report_signature", 0))
            for i in honest_to_reports
        )
        >= 1
    )


def test_dropped_reports_still_reach_the_chain(run: Run) -> None:
    assert run.acts(4, "drop-reports") + run.acts(2, "drop-reports") >= 1
    # Every node the chain never excluded has a report in the chain's last 16 slots:
    # the member fallback delivered what the representative dropped.
    last = run.chain[-1][1].slot
    reporters = {
        r.node.hex()
        for _, b in run.chain
        if isinstance(b, Block) and b.slot > last - 16
        for r in b.reports
    }
    excluded = run.excluded_by_skip_blocks()
    for index, node_id in run.node_ids.items():
        if node_id not in excluded:
            assert node_id in reporters, (index, node_id[:16])


def test_apps_a_node_announces_but_does_not_run_are_ignored(run: Run) -> None:
    """Node 5's reports list the other nodes' apps with a heavy usage, signed: they are
    valid reports, carried on chain, but the apps they name were placed elsewhere, so
    every plan ignores those listings (``orchestrator/load.py``: the audit recomputed
    every plan under that rule), and the nodes that checked them counted them."""
    assert run.acts(5, "announce-apps") >= 1
    assert run.counted_by_others(5, "report_names_app_not_run") >= 1
    liar = run.node_ids[5]
    lies = [
        u.app.hex()
        for _, b in run.chain
        if isinstance(b, Block)
        for r in b.reports
        if r.node.hex() == liar
        for u in r.apps
    ]
    assert set(lies) & set(run.apps), "the lie reached the planner's inputs"


def test_a_migration_offer_no_block_carries_is_refused(run: Run) -> None:
    """Node 2 offers the others signed MIGRATEs of the apps that no block carries: each
    transfer server refuses with ``not_planned`` and counts it; none is accepted."""
    assert run.acts(2, "unplanned-migrations") >= 1
    verdicts = run.statuses[2]["hostile"]["verdicts"]
    assert verdicts.get("refused:not_planned", 0) >= 1, verdicts
    assert not [v for v in verdicts if v.startswith("accepted")], verdicts
    assert run.refused_by_others(2, "not_planned") >= 1
