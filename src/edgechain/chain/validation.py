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

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgechain.chain.attestation import (
    count_signers,
    get_signer_indices,
    is_bitfield_well_formed,
    is_majority,
)
from edgechain.chain.authority import Authority, check_command_shape, is_enrollment_revoked
from edgechain.chain.encoding import (
    VDF_FORM_SIZE,
    compute_address_signing_root,
    compute_command_signing_root,
    compute_exit_signing_root,
    compute_inclusion_signing_root,
    compute_producer_message,
    compute_report_signing_root,
    compute_ticket_message,
    compute_vote_message,
    get_spec_encoding_error,
)
from edgechain.chain.enrollment import (
    EnrollmentToken,
    compute_enrollment_message,
    decode_enrollment_token,
    is_enrollment_token,
)
from edgechain.chain.model import (
    BASIS_POINTS,
    COORD_LIMIT_US,
    MAX_CPU_LIMIT_MILLICORES,
    MAX_MEMORY_LIMIT_BYTES,
    MAX_STATE_LIMIT_BYTES,
    MIN_CPU_LIMIT_MILLICORES,
    MIN_MEMORY_LIMIT_BYTES,
    MIN_STATE_LIMIT_BYTES,
    AddressRecord,
    AppSpec,
    Block,
    ChainParams,
    ExitRequest,
    Genesis,
    InclusionRequest,
    ResourceReport,
    RuntimeKind,
    SignedCommand,
    SkipBlock,
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


@dataclass
class SignatureCache:
    """Signatures this node has itself verified, by digest of (key, message, signature).

    A report a committee member verified when it arrived over the overlay need not be
    verified again inside the block. A real node only ever caches its own results (the
    simulator may share one cache between simulated nodes, DESIGN.md "Scale path").
    """

    randomness: bytes = b""
    """Secret for batch verification (see ``bls.batch_verify``); a node derives it from
    its key so that no peer can predict the batch's random scalars."""
    max_entries: int = 1 << 13
    """Cleared when full: under 1 MB (a slot adds one entry per report and vote, ~13
    at 20 nodes, so a few hundred slots), where 2**18 let a node's RSS climb by 25 MB
    before the first clear. Only the last few slots' entries are ever looked up."""
    _seen: set[bytes] = field(default_factory=set)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = hashlib.sha256(public_key + message + signature).digest()
        if key in self._seen:
            return True
        if not bls.verify(public_key, message, signature):
            return False
        self._remember(key)
        return True

    def verify_batch(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """Verify many signatures at once; one bad signature costs a one-by-one pass."""
        keys = [hashlib.sha256(pk + m + sig).digest() for pk, m, sig in items]
        todo = [i for i, key in enumerate(keys) if key not in self._seen]
        if todo and bls.batch_verify([items[i] for i in todo], self.randomness):
            for i in todo:
                self._remember(keys[i])
            todo = []
        results = [True] * len(items)
        for i in todo:
            results[i] = self.verify(*items[i])
        return results

    def verify_reports(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """Ed25519 report signatures ``(report key, message, signature)``, one by one
        (libsodium has no batch check; one costs about 0.1 ms, a BLS one 2 ms)."""
        results = []
        for public_key, message, signature in items:
            key = _get_report_entry(public_key, message, signature)
            ok = key in self._seen
            if not ok and report_key.verify_report_signature(public_key, message, signature):
                self._remember(key)
                ok = True
            results.append(ok)
        return results

    def add_own_report(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Record a report this node just signed itself."""
        self._remember(_get_report_entry(public_key, message, signature))

    def verify_pop(self, public_key: bytes, proof: bytes) -> bool:
        """A proof of possession, remembered like a signature."""
        key = hashlib.sha256(b"pop" + public_key + proof).digest()
        if key in self._seen:
            return True
        if not bls.pop_verify(public_key, proof):
            return False
        self._remember(key)
        return True

    def _remember(self, key: bytes) -> None:
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        self._seen.add(key)


def _get_report_entry(public_key: bytes, message: bytes, signature: bytes) -> bytes:
    """A report signature's entry in the cache (its own domain: not a BLS signature's)."""
    return hashlib.sha256(b"report" + public_key + message + signature).digest()


def _verify(cache: SignatureCache | None, pk: bytes, message: bytes, sig: bytes) -> bool:
    return cache.verify(pk, message, sig) if cache else bls.verify(pk, message, sig)


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

    With a ``cache``, a request already checked when it was gossiped costs nothing when
    a block carries it again (three pairings saved per request per block).
    """
    if not req.address or not bls.is_public_key_valid(req.public_key):
        raise ValidationError(RejectReason.BAD_INCLUSION, "address or key")
    if not report_key.is_report_key_valid(req.report_key):
        raise ValidationError(RejectReason.BAD_INCLUSION, "report key")
    with cpu_span(Component.SIGNATURE_CHECKS):
        pop_ok = (
            cache.verify_pop(req.public_key, req.pop)
            if cache
            else bls.pop_verify(req.public_key, req.pop)
        )
        if not pop_ok:
            raise ValidationError(RejectReason.BAD_PROOF_OF_POSSESSION)
        if not _verify(cache, req.public_key, compute_inclusion_signing_root(req), req.signature):
            raise ValidationError(RejectReason.BAD_INCLUSION, "signature")
        if params.admin_key and not params.open_admission:
            token = get_enrollment_token(req)
            if token is not None:
                # Signed by the admin for this chain; its expiry and revocation depend
                # on the block's slot and state (``check_admission``).
                message = compute_enrollment_message(
                    params.chain_id, token.token_id, token.expires_slot
                )
                if not _verify(cache, params.admin_key, message, token.signature):
                    raise ValidationError(
                        RejectReason.BAD_ADMISSION_TICKET, "enrollment token signature"
                    )
                return
            message = compute_ticket_message(params.chain_id, req.public_key)
            if not _verify(cache, params.admin_key, message, req.ticket):
                raise ValidationError(RejectReason.BAD_ADMISSION_TICKET)
        elif req.ticket and not params.admin_key:
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


def validate_exit(req: ExitRequest, validators: ValidatorSet, slot: Slot) -> None:
    info = validators.get(req.node)
    if info is None:
        raise ValidationError(RejectReason.BAD_EXIT, "not a validator")
    if req.slot > slot:
        raise ValidationError(RejectReason.BAD_EXIT, "exit from a future slot")
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
        signed = _verify(
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


def _is_share(v: int) -> bool:
    return 0 <= v <= BASIS_POINTS


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
    if not all(map(_is_share, shares)):
        raise ValidationError(RejectReason.BAD_REPORT, "share outside [0, 10000]")
    c = rep.coordinate
    if max(abs(c.x_us), abs(c.y_us)) > COORD_LIMIT_US:
        raise ValidationError(RejectReason.BAD_REPORT, "coordinate outside the map")
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


def validate_app_spec(spec: AppSpec) -> None:
    """A spec the chain can carry and a runtime can start (the wire's limits included:
    a field the decoder refuses would make the whole block undecodable)."""
    error = get_spec_encoding_error(spec)
    if error is not None:
        raise ValidationError(RejectReason.BAD_SUBMISSION, error)
    if not spec.name:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "empty name")
    if spec.runtime is RuntimeKind.PROCESS and not spec.command:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "process app without a command")
    if spec.runtime is RuntimeKind.CONTAINER and not spec.image:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "container app without an image")
    if not (_is_share(spec.cpu_bp) and _is_share(spec.ram_bp)):
        raise ValidationError(RejectReason.BAD_SUBMISSION, "resource hint outside [0, 10000]")
    if spec.replica_interval_slots and not spec.stateful:
        raise ValidationError(RejectReason.BAD_SUBMISSION, "replicas of an app without state")
    error = get_spec_limits_error(spec)
    if error is not None:
        raise ValidationError(RejectReason.BAD_SUBMISSION, error)


def _get_range_error(name: str, value: int, low: int, high: int) -> str | None:
    """Why a limit is out of range (0 is always allowed: no limit), or None."""
    if value == 0 or low <= value <= high:
        return None
    return f"{name}: {value} outside [{low}, {high}] (0: no limit)"


def get_spec_limits_error(spec: AppSpec) -> str | None:
    """Why the spec's resource limits or root opt-in are refused (``"field: why"``), or
    None. Shared with the API's schema so a refused field is named before signing.

    The minima are what engines refuse (a limit no node could start would queue the app
    forever); the maxima are sanity bounds well inside the encoding's widths.
    """
    for name, value, low, high in (
        (
            "cpu_limit_millicores",
            spec.cpu_limit_millicores,
            MIN_CPU_LIMIT_MILLICORES,
            MAX_CPU_LIMIT_MILLICORES,
        ),
        (
            "memory_limit_bytes",
            spec.memory_limit_bytes,
            MIN_MEMORY_LIMIT_BYTES,
            MAX_MEMORY_LIMIT_BYTES,
        ),
        ("state_limit_bytes", spec.state_limit_bytes, MIN_STATE_LIMIT_BYTES, MAX_STATE_LIMIT_BYTES),
    ):
        error = _get_range_error(name, value, low, high)
        if error is not None:
            return error
    if spec.run_as_root and spec.runtime is not RuntimeKind.CONTAINER:
        # DESIGN.md: apps never run as root; only a container's own root (an operator's
        # explicit opt-in per node) is allowed.
        return "run_as_root: only a container app may run as root"
    return None


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
    if not is_bitfield_well_formed(signers, len(committee)):
        raise ValidationError(RejectReason.BAD_BITFIELD)
    count = count_signers(signers)
    if not is_majority(count, len(committee)):
        raise ValidationError(RejectReason.NO_MAJORITY, f"{count} of {len(committee)}")
    keys = [committee[i] for i in get_signer_indices(signers)]
    with cpu_span(Component.ATTESTATION_CHECK):
        valid = bls.fast_aggregate_verify(keys, compute_vote_message(block_hash), aggregate)
    if not valid:
        raise ValidationError(RejectReason.BAD_AGGREGATE_SIGNATURE)
    return count


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
    producer_message = compute_producer_message(block_hash)
    # The producer's signature, like the aggregate, is a check every validator makes.
    with cpu_span(Component.ATTESTATION_CHECK):
        signed = _verify(cache, ctx.producer_key, producer_message, block.producer_signature)
    if not signed:
        raise ValidationError(RejectReason.BAD_PRODUCER_SIGNATURE)
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
    if check_attestation:
        validate_attestation(block_hash, block.signers, block.aggregate_signature, ctx.committee)


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
    if len(genesis.inclusions) < p.committee_size + 1:
        raise ValidationError(RejectReason.BAD_GENESIS, "fewer than committee_size + 1 validators")
    keys = [r.public_key for r in genesis.inclusions]
    if len(set(keys)) != len(keys):
        raise ValidationError(RejectReason.BAD_GENESIS, "duplicate validator")
    for req in genesis.inclusions:
        validate_inclusion(req, p)
