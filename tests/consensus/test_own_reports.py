"""Another process signing as this node is caught from the chain (own_reports.py).

A block that carries a report of ours this process did not sign, for a slot after its
first own report, is an identity clash; a restarted node's earlier reports and its own
reports never are. The live form (a copied data directory, both copies running) is
``tests/cli/test_identity_clash_live.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from edgechain.chain.assembly import make_report
from edgechain.chain.model import Block, ResourceReport
from edgechain.consensus.messages import IdentityClash, Output
from edgechain.consensus.own_reports import (
    OWN_REPORT_SLOTS_KEPT,
    RESTART_MARGIN_SLOTS,
    OwnReports,
)
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.sim import faults
from edgechain.sim.runner import SimConfig, SimNode, Simulation
from edgechain.types import Slot

SK = bls.keygen(b"\x07" * 32)


def _report(slot: int, cpu_bp: int = 100) -> ResourceReport:
    return make_report(
        SK, Slot(slot), timestamp_ms=slot * 1_000, cpu_bp=cpu_bp, ram_bp=0, disk_bp=0,
        rtt_us=0, apps=(),
    )  # fmt: skip


def test_a_report_of_ours_we_did_not_sign_is_foreign_after_our_first() -> None:
    own = OwnReports()
    assert not own.is_foreign(_report(5))  # nothing signed yet: no judgement
    own.add(_report(8))
    own.add(_report(12))
    assert not own.is_foreign(_report(12))  # ours
    assert own.is_foreign(_report(12, cpu_bp=7))  # same slot, other content
    assert own.is_foreign(_report(16))  # a slot we did not report
    # A restart: the earlier incarnation's reports are for our first slot or before
    # (one more is let through: a store that lost its last block).
    assert not own.is_foreign(_report(8, cpu_bp=7))
    assert not own.is_foreign(_report(9, cpu_bp=7))
    assert not own.is_foreign(_report(4, cpu_bp=7))


def test_reports_older_than_the_window_are_forgotten_and_not_judged() -> None:
    own = OwnReports()
    own.add(_report(10))
    own.add(_report(20))
    own.add(_report(20 + OWN_REPORT_SLOTS_KEPT))
    assert set(own.roots) == {Slot(20), Slot(20 + OWN_REPORT_SLOTS_KEPT)}
    assert not own.is_foreign(_report(15, cpu_bp=7))  # below what we remember
    assert own.is_foreign(_report(20, cpu_bp=7))


def test_a_simulated_run_with_crashes_and_restarts_raises_no_clash_until_one_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The churn scenario kills -9 and restarts nodes (a fresh engine that replays its
    store and signs again): no engine takes its earlier incarnation for a clone. Then
    a block carrying a report with one node's key that its engine did not sign (as a
    copy of its data directory would) is a clash for that engine, once."""
    restarted: list[int] = []
    real_restart = faults.restart

    def restart(sim: Simulation, node: SimNode) -> None:
        restarted.append(node.index)
        real_restart(sim, node)

    monkeypatch.setattr(faults, "restart", restart)
    sim = Simulation(SimConfig(nodes=12, committee=4, slots=40, seed=2, faults="churn"))
    result = sim.run()
    assert len(restarted) >= 3, restarted
    assert result.summary["violations"] == []
    assert all(node.engine.reports.clash is None for node in sim.nodes)
    node = next(n for n in sim.nodes if n.engine.reports.stats.reports_signed > 0)
    relay = node.engine.reports
    own_node = compute_node_id(node.ident.pk)
    blocks = [b for b in sim.blocks.values() if isinstance(b, Block)]
    [carrier] = [
        b for b in blocks
        for r in b.reports
        if r.node == own_node and relay.own_reports.first_slot is not None
        and r.slot > relay.own_reports.first_slot + RESTART_MARGIN_SLOTS
        and not relay.own_reports.is_foreign(r)
    ][:1]  # fmt: skip
    out = Output()
    relay.check_own_reports(carrier, sim.memo.get_block_hash(carrier), out)
    assert out.events == [] and relay.clash is None  # our own report: no clash
    mine = next(r for r in carrier.reports if r.node == own_node)
    forged = make_report(
        node.ident.sk, mine.slot, timestamp_ms=mine.timestamp_ms, cpu_bp=mine.cpu_bp + 1,
        ram_bp=mine.ram_bp, disk_bp=mine.disk_bp, rtt_us=mine.rtt_us, apps=mine.apps,
    )  # fmt: skip
    other = dataclasses.replace(
        carrier, reports=tuple(forged if r is mine else r for r in carrier.reports)
    )
    other_hash = sim.memo.get_block_hash(other)
    relay.check_own_reports(other, other_hash, out)
    assert out.events == [IdentityClash(other_hash, other.slot, mine.slot)]
    relay.check_own_reports(other, other_hash, out)
    assert len(out.events) == 1  # once
