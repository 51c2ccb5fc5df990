"""Checks of everything a block proves on its own (paper §3.4, Algorithm 3).

Given its parent's context and the *given* producer key and committee, a block is
checked for: slot and epoch arithmetic, difficulty bounds, the VDF proof over the
parent hash, the producer's signature, every resource report's signature and bounds,
every inclusion's proof of possession, signature and admission ticket, every exit's
signature, every signed command's shape and signature, and the committee's aggregate
signature with a signer bitfield covering a majority. Each rejection raises
:class:`ValidationError` with its own reason code (a :class:`~edgechain.errors.RejectReason`).

What needs the elected roles or the recomputed plan (is this the elected producer? is
the plan the deterministic one?) lives in ``consensus/``, which calls into here
(DESIGN.md, "Dependency direction"): ``chain/`` imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgechain.chain.attestation import (
    count_signers,
    get_signer_indices,
    is_bitfield_well_formed,
    is_majority,
)
from edgechain.chain.authority import Authority, check_command_shape, is_enrollment_revoked
from edgechain.chain.command_encoding import compute_command_signing_root
from edgechain.chain.encoding import VDF_FORM_SIZE, compute_vote_message
from edgechain.chain.enrollment import (
    EnrollmentToken,
    compute_enrollment_message,
    decode_enrollment_token,
    is_enrollment_token,
)
from edgechain.chain.model import (
    COORD_LIMIT_US,
    MAX_VDF_GROUP_EPOCHS,
    UNMEASURED_STATE_ROOM,
    AddressRecord,
    Block,
    ChainParams,
    ExitRequest,
    Genesis,
    InclusionRequest,
    ResourceReport,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.chain.signature_cache import SignatureCache, verify_with
from edgechain.chain.spec_checks import is_share, validate_app_spec
from edgechain.chain.validator_encoding import (
    compute_address_signing_root,
    compute_exit_signing_root,
    compute_inclusion_signing_root,
    compute_ticket_message,
)
from edgechain.chain.validator_set import (
    ValidatorSet,
    compute_node_id,
    compute_skip_exclusion,
)
from edgechain.crypto import bls, report_key, vdf
from edgechain.errors import RejectReason, ValidationError
from edgechain.telemetry.cpu import Component, cpu_span
from edgechain.types import BlockHash, PublicKey, Slot


@dataclass(frozen=True)
class BlockContext:
    """What the self-contained checks need from the parent and the elected roles."""

    params: ChainParams
    parent_hash: BlockHash
    parent_slot: Slot
    vdf_iterations: int
    """The difficulty recorded in the last produced ancestor (the VDF's iteration count)."""
    vdf_group: BlockHash
    """The group hash of the block's VDF (``consensus/state.compute_vdf_group``)."""
    validators: ValidatorSet
    """The validator set after the parent."""
    producer_key: PublicKey
    committee: tuple[PublicKey, ...]


# --- pieces ----------------------------------------------------------------------------


def validate_inclusion(
    req: InclusionRequest, params: ChainParams, cache: SignatureCache | None = None
) -> None:
    """Proof of possession (rogue-key defence), the node's signature, the admin ticket.

    With a ``cache``, the three are one randomised multi-pairing (``bls.batch_verify``:
    4 pairings and one final exponentiation instead of 6 and 3), and a request already
    checked when it was gossiped costs nothing when a block carries it again. Without
    one (no secret for the batch's scalars), each is checked alone. Either way the first
    failing check, in the order above, names the error.
    """
    if not req.address or not bls.is_public_key_valid(req.public_key):
        raise ValidationError(RejectReason.BAD_INCLUSION, "address or key")
    if not report_key.is_report_key_valid(req.report_key):
        raise ValidationError(RejectReason.BAD_INCLUSION, "report key")
    checks: list[tuple[tuple[bytes, bytes, bytes], bool, ValidationError]] = [
        (
            (req.public_key, req.public_key, req.pop),
            True,
            ValidationError(RejectReason.BAD_PROOF_OF_POSSESSION),
        ),
        (
            (req.public_key, compute_inclusion_signing_root(req), req.signature),
            False,
            ValidationError(RejectReason.BAD_INCLUSION, "signature"),
        ),
    ]
    if params.admin_key and not params.open_admission:
        token = get_enrollment_token(req)
        if token is not None:
            # Signed by the admin for this chain; its expiry and revocation depend on
            # the block's slot and state (``check_admission``).
            message = compute_enrollment_message(
                params.chain_id, token.token_id, token.expires_slot
            )
            admin: tuple[bytes, bytes, bytes] = (params.admin_key, message, token.signature)
            error = ValidationError(RejectReason.BAD_ADMISSION_TICKET, "enrollment token signature")
        else:
            message = compute_ticket_message(params.chain_id, req.public_key)
            admin = (params.admin_key, message, req.ticket)
            error = ValidationError(RejectReason.BAD_ADMISSION_TICKET)
        checks.append((admin, False, error))
    with cpu_span(Component.SIGNATURE_CHECKS):
        if cache:
            verdicts = cache.verify_batch([c[0] for c in checks], pops=[c[1] for c in checks])
        else:
            verdicts = [
                bls.pop_verify(pk, sig) if pop else bls.verify(pk, m, sig)
                for (pk, m, sig), pop, _ in checks
            ]
    for (_, _, error), ok in zip(checks, verdicts, strict=True):
        if not ok:
            raise error
    if req.ticket and not params.admin_key:
        raise ValidationError(
            RejectReason.BAD_ADMISSION_TICKET, "ticket on a chain without an admin key"
        )


def get_enrollment_token(req: InclusionRequest) -> EnrollmentToken | None:
    """The enrollment token ``req`` presents instead of a key ticket, if it does."""
    if not is_enrollment_token(req.ticket):
        return None
    return decode_enrollment_token(req.ticket)


def check_admission(req: InclusionRequest, params: ChainParams, auth: Authority, slot: int) -> None:
    """What admits ``req`` in a block at ``slot`` on a state with ``auth``, beyond its
    signatures (``validate_inclusion``): an enrollment token neither expired nor revoked."""
    token = get_enrollment_token(req)
    if token is None or not params.admin_key or params.open_admission:
        return
    if slot > token.expires_slot:
        raise ValidationError(
            RejectReason.BAD_ADMISSION_TICKET,
            f"enrollment token expired at slot {token.expires_slot}",
        )
    if is_enrollment_revoked(auth, token.token_id):
        raise ValidationError(RejectReason.BAD_ADMISSION_TICKET, "enrollment token revoked")


def is_exit_of_current_stay(req: ExitRequest, validators: ValidatorSet) -> bool:
    """Whether ``req`` was signed during its node's present membership: not before the
    slot its address was last set (its inclusion, or a later address record of its
    own). An exit request carries no other mark of the stay it ends, so without this a
    node that left and was included again could be removed by its earlier exit,
    replayed (CI at stop 47: a node started again seconds after its leave pulled its
    own old exit back through gossip's pull repair and carried it in its next block).
    A node's exits and address records are signed in slot order, so its own later
    exit never falls before its address."""
    info = validators.get(req.node)
    return info is not None and req.slot >= info.address_slot


def validate_exit(req: ExitRequest, validators: ValidatorSet, slot: Slot) -> None:
    info = validators.get(req.node)
    if info is None:
        raise ValidationError(RejectReason.BAD_EXIT, "not a validator")
    if req.slot > slot:
        raise ValidationError(RejectReason.BAD_EXIT, "exit from a future slot")
    if not is_exit_of_current_stay(req, validators):
        raise ValidationError(RejectReason.BAD_EXIT, "signed before the node's current stay")
    with cpu_span(Component.SIGNATURE_CHECKS):
        signed = bls.verify(info.public_key, compute_exit_signing_root(req), req.signature)
    if not signed:
        raise ValidationError(RejectReason.BAD_EXIT, "signature")


def validate_address_record(
    rec: AddressRecord,
    chain_id: str,
    validators: ValidatorSet,
    slot: Slot,
    cache: SignatureCache | None = None,
) -> None:
    """A validator's new address, signed by it, newer than the one it replaces, not
    from a future slot, and a well-formed ``host:port``."""
    info = validators.get(rec.node)
    if info is None:
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "not a validator")
    if rec.slot > slot:
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "from a future slot")
    if rec.slot <= info.address_slot:
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "not newer than its address")
    if not is_address_valid(rec.address):
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "not host:port")
    with cpu_span(Component.SIGNATURE_CHECKS):
        signed = verify_with(
            cache, info.public_key, compute_address_signing_root(chain_id, rec), rec.signature
        )
    if not signed:
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "signature")


