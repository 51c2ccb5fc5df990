"""Signed commands waiting for a block: checked on arrival, chosen by the producer.

A command reaches a node from its API or from gossip. Both paths check it against the
head state before keeping it (DESIGN.md, "Who may change what runs": anything else is
refused and counted): shape, signature, and that its signer may issue it with this
sequence number. Whether it *applies* (the app exists, is not stopped already ...) is
checked in full at the API, where the caller gets the answer, and again by the producer,
which includes only commands that apply in (signer, sequence) order on top of the
block's plan (``orchestrator/commands.py``); a command that no longer applies waits
until it expires, since an earlier command of its signer may still be on its way.

Sans-I/O like the engine: every input carries its slot, nothing reads a clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgechain.chain.authority import (
    check_command_shape,
    check_command_signer,
    get_last_seq,
)
from edgechain.chain.command_encoding import compute_command_hash
from edgechain.chain.model import Block, CommandKind, SignedCommand
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import validate_command_signature
from edgechain.consensus.state import BlockState, apply_block_commands, get_command_context
from edgechain.errors import RejectReason, ValidationError
from edgechain.orchestrator.commands import apply_commands, check_move_destination
from edgechain.orchestrator.liveness import compute_stall
from edgechain.types import Slot

MAX_PENDING_COMMANDS = 4_096
MAX_PENDING_PER_SIGNER = 256
COMMAND_TTL_SLOTS = 64
"""A command no block included within this many slots is dropped (it never applied)."""
NAMING_COMMANDS = frozenset((CommandKind.SUBMIT, CommandKind.UPDATE))
"""The commands that give an app its name (unique: ``commands.check_name_free``)."""


@dataclass(frozen=True)
class PendingCommand:
    command: SignedCommand
    received_slot: Slot


class CommandPool:
    """Commands seen but not yet on the head chain, keyed by command hash."""

    def __init__(self, chain_id: str, committee_size: int, cache: SignatureCache) -> None:
        self.chain_id = chain_id
        self.committee_size = committee_size
        self.down_after_slots = 0
        """The genesis K (``liveness.is_down``), once the engine has a genesis."""
        self.cache = cache
        self.pending: dict[bytes, PendingCommand] = {}

    def add(
        self, cmd: SignedCommand, head: BlockState, slot: Slot, *, check_applies: bool
    ) -> bytes:
        """Check ``cmd`` against ``head`` and keep it; returns its hash. Raises a
        ValidationError (a ``RejectReason.COMMAND_*`` reason) when it is refused. With
        ``check_applies`` (the API) it must also apply to the head registry, unless its
        signer has earlier commands still pending here (they may make it apply), and a
        MOVE must name a node the planner can move to now (not a validity rule: a block
        may carry such a MOVE, which then waits on the record)."""
        check_command_shape(cmd)
        validate_command_signature(cmd, self.chain_id, self.cache)
        signer = bytes(cmd.signer)
        check_command_signer(head.authority, cmd, get_last_seq(head.authority, signer))
        mine = [p for p in self.pending.values() if p.command.signer == cmd.signer]
        if any(p.command.seq == cmd.seq and p.command != cmd for p in mine):
            raise ValidationError(
                RejectReason.COMMAND_REPLAYED, f"seq {cmd.seq} is pending already"
            )
        digest = compute_command_hash(cmd)
        if check_applies:
            self._check_name_not_pending(cmd, digest)
        if check_applies and not any(p.command.seq < cmd.seq for p in mine):
            ctx = get_command_context(head, head.validators, slot, self.committee_size)
            apply_commands(head.registry, ctx, (cmd,))
            stall = compute_stall(head.stall, head.slot, slot)
            check_move_destination(
                cmd, head.authority, head.last_seen, slot, self.down_after_slots, stall
            )
        if digest not in self.pending:
            if len(self.pending) >= MAX_PENDING_COMMANDS or len(mine) >= MAX_PENDING_PER_SIGNER:
                raise ValidationError(RejectReason.COMMAND_POOL_FULL)
            self.pending[digest] = PendingCommand(cmd, slot)
        return digest

    def _check_name_not_pending(self, cmd: SignedCommand, digest: bytes) -> None:
        """The API's check that no other pending command gives an app ``cmd``'s name
        (``commands.check_name_free`` checks the head registry): a submission sent again
        while the first still waits for a block is refused here, where its sender gets
        the answer, rather than dropped by every producer."""
        if cmd.kind not in NAMING_COMMANDS or cmd.spec is None:
            return
        for held_digest, pending in self.pending.items():
            held = pending.command
            if (
                held_digest != digest
                and held.kind in NAMING_COMMANDS
                and held.spec is not None
                and held.spec.name == cmd.spec.name
                and not (cmd.kind is held.kind is CommandKind.UPDATE and held.app == cmd.app)
            ):
                raise ValidationError(
                    RejectReason.COMMAND_INVALID,
                    f"{cmd.kind.name}: an app named {cmd.spec.name!r} is submitted already "
                    f"(command {held_digest.hex()[:16]}, seq {held.seq}) and waits for a block",
                )

    def select(self, parent: BlockState, candidate: Block, limit: int) -> tuple[SignedCommand, ...]:
        """The commands ``candidate`` (plan, exits and inclusions already set) carries:
        pending ones in (signer, seq) order, each kept only if the block stays valid with
        it, checked by the very transition validators run (``apply_block_commands``)."""
        chosen: list[SignedCommand] = []
        ordered = sorted(
            (p.command for p in self.pending.values()), key=lambda c: (c.signer, c.seq)
        )
        for cmd in ordered:
            if len(chosen) >= limit:
                break
            trial = dataclasses.replace(candidate, commands=(*chosen, cmd))
            try:
                apply_block_commands(parent, trial, self.committee_size)
            except ValidationError:
                continue
            chosen.append(cmd)
        return tuple(chosen)

    def prune(self, head: BlockState, slot: Slot) -> None:
        """Drop what the head chain applied (the signer's seq reached it) or what is
        too old to apply."""
        auth = head.authority
        for digest in [
            d
            for d, p in self.pending.items()
            if p.command.seq <= get_last_seq(auth, p.command.signer)
            or p.received_slot + COMMAND_TTL_SLOTS < slot
        ]:
            del self.pending[digest]
