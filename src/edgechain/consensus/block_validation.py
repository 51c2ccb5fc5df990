"""Full validation of a block on its parent state (paper Algorithm 3).

Full validation = the self-contained checks of ``chain/validation.py`` with the
*elected* producer and committee, plus what only consensus knows: the timestamp window,
the difficulty rule, the parent state's root, the recomputed migration plan, the
admission of each inclusion against the parent state (banned nodes, enrollment tokens,
``chain/departures.py``), and the signed commands against the parent's authority and
registry (``orchestrator/commands.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgechain.chain.attestation import count_signers
from edgechain.chain.authority import is_banned
from edgechain.chain.departures import check_inclusion_slot
from edgechain.chain.model import AnyBlock, Block, ChainParams, InclusionRequest
from edgechain.chain.validation import (
    BlockContext,
    check_admission,
    validate_block,
    validate_checked_candidate,
    validate_skip_block,
)
from edgechain.chain.validator_set import compute_node_id
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.memo import Memo
from edgechain.consensus.state import (
    apply_block_commands,
    compute_next_difficulty,
    compute_vdf_group,
    get_candidate_deadline_ms,
    get_plan,
    get_roles,
    get_slot_start_ms,
)
from edgechain.consensus.state_codec import get_state_root
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import BlockHash, Slot


@dataclass(frozen=True)
class ValidationMode:
    check_attestation: bool = True
    proof_scale: int = 1
    """The VDF proof uses ``max(1, difficulty // proof_scale)`` iterations (1 on a
    real node; the simulator scales proofs down and charges its clock the full cost)."""


def get_proof_iterations(difficulty: int, proof_scale: int) -> int:
    return max(1, difficulty // proof_scale)


def check_inclusion_on_parent(
    req: InclusionRequest, params: ChainParams, parent: BlockState, slot: Slot
) -> None:
    """What admits ``req`` in a block at ``slot`` on ``parent`` beyond its signatures
    (``chain/validation.validate_inclusion``): its node not banned, its enrollment token
    neither expired nor revoked (``check_admission``), its nonce fresh and after its
    node's last departure (``chain/departures.py``). Full validation and the producer's
    choice (``producer.is_admissible``) both ask this; the first failure is raised."""
    check_admitted(req, params, parent, slot)
    check_inclusion_slot(req, slot, parent.departures)


def check_admitted(
    req: InclusionRequest, params: ChainParams, parent: BlockState, slot: Slot
) -> None:
    """The admin's part of admitting ``req`` in a block at ``slot`` on ``parent``: its
    node not banned, its enrollment token neither expired nor revoked. A joining node
    asks this of its own request too (``consensus/joining.py``)."""
    if is_banned(parent.authority, compute_node_id(req.public_key)):
        raise ValidationError(RejectReason.BANNED_NODE)
    check_admission(req, params, parent.authority, slot)


def validate_full(
    memo: Memo,
    params: ChainParams,
    parent: BlockState,
    block: AnyBlock,
    block_hash: BlockHash,
    mode: ValidationMode,
) -> int:
    """Validate ``block`` on ``parent`` as a validator would (Algorithm 3); returns signers.

    Results are memoised by (hash, mode): a block's content fixes its parent, so the
    answer cannot differ between two calls. A rejection is memoised too and re-raised.
    """
    key = ("valid", block_hash, mode)
    outcome = memo.get(
        key, lambda: _validate_outcome(memo, params, parent, block, block_hash, mode)
    )
    if isinstance(outcome, ValidationError):
        raise ValidationError(outcome.reason, outcome.detail)
    return outcome


def _validate_outcome(
    memo: Memo,
    params: ChainParams,
    parent: BlockState,
    block: AnyBlock,
    block_hash: BlockHash,
    mode: ValidationMode,
) -> int | ValidationError:
    try:
        _validate_uncached(memo, params, parent, block, block_hash, mode)
    except ValidationError as exc:
        return exc
    return count_signers(block.signers)


def _is_checked_candidate(memo: Memo, block_hash: BlockHash, mode: ValidationMode) -> bool:
    """Whether the block of this hash passed as a candidate (the memo's verdict: its
    signer count, 0 for a candidate, or the ValidationError that refused it)."""
    verdict = memo.peek(("valid", block_hash, replace(mode, check_attestation=False)))
    return isinstance(verdict, int)


def _validate_uncached(
    memo: Memo,
    params: ChainParams,
    parent: BlockState,
    block: AnyBlock,
    block_hash: BlockHash,
    mode: ValidationMode,
) -> None:
    roles = get_roles(memo, parent, block.slot, params.committee_size)
    ctx = BlockContext(
        params=params,
        parent_hash=parent.block_hash,
        parent_slot=parent.slot,
        vdf_iterations=get_proof_iterations(parent.difficulty, mode.proof_scale),
        vdf_group=compute_vdf_group(parent, block.slot, params.vdf_group_slots),
        validators=parent.validators,
        producer_key=roles.producer,
        committee=roles.committee,
    )
    if not isinstance(block, Block):
        validate_skip_block(block, block_hash, ctx, check_attestation=mode.check_attestation)
        return
    if mode.check_attestation and _is_checked_candidate(memo, block_hash, mode):
        # A committee member checked this block as its candidate before it voted
        # (Algorithm 3), and the hash covers all of that: the VDF, the reports, the
        # plan and the commands are not checked a second time.
        validate_checked_candidate(block, block_hash, ctx, memo.signatures)
        return
    slot_start = get_slot_start_ms(params, block.slot)
    if not slot_start <= block.timestamp_ms <= get_candidate_deadline_ms(params, block.slot):
        raise ValidationError(RejectReason.BAD_TIMESTAMP)
    expected = compute_next_difficulty(params, parent.difficulty, block.timestamp_ms - slot_start)
    if block.difficulty != expected:
        raise ValidationError(RejectReason.BAD_DIFFICULTY_RULE, f"{block.difficulty} != {expected}")
    if block.state_root != get_state_root(memo, parent):
        raise ValidationError(RejectReason.BAD_STATE_ROOT, "not the parent state's root")
    validate_block(
        block, block_hash, ctx, check_attestation=mode.check_attestation, cache=memo.signatures
    )
    if block.plan != get_plan(memo, params, parent, block.slot):
        raise ValidationError(RejectReason.WRONG_PLAN)
    for req in block.inclusions:
        check_inclusion_on_parent(req, params, parent, block.slot)
    # Who signed each command and whether it applies: a block carrying a command that
    # does not check gets no votes. (Without commands there is nothing to check: the
    # plan was just compared with the recomputed one.)
    if block.commands:
        apply_block_commands(parent, block, params.committee_size)
