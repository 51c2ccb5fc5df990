"""The exactly-once auditor of the simulator's app layer (``sim/apps.py``;
DESIGN.md, "Exactly once: the app-layer contract").

Every ``sample_ms`` it counts, for each app, the running unfrozen copies over all
nodes. Safety: never more than one, at any time, fault or not. Liveness: once no
partition lasts and ``K + 3`` slots have passed since the last fault started or ended
(or the last submission), every app RUNNING in the honest majority's head registry runs
exactly once, on the node that registry names, and nothing else runs. For each app a
crash or pause took away, it measures the time until it runs exactly once again on a
node that is up. :func:`get_reverted` tells what reorgs undid, from the blocks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from edgechain.chain.model import Block, ChainParams, PlanAction
from edgechain.consensus.state import BlockState, get_current_slot
from edgechain.orchestrator.registry import AppRecord, AppState, get_record
from edgechain.sim.archive import get_chain_from
from edgechain.types import AppId, BlockHash

if TYPE_CHECKING:
    from edgechain.sim.app_node import NodeApps
    from edgechain.sim.runner import Simulation

LIVENESS_SLACK_SLOTS = 3
"""DESIGN.md: every live app runs exactly once within K + 3 slots after a fault ends."""
IN_FLIGHT_SLOTS = 2
"""A migration (``transfer_ms``, 1 s by default) must land within this many slots of its
block before the app counts as misplaced."""
MAX_LISTED_VIOLATIONS = 20
"""Violations listed per kind (each counts one episode of one app; samples count all)."""


class AppAuditor:
    """Counts running unfrozen copies of every app over all nodes, every sample."""

    def __init__(self, sim: Simulation, params: ChainParams, nodes: list[NodeApps]) -> None:
        self.sim = sim
        self.params = params
        self.nodes = nodes
        self.slot_ms = params.slot_duration_ms
        self.deadline_after_ms = (params.down_after_slots + LIVENESS_SLACK_SLOTS) * self.slot_ms
        self.last_event_ms = 0
        self.samples = 0
        self.max_copies = 0
        self.safety: list[str] = []
        self.liveness: list[str] = []
        self.safety_samples = 0
        self.liveness_samples = 0
        self._doubled: set[AppId] = set()
        self._absent: set[AppId] = set()
        self.waiting: dict[AppId, int] = {}
        """App -> start of the fault that took its copy away, until it runs again."""
        self.recovery_ms: dict[AppId, int] = {}
        self.faults = 0
        self.open_faults = 0
        self.checked_liveness = False

    def note_event(self, now: int) -> None:
        """A fault started or ended, or an app was submitted: liveness is due K + 3
        slots later."""
        self.last_event_ms = max(self.last_event_ms, now)

    def note_fault(self, now: int, affected: list[AppId], *, lasting: bool = False) -> None:
        """A fault starts; ``affected``: the apps it took away (their recovery time is
        measured); ``lasting``: liveness is not checked until :meth:`end_fault`."""
        self.faults += 1
        self.open_faults += lasting
        self.note_event(now)
        for app in affected:
            self.waiting.setdefault(app, now)

    def end_fault(self, now: int) -> None:
        self.open_faults -= 1
        self.note_event(now)

    def sample(self, now: int) -> None:
        state = self.sim.get_majority_head()
        if state is None:
            return
        self.samples += 1
        where: dict[AppId, list[int]] = {}
        for apps in self.nodes:
            for app in apps.copies:
                if apps.is_live_copy(app):
                    where.setdefault(app, []).append(apps.index)
        for app, nodes in sorted(where.items()):
            self.max_copies = max(self.max_copies, len(nodes))
            if len(nodes) > 1:
                self._on_doubled(now, state, app, nodes)
            else:
                self._doubled.discard(app)
        self._measure_recovery(now, where)
        if not self.open_faults and now >= self.last_event_ms + self.deadline_after_ms:
            self.checked_liveness = True
            self._check_liveness(now, state, where)

    def _on_doubled(self, now: int, state: BlockState, app: AppId, nodes: list[int]) -> None:
        self.safety_samples += 1
        if app in self._doubled:
            return  # one entry per episode
        self._doubled.add(app)
        record = get_record(state.registry, app)
        placed = self.sim.by_id.get(record.node) if record and record.node else None
        self._add(
            self.safety,
            f"{self._when(now)}: app {app.hex()[:12]} runs {len(nodes)} copies, on nodes "
            f"{nodes} (majority head slot {state.slot} places it on "
            f"{placed.index if placed else None})",
        )

    def _measure_recovery(self, now: int, where: dict[AppId, list[int]]) -> None:
        for app in sorted(self.waiting):
            nodes = where.get(app, [])
            if len(nodes) == 1 and self.sim.nodes[nodes[0]].up:
                started = self.waiting.pop(app)
                self.recovery_ms[app] = max(self.recovery_ms.get(app, 0), now - started)

    def _check_liveness(self, now: int, state: BlockState, where: dict[AppId, list[int]]) -> None:
        expected: dict[AppId, AppRecord] = {
            r.app: r for r in state.registry.records if r.state is AppState.RUNNING
        }
        bad = False
        for app in sorted(set(expected) | set(where)):
            record = expected.get(app)
            nodes = where.get(app, [])
            host = self.sim.by_id.get(record.node) if record and record.node else None
            wanted = [host.index] if host is not None else []
            if record is None and not nodes:
                continue
            if record is not None and (nodes == wanted or self._is_in_flight(state, record, nodes)):
                self._absent.discard(app)
                continue
            bad = True
            if app in self._absent:
                continue
            self._absent.add(app)
            self._add(
                self.liveness,
                f"{self._when(now)}: app {app.hex()[:12]} runs on nodes {nodes}, the majority "
                f"head (slot {state.slot}) wants {wanted if record else 'none'}",
            )
        self.liveness_samples += bad

    def _is_in_flight(self, state: BlockState, record: AppRecord, nodes: list[int]) -> bool:
        """A migration planned at most IN_FLIGHT_SLOTS ago may still be on its way: the
        app runs at its origin until the handover, and briefly nowhere."""
        if record.previous_node is None or record.last_move_slot is None:
            return False
        if state.slot - record.last_move_slot > IN_FLIGHT_SLOTS:
            return False
        origin = self.sim.by_id.get(record.previous_node)
        return nodes == [] or (origin is not None and nodes == [origin.index])

    def _when(self, now: int) -> str:
        return f"slot {get_current_slot(self.params, now)} ({now} ms)"

    def _add(self, target: list[str], text: str) -> None:
        """A new violation: listed here (the first few) and in the run's violations."""
        if len(target) < MAX_LISTED_VIOLATIONS:
            target.append(text)
            self.sim.violations.append(f"apps: {text}")

    def summary(self) -> dict[str, Any]:
        recoveries = sorted(self.recovery_ms.values())
        worst = recoveries[-1] if recoveries else None
        return {
            "samples": self.samples,
            "faults": self.faults,
            "max_copies_seen": self.max_copies,
            "recovered": len(recoveries),
            "unrecovered": len(self.waiting),
            "recovery_ms_max": worst,
            "recovered_within_slots": None if worst is None else math.ceil(worst / self.slot_ms),
            "liveness_checked": self.checked_liveness,
            "liveness_from_slot": get_current_slot(
                self.params, self.last_event_ms + self.deadline_after_ms
            ),
            "safety_violation_samples": self.safety_samples,
            "liveness_violation_samples": self.liveness_samples,
            "violations": [*self.safety, *self.liveness],
        }