def is_address_valid(address: str) -> bool:
    """``host:port`` (``[v6]:port`` too) with a port in 1..65535 and no spaces."""
    host, _, port = address.rpartition(":")
    return (
        bool(host)
        and port.isdigit()
        and 0 < int(port) < 65536
        and not any(c.isspace() for c in address)
    )


def validate_report_fields(rep: ResourceReport, validators: ValidatorSet, slot: Slot) -> bytes:
    """Everything about a report but its signature; returns the reporter's report key."""
    info = validators.get(rep.node)
    if info is None:
        raise ValidationError(RejectReason.BAD_REPORT, "reporter is not a validator")
    if rep.slot != slot:
        raise ValidationError(RejectReason.BAD_REPORT, f"report for slot {rep.slot} in slot {slot}")
    shares = [rep.cpu_bp, rep.ram_bp, rep.disk_bp, rep.pressure_bp]
    for usage in rep.apps:
        shares += [usage.cpu_bp, usage.ram_bp, usage.disk_bp]
    if not all(map(is_share, shares)):
        raise ValidationError(RejectReason.BAD_REPORT, "share outside [0, 10000]")
    c = rep.coordinate
    if max(abs(c.x_us), abs(c.y_us)) > COORD_LIMIT_US:
        raise ValidationError(RejectReason.BAD_REPORT, "coordinate outside the map")
    if rep.state_room_bytes > UNMEASURED_STATE_ROOM:
        raise ValidationError(RejectReason.BAD_REPORT, "state room beyond its maximum")
    apps = [u.app for u in rep.apps]
    if apps != sorted(set(apps)):
        raise ValidationError(RejectReason.BAD_REPORT, "apps not sorted and unique")
    return info.report_key


