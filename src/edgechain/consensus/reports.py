"""Resource reports and the cluster relay (§3.2 overlay).

Every validator sends a signed report to its cluster representative (k-means overlay
seeded by the head's seed) ``REPORT_DELAY_BP`` of a slot after the head for the
previous slot is known, or at 2/3 of that slot at the latest, every
``report_interval_slots`` slots at its own phase.
Representatives batch-verify and forward to the producer of the report's slot once
their whole cluster reported, or ``RELAY_WAIT_BP`` of a slot after the first report of
the batch arrived, or at ``slot start + half the VDF target``, whichever comes first;
what arrives after a batch left follows on its own at once. The producer pools what
verifies for its candidate.

Why the short wait. A member signs its report once its head reaches the previous slot,
so a cluster completes only when its slowest member has the block: on 50 real nodes at
16 s slots (block propagation p99 1.7 s) every early report waited for that member, and
report-to-producer p99 was 1.7 s, past the 10 % of a slot the issue asks for. Waiting
5 % of a slot still batches the members that arrive together (one message per cluster
in the usual case) and bounds what any report waits; a straggler costs one more small
message to the producer.

Why the report waits. Every node gets the previous slot's block within a second or two
of the others and validates it at once; a report signed on arrival then travels
through that burst, on nodes sharing a CPU and on their representatives alike. On 50
real nodes at 16 s slots on one host, report-to-producer p99 followed block
propagation p99 (1.7-2.5 s, 11-16 % of the slot). The producer of the next slot needs
the report only by its own block, three quarters of a slot and more later, so a node
signs it ``REPORT_DELAY_BP`` (15 %) of a slot after its head reached the previous slot,
or at 2/3 of that slot at the latest: the figures it carries are as fresh as ever (they
are read when it is signed), and it leaves after the burst.

A live node must never lose its reports because of its representative: a node that
contributes nothing to the chain for a while is taken for down and its apps moved. Two
rules make the relay survive a silent, byzantine or lagging representative.

**Member fallback.** A member remembers its latest own report until it signs a newer
one, and checks at each head whether the head chain carries it (the head state's
``reports`` holds an entry of ours with ``slot >=`` the report's): a reorg may drop the
block that did. The deadline is the first of: the head reaching the report's slot (the block
of that slot, or a later one, was accepted without it) and the start of the next slot
while the head is still before it. In the usual case the relay has delivered and the
block carries the report, so nothing is sent twice. Past the deadline the member signs
a *fresh* report for the next slot it would report for and sends it straight to that
slot's producer (roles on its own head), at most once per slot, re-targeting each
following slot's producer until one is in. Fresh rather than the old one, because a
block carries only reports of its own slot (``chain/validation.py`` refuses
``rep.slot != block.slot``, and relays and producers pool by slot): the late report
could never be included, and a new signature per missed slot is cheap. A direct copy
that duplicates a representative's forward is harmless: pools are keyed by node.

**Producer pools follow the head.** A node pools reports for its own candidate only
while, on its *current* head, it is the producer of their slot. A representative one
block behind computes roles on an older head and may take itself for the producer of
the slot; it used to keep those reports and never forward them. Now, whenever the head
changes, every pool for a slot the head has not reached whose producer on the new head
is someone else is sent to that producer and dropped here (keep, then forward). We
chose this over "pool only when the head is the slot's parent" because a slot may have
no block at all (the head two slots back is then the right parent) and because a reorg
can move the producer role just as a lagging head does; the head-change rule covers
both and sends nothing in the usual case. A representative that forwards to a wrong
*other* node needs no rule: that node is not the producer on its own head either, so it
relays the reports like a representative.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.chain.assembly import make_report
from edgechain.chain.model import AnyBlock, Block, ChainParams, FinalityVote, ResourceReport
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.cluster.kmeans import Clustering, compute_clusters
from edgechain.consensus.context import EngineContext, LocalUsage
from edgechain.consensus.finality_votes import choose_vote
from edgechain.consensus.messages import (
    IdentityClash,
    LastVoteChanged,
    Outgoing,
    Output,
    ReportMsg,
    Route,
)
from edgechain.consensus.own_reports import OwnReports
from edgechain.consensus.state import (
    BlockState,
    Memo,
    get_candidate_deadline_ms,
    get_current_slot,
    get_roles,
    get_slot_start_ms,
)
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.report_key import get_report_public_key
from edgechain.errors import PeerError, RejectReason
from edgechain.orchestrator.load import get_unclaimed_apps
from edgechain.types import BlockHash, NodeId, Slot


def get_forward_time(params: ChainParams, slot: int) -> int:
    """When a representative forwards an incomplete cluster's reports for ``slot``."""
    half_vdf = params.slot_duration_ms * params.vdf_target_bp // 20_000
    return get_slot_start_ms(params, slot) + half_vdf


