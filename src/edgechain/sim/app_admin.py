"""The simulated fleet's admin: app specs and admin-signed commands handed to a node.

Simulations use the testing ADMIN key as the chain's admin (``ChainParams.admin_key``),
so the app layer (``sim/apps.py``) and the app scenarios (``sim/faults.py``) submit
apps and move them exactly as an operator's client would: a signed command given to one
node's engine, which checks it against its head and gossips it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import AppPolicy, AppSpec, CommandKind, RuntimeKind
from edgechain.errors import PeerError
from edgechain.testing import ADMIN
from edgechain.types import AppId, NodeId

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode


def make_app_spec(index: int, stateful_every: int, replica_interval_slots: int) -> AppSpec:
    """The ``index``-th simulated app: small; every ``stateful_every``-th is stateful
    with state replicas every ``replica_interval_slots``."""
    stateful = stateful_every > 0 and index % stateful_every == 0
    return AppSpec(
        name=f"sim-app-{index}",
        runtime=RuntimeKind.PROCESS,
        command=("sleep", "infinity"),
        cpu_bp=100 + 50 * (index % 4),
        ram_bp=100,
        stateful=stateful,
        replica_interval_slots=replica_interval_slots if stateful else 0,
    )


def make_pinned_spec(name: str, pin: NodeId) -> AppSpec:
    """An app the planner may only place on ``pin``."""
    return AppSpec(
        name=name,
        runtime=RuntimeKind.PROCESS,
        command=("sleep", "infinity"),
        cpu_bp=100,
        ram_bp=100,
        policy=AppPolicy(pinned=True, pin_node=pin),
    )


class Admin:
    """Signs commands with the admin key, one sequence number after the other."""

    def __init__(self, sim: Simulation, chain_id: str) -> None:
        self.sim = sim
        self.chain_id = chain_id
        self.next_seq = 1
        self.submitted: list[AppId] = []

    def send(
        self,
        node: SimNode,
        kind: CommandKind,
        now: int,
        *,
        spec: AppSpec | None = None,
        app: bytes = b"",
        to: bytes = b"",
    ) -> AppId | None:
        """Hand a signed command to ``node``'s engine (it gossips it). Returns the app
        it is about (for a SUBMIT, the new app's id), or None when the engine refuses
        it (no chain yet, or it does not apply to the engine's head)."""
        seq = self.next_seq
        cmd = make_command(ADMIN.sk, self.chain_id, seq, kind, app=app, node=to, spec=spec)
        try:
            _, out = node.engine.submit_command(cmd, now)
        except PeerError:
            return None
        self.next_seq += 1
        self.sim._handle(node, out)
        if kind is not CommandKind.SUBMIT:
            return AppId(app)
        new = compute_submitted_app_id(ADMIN.pk, seq)
        self.submitted.append(new)
        return new
