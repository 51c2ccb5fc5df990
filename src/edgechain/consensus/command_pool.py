"""Signed commands waiting for a block: checked on arrival, chosen by the producer.

A command reaches a node from its API or from gossip. Both paths check it against the
head state before keeping it (DESIGN.md, "Who may change what runs": anything else is
refused and counted): shape, signature, and that its signer may issue it with this
sequence number. Whether it *applies* (the app exists, is not stopped already ...) is
checked in full at the API, where the caller gets the answer, and again by the producer,
which includes only commands that apply in (signer, sequence) order on top of the
block's plan (``orchestrator/commands.py``).

A command the API took can stop applying before a block carries it: another operator's
command lands first (a REMOVE of the app it stops, a SUBMIT of the name it submits).
Each new head checks the pending commands again (``prune``); one that does not apply to
``REFUSED_HEADS`` heads in a row, while no earlier command of its signer is pending
here (which might make it apply), is dropped, and so is one no block took within
``COMMAND_TTL_SLOTS``. The node remembers why (``dropped``), so its sender learns it
(``GET /commands/{hash}``) instead of waiting for a block that never comes.

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
from edgechain.chain.command_encoding import compute_command_hash, compute_submitted_app_id
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
REFUSED_HEADS = 3
"""A pending command that does not apply to this many heads in a row is dropped: more
than one, so that a head about to be replaced by a fork, or a signer's earlier command
still on its way, does not drop it at once."""
MAX_DROPPED_KEPT = 1_024
"""Why recent commands were dropped, for their senders (oldest forgotten first)."""
NAMING_COMMANDS = frozenset((CommandKind.SUBMIT, CommandKind.UPDATE))
"""The commands that give an app its name (unique: ``commands.check_name_free``)."""


@dataclass(frozen=True)
class PendingCommand:
    command: SignedCommand
    received_slot: Slot
    refusal: str | None = None
    """Why the command did not apply to the last head checked (None: it did, or an
    earlier command of its signer is pending)."""
    refused_heads: int = 0
    """Heads in a row the command did not apply to."""


@dataclass(frozen=True)
class DroppedCommand:
    """A command this node no longer keeps, never carried by its head chain."""

    command: SignedCommand
    reason: str
    slot: Slot
    """The head's slot when it was dropped."""


class CommandPool:
    """Commands seen but not yet on the head chain, keyed by command hash."""

    def __init__(self, chain_id: str, committee_size: int, cache: SignatureCache) -> None:
        self.chain_id = chain_id
        self.committee_size = committee_size
        self.down_after_slots = 0
        """The genesis K (``liveness.is_down``), once the engine has a genesis."""
        self.cache = cache
        self.pending: dict[bytes, PendingCommand] = {}
        self.dropped: dict[bytes, DroppedCommand] = {}
        """Commands dropped unapplied, by hash, at most ``MAX_DROPPED_KEPT``."""

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
            self._check_applies(cmd, head, slot)
            stall = compute_stall(head.stall, head.slot, slot)
            check_move_destination(
                cmd, head.authority, head.last_seen, slot, self.down_after_slots, stall
            )
        if digest not in self.pending:
            if len(self.pending) >= MAX_PENDING_COMMANDS or len(mine) >= MAX_PENDING_PER_SIGNER:
                raise ValidationError(RejectReason.COMMAND_POOL_FULL)
            self.pending[digest] = PendingCommand(cmd, slot)
            self.dropped.pop(digest, None)
        return digest

    def _check_applies(self, cmd: SignedCommand, head: BlockState, slot: Slot) -> None:
        """Raises the ValidationError ``cmd`` meets applied alone on ``head``'s registry."""
        ctx = get_command_context(head, head.validators, slot, self.committee_size)
        apply_commands(head.registry, ctx, (cmd,))

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
                and not _is_same_app(held, cmd)
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
        """Drop what the head chain applied (the signer's seq reached it), what is too
        old to apply, and what did not apply to ``REFUSED_HEADS`` heads in a row."""
        auth = head.authority
        for digest, pending in list(self.pending.items()):
            cmd = pending.command
            if cmd.seq <= get_last_seq(auth, cmd.signer):
                # Applied, or passed over for a later seq of its signer: the head chain
                # says which (``NodeQueries.get_command_status``).
                del self.pending[digest]
            elif pending.received_slot + COMMAND_TTL_SLOTS < slot:
                del self.pending[digest]
                reason = pending.refusal or "no block carried it"
                self._drop(digest, cmd, f"{reason} (after {COMMAND_TTL_SLOTS} slots)", slot)
        first_seq: dict[bytes, int] = {}
        for pending in self.pending.values():
            signer = bytes(pending.command.signer)
            first_seq[signer] = min(first_seq.get(signer, pending.command.seq), pending.command.seq)
        for digest, pending in list(self.pending.items()):
            cmd = pending.command
            # An earlier command of its signer, pending here, may make it apply.
            refusal = (
                None if first_seq[bytes(cmd.signer)] < cmd.seq else self._get_refusal(cmd, head)
            )
            if refusal is None:
                self.pending[digest] = dataclasses.replace(pending, refusal=None, refused_heads=0)
            elif pending.refused_heads + 1 >= REFUSED_HEADS:
                del self.pending[digest]
                self._drop(digest, pending.command, refusal, slot)
            else:
                refused_heads = pending.refused_heads + 1
                self.pending[digest] = dataclasses.replace(
                    pending, refusal=refusal, refused_heads=refused_heads
                )

    def _get_refusal(self, cmd: SignedCommand, head: BlockState) -> str | None:
        """Why ``cmd`` does not apply on ``head`` as the next block's command; None when
        it does."""
        try:
            self._check_applies(cmd, head, Slot(head.slot + 1))
        except ValidationError as exc:
            return str(exc)
        return None

    def _drop(self, digest: bytes, cmd: SignedCommand, reason: str, slot: Slot) -> None:
        self.dropped[digest] = DroppedCommand(cmd, reason, slot)
        while len(self.dropped) > MAX_DROPPED_KEPT:
            del self.dropped[next(iter(self.dropped))]


def _is_same_app(held: SignedCommand, cmd: SignedCommand) -> bool:
    """Whether UPDATE ``cmd`` names the app ``held`` names (an UPDATE of it, or its
    SUBMIT): keeping the app's own name is no second app of that name."""
    if cmd.kind is not CommandKind.UPDATE:
        return False
    if held.kind is CommandKind.SUBMIT:
        return cmd.app == compute_submitted_app_id(held.signer, held.seq)
    return held.app == cmd.app
