"""The write side of a node's public interface: commands that change what runs.

:class:`NodeSubmissions` is a mixin of :class:`~edgechain.node.Node`, the counterpart
of ``queries.py``'s read side. ``submit_command`` takes a command someone signed (the
API's ``POST /commands``); ``submit_app`` signs a SUBMIT with the node's operator key
for a local caller who presented its API token (``POST /apps``). Either way the engine
checks the command against the head state before it is kept for a block and gossiped.
``leave`` starts the node's own leave (``POST /node/leave``, node/leaving.py), which
``advance_leave`` carries out step by step from the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgechain.chain.assembly import make_command
from edgechain.chain.authority import get_last_seq
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import AppSpec, CommandKind, SignedCommand
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import Output
from edgechain.crypto import bls
from edgechain.errors import LocalError, RejectReason, ValidationError
from edgechain.node.clock import NodeClock
from edgechain.node.config import NodeConfig
from edgechain.node.leaving import LeaveStep, Leaving, write_left_file
from edgechain.runtime.manager import AppManager
from edgechain.telemetry import logs
from edgechain.types import AppId, NodeId, SecretKey

log = logging.getLogger("edgechain.node")


@dataclass(frozen=True)
class CommandReceipt:
    """A command the node accepted and gossiped (not yet in a block)."""

    command_hash: bytes
    seq: int
    app_id: AppId | None = None
    """SUBMIT only: the id the app will have."""


class NoOperatorKeyError(LocalError):
    """``submit_app`` needs an operator key in the node's configuration."""


class NodeSubmissions:
    """Commands into the engine (a mixin of ``Node``, which sets these attributes)."""

    engine: ConsensusEngine | None
    clock: NodeClock
    operator_sk: SecretKey | None
    _operator_seq: int
    """The last seq this node signed with its operator key."""
    sk: SecretKey
    node_id: NodeId
    config: NodeConfig
    apps: AppManager | None
    leaving: Leaving
    stopping: asyncio.Event
    """Set to stop the node's loop (by the daemon's signal handler, or a finished leave)."""

    if TYPE_CHECKING:  # Node's own

        def _apply(self, out: Output) -> None: ...

        def _request_tick(self, at_ms: int) -> None: ...

    def submit_command(self, command: SignedCommand) -> CommandReceipt:
        """Check ``command`` against the head state, keep it for a block and gossip it.

        Raises the engine's ValidationError (``RejectReason.COMMAND_*``, ``NO_CHAIN``) if refused.
        """
        engine = self.engine
        if engine is None:
            raise ValidationError(RejectReason.NO_CHAIN, "node is starting")
        digest, out = engine.submit_command(command, self.clock.now_ms())
        # Who asked what, for the operators' audit (refusals are counted, not logged:
        # anyone reaching the API could fill the log with them).
        logs.info(
            log,
            "command accepted",
            kind=command.kind.name.lower(),
            signer=bytes(command.signer).hex()[:16],
            seq=command.seq,
            command=digest.hex(),
        )
        self._apply(out)
        self._request_tick(self.clock.now_ms())
        app_id = None
        if command.kind is CommandKind.SUBMIT:
            app_id = compute_submitted_app_id(command.signer, command.seq)
        return CommandReceipt(digest, command.seq, app_id)

    def submit_app(self, spec: AppSpec) -> CommandReceipt:
        """Sign a SUBMIT of ``spec`` with the node's operator key and submit it."""
        engine = self.engine
        sk = self.operator_sk
        if sk is None:
            raise NoOperatorKeyError("this node has no operator key (--operator-key)")
        state = engine.get_head_state() if engine is not None else None
        params = engine.params if engine is not None else None
        if state is None or params is None:
            raise ValidationError(RejectReason.NO_CHAIN, "no genesis yet")
        # SPEC's seq rule, and above what this node signed already: two submissions in
        # one millisecond, or before the first is in a block, still get distinct seqs.
        last = get_last_seq(state.authority, bls.sk_to_pk(sk))
        seq = max(last + 1, self._operator_seq + 1, self.clock.now_ms())
        command = make_command(sk, params.chain_id, seq, CommandKind.SUBMIT, spec=spec)
        receipt = self.submit_command(command)
        self._operator_seq = seq
        return receipt

    def leave(self) -> dict[str, Any]:
        """Start leaving the network (node/leaving.py); what ``/status`` says of it."""
        now = self.clock.now_ms()
        if self.leaving.start(now):
            logs.info(log, "leaving", timeout_ms=self.leaving.drain_timeout_ms)
            self._request_tick(now)
        engine = self.engine
        state = engine.get_head_state() if engine is not None else None
        return self.leaving.to_json(state, self.get_busy_apps())

    def get_busy_apps(self) -> list[str]:
        """Apps this node's runtime still runs or hands over (a leave waits for none)."""
        return self.apps.get_busy_apps() if self.apps is not None else []

    def advance_leave(self, now: int) -> None:
        """Carry out the leave's next step, if one is due (called every loop pass)."""
        engine = self.engine
        assert engine is not None
        state = engine.get_head_state()
        step = self.leaving.get_step(state, now, self.get_busy_apps())
        if step is LeaveStep.WAIT:
            return
        if step is LeaveStep.STOP:
            if not self.stopping.is_set():
                behind = [a.hex() for a in self.leaving.apps_left_behind]
                logs.info(log, "left the network", apps_left_behind=[a[:16] for a in behind])
                write_left_file(self.config.data_dir, now, behind)
                self.stopping.set()
            return
        if step is LeaveStep.REQUEST_EXIT:
            if self.leaving.apps_left_behind:
                logs.warning(
                    log,
                    "drain timed out: exiting with apps still here",
                    apps=[a.hex()[:16] for a in self.leaving.apps_left_behind],
                )
            logs.info(log, "exit requested")
            self._apply(engine.request_exit(now))
            return
        params = engine.params
        assert state is not None and params is not None  # a validator has a chain
        seq = max(get_last_seq(state.authority, bls.sk_to_pk(self.sk)) + 1, now)
        command = make_command(
            self.sk, params.chain_id, seq, CommandKind.DRAIN_NODE, node=self.node_id
        )
        try:
            self.submit_command(command)
        except ValidationError as exc:
            # Refused against our head (a stale view, or a drain pending already): the
            # leave tries again after its resend interval.
            logs.warning(log, "own drain refused", reason=exc.reason, detail=exc.detail)
            return
        logs.info(log, "draining", seq=seq)