def validate_reports(
    reports: Sequence[ResourceReport],
    validators: ValidatorSet,
    slot: Slot,
    cache: SignatureCache | None,
) -> None:
    """Fields of every report, then their Ed25519 signatures (each once per node: the
    cache holds those verified when the report was relayed)."""
    items = [
        (validate_report_fields(r, validators, slot), compute_report_signing_root(r), r.signature)
        for r in reports
    ]
    with cpu_span(Component.SIGNATURE_CHECKS):
        verdicts = (cache or SignatureCache()).verify_reports(items)
    for report, ok in zip(reports, verdicts, strict=True):
        if not ok:
            raise ValidationError(RejectReason.BAD_REPORT_SIGNATURE, report.node.hex()[:16])


def validate_commands(
    commands: Sequence[SignedCommand], chain_id: str, cache: SignatureCache | None
) -> None:
    """Every command's shape, then all their signatures as one batch. Who may sign what,
    and whether a command applies, depends on the chain state: ``orchestrator/commands.py``.
    """
    for cmd in commands:
        check_command_shape(cmd)
        if cmd.spec is not None:
            validate_app_spec(cmd.spec)
    items = [(c.signer, compute_command_signing_root(chain_id, c), c.signature) for c in commands]
    with cpu_span(Component.SIGNATURE_CHECKS):
        verdicts = (cache or SignatureCache()).verify_batch(items)
    for cmd, ok in zip(commands, verdicts, strict=True):
        if not ok:
            raise ValidationError(
                RejectReason.COMMAND_BAD_SIGNATURE, f"{cmd.kind.name} seq {cmd.seq}"
            )


def validate_command_signature(
    cmd: SignedCommand, chain_id: str, cache: SignatureCache | None = None
) -> None:
    validate_commands((cmd,), chain_id, cache)


def validate_attestation(
    block_hash: BlockHash, signers: bytes, aggregate: bytes, committee: Sequence[PublicKey]
) -> int:
    """FastAggregateVerify over the signing committee members; returns the signer count."""
    keys = get_attesting_keys(signers, committee)
    with cpu_span(Component.ATTESTATION_CHECK):
        valid = bls.fast_aggregate_verify(keys, compute_vote_message(block_hash), aggregate)
    if not valid:
        raise ValidationError(RejectReason.BAD_AGGREGATE_SIGNATURE)
    return len(keys)


def get_attesting_keys(signers: bytes, committee: Sequence[PublicKey]) -> list[PublicKey]:
    """The keys of the committee members ``signers`` names, once the bitfield is well
    formed and names a majority."""
    if not is_bitfield_well_formed(signers, len(committee)):
        raise ValidationError(RejectReason.BAD_BITFIELD)
    count = count_signers(signers)
    if not is_majority(count, len(committee)):
        raise ValidationError(RejectReason.NO_MAJORITY, f"{count} of {len(committee)}")
    return [committee[i] for i in get_signer_indices(signers)]


