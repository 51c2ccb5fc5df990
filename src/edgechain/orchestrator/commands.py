"""Signed commands applied to the chain state: the app lifecycle and the operator keys.

DESIGN.md, "Who may change what runs". A block's commands are applied in block order
after its plan and departures (``apply_block_to_registry``). Each is checked first:

* its shape and its signer's authority against the *parent's* authority
  (``chain/authority.py``): a key revoked in this block still signs in this block, and
  is refused from the next one on; sequence numbers must grow, also within the block;
* that it applies to the registry as the block's earlier steps left it (the app exists,
  a stopped app is not stopped again, a MOVE names a validator the app's policy allows
  ...). A command that does not apply is a ``command_invalid`` ValidationError: the
  producer filters such commands out, so a block carrying one is invalid and gets no
  votes.

Signatures are checked with the block's other signatures (``chain/validation.py``),
batched; this module does no cryptography but the public-key check of a GRANT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from edgechain.chain.authority import (
    Authority,
    apply_commands_to_authority,
    check_command_shape,
    check_command_signer,
    get_last_seq,
    is_draining,
    is_enrollment_revoked,
    is_operator,
)
from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import APP_COMMANDS, AppPolicy, CommandKind, SignedCommand
from edgechain.chain.spec_checks import validate_app_spec
from edgechain.chain.validator_set import ValidatorSet
from edgechain.crypto import bls
from edgechain.errors import RejectReason, ValidationError
from edgechain.orchestrator.liveness import LastSeen, NodeStatus, Stall, get_node_status
from edgechain.orchestrator.policy import NodeInfo, get_missing_runtime, is_node_allowed
from edgechain.orchestrator.registry import (
    AppRecord,
    AppState,
    Registry,
    delete_record,
    get_record,
    put_record,
)
from edgechain.types import AppId, NodeId, Slot


@dataclass(frozen=True)
class CommandContext:
    """What a block's commands are checked against besides the registry."""

    authority: Authority
    """The parent's authority (who may sign)."""
    validators: ValidatorSet
    """The validators after the block's exits: whom an EXCLUDE may name."""
    slot: Slot
    min_validators: int
    """An exclusion may not take the set below this (committee_size + 1)."""
    leaving: frozenset[bytes] = frozenset()
    """Every node the block takes out (exits and exclusions): no MOVE may target one."""
    voters: ValidatorSet | None = None
    """The parent's finality voter set: an EXCLUDE may also name one of them that is no
    longer a validator (a dead device skip blocks took out), which takes it out of the
    voter set too (block format 20, ``chain/finality.py``)."""


def _invalid(detail: str) -> ValidationError:
    return ValidationError(RejectReason.COMMAND_INVALID, detail)


def _get_app(registry: Registry, cmd: SignedCommand) -> AppRecord:
    record = get_record(registry, AppId(cmd.app))
    if record is None:
        raise _invalid(f"{cmd.kind.name}: unknown app {cmd.app.hex()[:16]}")
    return record


def _apply_app_command(registry: Registry, ctx: CommandContext, cmd: SignedCommand) -> Registry:
    kind = cmd.kind
    if kind is CommandKind.SUBMIT:
        assert cmd.spec is not None  # check_command_shape
        _check_spec(cmd)
        app = compute_submitted_app_id(cmd.signer, cmd.seq)
        if get_record(registry, app) is not None:
            raise _invalid("SUBMIT: app id exists")
        check_name_free(registry, cmd)
        record = AppRecord(app=app, spec=cmd.spec, owner=bytes(cmd.signer), created_slot=ctx.slot)
        return put_record(registry, record)
    record = _get_app(registry, cmd)
    if kind is CommandKind.UPDATE:
        assert cmd.spec is not None
        _check_spec(cmd)
        check_name_free(registry, cmd)
        return put_record(registry, replace(record, spec=cmd.spec, version=record.version + 1))
    if kind is CommandKind.STOP:
        if record.state is AppState.STOPPED:
            raise _invalid("STOP: the app is stopped already")
        return put_record(registry, replace(record, state=AppState.STOPPED, move_to=None))
    if kind is CommandKind.START:
        if record.state is AppState.RUNNING:
            raise _invalid("START: the app is running already")
        return put_record(registry, replace(record, state=AppState.RUNNING))
    if kind is CommandKind.MOVE:
        _check_move(record, ctx, NodeId(cmd.node))
        return put_record(registry, replace(record, move_to=NodeId(cmd.node)))
    # REMOVE (check_command_shape admits no other app command)
    return delete_record(registry, record.app)