REPORT_DELAY_BP = 1_500
"""How long after its head reached the previous slot a node signs its report, in basis
points of the slot (module docstring, "Why the report waits"); at 2/3 of the previous
slot at the latest, as before."""

RELAY_WAIT_BP = 500
"""How long a representative holds a batch for the rest of its cluster, in basis points
of the slot, counted from the batch's first report (module docstring)."""


def get_relay_deadline(params: ChainParams, slot: int, first_arrival: int) -> int:
    """When a representative forwards an incomplete batch for ``slot`` whose first
    report arrived at ``first_arrival``: after the relay wait, by the forward time."""
    wait = params.slot_duration_ms * RELAY_WAIT_BP // 10_000
    return min(first_arrival + wait, get_forward_time(params, slot))


def get_clustering(memo: Memo, state: BlockState, nodes_per_cluster: int) -> Clustering:
    """The §3.2 overlay of the slot after ``state`` (k-means seeded by its seed), once
    per block in ``memo``: what members and representatives route reports by."""
    return memo.get(
        ("clusters", state.block_hash),
        lambda: compute_clusters(
            state.validators.get_node_ids(), state.seed, nodes_per_cluster, state.coordinates
        ),
    )


def is_report_included(state: BlockState, report: ResourceReport) -> bool:
    """Whether the chain up to ``state`` carries ``report`` or a later one of its node."""
    reports = state.reports  # sorted by node (merge_reports)
    i = bisect_left(reports, report.node, key=lambda r: r.node)
    return i < len(reports) and reports[i].node == report.node and reports[i].slot >= report.slot


def is_report_due(node: NodeId, slot: int, interval_slots: int) -> bool:
    """Whether ``node`` reports for ``slot``: every ``interval_slots`` at its own phase."""
    return (slot + node[0]) % max(1, interval_slots) == 0


def get_due_count(members: Iterable[NodeId], slot: int, interval_slots: int) -> int:
    """How many of ``members`` report for ``slot``."""
    return sum(1 for member in members if is_report_due(member, slot, interval_slots))


@dataclass
class RelayStats:
    """The relay's own counters (the engine's ``EngineStats`` counts blocks and votes)."""

    reports_signed: int = 0
    """Own reports signed, for the representative or for the fallback."""
    direct_fallbacks: int = 0
    """Own reports sent straight to a producer because the relay had not delivered."""
    pools_handed_over: int = 0
    """Producer pools sent on because the new head elects another producer."""


