"""The app layer in the simulator: every node's app runtime as a model, driven on the
virtual clock, audited for "every app runs exactly once" (DESIGN.md, "Exactly once:
the app-layer contract").

Each simulated node gets a :class:`~edgechain.sim.app_node.NodeApps`: the copies of
apps its runtime holds (running, stopped; frozen by its watchdog), reconciled against
the node's *own* head every ``reconcile_ms`` of virtual time while the node is up, by
the real ``runtime/lifecycle.decide`` and the start guard of ``runtime/manager.py``
(re-implemented in ``sim/app_node.py``: the manager reads its ledger from disk).
Nothing here does I/O and nothing draws random numbers: one seed gives one run. The
admin submits the apps (``sim/app_admin.py``); the auditor (``sim/app_audit.py``)
checks the outcome every ``sample_ms``.

* **Handover** (a MIGRATE, ``runtime/transfer.py``): the origin, up and holding a
  running copy while its head carries the MIGRATE, offers the app to the destination;
  the destination accepts when it is up, reachable and its head chain carries the
  block (``is_planned``) with the same spec. The origin's copy then stops (it is saved
  and streamed) and ``transfer_ms`` later the destination runs it, records it in its
  ledger and the origin deletes its copy; a failed offer or transfer resumes the
  origin's copy and retries with the manager's backoff.
* **Fencing** (``runtime/fencing.py``, ``runtime/watchdog.py``): a node renews its lease
  from its own head (``get_lease_end_slot`` of its ``last_seen``) while it is up; its
  watchdog, which runs even while the node is paused, freezes every copy once the
  lease has expired and thaws the ones the lease lists once it is valid again. A
  frozen copy does not count as running. The model polls the watchdog at every tick
  and right after a start, so it leaves out the real watchdog's poll delay (100 ms).
* **Faults**: a crash kills the node's apps (process apps die with their node; their
  state directories and the transfer ledger survive); a pause stops the node's timers
  and network, but its copies keep running until its watchdog freezes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgechain.chain.model import (
    AppSpec,
    ChainParams,
    CommandKind,
    PlanAction,
)
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.state import get_current_slot, get_slot_start_ms
from edgechain.orchestrator.liveness import get_lease_end_slot
from edgechain.orchestrator.registry import AppRecord, get_apps_on_node, get_record
from edgechain.runtime.lifecycle import (
    Action,
    HeldApp,
    decide,
    find_placing_entry,
    get_seen_by,
    is_on_head_chain,
    was_removed,
)
from edgechain.sim.app_admin import Admin, make_app_spec
from edgechain.sim.app_audit import AppAuditor, get_reverted
from edgechain.sim.app_handover import HandoverRunner
from edgechain.sim.app_load import (
    LOAD_REQUEST,
    NODE_CAPACITY_BP,
    TRANSFER_FIXED,
    TransferCost,
    compute_node_usage,
    get_demand_bp,
    make_mixed_spec,
    summarize_costs,
)
from edgechain.sim.app_node import (
    Copy,
    Handover,
    NodeApps,
    get_start_reason,
    is_head_down,
)
from edgechain.sim.app_worst_case import WorstCase
from edgechain.sim.archive import RunArchive
from edgechain.sim.clock import MILLISECOND
from edgechain.types import AppId, BlockHash

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode


@dataclass(frozen=True)
class AppModelConfig:
    """How the simulated app runtimes behave (``SimConfig.app_model``)."""

    reconcile_ms: int = 1_000
    """Reconcile period (the manager's MEASURE_INTERVAL_MS); each node has its phase."""
    sample_ms: int = 250
    """The tick: lease renewal, watchdog poll, handover retries and one audit sample."""
    transfer_ms: int = 1_000
    """Save + stream + restore of one migration."""
    fencing: bool = True
    """False: no watchdog (the negative control: a paused node's apps run on)."""
    submit_slot: int = 2
    """Slot at whose start the admin submits ``SimConfig.apps`` apps."""
    stateful_every: int = 3
    """Every this many apps is stateful with replicas every ``replica_interval_slots``."""
    replica_interval_slots: int = 4
    load: str = LOAD_REQUEST
    """``request``: each copy reports its spec's request; ``mixed``: steady demands of
    mixed sizes; ``varying``: with load profiles (``sim/app_load.py``)."""
    transfer: str = TRANSFER_FIXED
    """``fixed``: every handover takes ``transfer_ms``, frozen; ``modelled``: pre-copy
    and frozen segments from the app's state size (``sim/app_load.py``)."""
    worst_case: bool = False
    """Every app starts on the first node, then the others are undrained
    (``sim/app_worst_case.py``, paper §4.2)."""


class AppLayer:
    """Every node's :class:`NodeApps`, driven on the simulation's clock, the admin who
    submits the apps, and the auditor. Built by the runner after genesis; the fault
    primitives (``sim/faults.py``) tell it about crashes, pauses, restarts and
    partitions."""

    def __init__(
        self, sim: Simulation, params: ChainParams, count: int, config: AppModelConfig
    ) -> None:
        self.sim = sim
        self.params = params
        self.config = config
        self.down_after = params.down_after_slots
        self.nodes = [NodeApps(n.index, n.ident.node) for n in sim.nodes]
        self.to_submit = [self._make_spec(i) for i in range(count)]
        self.app_index: dict[AppId, int] = {}
        """Each submitted app's index (its load profile and state size)."""
        self.worst_case = WorstCase() if config.worst_case else None
        self.handover_runner = HandoverRunner(self)
        self.costs: list[TransferCost] = []
        """The modelled cost of every completed handover (``transfer="modelled"``)."""
        self.admin = Admin(sim, params.chain_id)
        self.auditor = AppAuditor(sim, params, self.nodes)
        self.starts = 0
        self.stale_stops = 0
        self.handovers = 0
        self.handover_failures = 0
        self.started_by: list[tuple[BlockHash, AppId]] = []
        """(block, app) of every copy started or received for a plan entry."""

    # --- the clock -----------------------------------------------------------------------

    def start(self) -> None:
        for apps in self.nodes:
            # Each node reconciles at its own phase of the period.
            apps.next_reconcile_ms = self.get_now_ms() + apps.index * self.config.sample_ms % max(
                1, self.config.reconcile_ms
            )
        self._schedule(self.get_now_ms())

    def get_now_ms(self) -> int:
        return self.sim.clock.now // MILLISECOND

    def _schedule(self, at_ms: int) -> None:
        self.sim.clock.schedule(at_ms * MILLISECOND, self._tick)

    def _make_spec(self, index: int) -> AppSpec:
        config = self.config
        if config.load != LOAD_REQUEST:
            stateful = config.stateful_every > 0 and index % config.stateful_every == 0
            return make_mixed_spec(index, stateful, config.replica_interval_slots)
        return make_app_spec(index, config.stateful_every, config.replica_interval_slots)

    def get_demand(self, apps: NodeApps, app: AppId, now: int) -> int:
        """CPU ``app`` uses on ``apps``'s node now (``sim/app_load.get_demand_bp``)."""
        spec = apps.copies[app].spec
        index = self.app_index.get(app)
        return get_demand_bp(app, spec, index, now, self.params.slot_duration_ms, self.config.load)

    def _tick(self) -> None:
        now = self.get_now_ms()
        slot = get_current_slot(self.params, now)
        due = self.to_submit and slot >= self.config.submit_slot
        # Short-circuit: the worst case drains (may_submit) only while apps wait.
        if due and (self.worst_case is None or self.worst_case.may_submit(self, now)):
            self._submit_pending(now)
        if self.worst_case is not None:
            self.worst_case.on_tick(self, now, slot)
        for apps in self.nodes:
            node = self.sim.nodes[apps.index]
            if not node.up:
                continue
            self._renew_lease(node, apps, now)
            self._report_usage(node, apps, now)
            self.handover_runner.run(node, apps, now)
            head = node.engine.head
            if head != apps.head:
                if apps.head is not None and not is_on_head_chain(node.engine, apps.head):
                    # A reorg: the copy the new branch does not want may still run on a
                    # node that has not switched yet (AppManager.on_head_changed).
                    apps.settle_until_ms = now + self.params.slot_duration_ms
                apps.head = head
                apps.next_reconcile_ms = now
            if now >= apps.next_reconcile_ms:
                apps.next_reconcile_ms = now + self.config.reconcile_ms
                self._reconcile(node, apps, now)
        for apps in self.nodes:
            self.poll_watchdog(apps, now)
        self.auditor.sample(now)
        self._schedule(now + self.config.sample_ms)

    # --- submissions -----------------------------------------------------------------------

    def _submit_pending(self, now: int) -> None:
        node = next((n for n in self.sim.nodes if n.up and n.honest), None)
        while node is not None and self.to_submit:
            app = self.submit(node, CommandKind.SUBMIT, now, spec=self.to_submit[0])
            if app is None:
                return  # no chain yet: next tick
            self.app_index[app] = len(self.app_index)
            self.to_submit.pop(0)

    def submit(
        self,
        node: SimNode,
        kind: CommandKind,
        now: int,
        *,
        spec: AppSpec | None = None,
        app: bytes = b"",
        to: bytes = b"",
    ) -> AppId | None:
        """An admin command through ``node`` (:meth:`Admin.send`); a new app makes
        liveness due K + 3 slots later."""
        done = self.admin.send(node, kind, now, spec=spec, app=app, to=to)
        if done is not None and kind is CommandKind.SUBMIT:
            self.auditor.note_event(now)
        return done

    # --- faults ----------------------------------------------------------------------------

    def on_partition(self) -> None:
        """The network splits: no liveness check until it heals."""
        self.auditor.note_fault(self.get_now_ms(), [], lasting=True)

    def on_heal(self) -> None:
        self.auditor.end_fault(self.get_now_ms())

    def on_pause(self, node: SimNode) -> None:
        """SIGSTOP: its copies run on until its watchdog freezes them. Its apps must
        run exactly once again, elsewhere, within K + 3 slots, pause or not."""
        apps = self.nodes[node.index]
        affected = sorted(a for a in apps.copies if apps.is_live_copy(a))
        self.auditor.note_fault(self.get_now_ms(), affected)

    def on_crash(self, node: SimNode) -> None:
        """kill -9: the apps die with the node, and everything it held in memory."""
        self.on_pause(node)
        apps = self.nodes[node.index]
        for copy in apps.copies.values():
            copy.running = copy.frozen = copy.saving = False
        apps.outgoing.clear()
        apps.arriving.clear()
        apps.searched.clear()

    def on_start(self, node: SimNode) -> None:
        """The node runs again (restart or resume): it reconciles at its next tick."""
        now = self.get_now_ms()
        self.nodes[node.index].next_reconcile_ms = now
        self.auditor.note_event(now)

    # --- reports ---------------------------------------------------------------------------

    def _report_usage(self, node: SimNode, apps: NodeApps, now: int) -> None:
        """What the node's reports list, as ``runtime/usage_sampler.py`` measures it: the
        copies it runs, each at its demand (``sim/app_load.py``; with the ``request``
        load its spec's request, the planner's hint, with no CPU cap). The planner moves
        an app again only once its node has listed it
        (``orchestrator/load.compute_confirmed_apps``)."""
        demands = [
            (app, self.get_demand(apps, app, now), copy.spec.ram_bp)
            for app, copy in sorted(apps.copies.items())
            if apps.is_live_copy(app)
        ]
        capacity = None if self.config.load == LOAD_REQUEST else NODE_CAPACITY_BP
        usage = compute_node_usage(demands, now, capacity)
        # The coordinate is the coordinate layer's (sim/coordinates.py), not the apps'.
        coordinate = node.engine.get_local_usage().coordinate
        node.engine.set_local_usage(replace(usage, coordinate=coordinate))

    # --- fencing ---------------------------------------------------------------------------

    def _renew_lease(self, node: SimNode, apps: NodeApps, now: int) -> None:
        """``LeaseRenewal.renew`` (``runtime/lease_renewal.py``): F slots after our latest
        contribution on our own head; listed: what the head places here and what we are
        handing over."""
        engine = node.engine
        state = engine.get_head_state()
        params = engine.params
        if state is None or params is None:
            return
        end = get_lease_end_slot(
            state.last_seen,
            apps.node_id,
            params.down_after_slots,
            lambda slot: get_seen_by(engine, apps.node_id, slot),
        )
        apps.lease_until_ms = get_slot_start_ms(params, end) if end is not None else 0
        placed = {r.app for r in get_apps_on_node(state.registry, apps.node_id)}
        apps.lease_apps = frozenset(placed | set(apps.outgoing))

    def poll_watchdog(self, apps: NodeApps, now: int) -> None:
        """``runtime/watchdog.py``: lease expired, freeze every running copy; valid,
        thaw the frozen copies the lease lists."""
        if not self.config.fencing:
            return
        expired = now > apps.lease_until_ms
        for app, copy in apps.copies.items():
            if not copy.running:
                continue
            if expired:
                copy.frozen = True
            elif copy.frozen and app in apps.lease_apps:
                copy.frozen = False

    # --- reconcile (AppManager.reconcile) ---------------------------------------------------

    def _reconcile(self, node: SimNode, apps: NodeApps, now: int) -> None:
        engine = node.engine
        state = engine.get_head_state()
        if state is None:
            return
        order = [r.app for r in get_apps_on_node(state.registry, apps.node_id)]
        placed_here = set(order)
        order += sorted(a for a in apps.copies if a not in placed_here)
        for app in order:
            copy = apps.copies.get(app)
            if copy is not None and copy.saving:
                continue  # in flight: the migration holds the app's lock
            record = get_record(state.registry, app)
            held = HeldApp(app, copy.running, copy.spec, copy.version) if copy is not None else None
            removed = (
                record is None
                and held is not None
                and app not in apps.arriving
                and was_removed(engine, app, apps.searched)
            )
            outgoing = held is not None and self._is_handing_over(node, apps, record, now)
            settled = (
                record is not None
                and record.last_move_slot is not None
                and state.slot - record.last_move_slot >= self.down_after
            )
            action = decide(
                apps.node_id, record, held, removed=removed, outgoing=outgoing, settled=settled
            )
            if action is None or not self._is_allowed(engine, apps, action, app, record):
                continue
            self._carry_out(apps, action, app, record, engine)
        self.poll_watchdog(apps, now)

    def get_archive(self, engine: ConsensusEngine) -> RunArchive:
        """The node's store of its chain below memory (``sim/archive.py``)."""
        return RunArchive(self.sim.blocks, engine)

    def _is_allowed(
        self,
        engine: ConsensusEngine,
        apps: NodeApps,
        action: Action,
        app: AppId,
        record: AppRecord | None,
    ) -> bool:
        if action is Action.START:
            return (
                record is not None
                and self.get_now_ms() >= apps.settle_until_ms
                and get_start_reason(
                    engine, apps, record, self.down_after, self.get_archive(engine)
                )
                is not None
            )
        if action is Action.STOP_STALE:
            return app not in apps.arriving
        return True

    def _carry_out(
        self,
        apps: NodeApps,
        action: Action,
        app: AppId,
        record: AppRecord | None,
        engine: ConsensusEngine,
    ) -> None:
        copy = apps.copies.get(app)
        if action is Action.START and record is not None:
            found = find_placing_entry(engine, record, self.get_archive(engine))
            placed_by = found[0] if found is not None else None
            apps.copies[app] = Copy(record.spec, record.version)
            self.starts += 1
            if placed_by is not None:
                self.started_by.append((placed_by, app))
        elif action in (Action.STOP, Action.STOP_STALE) and copy is not None:
            copy.running = copy.frozen = False
            if action is Action.STOP_STALE:
                self.stale_stops += 1
        elif action in (Action.UPDATE, Action.CONFIRM) and copy is not None and record:
            copy.spec, copy.version = record.spec, record.version
        elif action is Action.REMOVE:
            apps.copies.pop(app, None)
            apps.searched.pop(app, None)
        elif action is Action.DISCARD:
            apps.copies.pop(app, None)

    # --- migrations (runtime/migrations_out.py: is_handing_over, _migrate_out) -----------

    def _is_handing_over(
        self, node: SimNode, apps: NodeApps, record: AppRecord | None, now: int
    ) -> bool:
        if record is None or record.node in (None, apps.node_id):
            return False
        if record.app in apps.outgoing:
            return True
        found = find_placing_entry(node.engine, record, self.get_archive(node.engine))
        if found is None:
            return False
        block_hash, entry = found
        if entry.action is not PlanAction.MIGRATE or entry.origin != apps.node_id:
            return False
        if is_head_down(node.engine, entry.destination, self.down_after):
            return False
        if (block_hash, record.app) in apps.handed:
            return False  # done: what we hold is the state as we handed it over
        apps.outgoing[record.app] = Handover(block_hash, entry, next_try_ms=now)
        return True

    # --- results ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        out = {
            "submitted": len(self.admin.submitted),
            "starts": self.starts,
            "stale_stops": self.stale_stops,
            "handovers": self.handovers,
            "handover_failures": self.handover_failures,
            **get_reverted(self.sim, set(self.started_by)),
            **self.auditor.summary(),
        }
        if self.costs:
            out["migration_costs_ms"] = summarize_costs(self.costs)
        if self.worst_case is not None:
            out["worst_case"] = self.worst_case.summary(self.handovers)
        return out
