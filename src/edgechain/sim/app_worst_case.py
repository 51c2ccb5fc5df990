"""The paper's worst case in the simulator (§4.2, Figs. 9 and 11; issue 15, item 4):
every app starts on one node, then the chain's planner spreads them.

Done the way an operator would, and as ``benchmarks/balance_live.py`` does with real
nodes: the admin drains every node but the first (DRAIN_NODE), submits the apps (the
planner can place them only there), and once that node's head shows every app running
on it, undrains the others (UNDRAIN_NODE). From then on the planner balances, with the
apps' loads and migration costs of ``sim/app_load.py``. Like ``lab/balance_setup.py``,
it sends at most ``BATCH`` commands a tick and sends a command again once it can no
longer apply (not on the head ``RESEND_SLOTS`` slots later): commands of one key that
reach a producer out of order lose the lower sequence numbers.

Every slot it records the *true* load of each up node (the demand of the copies it
runs, not what the saturated node can measure), so that max / mean over nodes shows
how far from balanced the fleet really is; ``slots_to_balance`` is the first slot after
the undrain at which max / mean is at most 1.25, as in ``lab/planner_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgechain.chain.authority import is_draining
from edgechain.chain.model import CommandKind
from edgechain.consensus.state import get_current_slot
from edgechain.orchestrator.registry import AppState, get_record
from edgechain.types import NodeId

if TYPE_CHECKING:
    from edgechain.sim.apps import AppLayer

BALANCED_RATIO = 1.25
BATCH = 16
"""Admin commands sent per tick, at most."""
RESEND_SLOTS = 3


@dataclass
class WorstCase:
    """Drain, submit, undrain; and the fleet's true load per slot."""

    sent: dict[bytes, int] = field(default_factory=dict)
    """Node -> slot its DRAIN (then UNDRAIN) was last sent in."""
    undrain_at: int | None = None
    """The slot the undrain began: every app ran on the first node."""
    undrain_slot: int | None = None
    """The slot the first node's head showed every node active again."""
    loads: dict[int, list[int]] = field(default_factory=dict)
    """Slot -> true CPU demand (bp) of every up node, sampled at the slot's last tick."""

    def may_submit(self, layer: AppLayer, now: int) -> bool:
        """Drain every node but the first (once), and say whether the head of the first
        shows them all draining, so that the apps can only land there."""
        if layer.admin.submitted:
            return True  # draining done: the rest goes in as it can
        first = layer.sim.nodes[0]
        state = first.engine.get_head_state()
        if state is None or not first.up:
            return False
        undrained = [
            n.ident.node
            for n in layer.sim.nodes[1:]
            if not is_draining(state.authority, n.ident.node)
        ]
        self._send(layer, CommandKind.DRAIN_NODE, undrained, now)
        return not undrained

    def _send(self, layer: AppLayer, kind: CommandKind, nodes: list[NodeId], now: int) -> None:
        """``kind`` for up to ``BATCH`` of ``nodes`` not sent recently (resent after
        ``RESEND_SLOTS``: a command that lost its sequence race never applies)."""
        first = layer.sim.nodes[0]
        slot = get_current_slot(layer.params, now)
        due = [n for n in nodes if self.sent.get(bytes(n), -RESEND_SLOTS) + RESEND_SLOTS <= slot]
        for node_id in due[:BATCH]:
            if layer.submit(first, kind, now, to=node_id) is None:
                return  # no chain yet, or it does not apply now: next tick
            self.sent[bytes(node_id)] = slot

    def on_tick(self, layer: AppLayer, now: int, slot: int) -> None:
        self.loads[slot] = [
            sum(layer.get_demand(apps, app, now) for app in apps.copies if apps.is_live_copy(app))
            for node, apps in zip(layer.sim.nodes, layer.nodes, strict=True)
            if node.up
        ]
        if self.undrain_slot is not None or layer.to_submit or not layer.admin.submitted:
            return
        if self.undrain_at is not None:
            self._undrain(layer, now, slot)
            return
        first = layer.sim.nodes[0]
        state = first.engine.get_head_state()
        if state is None or not first.up:
            return
        home = first.ident.node
        for app in layer.admin.submitted:
            record = get_record(state.registry, app)
            if record is None or record.node != home or record.state is not AppState.RUNNING:
                return
            if not layer.nodes[0].is_live_copy(app):
                return
        self.undrain_at = slot
        self.sent.clear()
        self._undrain(layer, now, slot)

    def _undrain(self, layer: AppLayer, now: int, slot: int) -> None:
        state = layer.sim.nodes[0].engine.get_head_state()
        if state is None:
            return
        draining = [
            n.ident.node for n in layer.sim.nodes[1:] if is_draining(state.authority, n.ident.node)
        ]
        self._send(layer, CommandKind.UNDRAIN_NODE, draining, now)
        if not draining:
            self.undrain_slot = slot

    def get_ratios(self) -> dict[int, float]:
        """Slot -> max / mean of the up nodes' true load (slots with any load)."""
        ratios = {}
        for slot, loads in sorted(self.loads.items()):
            total = sum(loads)
            if loads and total:
                ratios[slot] = round(max(loads) * len(loads) / total, 3)
        return ratios

    def summary(self, migrations: int) -> dict[str, Any]:
        ratios = self.get_ratios()
        start = self.undrain_at
        after = {s: r for s, r in ratios.items() if start is not None and s > start}
        balanced = next((s for s, r in after.items() if r <= BALANCED_RATIO), None)
        return {
            "undrain_at": start,
            "undrain_slot": self.undrain_slot,
            "slots_to_balance": (
                balanced - start if balanced is not None and start is not None else None
            ),
            "migrations": migrations,
            "max_over_mean_by_slot": ratios,
        }
