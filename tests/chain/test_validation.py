"""Self-contained block checks: a valid chain passes, each defect has its own reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from chain_world import ITERATIONS, World, build_slot_1_block, get_slot_1_context, make_world
from py_arkworks_bls12381 import G2Point

from edgechain.chain.assembly import (
    make_command,
    make_exit_request,
    make_inclusion_request,
    make_report,
    make_ticket,
    sign_as_producer,
)
from edgechain.chain.encoding import compute_block_hash, compute_vote_message
from edgechain.chain.model import (
    AppSpec,
    AppUsage,
    Block,
    CommandKind,
    PlanAction,
    PlanEntry,
    RuntimeKind,
)
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import (
    BlockContext,
    validate_block,
    validate_genesis,
    validate_inclusion,
    validate_skip_block,
)
from edgechain.chain.validator_set import (
    apply_block_to_validator_set,
)
from edgechain.crypto import bls
from edgechain.errors import RejectReason, ValidationError
from edgechain.testing import (
    ADMIN,
    Identity,
    attest,
    build_skip_block,
    make_genesis,
    make_identity,
    make_joining_request,
    make_params,
)
from edgechain.types import AppId, Signature, Slot


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _ctx(world: World) -> BlockContext:
    return get_slot_1_context(world)


def _block(world: World, **kw: object) -> Block:
    return build_slot_1_block(world, **kw)


def _reason(fn: Callable[[], None]) -> str:
    with pytest.raises(ValidationError) as info:
        fn()
    return info.value.reason


def test_valid_block_with_every_kind_of_content(
    world: World,
) -> None:
    genesis, idents, vs = world
    spec = AppSpec("counter", RuntimeKind.PROCESS, command=("sh", "-c", "true"))
    usage = AppUsage(AppId(b"\x01" * 32), 100, 200, 300, 4000, 1)
    reports = tuple(
        make_report(
            i.sk,
            Slot(1),
            timestamp_ms=1,
            cpu_bp=10,
            ram_bp=20,
            disk_bp=30,
            rtt_us=400,
            apps=(usage,),
        )
        for i in idents[:3]
    )
    newcomer = make_identity(99)
    inclusion = make_joining_request(newcomer, genesis.params, 99)
    leave = make_exit_request(idents[5].sk, Slot(1))
    plan = (PlanEntry(PlanAction.MIGRATE, usage.app, idents[0].node, idents[1].node),)
    block = _block(
        world,
        reports=reports,
        inclusions=(inclusion,),
        exits=(leave,),
        commands=(
            make_command(idents[0].sk, genesis.params.chain_id, 1, CommandKind.SUBMIT, spec=spec),
        ),
        plan=plan,
    )
    validate_block(block, compute_block_hash(block), _ctx(world))
    after = apply_block_to_validator_set(vs, block)
    assert newcomer.node in after and idents[5].node not in after
    assert len(after) == len(vs)
    assert list(after.get_public_keys()) == sorted(after.get_public_keys())


def test_bare_majority_passes_and_half_does_not(
    world: World,
) -> None:
    ctx = _ctx(world)
    ok = _block(world, signer_indices=[0, 2, 3])
    validate_block(ok, compute_block_hash(ok), ctx)
    half = _block(world, signer_indices=[0, 1])
    assert (
        _reason(lambda: validate_block(half, compute_block_hash(half), ctx))
        == RejectReason.NO_MAJORITY
    )
    # Without the attestation check the same block is a valid candidate.
    validate_block(half, compute_block_hash(half), ctx, check_attestation=False)


def test_each_defect_has_its_reason(world: World) -> None:
    _genesis, idents, _ = world
    ctx = _ctx(world)
    good = _block(world)
    h = compute_block_hash(good)

    def check(block: Block, ctx: BlockContext = ctx, block_hash: bytes | None = None) -> str:
        bh = block_hash if block_hash is not None else compute_block_hash(block)
        return _reason(lambda: validate_block(block, bh, ctx))  # type: ignore[arg-type]

    wrong_parent = dataclasses.replace(ctx, parent_hash=b"\x09" * 32)  # type: ignore[arg-type]
    assert check(good, wrong_parent) == RejectReason.BAD_PARENT
    assert check(good, dataclasses.replace(ctx, parent_slot=Slot(1))) == RejectReason.BAD_SLOT
    assert check(dataclasses.replace(good, epoch=7)) == RejectReason.BAD_EPOCH
    assert (
        check(good, dataclasses.replace(ctx, producer_key=idents[5].pk))
        == RejectReason.BAD_PRODUCER
    )
    assert check(dataclasses.replace(good, difficulty=0)) == RejectReason.BAD_DIFFICULTY
    assert (
        check(good, dataclasses.replace(ctx, vdf_iterations=ITERATIONS + 1)) == RejectReason.BAD_VDF
    )
    flipped = bytearray(good.vdf_proof)
    flipped[10] ^= 1
    assert (
        check(dataclasses.replace(good, vdf_proof=bytes(flipped)), block_hash=h)
        == RejectReason.BAD_VDF
    )
    assert (
        check(dataclasses.replace(good, producer_signature=good.aggregate_signature), block_hash=h)
        == RejectReason.BAD_PRODUCER_SIGNATURE
    )
    # Another committee: the aggregate does not verify.
    other = dataclasses.replace(ctx, committee=tuple(i.pk for i in [idents[5], *idents[2:5]]))
    assert check(good, other) == RejectReason.BAD_AGGREGATE_SIGNATURE
    assert (
        check(dataclasses.replace(good, signers=b"\x1f"), block_hash=h) == RejectReason.BAD_BITFIELD
    )
    assert (
        check(dataclasses.replace(good, signers=b"\x0f\x00"), block_hash=h)
        == RejectReason.BAD_BITFIELD
    )
    # A vote for another block does not count for this one.
    forged = attest(_block(world, slot=Slot(2)), idents[1:5])
    assert (
        check(
            dataclasses.replace(good, aggregate_signature=forged.aggregate_signature), block_hash=h
        )
        == RejectReason.BAD_AGGREGATE_SIGNATURE
    )


def test_bad_contents(world: World) -> None:
    genesis, idents, _ = world
    ctx = _ctx(world)
    outsider = make_identity(77)

    def reason_of(**kw: object) -> str:
        block = _block(world, **kw)
        return _reason(lambda: validate_block(block, compute_block_hash(block), ctx))

    def report(ident: Identity, slot: int = 1, cpu: int = 10) -> object:
        return make_report(
            ident.sk, Slot(slot), timestamp_ms=1, cpu_bp=cpu, ram_bp=1, disk_bp=1, rtt_us=1, apps=()
        )

    assert reason_of(reports=(report(outsider),)) == RejectReason.BAD_REPORT
    assert reason_of(reports=(report(idents[0], slot=2),)) == RejectReason.BAD_REPORT
    assert reason_of(reports=(report(idents[0], cpu=10_001),)) == RejectReason.BAD_REPORT
    forged = dataclasses.replace(report(idents[0]), cpu_bp=11)  # type: ignore[type-var]
    assert reason_of(reports=(forged,)) == RejectReason.BAD_REPORT_SIGNATURE
    assert (
        reason_of(reports=(report(idents[0]), report(idents[0]))) == RejectReason.DUPLICATE_REPORT
    )
    no_ticket = make_inclusion_request(outsider.sk, "127.0.0.1:1", (), b"")
    assert reason_of(inclusions=(no_ticket,)) == RejectReason.BAD_ADMISSION_TICKET
    wrong_admin = make_inclusion_request(
        outsider.sk, "127.0.0.1:1", (), make_ticket(outsider.sk, "testnet", outsider.pk)
    )
    assert reason_of(inclusions=(wrong_admin,)) == RejectReason.BAD_ADMISSION_TICKET
    good_req = make_joining_request(outsider, genesis.params, 5)
    assert (
        reason_of(inclusions=(dataclasses.replace(good_req, pop=good_req.signature),))
        == RejectReason.BAD_PROOF_OF_POSSESSION
    )
    assert (
        reason_of(inclusions=(dataclasses.replace(good_req, address="10.0.0.1:2"),))
        == RejectReason.BAD_INCLUSION
    )
    assert reason_of(inclusions=(good_req, good_req)) == RejectReason.BAD_INCLUSION
    assert (
        reason_of(inclusions=(make_joining_request(idents[1], genesis.params),))
        == RejectReason.BAD_INCLUSION
    )
    assert reason_of(exits=(make_exit_request(outsider.sk, Slot(1)),)) == RejectReason.BAD_EXIT
    assert reason_of(exits=(make_exit_request(idents[1].sk, Slot(5)),)) == RejectReason.BAD_EXIT
    chain_id = genesis.params.chain_id
    no_image = AppSpec("x", RuntimeKind.CONTAINER)
    submit = make_command(idents[0].sk, chain_id, 1, CommandKind.SUBMIT, spec=no_image)
    assert reason_of(commands=(submit,)) == RejectReason.BAD_SUBMISSION
    long_name = AppSpec("x" * 5000, RuntimeKind.PROCESS, command=("true",))
    submit = make_command(idents[0].sk, chain_id, 1, CommandKind.SUBMIT, spec=long_name)
    assert reason_of(commands=(submit,)) == RejectReason.BAD_SUBMISSION
    stop = make_command(idents[0].sk, chain_id, 1, CommandKind.STOP, app=b"\x01" * 32)
    unsigned = dataclasses.replace(stop, signature=Signature(bytes(96)))
    assert reason_of(commands=(unsigned,)) == RejectReason.COMMAND_BAD_SIGNATURE
    forged = dataclasses.replace(stop, seq=2)
    assert reason_of(commands=(forged,)) == RejectReason.COMMAND_BAD_SIGNATURE
    other_chain = make_command(idents[0].sk, "other", 1, CommandKind.STOP, app=b"\x01" * 32)
    assert reason_of(commands=(other_chain,)) == RejectReason.COMMAND_BAD_SIGNATURE
    no_app = make_command(idents[0].sk, chain_id, 1, CommandKind.STOP)
    assert reason_of(commands=(no_app,)) == RejectReason.COMMAND_MALFORMED
    entry = PlanEntry(PlanAction.PLACE, AppId(b"\x02" * 32), b"", idents[0].node)
    assert reason_of(plan=(entry, entry)) == RejectReason.BAD_PLAN
    assert ADMIN.pk == genesis.params.admin_key


def test_skip_block(world: World) -> None:
    _genesis, idents, vs = world
    ctx = _ctx(world)
    skip = build_skip_block(
        parent=ctx.parent_hash, slot=Slot(1), excluded=idents[0].node, committee=idents[1:5]
    )
    validate_skip_block(skip, compute_block_hash(skip), ctx)
    assert idents[0].node not in apply_block_to_validator_set(vs, skip)
    wrong = build_skip_block(
        parent=ctx.parent_hash, slot=Slot(1), excluded=idents[2].node, committee=idents[1:5]
    )
    assert (
        _reason(lambda: validate_skip_block(wrong, compute_block_hash(wrong), ctx))
        == RejectReason.BAD_PRODUCER
    )
    minority = build_skip_block(
        parent=ctx.parent_hash,
        slot=Slot(1),
        excluded=idents[0].node,
        committee=idents[1:5],
        signer_indices=[3],
    )
    assert (
        _reason(lambda: validate_skip_block(minority, compute_block_hash(minority), ctx))
        == RejectReason.NO_MAJORITY
    )


def test_genesis_rules() -> None:
    genesis, _ = make_genesis(5, committee_size=4)
    validate_genesis(genesis)
    small = dataclasses.replace(genesis, inclusions=genesis.inclusions[:4])
    assert _reason(lambda: validate_genesis(small)) == RejectReason.BAD_GENESIS
    dup = dataclasses.replace(genesis, inclusions=(*genesis.inclusions, genesis.inclusions[0]))
    assert _reason(lambda: validate_genesis(dup)) == RejectReason.BAD_GENESIS
    open_genesis, _ = make_genesis(5, committee_size=4, admin=False)
    validate_genesis(open_genesis)


@pytest.mark.parametrize(("epochs", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_a_genesis_bounds_how_long_a_vdf_group_serves(epochs: int, ok: bool) -> None:
    genesis, _ = make_genesis(5, committee_size=4)
    params = dataclasses.replace(genesis.params, vdf_group_epochs=epochs)
    changed = dataclasses.replace(genesis, params=params)
    if ok:
        validate_genesis(changed)
    else:
        assert _reason(lambda: validate_genesis(changed)) == RejectReason.BAD_GENESIS


def test_signature_cache_only_remembers_valid(
    world: World,
) -> None:
    _, idents, _ = world
    cache = SignatureCache()
    block = _block(
        world,
        reports=(
            make_report(
                idents[0].sk,
                Slot(1),
                timestamp_ms=1,
                cpu_bp=1,
                ram_bp=1,
                disk_bp=1,
                rtt_us=1,
                apps=(),
            ),
        ),
    )
    validate_block(block, compute_block_hash(block), _ctx(world), cache=cache)
    # The report, the producer's signature and the committee's aggregate.
    assert len(cache._seen) == 3
    bad = dataclasses.replace(block, producer_signature=block.aggregate_signature)
    with pytest.raises(ValidationError, match="bad_producer_signature"):
        validate_block(bad, compute_block_hash(bad), _ctx(world), cache=cache)
    assert len(cache._seen) == 3
    # A re-signed block is still accepted (the cache is keyed by content, not by node).
    resigned = sign_as_producer(block, idents[0].sk)
    validate_block(resigned, compute_block_hash(resigned), _ctx(world), cache=cache)


def test_an_inclusion_names_its_first_bad_check_with_and_without_the_batch() -> None:
    """``validate_inclusion`` checks the proof of possession, the signature and the
    ticket as one multi-pairing when it has a cache; each corrupted part is still named,
    the same as when each is checked alone, and a good request is remembered."""
    params = make_params()
    ident = make_identity(77)
    good = make_joining_request(ident, params, 3)
    other = make_joining_request(make_identity(78), params, 4)
    corrupted = {
        RejectReason.BAD_PROOF_OF_POSSESSION: dataclasses.replace(good, pop=other.pop),
        RejectReason.BAD_INCLUSION: dataclasses.replace(good, signature=other.signature),
        # Signed over the other node's ticket: only the ticket is wrong.
        RejectReason.BAD_ADMISSION_TICKET: make_inclusion_request(
            ident.sk, good.address, good.labels, other.ticket
        ),
    }
    for cache in (None, SignatureCache(randomness=b"\x07" * 32)):
        validate_inclusion(good, params, cache)
        for reason, req in corrupted.items():
            with pytest.raises(ValidationError) as caught:
                validate_inclusion(req, params, cache)
            assert caught.value.reason == reason, (cache, reason)
    both_bad = dataclasses.replace(corrupted[RejectReason.BAD_ADMISSION_TICKET], pop=other.pop)
    with pytest.raises(ValidationError) as caught:
        validate_inclusion(both_bad, params, SignatureCache(randomness=b"\x07" * 32))
    assert caught.value.reason == RejectReason.BAD_PROOF_OF_POSSESSION


def test_the_block_signatures_batch_names_the_bad_one_and_cannot_be_shifted(
    world: World,
) -> None:
    """The producer's signature and the aggregate are checked as one randomised batch
    (``validate_block_signatures``). A wrong aggregate is still named as such; and a
    producer that moves a point from one signature to the other, which keeps their plain
    sum and so would pass an unrandomised sum check, is refused."""
    block = _block(world)
    block_hash = compute_block_hash(block)
    validate_block(block, block_hash, _ctx(world), cache=SignatureCache(randomness=b"k"))
    wrong = dataclasses.replace(block, aggregate_signature=block.producer_signature)
    reason = _reason(lambda: validate_block(wrong, block_hash, _ctx(world), cache=SignatureCache()))
    assert reason == RejectReason.BAD_AGGREGATE_SIGNATURE
    shift = G2Point.hash_to_curve(b"shift", bls.DST_SIGNATURE)
    producer = G2Point.from_compressed_bytes(block.producer_signature) + shift
    aggregate = G2Point.from_compressed_bytes(block.aggregate_signature) - shift
    shifted = dataclasses.replace(
        block,
        producer_signature=Signature(producer.to_compressed_bytes()),
        aggregate_signature=Signature(aggregate.to_compressed_bytes()),
    )
    reason = _reason(
        lambda: validate_block(shifted, block_hash, _ctx(world), cache=SignatureCache(b"k"))
    )
    assert reason == RejectReason.BAD_PRODUCER_SIGNATURE


def test_the_producer_signs_the_vote_message_since_format_14(world: World) -> None:
    """The producer's signature is over the message its committee signs; one over the
    old producer message (``edgechain/producer/v1``) no longer counts."""
    block = _block(world)
    block_hash = compute_block_hash(block)
    assert bls.verify(
        _ctx(world).producer_key, compute_vote_message(block_hash), block.producer_signature
    )
    _genesis, idents, _ = world
    producer_sk = next(i.sk for i in idents if i.pk == _ctx(world).producer_key)
    old = bls.sign(producer_sk, b"edgechain/producer/v1" + block_hash)
    stale = dataclasses.replace(block, producer_signature=old)
    reason = _reason(lambda: validate_block(stale, block_hash, _ctx(world), cache=SignatureCache()))
    assert reason == RejectReason.BAD_PRODUCER_SIGNATURE