class ReportRelay:
    """This node's own reports, and the pools it keeps as representative and producer."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.local_usage = LocalUsage()
        self.report_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.unverified_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.forward_buffer: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.first_arrival: dict[Slot, int] = {}
        """When the first report of each slot's pending batch reached the buffer."""
        self.forwarded: set[Slot] = set()
        self.last_reported_slot = 0
        self.own_report: ResourceReport | None = None
        """Our latest report until the head chain carries it (the fallback's subject)."""
        self.fallback_slot = 0
        """The last slot whose producer got a direct fallback from us (once per slot)."""
        self.last_vote: FinalityVote | None = ctx.config.last_vote
        """Our latest finality vote (``consensus/finality_votes.py``)."""
        self.last_vote_genesis: BlockHash | None = ctx.config.last_vote_genesis
        """The genesis :attr:`last_vote` was cast on, until checked against ours."""
        self.head_seen: tuple[int, int] = (-1, 0)
        """(slot, when): the head's slot and the time this node first saw it there."""
        self.stats = RelayStats()
        self.own_reports = OwnReports()
        """Every report this process signed (another process with our key: own_reports.py)."""
        self.clash: IdentityClash | None = None

    def check_own_reports(self, block: AnyBlock, block_hash: BlockHash, out: Output) -> None:
        """An accepted ``block`` carrying a report of ours another process signed: one
        :class:`IdentityClash` event, the first time."""
        if self.clash is not None or not isinstance(block, Block):
            return
        for report in block.reports:
            if report.node == self.ctx.node_id and self.own_reports.is_foreign(report):
                self.clash = IdentityClash(block_hash, block.slot, report.slot)
                out.events.append(self.clash)
                return

    def get_clustering(self, state: BlockState) -> Clustering:
        params = self.ctx.params
        assert params is not None
        return get_clustering(self.ctx.memo, state, params.nodes_per_cluster)

    def maybe_send_report(self, slot: Slot, now: int, out: Output) -> None:
        """Report for the next producer: ``REPORT_DELAY_BP`` of a slot after the head for
        ``t - 1`` is known, or at 2/3 of slot ``t - 1`` at the latest; past the fallback
        deadline, straight to it."""
        ctx = self.ctx
        params = ctx.params
        head = ctx.get_head_state()
        assert params is not None and head is not None
        target = Slot(slot + 1 if now >= get_candidate_deadline_ms(params, slot) else slot)
        target = Slot(max(target, head.slot + 1))
        if not ctx.config.send_reports or ctx.node_id not in head.validators:
            self.own_report = None
            return
        if head.slot != self.head_seen[0]:
            self.head_seen = (head.slot, now)
        if now < self.get_report_time(target):
            return
        # Decided before a new report replaces ``own_report``: whether the last one
        # missed its block, i.e. whether the relay may be failing us.
        fall_back = self.is_fallback_due(head, now)
        if target > self.last_reported_slot:
            self.last_reported_slot = target
            if is_report_due(ctx.node_id, target, params.report_interval_slots):
                report = self.sign_report(target, now, head, out)
                self.send_to_representative(report, head, now, out)
                if fall_back:
                    self.send_direct(report, head, out)
                return
        if fall_back and target > self.fallback_slot:
            self.send_direct(self.sign_report(target, now, head, out), head, out)

    def get_report_time(self, target: Slot) -> int:
        """When our report for ``target`` may leave: ``REPORT_DELAY_BP`` of a slot after
        the head reached ``target - 1``, by 2/3 of slot ``target - 1`` (module
        docstring); at once for a head seen before that slot began."""
        params = self.ctx.params
        assert params is not None
        head_slot, seen_at = self.head_seen
        if head_slot != target - 1:
            return 0
        delay = params.slot_duration_ms * REPORT_DELAY_BP // 10_000
        return min(seen_at + delay, get_candidate_deadline_ms(params, target - 1))

    def is_fallback_due(self, head: BlockState, now: int) -> bool:
        """Whether our latest report is past its deadline and not on the head chain.

        The report stays our subject once a head carries it, until a newer one replaces
        it: a reorg may drop the block that carried it. It used to be forgotten at the
        first head that carried it; a simulated run (block format 14, seed 6 of the
        crash scenario) accepted a slot's block with our report, the network built the
        next block on its parent, and the report was lost with no fallback: our next
        turn was a whole report interval later, our lease (F slots after our last
        contribution) ran out, and the watchdog froze our apps for a slot.
        """
        params = self.ctx.params
        own = self.own_report
        assert params is not None
        if own is None or is_report_included(head, own):
            return False
        return head.slot >= own.slot or get_current_slot(params, now) > own.slot

    def sign_report(self, slot: Slot, now: int, head: BlockState, out: Output) -> ResourceReport:
        """Our report for ``slot``, carrying our finality vote on ``head``. A new vote
        is announced (``LastVoteChanged``) before the report that carries it leaves:
        the node persists it first, so a restart cannot vote twice for an epoch."""
        ctx = self.ctx
        u = self.local_usage
        if self.last_vote_genesis is not None:
            # A vote of another chain (a data directory reused for a new one) would
            # hold our votes back until its epoch: dropped once our genesis is known.
            if self.last_vote_genesis != ctx.get_genesis_hash():
                self.last_vote = None
            self.last_vote_genesis = None
        vote = self.last_vote
        if head.finality is not None:
            vote = choose_vote(self.last_vote, head.finality)
            if vote != self.last_vote and vote is not None:
                self.last_vote = vote
                out.events.insert(0, LastVoteChanged(vote))
        report = make_report(
            ctx.sk, slot, timestamp_ms=now, cpu_bp=u.cpu_bp, ram_bp=u.ram_bp,
            disk_bp=u.disk_bp, rtt_us=u.rtt_us, apps=u.apps, pressure_bp=u.pressure_bp,
            vote=vote, coordinate=u.coordinate, state_room_bytes=u.state_room_bytes,
        )  # fmt: skip
        ctx.memo.signatures.add_own_report(
            get_report_public_key(ctx.sk), compute_report_signing_root(report), report.signature
        )
        self.own_reports.add(report)
        self.own_report = report
        self.stats.reports_signed += 1
        return report

    def send_to_representative(
        self, report: ResourceReport, head: BlockState, now: int, out: Output
    ) -> None:
        ctx = self.ctx
        representative = self.get_clustering(head).get_representative(ctx.node_id)
        if representative == ctx.node_id:
            self.route_report(report, head, now)
            self.verify_pool(head)
        else:
            out.messages.append(Outgoing(ReportMsg((report,)), Route.DIRECT, (representative,)))

    def send_direct(self, report: ResourceReport, head: BlockState, out: Output) -> None:
        """The fallback: ``report`` straight to its slot's producer on ``head``."""
        ctx = self.ctx
        params = ctx.params
        assert params is not None and head.slot < report.slot
        self.fallback_slot = report.slot
        self.stats.direct_fallbacks += 1
        roles = get_roles(ctx.memo, head, report.slot, params.committee_size)
        if roles.producer == ctx.pk:
            self.report_pool.setdefault(report.slot, {})[report.node] = report
        else:
            producer = compute_node_id(roles.producer)
            out.messages.append(Outgoing(ReportMsg((report,)), Route.DIRECT, (producer,)))

    def route_report(self, report: ResourceReport, head: BlockState, now: int) -> None:
        params = self.ctx.params
        assert params is not None
        if head.slot < report.slot:
            roles = get_roles(self.ctx.memo, head, report.slot, params.committee_size)
            if roles.producer == self.ctx.pk:
                self.unverified_pool.setdefault(report.slot, {})[report.node] = report
                return
        self.forward_buffer.setdefault(report.slot, {})[report.node] = report
        self.first_arrival.setdefault(report.slot, now)

    def on_reports(self, reports: Iterable[ResourceReport], now: int, out: Output) -> None:
        params = self.ctx.params
        head = self.ctx.get_head_state()
        assert params is not None and head is not None
        current = get_current_slot(params, now)
        for report in reports:
            # A report from outside our validator set may be honest (a node we have just
            # seen excluded, or one not yet included on our branch): dropped, not blamed.
            if report.node in head.validators and current <= report.slot <= current + 2:
                self.route_report(report, head, now)
        self.maybe_forward_reports(now, out)
        bad = self.verify_pool(head)
        if bad:
            raise PeerError(RejectReason.BAD_REPORT_SIGNATURE, f"{bad} reports")

    def verify_reports(self, head: BlockState, reports: list[ResourceReport]) -> list[bool]:
        """Check signatures of reports from members of ``head``'s validator set."""
        items = []
        for report in reports:
            info = head.validators.get(report.node)
            assert info is not None, "callers keep only reports from validators"
            items.append((info.report_key, compute_report_signing_root(report), report.signature))
        verdicts = self.ctx.memo.signatures.verify_reports(items)
        for report, ok in zip(reports, verdicts, strict=True):
            # Signed, so relayed and carried; but apps its node may not list (it does not
            # run them as far as the chain knows) are ignored by the planner, and counted.
            unclaimed = get_unclaimed_apps(head.registry, report, report.slot) if ok else []
            if unclaimed:
                self.ctx.stats.peer_errors[RejectReason.REPORT_NAMES_APP_NOT_RUN] += len(unclaimed)
        return verdicts

    def verify_pool(self, head: BlockState) -> int:
        """Check the producer's newly pooled reports as one batch; drop bad ones."""
        bad = 0
        for slot, pool in self.unverified_pool.items():
            reports = [r for r in pool.values() if r.node in head.validators]
            for report, ok in zip(reports, self.verify_reports(head, reports), strict=True):
                if ok:
                    self.report_pool.setdefault(slot, {})[report.node] = report
                else:
                    bad += 1
        self.unverified_pool.clear()
        return bad

    def maybe_forward_reports(self, now: int, out: Output) -> None:
        """Representative: batch the cluster's reports to the producer of their slot."""
        ctx = self.ctx
        params = ctx.params
        head = ctx.get_head_state()
        assert params is not None and head is not None
        for slot, buffered in list(self.forward_buffer.items()):
            if not buffered or head.slot >= slot:
                continue
            # Complete once every member due to report for this slot has: a member
            # reports every ``report_interval_slots`` slots at its own phase, so
            # waiting for the whole cluster held every batch until the forward time.
            # A node that is no representative on its head is only passing on reports
            # sent to it on another head (a member or a representative a block ahead
            # or behind): there is no cluster to wait for, and waiting held them until
            # the forward time (most of the 1 % tail at 16 s slots, 200 nodes).
            clustering = self.get_clustering(head)
            if ctx.node_id in head.validators and clustering.is_representative(ctx.node_id):
                members = clustering.get_members(ctx.node_id)
                due = get_due_count(members, slot, params.report_interval_slots)
                complete = len(buffered) >= due > 0
            else:
                complete = True
            first = self.first_arrival.get(slot, now)
            deadline = get_relay_deadline(params, slot, first)
            if not complete and now < deadline and slot not in self.forwarded:
                continue
            roles = get_roles(ctx.memo, head, Slot(slot), params.committee_size)
            producer = compute_node_id(roles.producer)
            # A representative vouches for nothing, but forwards only what verifies.
            candidates = sorted(
                (r for r in buffered.values() if r.node in head.validators), key=lambda r: r.node
            )
            verdicts = self.verify_reports(head, candidates)
            if not all(verdicts):
                ctx.stats.peer_errors[RejectReason.BAD_REPORT_SIGNATURE] += verdicts.count(False)
            batch = tuple(r for r, ok in zip(candidates, verdicts, strict=True) if ok)
            self.forward_buffer[slot] = {}
            self.first_arrival.pop(slot, None)
            self.forwarded.add(Slot(slot))
            if producer == ctx.node_id:
                # Kept only while the head says so: see hand_over_pools.
                self.report_pool.setdefault(Slot(slot), {}).update((r.node, r) for r in batch)
            else:
                out.messages.append(Outgoing(ReportMsg(batch), Route.DIRECT, (producer,)))

    def get_wakeups(self) -> list[int]:
        """When a held batch is due to leave (``get_relay_deadline``), and when our own
        next report may (``get_report_time``)."""
        params = self.ctx.params
        if params is None:
            return []
        wakeups = [
            get_relay_deadline(params, slot, first)
            for slot, first in self.first_arrival.items()
            if self.forward_buffer.get(slot)
        ]
        next_target = Slot(self.head_seen[0] + 1)
        if next_target > self.last_reported_slot:
            wakeups.append(self.get_report_time(next_target))
        return wakeups

    def hand_over_pools(self, now: int, out: Output) -> None:
        """After a head change: send every producer pool we no longer own to the node the
        new head elects for its slot (a lagging representative took itself for it)."""
        ctx = self.ctx
        params = ctx.params
        head = ctx.get_head_state()
        assert params is not None and head is not None
        current = get_current_slot(params, now)
        for slot in sorted(self.report_pool):
            pool = self.report_pool[slot]
            # Past slots are lost anyway (their producers' deadlines are gone) and the
            # receiver would drop them; the member fallback covers those.
            if slot <= head.slot or slot < current or not pool:
                continue
            roles = get_roles(ctx.memo, head, slot, params.committee_size)
            if roles.producer == ctx.pk:
                continue
            del self.report_pool[slot]
            batch = tuple(
                sorted(
                    (r for r in pool.values() if r.node in head.validators), key=lambda r: r.node
                )
            )
            if batch:
                self.stats.pools_handed_over += 1
                producer = compute_node_id(roles.producer)
                out.messages.append(Outgoing(ReportMsg(batch), Route.DIRECT, (producer,)))

    def prune(self, state: BlockState) -> None:
        """Drop pools for slots the head (``state``) has passed."""
        for table in (self.report_pool, self.forward_buffer, self.unverified_pool):
            for old in [s for s in table if s < state.slot]:
                del table[old]
        self.first_arrival = {s: t for s, t in self.first_arrival.items() if s >= state.slot}
        self.forwarded = {s for s in self.forwarded if s >= state.slot}
