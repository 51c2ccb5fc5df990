"""Simulated migrations out (``runtime/migrations_out.py``'s ``_migrate_out`` and
``runtime/transfer_client.py``): the offer, the destination's checks, the transfer on
the virtual clock (fixed, or pre-copy rounds then the frozen rest, ``sim/app_load.py``),
failures and retries. ``sim/apps.py``'s layer decides when a node hands an app over
(``_is_handing_over``) and calls :meth:`HandoverRunner.run` every tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgechain.chain.model import AppSpec
from edgechain.runtime.lifecycle import is_on_head_chain
from edgechain.sim.app_load import (
    TRANSFER_FIXED,
    TransferCost,
    compute_transfer_cost,
    get_state_bytes,
)
from edgechain.sim.app_node import (
    Copy,
    Handover,
    NodeApps,
    get_head_record,
    is_head_down,
    is_planned,
)
from edgechain.sim.clock import MILLISECOND

if TYPE_CHECKING:
    from edgechain.sim.apps import AppLayer
    from edgechain.sim.world import SimNode

MIGRATE_RETRY_MS = (500, 1_000, 2_000, 4_000)
"""``runtime/manager.py``'s MIGRATE_RETRY_S: backoff between offers; the last repeats."""


class HandoverRunner:
    """The outgoing migrations of every simulated node, for one ``AppLayer``."""

    def __init__(self, layer: AppLayer) -> None:
        self.layer = layer

    def run(self, node: SimNode, apps: NodeApps, now: int) -> None:
        """Offer each due outgoing migration of ``apps``'s node (retries included)."""
        for app in sorted(apps.outgoing):
            handover = apps.outgoing[app]
            if handover.in_flight or now < handover.next_try_ms:
                continue
            self._try_handover(node, apps, handover, now)

    def _try_handover(self, node: SimNode, apps: NodeApps, handover: Handover, now: int) -> None:
        entry = handover.entry
        engine = node.engine
        record = get_head_record(engine, entry.app)
        if (
            record is None
            or record.node != entry.destination
            or not is_on_head_chain(engine, handover.block_hash, self.layer.get_archive(engine))
            or is_head_down(engine, entry.destination, self.layer.down_after)
        ):
            del apps.outgoing[entry.app]  # abandoned: reconcile decides what our copy is
            return
        copy = apps.copies.get(entry.app)
        if copy is None:
            del apps.outgoing[entry.app]  # "migration skipped": nothing held here to send
            return
        # A held copy that is not running (handed over on a branch a reorg reverted, or
        # stopped stale) is sent as its state stands, as TransferClient.migrate does: the
        # destination waits for it, and nothing else would ever start the app there.
        target = self.layer.sim.by_id[entry.destination]
        dest = self.layer.nodes[target.index]
        if not self.can_talk(node, target):
            self._retry(handover, now)
            return
        if dest.is_live_copy(entry.app):
            self._finish_handover(apps, dest, handover, copy.spec)  # re-sent: acknowledged
            return
        dest_record = get_head_record(target.engine, entry.app)
        if (
            not is_planned(
                target.engine, handover.block_hash, entry, self.layer.get_archive(target.engine)
            )
            or dest_record is None
            or dest_record.spec != record.spec
        ):
            self._retry(handover, now)  # the destination refuses the offer (for now)
            return
        handover.in_flight = True
        dest.arriving.add(entry.app)
        if self.layer.config.transfer == TRANSFER_FIXED:
            copy.saving = True
            self.layer.sim.clock.call_later(
                self.layer.config.transfer_ms * MILLISECOND,
                lambda: self._complete_transfer(node, target, handover, copy.spec),
            )
            return
        state_bytes = get_state_bytes(self.layer.app_index.get(entry.app), copy.spec)
        cost = compute_transfer_cost(state_bytes)
        # Pre-copy rounds while the app runs on here; then frozen for the rest.
        self.layer.sim.clock.call_later(
            cost.precopy_ms * MILLISECOND,
            lambda: self._freeze_for_transfer(node, target, handover, copy, cost),
        )

    def _freeze_for_transfer(
        self, origin: SimNode, target: SimNode, handover: Handover, copy: Copy, cost: TransferCost
    ) -> None:
        """After the pre-copy rounds: freeze and send the rest, unless the connection
        broke meanwhile (the app ran on untouched: retried later)."""
        apps, dest = self.layer.nodes[origin.index], self.layer.nodes[target.index]
        app = handover.entry.app
        if apps.outgoing.get(app) is not handover:
            dest.arriving.discard(app)
            handover.in_flight = False
            return  # the origin crashed meanwhile
        # Not ``copy.running``: a held copy that is not running is handed over as its
        # state stands (``_try_handover``), after rounds like any other, as
        # ``precopy_rounds`` reads the state dir whatever the app does.
        if not target.up or not self.can_talk(origin, target):
            dest.arriving.discard(app)
            handover.in_flight = False
            self.layer.handover_failures += 1
            self._retry(handover, self.layer.get_now_ms())
            return
        copy.saving = True
        self.layer.sim.clock.call_later(
            cost.downtime_ms * MILLISECOND,
            lambda: self._complete_transfer(origin, target, handover, copy.spec, cost),
        )

    def _complete_transfer(
        self,
        origin: SimNode,
        target: SimNode,
        handover: Handover,
        spec: AppSpec,
        cost: TransferCost | None = None,
    ) -> None:
        apps, dest = self.layer.nodes[origin.index], self.layer.nodes[target.index]
        app = handover.entry.app
        dest.arriving.discard(app)
        handover.in_flight = False
        if apps.outgoing.get(app) is not handover:
            return  # the origin crashed meanwhile: the stream broke
        if not target.up or not self.can_talk(origin, target):
            self.layer.handover_failures += 1
            copy = apps.copies.get(app)
            if copy is not None:
                # A failure resumes the app at the origin while its lease holds, else
                # stops it, state kept (TransferClient.migrate's may_resume).
                copy.saving = False
                copy.running = self.layer.get_now_ms() <= apps.lease_until_ms
            self._retry(handover, self.layer.get_now_ms())
            return
        if cost is not None:
            self.layer.costs.append(cost)
        self._finish_handover(apps, dest, handover, spec)

    def _finish_handover(
        self, apps: NodeApps, dest: NodeApps, handover: Handover, spec: AppSpec
    ) -> None:
        """The destination runs the app (restored, started, acknowledged), then the
        origin ends its copy and keeps its state (``ProcessRuntime.retire``)."""
        app = handover.entry.app
        kept = apps.copies.get(app)
        if kept is not None:
            kept.running = kept.frozen = kept.saving = False
        if not dest.is_live_copy(app):
            dest.copies[app] = Copy(spec, None)
            self.layer.started_by.append((handover.block_hash, app))
        dest.ledger.add((handover.block_hash, app))
        apps.handed.add((handover.block_hash, app))
        del apps.outgoing[app]
        self.layer.handovers += 1
        self.layer.poll_watchdog(dest, self.layer.get_now_ms())

    def _retry(self, handover: Handover, now: int) -> None:
        delay = MIGRATE_RETRY_MS[min(handover.attempt, len(MIGRATE_RETRY_MS) - 1)]
        handover.attempt += 1
        handover.next_try_ms = now + delay

    def can_talk(self, a: SimNode, b: SimNode) -> bool:
        net = self.layer.sim.net
        return (
            a.up
            and b.up
            and net.can_reach(a.ident.node, b.ident.node)
            and net.can_reach(b.ident.node, a.ident.node)
        )
