"""The hostile behaviours' rewrites (``hostile.py``), message by message, and the rule
that an honest node never loads the module. Their effect on real nodes is
``tests/lab/test_hostile_live.py``."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from edgechain.chain.assembly import make_report, sign_vote
from edgechain.chain.encoding import compute_vote_message
from edgechain.chain.model import ResourceReport, RuntimeKind
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.consensus.messages import Outgoing, ReportMsg, Route, VoteMsg
from edgechain.consensus.own_reports import OwnReports
from edgechain.crypto import bls
from edgechain.crypto.report_key import get_report_public_key, verify_report_signature
from edgechain.hostile import BEHAVIOURS, Hostile, HostileConfigError, parse_behaviours
from edgechain.orchestrator.load import get_unclaimed_apps
from edgechain.orchestrator.registry import AppRecord, Registry
from edgechain.runtime.samples import get_counter_spec
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, SecretKey, Slot

ME = make_identity(1)
OTHER = make_identity(2)
BLOCK = BlockHash(b"\x07" * 32)


def _hostile(*behaviours: str) -> Hostile:
    return Hostile(behaviours, ME.sk, ME.node, lambda: None)


def _vote() -> Outgoing:
    vote = VoteMsg(BLOCK, Slot(3), ME.node, sign_vote(BLOCK, ME.sk))
    return Outgoing(vote, Route.DIRECT, (OTHER.node,))


def _reports() -> Outgoing:
    def report(sk: SecretKey) -> ResourceReport:
        return make_report(
            sk, Slot(4), timestamp_ms=1, cpu_bp=100, ram_bp=1, disk_bp=1, rtt_us=1, apps=()
        )

    return Outgoing(ReportMsg((report(ME.sk), report(OTHER.sk))), Route.DIRECT, (OTHER.node,))


def test_behaviour_names_are_checked() -> None:
    assert parse_behaviours(" forged-votes,duplicate-votes ,forged-votes") == (
        "forged-votes",
        "duplicate-votes",
    )
    for bad in ("", "be-nice", "forged-votes,be-nice"):
        with pytest.raises(HostileConfigError):
            parse_behaviours(bad)
    assert len(set(BEHAVIOURS)) == len(BEHAVIOURS)


def test_a_forged_vote_does_not_verify_under_the_voters_key() -> None:
    (sent,) = _hostile("forged-votes").rewrite(_vote())
    assert isinstance(sent.message, VoteMsg)
    message = compute_vote_message(BLOCK)
    assert not bls.verify(ME.pk, message, sent.message.signature)
    assert bls.verify(ME.pk, message, _vote().message.signature)  # type: ignore[union-attr]


def test_duplicate_votes_send_one_vote_three_times() -> None:
    sent = _hostile("duplicate-votes").rewrite(_vote())
    assert sent == [_vote()] * 3


def test_dropped_reports_keep_only_the_nodes_own() -> None:
    (sent,) = _hostile("drop-reports").rewrite(_reports())
    assert isinstance(sent.message, ReportMsg)
    assert [r.node for r in sent.message.reports] == [ME.node]


def test_altered_reports_no_longer_carry_a_valid_signature() -> None:
    hostile = _hostile("alter-reports")
    (sent,) = hostile.rewrite(_reports())
    assert isinstance(sent.message, ReportMsg)
    mine, theirs = sent.message.reports
    assert verify_report_signature(
        get_report_public_key(ME.sk), compute_report_signing_root(mine), mine.signature
    )
    assert not verify_report_signature(
        get_report_public_key(OTHER.sk), compute_report_signing_root(theirs), theirs.signature
    )
    assert hostile.to_json() == {
        "behaviours": ["alter-reports"],
        "acts": {"alter-reports": 1},
        "verdicts": {},
    }


def test_announced_apps_are_signed_into_the_nodes_own_report() -> None:
    """``announce-apps``: our own report also lists the head's apps placed elsewhere,
    re-signed (a valid report); the honest planner's rule makes it count for nothing."""
    theirs = AppRecord(AppId(b"\x05" * 32), get_counter_spec(RuntimeKind.PROCESS), OTHER.node)
    registry = Registry((theirs,))
    head = SimpleNamespace(registry=registry)  # what the behaviour reads of the head
    own = OwnReports()
    engine = SimpleNamespace(get_head_state=lambda: head, reports=SimpleNamespace(own_reports=own))
    hostile = Hostile(("announce-apps",), ME.sk, ME.node, lambda: engine)
    (sent,) = hostile.rewrite(_reports())
    assert isinstance(sent.message, ReportMsg)
    mine, other = sent.message.reports
    assert [u.app for u in mine.apps] == [theirs.app]
    assert verify_report_signature(
        get_report_public_key(ME.sk), compute_report_signing_root(mine), mine.signature
    )
    assert other == _reports().message.reports[1]  # type: ignore[union-attr]
    assert get_unclaimed_apps(registry, mine, mine.slot) == [theirs.app]
    # Its engine knows the re-signed report for its own: a block carrying it is no
    # identity clash (consensus/own_reports.py).
    assert own.roots[mine.slot] == {compute_report_signing_root(mine)}


def test_other_messages_pass_untouched() -> None:
    assert _hostile("invalid-vdf").rewrite(_vote()) == [_vote()]


def test_an_honest_node_never_imports_the_hostile_module() -> None:
    code = (
        "import sys, edgechain.node, edgechain.cli.node, edgechain.node_daemon;"
        "sys.exit('edgechain.hostile' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
