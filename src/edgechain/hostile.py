"""Hostile node behaviours, for chaos experiments and the tests that show each one is
refused (issue 12). Never part of an honest node: ``node.py`` imports this module only
when ``EDGECHAIN_HOSTILE`` names behaviours (comma-separated), and a node started
without it never loads it (a test checks).

A behaviour rewrites what the node's honest engine sends (:meth:`Hostile.rewrite`) or
adds messages of its own once a tick (:meth:`Hostile.on_tick`); everything else about
the node stays honest, so the network sees one misbehaviour at a time. What the honest
nodes must do about each (``consensus/``, ``chain/validation.py``):

==================  =======================================  ==========================
behaviour           what the node does                       honest nodes
==================  =======================================  ==========================
invalid-vdf         its candidates carry a wrong VDF output  ``bad_vdf``; no vote, the
                    (re-signed, so only the VDF is wrong)    slot's skip block excludes
                                                             it
wrong-plan          its candidates carry a plan with one     ``bad_plan``; excluded
                    entry more than the rule gives           likewise
equivocate          sends its committee two different        ``equivocating_producer``
                    signed candidates for one slot
forged-votes        its votes carry a signature of another   ``bad_vote_signature``;
                    key                                      the vote does not count
duplicate-votes     sends each vote three times              ``duplicate_vote``; counted
                                                             once
outsider-votes      each slot it is not in the committee,    ``vote_outside_committee``
                    signs the slot's skip block and sends
                    the vote to the committee
alter-reports       as representative, raises the CPU of     ``bad_report_signature``;
                    the reports it relays                    the members' fallback
                                                             still gets theirs on chain
drop-reports        as representative, relays only its own   the members' fallback
                    report                                   (``consensus/reports.py``)
replay-commands     every 3 s re-gossips a signed command    ``command_replayed``
                    the chain already carries
replay-inclusions   every 3 s re-gossips the inclusion       ``bad_inclusion``; no block
                    request a block carried for a node that  carries it, the node stays
                    has left the set since (an exit or an    out until it asks anew
                    exclusion)                               (``chain/departures.py``)
announce-apps       its own reports list, with a heavy       ``report_names_app_not_run``;
                    usage, apps the chain placed on other    the planner ignores those
                    nodes (re-signed: a valid report)        listings (``orchestrator/
                                                             load.py``)
unplanned-          every 3 s offers another node's          the transfer server refuses
migrations          transfer server a signed MIGRATE of an   it, ``not_planned``
                    app to it that no block carries          (``transfer_refusals``);
                                                             nothing starts
==================  =======================================  ==========================
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from edgechain.chain.assembly import EMPTY_SIGNATURE, sign_as_producer, sign_vote
from edgechain.chain.model import (
    NO_REPORT_SIGNATURE,
    AppUsage,
    Block,
    InclusionRequest,
    PlanAction,
    PlanEntry,
    ResourceReport,
)
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.consensus.committee import get_committee_ids, get_skip_exclusion, get_skip_hash
from edgechain.consensus.messages import (
    CandidateMsg,
    CommandMsg,
    InclusionMsg,
    Outgoing,
    ReportMsg,
    Route,
    SkipVoteMsg,
    VoteMsg,
)
from edgechain.consensus.state import BlockState, get_current_slot, get_roles
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.report_key import sign_report_message
from edgechain.errors import LocalError, PeerError
from edgechain.node.config import HOSTILE_ENV as ENV
from edgechain.runtime.head_queries import get_transfer_address
from edgechain.runtime.protocol import (
    FrameKind,
    Offer,
    compute_offer_signing_root,
    encode_frame,
    encode_offer,
)
from edgechain.runtime.transfer_common import TransferTimeouts, close_writer, send_offer
from edgechain.types import AppId, NodeId, SecretKey, Slot

BEHAVIOURS = (
    "invalid-vdf",
    "wrong-plan",
    "equivocate",
    "forged-votes",
    "duplicate-votes",
    "outsider-votes",
    "alter-reports",
    "drop-reports",
    "replay-commands",
    "replay-inclusions",
    "announce-apps",
    "unplanned-migrations",
)
REPLAY_EVERY_MS = 3_000
OFFER_EVERY_MS = 3_000
MAX_ANNOUNCED = 16
ANNOUNCED_CPU_BP = 5_000


class HostileConfigError(LocalError):
    """``EDGECHAIN_HOSTILE`` names a behaviour that does not exist."""


def parse_behaviours(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in BEHAVIOURS]
    if unknown or not names:
        raise HostileConfigError(
            f"{ENV}={value!r}: behaviours are {', '.join(BEHAVIOURS)}; unknown: {unknown}"
        )
    return names


class Hostile:
    """The behaviours of one hostile node; ``get_engine`` returns its consensus engine
    (None before the node has one)."""

    def __init__(
        self,
        behaviours: Sequence[str],
        sk: SecretKey,
        node_id: NodeId,
        get_engine: Callable[[], Any],
    ) -> None:
        self.behaviours = frozenset(behaviours)
        self.sk = sk
        self.node_id = node_id
        self.get_engine = get_engine
        self.acts: Counter[str] = Counter()
        """What it did, by behaviour (``/status`` shows it as ``hostile``)."""
        self._forger = bls.keygen(os.urandom(32))
        self._outsider_slot = -1
        self._next_replay_ms = 0
        self._next_inclusion_ms = 0
        self._next_offer_ms = 0
        self.verdicts: Counter[str] = Counter()
        """unplanned-migrations: the verdicts its offers got (``refused:<reason>``)."""
        self._offers: set[asyncio.Task[None]] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "behaviours": sorted(self.behaviours),
            "acts": dict(self.acts),
            "verdicts": dict(self.verdicts),
        }

    # --- what the honest engine sends ----------------------------------------------

    def rewrite(self, outgoing: Outgoing) -> list[Outgoing]:
        message = outgoing.message
        if isinstance(message, CandidateMsg):
            return self._rewrite_candidate(outgoing, message.block)
        if isinstance(message, VoteMsg):
            return self._rewrite_vote(outgoing, message)
        if isinstance(message, ReportMsg):
            return self._rewrite_reports(outgoing, message)
        return [outgoing]

    def _rewrite_candidate(self, outgoing: Outgoing, block: Block) -> list[Outgoing]:
        if "invalid-vdf" in self.behaviours:
            output = bytearray(block.vdf_output)
            output[len(output) // 2] ^= 0x01
            block = self._resign(dataclasses.replace(block, vdf_output=bytes(output)))
            self.acts["invalid-vdf"] += 1
        if "wrong-plan" in self.behaviours:
            bogus = PlanEntry(PlanAction.PLACE, AppId(os.urandom(32)), b"", self.node_id)
            block = self._resign(dataclasses.replace(block, plan=(*block.plan, bogus)))
            self.acts["wrong-plan"] += 1
        sent = [dataclasses.replace(outgoing, message=CandidateMsg(block))]
        if "equivocate" in self.behaviours:
            twin = self._resign(dataclasses.replace(block, timestamp_ms=block.timestamp_ms + 1))
            sent.append(dataclasses.replace(outgoing, message=CandidateMsg(twin)))
            self.acts["equivocate"] += 1
        return sent

    def _resign(self, block: Block) -> Block:
        return sign_as_producer(
            dataclasses.replace(block, producer_signature=EMPTY_SIGNATURE), self.sk
        )

    def _rewrite_vote(self, outgoing: Outgoing, vote: VoteMsg) -> list[Outgoing]:
        if "forged-votes" in self.behaviours:
            forged = sign_vote(vote.block_hash, self._forger)
            vote = dataclasses.replace(vote, signature=forged)
            outgoing = dataclasses.replace(outgoing, message=vote)
            self.acts["forged-votes"] += 1
        if "duplicate-votes" in self.behaviours:
            self.acts["duplicate-votes"] += 1
            return [outgoing, outgoing, outgoing]
        return [outgoing]

    def _rewrite_reports(self, outgoing: Outgoing, message: ReportMsg) -> list[Outgoing]:
        if "announce-apps" in self.behaviours:
            reports = tuple(self._announce(r) for r in message.reports)
            message = ReportMsg(reports)
            outgoing = dataclasses.replace(outgoing, message=message)
        own = tuple(r for r in message.reports if r.node == self.node_id)
        others = tuple(r for r in message.reports if r.node != self.node_id)
        if not others:
            return [outgoing]
        if "drop-reports" in self.behaviours:
            self.acts["drop-reports"] += len(others)
            return [dataclasses.replace(outgoing, message=ReportMsg(own))] if own else []
        if "alter-reports" in self.behaviours:
            altered = tuple(_raise_cpu(r) for r in others)
            self.acts["alter-reports"] += len(altered)
            return [dataclasses.replace(outgoing, message=ReportMsg(own + altered))]
        return [outgoing]

    def _announce(self, report: ResourceReport) -> ResourceReport:
        """Our own report, listing also apps the head places on other nodes."""
        engine = self.get_engine()
        head: BlockState | None = engine.get_head_state() if engine is not None else None
        if report.node != self.node_id or head is None:
            return report
        listed = {u.app for u in report.apps}
        others = [
            r.app
            for r in head.registry.records
            if r.node is not None and r.node != self.node_id and r.app not in listed
        ][:MAX_ANNOUNCED]
        if not others:
            return report
        fake = tuple(
            AppUsage(app, ANNOUNCED_CPU_BP, 1_000, 0, 0, report.timestamp_ms) for app in others
        )
        apps = tuple(sorted((*report.apps, *fake), key=lambda u: u.app))
        unsigned = dataclasses.replace(report, apps=apps, signature=NO_REPORT_SIGNATURE)
        signature = sign_report_message(self.sk, compute_report_signing_root(unsigned))
        self.acts["announce-apps"] += len(fake)
        signed = dataclasses.replace(unsigned, signature=signature)
        # Signed by this process, outside its engine: the engine must know it for its
        # own, or a block carrying it reads as another process with our key
        # (consensus/own_reports.py) and the node stops.
        engine.reports.own_reports.add(signed)
        return signed

    # --- its own messages ------------------------------------------------------------

    def on_tick(self, now: int) -> list[Outgoing]:
        engine = self.get_engine()
        if engine is None or engine.params is None or engine.head is None:
            return []
        sent: list[Outgoing] = []
        if "outsider-votes" in self.behaviours:
            sent += self._outsider_vote(engine, now)
        if "replay-commands" in self.behaviours and now >= self._next_replay_ms:
            self._next_replay_ms = now + REPLAY_EVERY_MS
            sent += self._replay_command(engine)
        if "replay-inclusions" in self.behaviours and now >= self._next_inclusion_ms:
            self._next_inclusion_ms = now + REPLAY_EVERY_MS
            sent += self._replay_inclusion(engine)
        if "unplanned-migrations" in self.behaviours and now >= self._next_offer_ms:
            self._next_offer_ms = now + OFFER_EVERY_MS
            self._offer_unplanned(engine)
        return sent

    def _offer_unplanned(self, engine: Any) -> None:
        """Offer each other validator in turn a MIGRATE to it, from us, of an app the
        head registry holds, signed by us, against the head block, which carries no
        such entry: the offer passes every check but ``is_planned``."""
        head: BlockState | None = engine.get_head_state()
        if head is None or not head.registry.records:
            return
        targets = [
            (info.node, address)
            for info in head.validators.members
            if info.node != self.node_id and (address := get_transfer_address(info)) is not None
        ]
        if not targets:
            return
        turn = self.acts["unplanned-migrations"]
        node, (host, port) = targets[turn % len(targets)]
        records = head.registry.records
        record = records[turn % len(records)]
        entry = PlanEntry(PlanAction.MIGRATE, record.app, self.node_id, node)
        root = compute_offer_signing_root(head.block_hash, entry, record.spec)
        offer = Offer(head.block_hash, entry, record.spec, bls.sign(self.sk, root))
        self.acts["unplanned-migrations"] += 1
        task = asyncio.get_running_loop().create_task(
            self._send_offer(host, port, encode_frame(FrameKind.OFFER, encode_offer(offer)))
        )
        self._offers.add(task)
        task.add_done_callback(self._offers.discard)

    async def _send_offer(self, host: str, port: int, frame: bytes) -> None:
        try:
            _, writer, verdict = await send_offer(host, port, frame, TransferTimeouts())
        except PeerError as exc:
            self.verdicts[f"error:{exc}"[:60]] += 1
            return
        # Accepted would be the honest node's bug: we send no state, it times out.
        self.verdicts[f"{verdict.verdict.name.lower()}:{verdict.reason}"] += 1
        await close_writer(writer)

    def _outsider_vote(self, engine: Any, now: int) -> list[Outgoing]:
        params, head = engine.params, engine.get_head_state()
        slot = get_current_slot(params, now)
        if head is None or slot <= head.slot or slot == self._outsider_slot:
            return []
        roles = get_roles(engine.memo, head, Slot(slot), params.committee_size)
        members = get_committee_ids(engine.memo, head, Slot(slot), roles)
        if self.node_id in members:
            return []
        self._outsider_slot = slot
        excluded = get_skip_exclusion(params, head, roles)
        skip_hash = get_skip_hash(engine.memo, head.block_hash, Slot(slot), excluded)
        vote = SkipVoteMsg(
            head.block_hash, Slot(slot), excluded, self.node_id, sign_vote(skip_hash, self.sk)
        )
        self.acts["outsider-votes"] += 1
        return [Outgoing(vote, Route.DIRECT, tuple(members))]

    def _replay_command(self, engine: Any) -> list[Outgoing]:
        for block_hash in reversed(engine.get_chain()):
            block = engine.blocks.get(block_hash)
            commands = getattr(block, "commands", ())
            if commands:
                self.acts["replay-commands"] += 1
                return [Outgoing(CommandMsg(commands[0]), Route.GOSSIP)]
        return []

    def _replay_inclusion(self, engine: Any) -> list[Outgoing]:
        """The newest request a block of the head chain carried for a node the head
        state records as departed since (signed before it left), in turn over those
        nodes. Requests of the genesis are signed before any chain (nonce 0), which
        every node drops unchecked: they are not replayed."""
        head: BlockState | None = engine.get_head_state()
        if head is None or not head.departures:
            return []
        stale: dict[NodeId, InclusionRequest] = {}
        for block_hash in engine.get_chain():
            for req in getattr(engine.blocks.get(block_hash), "inclusions", ()):
                node = compute_node_id(req.public_key)
                left = head.departures.get(node)
                if left is not None and 0 < req.nonce < left:
                    stale[node] = req
        if not stale:
            return []
        nodes = sorted(stale)
        req = stale[nodes[self.acts["replay-inclusions"] % len(nodes)]]
        self.acts["replay-inclusions"] += 1
        return [Outgoing(InclusionMsg(req), Route.GOSSIP)]


def _raise_cpu(report: ResourceReport) -> ResourceReport:
    return dataclasses.replace(report, cpu_bp=(report.cpu_bp + 2_500) % 10_001)


def load_hostile(
    value: str, sk: SecretKey, node_id: NodeId, get_engine: Callable[[], Any]
) -> Hostile:
    return Hostile(parse_behaviours(value), sk, node_id, get_engine)
