"""Resource reports and the cluster relay (§3.2 overlay).

Every validator sends a signed report to its cluster representative (k-means overlay
seeded by the head's seed) once the head for the previous slot is known, or at 2/3 of
it at the latest, every ``report_interval_slots`` slots at its own phase.
Representatives batch-verify and forward to the producer of the report's slot once
their whole cluster reported or at ``slot start + half the VDF target``; the producer
pools what verifies for its candidate.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgechain.chain.assembly import make_report
from edgechain.chain.encoding import compute_report_signing_root
from edgechain.chain.model import ChainParams, ResourceReport
from edgechain.cluster.kmeans import Clustering, compute_clusters
from edgechain.consensus.context import EngineContext, LocalUsage
from edgechain.consensus.messages import Outgoing, Output, ReportMsg, Route
from edgechain.consensus.state import (
    BlockState,
    get_candidate_deadline_ms,
    get_current_slot,
    get_roles,
    get_slot_start_ms,
)
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import PeerError
from edgechain.types import NodeId, Slot


def get_forward_time(params: ChainParams, slot: int) -> int:
    """When a representative forwards an incomplete cluster's reports for ``slot``."""
    half_vdf = params.slot_duration_ms * params.vdf_target_bp // 20_000
    return get_slot_start_ms(params, slot) + half_vdf


class ReportRelay:
    """This node's own reports, and the pools it keeps as representative and producer."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.local_usage = LocalUsage()
        self.report_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.unverified_pool: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.forward_buffer: dict[Slot, dict[NodeId, ResourceReport]] = {}
        self.forwarded: set[Slot] = set()
        self.last_reported_slot = 0

    def get_clustering(self, state: BlockState) -> Clustering:
        params = self.ctx.params
        assert params is not None
        return self.ctx.memo.get(
            ("clusters", state.block_hash),
            lambda: compute_clusters(
                state.validators.get_node_ids(), state.seed, params.nodes_per_cluster
            ),
        )

    def maybe_send_report(self, slot: Slot, now: int, out: Output) -> None:
        """Report for the next producer: once the head for ``t - 1`` is known, or at 2/3
        of slot ``t - 1`` at the latest."""
        ctx = self.ctx
        params = ctx.params
        head = ctx.get_head_state()
        assert params is not None and head is not None
        target = Slot(slot + 1 if now >= get_candidate_deadline_ms(params, slot) else slot)
        target = Slot(max(target, head.slot + 1))
        if (
            not ctx.config.send_reports
            or target <= self.last_reported_slot
            or ctx.node_id not in head.validators
        ):
            return
        self.last_reported_slot = target
        interval = max(1, ctx.config.report_interval_slots)
        if (target + ctx.node_id[0]) % interval:
            return
        u = self.local_usage
        report = make_report(
            ctx.sk, target, timestamp_ms=now, cpu_bp=u.cpu_bp, ram_bp=u.ram_bp,
            disk_bp=u.disk_bp, rtt_us=u.rtt_us, apps=u.apps,
        )  # fmt: skip
        ctx.memo.signatures.add_own(ctx.pk, compute_report_signing_root(report), report.signature)
        representative = self.get_clustering(head).get_representative(ctx.node_id)
        if representative == ctx.node_id:
            self.route_report(report, head)
            self.verify_pool(head)
        else:
            out.messages.append(Outgoing(ReportMsg((report,)), Route.DIRECT, (representative,)))

    def route_report(self, report: ResourceReport, head: BlockState) -> None:
        params = self.ctx.params
        assert params is not None
        if head.slot < report.slot:
            roles = get_roles(self.ctx.memo, head, report.slot, params.committee_size)
            if roles.producer == self.ctx.pk:
                self.unverified_pool.setdefault(report.slot, {})[report.node] = report
                return
        self.forward_buffer.setdefault(report.slot, {})[report.node] = report

    def on_reports(self, reports: Iterable[ResourceReport], now: int, out: Output) -> None:
        params = self.ctx.params
        head = self.ctx.get_head_state()
        assert params is not None and head is not None
        current = get_current_slot(params, now)
        for report in reports:
            # A report from outside our validator set may be honest (a node we have just
            # seen excluded, or one not yet included on our branch): dropped, not blamed.
            if report.node in head.validators and current <= report.slot <= current + 2:
                self.route_report(report, head)
        self.maybe_forward_reports(now, out)
        bad = self.verify_pool(head)
        if bad:
            raise PeerError("bad_report_signature", f"{bad} reports")

    def verify_reports(self, head: BlockState, reports: list[ResourceReport]) -> list[bool]:
        """Batch-check signatures of reports from members of ``head``'s validator set."""
        items = []
        for report in reports:
            info = head.validators.get(report.node)
            assert info is not None, "callers keep only reports from validators"
            items.append((info.public_key, compute_report_signing_root(report), report.signature))
        return self.ctx.memo.signatures.verify_batch(items)

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
            cluster_size = (
                len(self.get_clustering(head).get_members(ctx.node_id))
                if (ctx.node_id in head.validators)
                else 0
            )
            complete = len(buffered) >= cluster_size > 0
            if not complete and now < get_forward_time(params, slot) and slot not in self.forwarded:
                continue
            roles = get_roles(ctx.memo, head, Slot(slot), params.committee_size)
            producer = compute_node_id(roles.producer)
            # A representative vouches for nothing, but forwards only what verifies.
            candidates = sorted(
                (r for r in buffered.values() if r.node in head.validators), key=lambda r: r.node
            )
            verdicts = self.verify_reports(head, candidates)
            if not all(verdicts):
                ctx.stats.peer_errors["bad_report_signature"] += verdicts.count(False)
            batch = tuple(r for r, ok in zip(candidates, verdicts, strict=True) if ok)
            self.forward_buffer[slot] = {}
            self.forwarded.add(Slot(slot))
            if producer == ctx.node_id:
                self.report_pool.setdefault(Slot(slot), {}).update((r.node, r) for r in batch)
            else:
                out.messages.append(Outgoing(ReportMsg(batch), Route.DIRECT, (producer,)))

    def prune(self, state: BlockState) -> None:
        """Drop pools for slots the head (``state``) has passed."""
        for table in (self.report_pool, self.forward_buffer, self.unverified_pool):
            for old in [s for s in table if s < state.slot]:
                del table[old]
        self.forwarded = {s for s in self.forwarded if s >= state.slot}