def validate_block_signatures(
    block: Block, block_hash: BlockHash, ctx: BlockContext, cache: SignatureCache | None
) -> None:
    """The producer's signature and the committee's aggregate, in one randomised
    multi-pairing (``bls.batch_verify``). Since format 14 both sign the block's vote
    message, so the check is two pairings, one hash to the curve and one final
    exponentiation, where two separate checks cost four, two and two (4.7 against 6.2 ms
    for the batch of two messages it replaced, issue 13). Secret scalars keep a
    producer, who builds the aggregate, from shifting a difference between the two
    signatures. On failure the batch is checked one by one, so the reason names the
    bad one.
    """
    keys = get_attesting_keys(block.signers, ctx.committee)
    try:
        aggregate_key = bls.aggregate_public_keys(keys).to_compressed_bytes()
    except bls.BlsError:
        raise ValidationError(RejectReason.BAD_AGGREGATE_SIGNATURE) from None
    message = compute_vote_message(block_hash)
    items = [
        (ctx.producer_key, message, block.producer_signature),
        (aggregate_key, message, block.aggregate_signature),
    ]
    # Like the aggregate alone, a check every validator makes.
    with cpu_span(Component.ATTESTATION_CHECK):
        producer_ok, aggregate_ok = (cache or SignatureCache()).verify_batch(items)
    if not producer_ok:
        raise ValidationError(RejectReason.BAD_PRODUCER_SIGNATURE)
    if not aggregate_ok:
        raise ValidationError(RejectReason.BAD_AGGREGATE_SIGNATURE)


# --- blocks ----------------------------------------------------------------------------


def validate_block(
    block: Block,
    block_hash: BlockHash,
    ctx: BlockContext,
    *,
    check_attestation: bool = True,
    check_vdf: bool = True,
    cache: SignatureCache | None = None,
) -> None:
    """Everything a produced block proves on its own, cheapest checks first.

    ``check_attestation=False`` checks a *candidate* (paper Algorithm 3, committee case:
    verify proof, plan, signature before voting) which has no aggregate yet.
    ``check_vdf=False``: a node following the chain towards a checkpoint
    (``consensus/light_client.py``) takes the VDF output the committee attested.
    """
    params = ctx.params
    if block.parent != ctx.parent_hash:
        raise ValidationError(RejectReason.BAD_PARENT)
    if block.slot <= ctx.parent_slot:
        raise ValidationError(RejectReason.BAD_SLOT, f"{block.slot} after {ctx.parent_slot}")
    if block.epoch != block.slot // params.epoch_length:
        raise ValidationError(RejectReason.BAD_EPOCH)
    if block.producer != compute_node_id(ctx.producer_key):
        raise ValidationError(RejectReason.BAD_PRODUCER)
    if not 1 <= block.difficulty <= vdf.MAX_ITERATIONS:
        raise ValidationError(RejectReason.BAD_DIFFICULTY, str(block.difficulty))
    _validate_contents(block, ctx, cache)
    if check_attestation:
        validate_block_signatures(block, block_hash, ctx, cache)
    else:
        validate_producer_signature(block, block_hash, ctx, cache)
    # The VDF seeds the next roles: P_n = VDF(hash_{n-1}, difficulty_{n-1}) (§3.4).
    if len(block.vdf_output) != VDF_FORM_SIZE:
        raise ValidationError(RejectReason.BAD_VDF)
    if check_vdf:
        with cpu_span(Component.VDF_CHECK):
            proven = vdf.verify(
                ctx.vdf_group,
                ctx.parent_hash,
                ctx.vdf_iterations,
                block.vdf_output,
                block.vdf_proof,
            )
        if not proven:
            raise ValidationError(RejectReason.BAD_VDF)


def validate_producer_signature(
    block: Block, block_hash: BlockHash, ctx: BlockContext, cache: SignatureCache | None
) -> None:
    """The producer's signature on the block's vote message (block format 14), which
    the block hash does not cover."""
    producer_message = compute_vote_message(block_hash)
    # Like the aggregate, a check every validator makes.
    with cpu_span(Component.ATTESTATION_CHECK):
        signed = verify_with(cache, ctx.producer_key, producer_message, block.producer_signature)
    if not signed:
        raise ValidationError(RejectReason.BAD_PRODUCER_SIGNATURE)


