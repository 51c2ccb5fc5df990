"""The planner's scratch state while it builds one plan, and the migration budget.

``PlanState`` is created by ``compute_plan`` from the load model and never escapes the
call. Every phase reads the loads and app lists as updated by the entries before it,
exactly as Algorithm 1's placement loop updates ``Min`` after each app (paper §3.3).

The migration budget (:class:`MigrationBudget`) bounds the transfers one plan starts:
in total, out of and into each node (by count and by state bytes). It scales with the
fleet, so that a fleet of 1000 nodes can relieve an overloaded node ten times faster
than a fleet of 100, while no destination receives more than a few apps per slot.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from edgechain.orchestrator.load import (
    TRANSFER_ROOM_FACTOR,
    LoadModel,
    can_write_out,
    is_room_enough,
)
from edgechain.orchestrator.policy import NodeInfo, is_move_allowed, is_node_allowed
from edgechain.orchestrator.registry import AppRecord, AppState, Registry
from edgechain.types import AppId, NodeId, Slot

MIB = 1 << 20

MAX_IN_PER_NODE = 2
"""Migrations one node receives per slot: each is a transfer to unpack and an app to
start while the node keeps its own duties; a burst onto the freest node would also
overshoot it before its next report."""

MAX_BYTES_PER_NODE = 256 * MIB
"""State bytes a node sends, or receives, per slot (about 50 MB/s over a 5 s slot). A
node's first migration of a slot may exceed it: a large app must be able to move."""

FLEET_PER_MIGRATION = 4
"""The total budget is at least one migration per this many validators."""

FLEET_PER_OUTGOING = 8
"""A node may send at least one migration per this many validators: from one node that
holds every app (the paper's worst case, §4.2) a fleet of N drains it in about
apps * 8 / N slots."""


@dataclass(frozen=True)
class MigrationBudget:
    """How many migrations (MIGRATE entries) one plan may contain."""

    total: int
    out_per_node: int
    in_per_node: int
    bytes_per_node: int


