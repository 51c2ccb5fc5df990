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
chance that one never comes is about 3 in 10 000 per behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edgechain.chain.model import Block, SkipBlock
from edgechain.lab.chain_audit import AuditResult, audit_stores
from edgechain.lab.elections import load_chain
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.lab.testnet_launcher import run_testnet

pytestmark = pytest.mark.xdist_group("testnet")

HOSTILE = {
    1: "invalid-vdf",
    2: "forged-votes",
    3: "outsider-votes,duplicate-votes",
    4: "replay-commands,drop-reports",
    5: "equivocate",
    6: "wrong-plan",
    7: "alter-reports",
}
SLOTS = 60


@dataclass(frozen=True)
class Run:
    summary: dict[str, Any]
    statuses: dict[int, dict[str, Any]]
    """Node index -> its final ``/status``."""
    node_ids: dict[int, str]
    chain: list[Any]
    """The reference node's chain, genesis exclusive: (hash, block) pairs."""
    audit: AuditResult

    def counted_by_others(self, offender: int, reason: str) -> int:
        return sum(
            int(status["peer_errors"].get(reason, 0))
            for index, status in self.statuses.items()
            if index != offender
        )

    def acts(self, offender: int, behaviour: str) -> int:
        hostile = self.statuses[offender]["hostile"]
        assert hostile is not None and behaviour in hostile["behaviours"]
        return int(hostile["acts"].get(behaviour, 0))

    def excluded_by_skip_blocks(self) -> set[str]:
        return {b.excluded.hex() for _, b in self.chain if isinstance(b, SkipBlock)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("hostile")
    config = LaunchConfig(
        nodes=8,
        committee=3,
        slot_duration=1.2,
        slots=SLOTS,
        join_interval=0.3,
        run_dir=base / "run",
        progress=False,
        hostile=tuple(HOSTILE.items()),
    )
    summary = run_testnet(config)
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
    yield Run(summary, statuses, node_ids, chain, audit)


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


def test_altered_reports_are_refused(run: Run) -> None:
    assert run.acts(7, "alter-reports") >= 1
    assert run.counted_by_others(7, "bad_report_signature") >= 1


def test_dropped_reports_still_reach_the_chain(run: Run) -> None:
    assert run.acts(4, "drop-reports") >= 1
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