def get_reverted(sim: Simulation, acted: set[tuple[BlockHash, AppId]]) -> dict[str, dict[str, int]]:
    """What reorgs undid, from the blocks honest nodes accepted off the final
    majority chain: their PLACE, MIGRATE and RECOVER entries (``reverted``), and
    those a node acted on (``acted``: started or received the app for the entry)."""
    state = sim.get_majority_head()
    holder = next(
        (n for n in sim.nodes if state is not None and n.engine.head == state.block_hash),
        None,
    )
    chain = set(get_chain_from(sim.blocks, holder.engine.head)) if holder is not None else set()
    kinds = (PlanAction.PLACE, PlanAction.MIGRATE, PlanAction.RECOVER)
    reverted = {kind.name.lower(): 0 for kind in kinds}
    entries: dict[tuple[BlockHash, AppId], PlanAction] = {}
    for block_hash, block in sim.blocks.items():
        if block_hash in chain or not isinstance(block, Block):
            continue
        for entry in block.plan:
            if entry.action in kinds:
                reverted[entry.action.name.lower()] += 1
                entries[block_hash, entry.app] = entry.action
    acted_on = {kind.name.lower(): 0 for kind in kinds}
    for key in sorted(acted):
        action = entries.get(key)
        if action is not None:
            acted_on[action.name.lower()] += 1
    return {"reverted": reverted, "acted_on_reverted": acted_on}