def get_app_named(registry: Registry, name: str) -> AppRecord | None:
    """The registry's app called ``name`` (names are unique: :func:`check_name_free`)."""
    return next((r for r in registry.records if r.spec.name == name), None)


def check_name_free(registry: Registry, cmd: SignedCommand) -> None:
    """A SUBMIT, or an UPDATE that renames its app, must name no other app of the
    registry: an app's name is unique while the app exists (a REMOVE frees it).

    Why. An operator whose ``apps submit`` failed on a loaded node (the answer lost, or
    late) sends it again, and the first call may have reached the node all the same:
    with names free, the chain ran the app twice, as two apps (session 46's lab: 16 apps
    for 8 submitted), and every command naming it was then ambiguous. The second
    submission now gets a clear refusal at the API instead, and a block carrying it is
    invalid. A linear scan: submissions are rare, and a block holds few."""
    assert cmd.spec is not None
    name = cmd.spec.name
    other = get_app_named(registry, name)
    if other is not None and (cmd.kind is CommandKind.SUBMIT or other.app != cmd.app):
        advice = (
            "change it with `edgechain apps update`, or remove it first"
            if cmd.kind is CommandKind.SUBMIT
            else "choose another name, or remove that app first"
        )
        raise _invalid(
            f"{cmd.kind.name}: an app named {name!r} exists (app {other.app.hex()[:16]}): " + advice
        )


def check_move_destination(
    cmd: SignedCommand,
    auth: Authority,
    last_seen: LastSeen,
    slot: Slot,
    down_after: int,
    stall: Stall,
) -> None:
    """The API's check that a MOVE can be carried out now: its node is neither
    draining nor down (``liveness.get_node_status``), which the planner never moves an
    app to (``planner._plan_operator_moves``). Not a validity rule: a block may carry
    such a MOVE, whose ``move_to`` then waits on the record until the node is usable
    again; an operator asking at the API is told instead of left with an app that
    shows "moving to" for as long as the drain or the outage lasts."""
    if cmd.kind is not CommandKind.MOVE or cmd.node is None or down_after <= 0:
        return
    target = NodeId(cmd.node)
    status = get_node_status(last_seen, target, slot, down_after, auth.draining, stall)
    if status is NodeStatus.DRAINING:
        raise _invalid(
            f"MOVE: {target.hex()[:16]} is draining: nothing is moved to it until the "
            "admin undoes the drain"
        )
    if status is NodeStatus.DOWN:
        raise _invalid(
            f"MOVE: {target.hex()[:16]} is down: silent on the chain for {down_after} slots"
        )


def _check_spec(cmd: SignedCommand) -> None:
    assert cmd.spec is not None
    try:
        validate_app_spec(cmd.spec)
    except ValidationError as exc:
        raise _invalid(f"{cmd.kind.name}: {exc.detail or exc.reason}") from None


def _check_move(record: AppRecord, ctx: CommandContext, target: NodeId) -> None:
    if record.state is not AppState.RUNNING or record.node is None:
        raise _invalid("MOVE: only a placed, running app can move")
    if target == record.node:
        raise _invalid("MOVE: the app runs on that node already")
    info = ctx.validators.get(target)
    if info is None or target in ctx.leaving:
        raise _invalid(f"MOVE: {target.hex()[:16]} is not a validator")
    node = NodeInfo(info.node, info.labels)
    missing = get_missing_runtime(record.spec, node)
    if missing is not None:
        raise _invalid(f"MOVE: {target.hex()[:16]} lacks {missing} for the app")
    if record.spec.policy.pinned or not is_node_allowed(record.spec, node):
        raise _invalid(f"MOVE: {_get_policy_refusal(record.spec.policy, target)}")