def validate_checked_candidate(
    block: Block, block_hash: BlockHash, ctx: BlockContext, cache: SignatureCache | None
) -> None:
    """A produced block whose candidate (same hash) already passed ``validate_block``
    without the attestation: what the hash does not cover is left, the producer's
    signature (a cache hit when its bytes are the candidate's) and the aggregate."""
    validate_block_signatures(block, block_hash, ctx, cache)


def _validate_contents(block: Block, ctx: BlockContext, cache: SignatureCache | None) -> None:
    nodes = [r.node for r in block.reports]
    if nodes != sorted(set(nodes)):
        raise ValidationError(RejectReason.DUPLICATE_REPORT, "reports not sorted by unique node")
    validate_reports(block.reports, ctx.validators, block.slot, cache)
    members = ctx.validators
    new_keys = [r.public_key for r in block.inclusions]
    if len(set(new_keys)) != len(new_keys):
        raise ValidationError(RejectReason.BAD_INCLUSION, "duplicate inclusion")
    for req in block.inclusions:
        if compute_node_id(req.public_key) in members:
            raise ValidationError(RejectReason.BAD_INCLUSION, "already a validator")
        validate_inclusion(req, ctx.params, cache)
    exiting = [e.node for e in block.exits]
    if len(set(exiting)) != len(exiting):
        raise ValidationError(RejectReason.BAD_EXIT, "duplicate exit")
    for req_exit in block.exits:
        validate_exit(req_exit, members, block.slot)
    moving = [a.node for a in block.addresses]
    if len(set(moving)) != len(moving):
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "two records for one node")
    if set(moving) & set(exiting):
        raise ValidationError(RejectReason.BAD_ADDRESS_RECORD, "the node exits in this block")
    for record in block.addresses:
        validate_address_record(record, ctx.params.chain_id, members, block.slot, cache)
    validate_commands(block.commands, ctx.params.chain_id, cache)
    planned = [e.app for e in block.plan]
    if len(set(planned)) != len(planned):
        raise ValidationError(RejectReason.BAD_PLAN, "an app appears twice in the plan")


def validate_skip_block(
    block: SkipBlock,
    block_hash: BlockHash,
    ctx: BlockContext,
    *,
    check_attestation: bool = True,
) -> None:
    """A skip block excludes exactly the elected (silent) producer of its slot, or
    nobody when the validator set is at its floor (``compute_skip_exclusion``)."""
    if block.parent != ctx.parent_hash:
        raise ValidationError(RejectReason.BAD_PARENT)
    if block.slot <= ctx.parent_slot:
        raise ValidationError(RejectReason.BAD_SLOT)
    expected = compute_skip_exclusion(
        ctx.validators, compute_node_id(ctx.producer_key), ctx.params.committee_size
    )
    if block.excluded != expected:
        raise ValidationError(RejectReason.BAD_PRODUCER, "skip block excludes another node")
    if check_attestation:
        validate_attestation(block_hash, block.signers, block.aggregate_signature, ctx.committee)


def validate_genesis(genesis: Genesis) -> None:
    """Genesis: sane parameters and at least ``committee_size + 1`` valid inclusions."""
    p = genesis.params
    if not p.chain_id or p.slot_duration_ms <= 0 or p.committee_size < 1 or p.epoch_length < 1:
        raise ValidationError(RejectReason.BAD_GENESIS, "parameters")
    if not 1 <= p.initial_difficulty <= vdf.MAX_ITERATIONS or not 0 < p.vdf_target_bp < 10_000:
        raise ValidationError(RejectReason.BAD_GENESIS, "difficulty")
    if p.admin_key and not bls.is_public_key_valid(p.admin_key):
        raise ValidationError(RejectReason.BAD_GENESIS, "admin key")
    if p.down_after_slots < 1:
        raise ValidationError(RejectReason.BAD_GENESIS, "down_after_slots")
    if not 1 <= p.vdf_group_epochs <= MAX_VDF_GROUP_EPOCHS:
        raise ValidationError(RejectReason.BAD_GENESIS, "vdf_group_epochs")
    if len(genesis.inclusions) < p.committee_size + 1:
        raise ValidationError(RejectReason.BAD_GENESIS, "fewer than committee_size + 1 validators")
    keys = [r.public_key for r in genesis.inclusions]
    if len(set(keys)) != len(keys):
        raise ValidationError(RejectReason.BAD_GENESIS, "duplicate validator")
    for req in genesis.inclusions:
        validate_inclusion(req, p)
