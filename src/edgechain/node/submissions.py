"""The write side of a node's public interface: commands that change what runs.

:class:`NodeSubmissions` is a mixin of :class:`~edgechain.node.Node`, the counterpart
of ``queries.py``'s read side. ``submit_command`` takes a command someone signed (the
API's ``POST /commands``); ``submit_app`` signs a SUBMIT with the node's operator key
for a local caller who presented its API token (``POST /apps``). Either way the engine
checks the command against the head state before it is kept for a block and gossiped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgechain.chain.assembly import make_command
from edgechain.chain.authority import get_last_seq
from edgechain.chain.encoding import compute_submitted_app_id
from edgechain.chain.model import AppSpec, CommandKind, SignedCommand
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import Output
from edgechain.crypto import bls
from edgechain.errors import LocalError, RejectReason, ValidationError
from edgechain.node.clock import NodeClock
from edgechain.types import AppId, SecretKey


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