def compute_migration_budget(max_migrations: int, fleet_size: int) -> MigrationBudget:
    """The budget of a plan: ``max_migrations`` (``ChainParams.max_migrations_per_slot``)
    is the floor of the total and of each node's outgoing count; both grow with the
    number of validators (ceil(N / 4) in total, ceil(N / 8) per node). 0 disables
    migrations."""
    if max_migrations <= 0:
        return MigrationBudget(0, 0, 0, 0)
    return MigrationBudget(
        total=max(max_migrations, -(-fleet_size // FLEET_PER_MIGRATION)),
        out_per_node=max(max_migrations, -(-fleet_size // FLEET_PER_OUTGOING)),
        in_per_node=MAX_IN_PER_NODE,
        bytes_per_node=MAX_BYTES_PER_NODE,
    )


@dataclass
class PlanState:
    """``load`` covers every validator (and down nodes still holding apps); ``reported``
    are those with a report (the only ones balancing touches); ``available`` are the
    validators neither down, draining nor quiet (the only destinations); ``quiet`` are
    the validators silent for a while but not down (``liveness.compute_quiet_nodes``:
    nothing moves off them either); ``departed`` are the nodes out of the validator set
    that the chain still knows and that are not down (a skip block excluded one that may
    be readmitted a few slots later: ``placement.is_waiting_for_state_holder``);
    ``apps_on`` lists each
    node's running apps in app id order; ``groups_on`` counts each node's apps per
    anti-affinity group; ``planned`` are the apps that already have an entry in this
    plan; ``sent``/``received`` count this plan's migrations per node and
    ``sent_bytes``/``received_bytes`` their state bytes; ``migrations`` is the number of
    MIGRATE entries so far; ``room`` is each node's room for app state left
    (``load.compute_state_room``, less this plan's entries); ``confirmed`` are the
    apps their node has reported running since their last move
    (``load.compute_confirmed_apps``), the only ones that may move again."""

    infos: dict[NodeId, NodeInfo]
    available: frozenset[NodeId]
    down: frozenset[NodeId]
    draining: frozenset[NodeId]
    quiet: frozenset[NodeId]
    departed: frozenset[NodeId]
    load: dict[NodeId, int]
    app_score: dict[AppId, int]
    app_bytes: dict[AppId, int]
    records: dict[AppId, AppRecord]
    reported: frozenset[NodeId]
    apps_on: dict[NodeId, list[AppId]]
    groups_on: dict[NodeId, dict[str, int]]
    budget: MigrationBudget
    confirmed: frozenset[AppId] = frozenset()
    room: dict[NodeId, int] = field(default_factory=dict)
    planned: set[AppId] = field(default_factory=set)
    sent: Counter[NodeId] = field(default_factory=Counter)
    received: Counter[NodeId] = field(default_factory=Counter)
    sent_bytes: Counter[NodeId] = field(default_factory=Counter)
    received_bytes: Counter[NodeId] = field(default_factory=Counter)
    migrations: int = 0

    @classmethod
    def start(
        cls,
        registry: Registry,
        model: LoadModel,
        infos: dict[NodeId, NodeInfo],
        down: frozenset[NodeId],
        draining: frozenset[NodeId],
        quiet: frozenset[NodeId],
        budget: MigrationBudget,
        departed: frozenset[NodeId] = frozenset(),
    ) -> PlanState:
        # ``down`` may name nodes that left the validator set with apps still on them
        # (they stay placed there until the node is down, registry.py): their apps are
        # recovered, nothing else is done with them.
        draining = (draining & frozenset(infos)) - down
        quiet = (quiet & frozenset(infos)) - down
        state = cls(
            infos=infos,
            available=frozenset(infos) - down - draining - quiet,
            down=down,
            draining=draining,
            quiet=quiet,
            departed=departed - frozenset(infos) - down,
            load=dict.fromkeys(down, 0) | dict(model.node_load),
            app_score=dict(model.app_score),
            app_bytes=dict(model.app_state_bytes),
            records={r.app: r for r in registry.records},
            reported=model.reported,
            apps_on={node: [] for node in (*infos, *down)},
            groups_on={node: {} for node in (*infos, *down)},
            budget=budget,
            confirmed=model.confirmed,
            room=dict(model.state_room),
        )
        for record in registry.records:  # app id order, so every list stays sorted
            if (
                record.node is not None
                and record.node in state.apps_on
                and record.state is AppState.RUNNING
            ):
                state.apps_on[record.node].append(record.app)
                state.count_group(record, record.node, 1)
        return state

    def count_group(self, record: AppRecord, node: NodeId, delta: int) -> None:
        group = record.spec.policy.anti_affinity
        if group:
            groups = self.groups_on[node]
            groups[group] = groups.get(group, 0) + delta

    def is_destination_allowed(
        self,
        record: AppRecord,
        node: NodeId,
        *,
        leaving: AppRecord | None = None,
        factor: int = TRANSFER_ROOM_FACTOR,
    ) -> bool:
        """Available, room for the app's state (``factor``: :meth:`has_room`), runtime,
        labels, pin and anti-affinity (with the plan's earlier entries applied;
        ``leaving``: an app that leaves ``node`` in the same step, a swap's other
        half)."""
        if (
            node not in self.available
            or not self.has_room(node, record.app, factor)
            or not is_node_allowed(record.spec, self.infos[node])
        ):
            return False
        group = record.spec.policy.anti_affinity
        if not group:
            return True
        present = self.groups_on[node].get(group, 0)
        if leaving is not None and leaving.spec.policy.anti_affinity == group:
            present -= 1
        return present == 0

    def has_room(self, node: NodeId, app: AppId, factor: int = TRANSFER_ROOM_FACTOR) -> bool:
        """Whether ``node`` has room to take the app in: more than ``factor`` times its
        state (:data:`TRANSFER_ROOM_FACTOR` for a MIGRATE or REPLICA, whose payload lands
        beside the state; :data:`START_ROOM_FACTOR` for a PLACE or RECOVER, which starts
        the app from nothing or from the replica the node holds), so a node with no room
        at all takes no new app either, after this plan's earlier entries; a node
        without a measured room has no limit (``load.py``, ``state_room``)."""
        return is_room_enough(self.room.get(node), self.app_bytes.get(app, 0), factor)

    def can_spool(self, record: AppRecord) -> bool:
        """Whether the app's node has room to write its state out for a transfer (the
        origin spools a MIGRATE's payload to its own disk first, ``runtime/transfer``)."""
        room = None if record.node is None else self.room.get(record.node)
        return can_write_out(room, self.app_bytes.get(record.app, 0))

    def take_room(self, node: NodeId, app: AppId, factor: int = TRANSFER_ROOM_FACTOR) -> None:
        """Charge the app to ``node``'s room as :meth:`has_room` counted it: the plan's
        transfers run at once, each landing its payload beside its state."""
        if node in self.room:
            self.room[node] -= factor * self.app_bytes.get(app, 0)

    def may_move(self, record: AppRecord, slot: Slot, min_move_interval: int) -> bool:
        """May a MIGRATE take this placed app elsewhere in the plan of ``slot``: its node
        reported running it since its last move (``confirmed``), and its policy and the
        minimum interval allow it (``policy.is_move_allowed``), and its node has room
        to write the state out (:meth:`can_spool`)."""
        return (
            record.app in self.confirmed
            and is_move_allowed(record, slot, min_move_interval)
            and self.can_spool(record)
        )

    def add_app(self, record: AppRecord, node: NodeId, factor: int = TRANSFER_ROOM_FACTOR) -> None:
        self.load[node] += self.app_score[record.app]
        bisect.insort(self.apps_on[node], record.app)
        self.count_group(record, node, 1)
        self.take_room(node, record.app, factor)
        self.planned.add(record.app)

    def remove_app(self, record: AppRecord, node: NodeId) -> None:
        self.load[node] -= self.app_score[record.app]
        self.apps_on[node].remove(record.app)
        self.count_group(record, node, -1)

    # --- the migration budget --------------------------------------------------------

    def has_budget(self, count: int = 1) -> bool:
        return self.migrations + count <= self.budget.total

    def can_send(self, node: NodeId, app: AppId) -> bool:
        """Whether ``node`` may send ``app`` in this plan (count and bytes)."""
        if self.sent[node] >= self.budget.out_per_node:
            return False
        return self.sent[node] == 0 or (
            self.sent_bytes[node] + self.app_bytes.get(app, 0) <= self.budget.bytes_per_node
        )

    def can_receive(self, node: NodeId, app: AppId) -> bool:
        """Whether ``node`` may receive ``app`` in this plan (count and bytes)."""
        if self.received[node] >= self.budget.in_per_node:
            return False
        return self.received[node] == 0 or (
            self.received_bytes[node] + self.app_bytes.get(app, 0) <= self.budget.bytes_per_node
        )

    def migrate(self, record: AppRecord, origin: NodeId, destination: NodeId) -> None:
        """Apply a MIGRATE to the loads and charge it to the budget."""
        self.remove_app(record, origin)
        self.add_app(record, destination)
        size = self.app_bytes.get(record.app, 0)
        self.sent[origin] += 1
        self.received[destination] += 1
        self.sent_bytes[origin] += size
        self.received_bytes[destination] += size
        self.migrations += 1
