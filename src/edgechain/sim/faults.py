"""Fault injection for the simulator: each scenario's schedule (:func:`inject_faults`,
called at the start of every slot) and the primitives it uses.

* :func:`crash` (kill -9: timers, network and in-memory state gone; a process app dies
  with its node) and :func:`restart` (a fresh engine that replays its store);
* :func:`pause` (SIGSTOP: no timers, no network, but its apps keep running until its
  watchdog freezes them) and :func:`resume` (SIGCONT: the same engine goes on and
  syncs; no restart).

The app scenarios (``app-host-crash``, ``app-host-pause``, ``reorg-apps``,
``fleet-outage``) hit the app layer (``sim/apps.py``) where it hurts: the node hosting
the most apps, both sides of a partition that each place and migrate apps before the
heal reverts one side, or every node cut off from every other for longer than K (the
switch they share failed), so that the chain stalls.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import TYPE_CHECKING

from edgechain.chain.model import ChainParams, CommandKind
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import BlockMsg
from edgechain.consensus.state import get_roles, get_slot_start_ms
from edgechain.crypto.hashing import compute_node_id
from edgechain.network.dht import DhtNode
from edgechain.network.gossip import Gossip
from edgechain.orchestrator.planner import DEFAULT_MIN_MOVE_INTERVAL_SLOTS
from edgechain.orchestrator.registry import AppState, get_apps_on_node
from edgechain.sim.app_admin import make_pinned_spec
from edgechain.sim.archive import get_chain_from
from edgechain.sim.clock import MILLISECOND
from edgechain.types import NodeId, Slot

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode

APP_FAULT_SLOT = 9
"""App scenarios: the slot the fault starts (the apps, submitted at slot 2, run by then)."""
APP_FAULT_EXTRA_SLOTS = 4
"""``app-host-crash`` and ``app-host-pause``: the node is back K + this many slots later,
i.e. after the chain has taken it for down and recovered its apps."""
REORG_SPLIT_SLOT = 8
REORG_SLOTS = 6
"""``reorg-apps``: partition length, short of K (nobody should be taken for down)."""
DEFAULT_SCENARIO_APPS = 8
"""Apps the app scenarios submit when ``SimConfig.apps`` is 0."""
FLEET_OUTAGE_FACTOR = 2
"""``fleet-outage``: every node is alone from ``APP_FAULT_SLOT`` for this many times K
slots: the chain gets no block at all, and every lease runs out. Then three quarters of
the nodes are reconnected, and the others ``FLEET_OUTAGE_LAGGARD_SLOTS`` later (nodes
back from a power cut do not all boot and sync at once), but for the last node, which
crashed meanwhile and never comes back (a device the power cut broke)."""
FLEET_OUTAGE_LAGGARD_SLOTS = 6
APP_SCENARIOS = ("app-host-crash", "app-host-pause", "reorg-apps", "fleet-outage")


def get_fleet_outage_slots(down_after: int) -> tuple[int, int]:
    """``fleet-outage``: the slots every node is cut off at and reconnected at."""
    return APP_FAULT_SLOT, APP_FAULT_SLOT + FLEET_OUTAGE_FACTOR * down_after


def get_host_fault_slots(down_after: int) -> tuple[int, int]:
    """``app-host-crash`` and ``app-host-pause``: the slots the host goes and comes back."""
    return APP_FAULT_SLOT, APP_FAULT_SLOT + down_after + APP_FAULT_EXTRA_SLOTS


def inject_faults(sim: Simulation, slot: int, params: ChainParams) -> None:
    faults = sim.config.faults
    start_ms = get_slot_start_ms(params, slot)
    if faults == "crash-producers" and slot % 10 == 5:
        # Crash the producer elected for this slot just before it starts.
        head = sim.get_majority_head()
        if head is not None and head.slot < slot:
            roles = get_roles(sim.memo, head, Slot(slot), params.committee_size)
            victim = sim.by_id.get(compute_node_id(roles.producer))
            if victim is not None and victim.index != 0 and victim.up:
                crash(sim, victim)
                sim.crashed_producers.append((slot, victim.ident.node))
    elif faults == "partition-heal":
        split_at, heal_at = max(3, sim.config.slots // 5), max(6, sim.config.slots // 2)
        if slot == split_at:
            ids = [n.ident.node for n in sim.nodes]
            cut = len(ids) // 2  # even halves: both can win committee majorities
            partition(sim, [set(ids[:cut]), set(ids[cut:])])
        elif slot == heal_at:
            heal(sim, slot)
    elif faults == "fleet-outage":
        cut_at, heal_at = get_fleet_outage_slots(params.down_after_slots)
        ids = [n.ident.node for n in sim.nodes]
        first = len(ids) * 3 // 4
        if slot == cut_at:
            partition(sim, [{node} for node in ids])
        elif slot == heal_at:
            crash(sim, sim.nodes[-1])
            sim.net.partition([set(ids[:first]), *({node} for node in ids[first:])])
        elif slot == heal_at + FLEET_OUTAGE_LAGGARD_SLOTS:
            heal(sim, slot)
    elif faults == "lossy" and slot == 1:
        profile = sim.net.default_profile
        sim.net.set_default_profile(dataclasses.replace(profile, loss=0.10))
    elif faults == "churn":
        _inject_churn(sim, slot, params, start_ms)
    elif faults == "late-join" and slot == get_late_join_slot(sim.config.slots):
        # A fifth of the nodes start once the chain is long and finalized: they catch up
        # through checkpoint sync (consensus/checkpoint_sync.py).
        for node in get_late_nodes(sim):
            sim._start_node(node, start_ms)
    elif faults in ("app-host-crash", "app-host-pause"):
        _inject_app_host_fault(sim, slot, params)
    elif faults == "reorg-apps":
        _inject_reorg(sim, slot)


LATE_SCENARIOS = ("churn", "late-join")
"""Scenarios whose last fifth of the nodes is started after the genesis."""


def get_late_join_slot(slots: int) -> int:
    return max(4, slots * 2 // 3)


def get_late_nodes(sim: Simulation) -> list[SimNode]:
    return [n for n in sim.nodes if n.index >= sim.config.nodes * 4 // 5]


def _inject_churn(sim: Simulation, slot: int, params: ChainParams, start_ms: int) -> None:
    late = get_late_nodes(sim)
    if slot == 3:
        for node in late:
            sim._start_node(node, start_ms)
    if slot % 7 == 0 and slot + 3 < sim.config.slots:
        # One node leaves with a signed exit request, another crashes and restarts.
        leaver = sim.nodes[1 + (slot // 7) % (sim.config.nodes - 1)]
        if leaver.up and leaver.engine.is_validator():
            sim._handle(leaver, leaver.engine.request_exit(start_ms))
    if slot % 9 == 0:
        victim = sim.nodes[1 + (slot * 7) % (sim.config.nodes - 1)]
        if victim.up:
            crash(sim, victim)
            sim.clock.schedule(
                (start_ms + 2 * params.slot_duration_ms) * MILLISECOND,
                functools.partial(restart, sim, victim),
            )


def _inject_app_host_fault(sim: Simulation, slot: int, params: ChainParams) -> None:
    """At the fault slot, crash (or pause) the node hosting the most apps on the
    majority head; restart (or resume) it K + 4 slots later."""
    fault_slot, end_slot = get_host_fault_slots(params.down_after_slots)
    if slot == fault_slot:
        victim = get_busiest_host(sim)
        if victim is None:
            return
        sim.app_victim = victim.index
        head = sim.get_majority_head()
        if head is not None:
            sim.app_victim_apps = sum(
                1
                for r in get_apps_on_node(head.registry, victim.ident.node)
                if r.state is AppState.RUNNING
            )
        if sim.config.faults == "app-host-crash":
            crash(sim, victim)
        else:
            pause(sim, victim)
    elif slot == end_slot and sim.app_victim is not None:
        victim = sim.nodes[sim.app_victim]
        if sim.config.faults == "app-host-crash":
            restart(sim, victim)
        else:
            resume(sim, victim)


def get_busiest_host(sim: Simulation) -> SimNode | None:
    """The up node (not the bootstrap) the majority head places the most running apps
    on; ties to the lowest index. None when no app is placed."""
    head = sim.get_majority_head()
    if head is None:
        return None
    best: tuple[int, int] | None = None
    for node in sim.nodes[1:]:
        if not node.up:
            continue
        placed = get_apps_on_node(head.registry, node.ident.node)
        count = sum(1 for r in placed if r.state is AppState.RUNNING)
        if count and (best is None or count > best[0]):
            best = (count, node.index)
    return sim.nodes[best[1]] if best is not None else None


def _inject_reorg(sim: Simulation, slot: int) -> None:
    """Split into even halves; at the next slot each half's admin (one key, distinct
    sequence numbers) submits an app pinned to a node of that half (a PLACE there) and
    moves one of that half's apps to another node of the half (a MIGRATE). Heal after
    ``REORG_SLOTS``: the lighter side's branch, with its PLACE and MIGRATE, is reverted."""
    ids = [n.ident.node for n in sim.nodes]
    halves = [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
    if slot == REORG_SPLIT_SLOT:
        partition(sim, [set(h) for h in halves])
    elif slot == REORG_SPLIT_SLOT + 1 and sim.apps is not None:
        for half in halves:
            _place_and_move_within(sim, [sim.by_id[n] for n in half], slot)
    elif slot == REORG_SPLIT_SLOT + REORG_SLOTS:
        heal(sim, slot)


def _place_and_move_within(sim: Simulation, half: list[SimNode], slot: int) -> None:
    apps = sim.apps
    assert apps is not None
    via = next((n for n in half if n.up and n.honest and n.engine.get_head_state()), None)
    if via is None:
        return
    state = via.engine.get_head_state()
    assert state is not None
    members = [n.ident.node for n in half if n.up]
    now = sim.now_ms()
    spec = make_pinned_spec(f"sim-pinned-{slot}-{via.index}", members[-1])
    apps.submit(via, CommandKind.SUBMIT, now, spec=spec)
    for record in state.registry.records:
        moved = record.last_move_slot
        if (
            record.node in members
            and record.state is AppState.RUNNING
            and not record.spec.policy.pinned
            and (moved is None or moved + DEFAULT_MIN_MOVE_INTERVAL_SLOTS < slot)
        ):
            target = next(m for m in members if m != record.node)
            if apps.submit(via, CommandKind.MOVE, now, app=record.app, to=target) is not None:
                return


# --- primitives ------------------------------------------------------------------------


def partition(sim: Simulation, groups: list[set[NodeId]]) -> None:
    sim.finality_marks.append(("split", get_finalized_epochs(sim)))
    sim.net.partition(groups)
    if sim.apps is not None:
        sim.apps.on_partition()


def get_finalized_epochs(sim: Simulation) -> dict[int, int]:
    """Each running node's finalized epoch (0 before any finalization)."""
    return {
        n.index: n.engine.pruner.finalized.epoch if n.engine.pruner.finalized else 0
        for n in sim.nodes
        if n.up
    }


def heal(sim: Simulation, slot: int) -> None:
    sim.finality_marks.append(("heal", get_finalized_epochs(sim)))
    sim.net.heal()
    sim.heal_slot = slot
    if sim.apps is not None:
        sim.apps.on_heal()


def _stop(sim: Simulation, node: SimNode) -> None:
    node.up = False
    if node.timer is not None:
        node.timer.cancel()
    node.timer = None
    node.timer_at = None
    sim.net.node_down(node.ident.node)


def crash(sim: Simulation, node: SimNode) -> None:
    _stop(sim, node)
    if sim.apps is not None:
        sim.apps.on_crash(node)


def restart(sim: Simulation, node: SimNode) -> None:
    """Restart with its store: a fresh engine that replays the blocks it had."""
    old = node.engine
    engine = ConsensusEngine(
        node.ident.sk,
        # The store keeps the last finality vote (node/archive.py).
        dataclasses.replace(old.config, last_vote=old.reports.last_vote),
        genesis=old.genesis,
        genesis_signature=old.genesis_msg.signature if old.genesis_msg else None,
        memo=sim.memo,
    )
    now = sim.now_ms()
    # Its store has every block of its chain, below the pruned window too.
    for block_hash in get_chain_from(sim.blocks, old.head):
        engine.on_message(BlockMsg(sim.blocks[block_hash]), None, now)
    node.engine = engine
    if node.dht is not None and node.gossip is not None:
        # A restarted process has lost its routing table and seen-cache too.
        rng = random.Random(sim.config.seed * 7_919 + node.index + now)
        node.dht = DhtNode(node.ident.node, random.Random(rng.getrandbits(64)))
        gossip_rng = random.Random(rng.getrandbits(64))
        node.gossip = Gossip(node.ident.node, gossip_rng, node.gossip.config)
    sim._start_node(node, now)
    if sim.apps is not None:
        sim.apps.on_start(node)


def pause(sim: Simulation, node: SimNode) -> None:
    """SIGSTOP: the node neither runs nor talks; its state and its apps stay."""
    if sim.apps is not None:
        sim.apps.on_pause(node)
    _stop(sim, node)


def resume(sim: Simulation, node: SimNode) -> None:
    """SIGCONT: the same engine, DHT and gossip objects go on from where they were."""
    node.up = True
    sim.net.node_up(node.ident.node)
    sim._arm(node, sim.now_ms())
    if sim.apps is not None:
        sim.apps.on_start(node)