def _get_policy_refusal(policy: AppPolicy, target: NodeId) -> str:
    """Which part of the app's policy keeps it off ``target``: what an operator changes
    (``apps update``) to move it there."""
    if policy.pin_node and policy.pin_node != target:
        return f"the app is pinned to node {policy.pin_node.hex()[:16]} (policy pin_node)"
    if policy.pinned:
        return "the app is pinned to the node it runs on (policy pinned)"
    labels = ", ".join(policy.allowed_labels)
    return f"{target.hex()[:16]} carries none of the app's allowed labels ({labels})"


def _check_authority_command(
    auth: Authority, ctx: CommandContext, cmd: SignedCommand, excluded: set[bytes]
) -> None:
    if cmd.kind is CommandKind.GRANT_OPERATOR:
        if is_operator(auth, cmd.key):
            raise _invalid("GRANT_OPERATOR: already an operator")
        if not bls.is_public_key_valid(cmd.key):
            raise _invalid("GRANT_OPERATOR: not a valid public key")
    elif cmd.kind is CommandKind.REVOKE_OPERATOR:
        if not is_operator(auth, cmd.key) or cmd.key == auth.admin_key:
            raise _invalid("REVOKE_OPERATOR: not an operator")
    elif cmd.kind is CommandKind.EXCLUDE_NODE:
        _check_exclusion(ctx, cmd.node, excluded)
    elif cmd.kind is CommandKind.DRAIN_NODE:
        if cmd.node not in ctx.validators or cmd.node in excluded:
            raise _invalid("DRAIN_NODE: not a validator")
        if is_draining(auth, cmd.node):
            raise _invalid("DRAIN_NODE: already draining")
    elif cmd.kind is CommandKind.UNDRAIN_NODE and not is_draining(auth, cmd.node):
        raise _invalid("UNDRAIN_NODE: not draining")
    elif cmd.kind is CommandKind.REVOKE_ENROLLMENT and is_enrollment_revoked(auth, cmd.key):
        raise _invalid("REVOKE_ENROLLMENT: already revoked")


def _check_exclusion(ctx: CommandContext, node: bytes, excluded: set[bytes]) -> None:
    """An EXCLUDE names a validator or a finality voter, not one the block already
    excludes, and leaves the validator set at its floor and the voter set non-empty."""
    voters = ctx.voters if ctx.voters is not None else ValidatorSet(())
    is_validator = node in ctx.validators and node not in excluded
    if not is_validator and (node not in voters or node in excluded):
        raise _invalid("EXCLUDE_NODE: not a validator nor a finality voter")
    if is_validator and _count_left(ctx.validators, excluded) - 1 < ctx.min_validators:
        raise _invalid("EXCLUDE_NODE: the validator set would fall below its floor")
    if node in voters and _count_left(voters, excluded) - 1 < 1:
        raise _invalid("EXCLUDE_NODE: it is the last finality voter")


def _count_left(vs: ValidatorSet, excluded: set[bytes]) -> int:
    """Members of ``vs`` the block has not excluded so far."""
    return len(vs) - sum(1 for node in excluded if node in vs)


def apply_commands(
    registry: Registry, ctx: CommandContext, commands: Sequence[SignedCommand]
) -> tuple[Registry, Authority]:
    """The registry and authority after a block's commands, in order; the first one
    that does not check raises its ValidationError."""
    if not commands:
        return registry, ctx.authority
    last: dict[bytes, int] = {}
    excluded: set[bytes] = set()
    # Signers are checked against the parent's authority; grants and revocations are
    # checked against the authority so far, so granting one key twice in a block is
    # refused like granting it twice in two blocks.
    so_far = ctx.authority
    for cmd in commands:
        signer = bytes(cmd.signer)
        seq = last[signer] if signer in last else get_last_seq(ctx.authority, signer)
        check_command_shape(cmd)
        check_command_signer(ctx.authority, cmd, seq)
        if cmd.kind in APP_COMMANDS:
            registry = _apply_app_command(registry, ctx, cmd)
        else:
            _check_authority_command(so_far, ctx, cmd, excluded)
            if cmd.kind is CommandKind.EXCLUDE_NODE:
                excluded.add(cmd.node)
            so_far = apply_commands_to_authority(so_far, (cmd,))
        last[signer] = cmd.seq
    return registry, apply_commands_to_authority(ctx.authority, commands)
