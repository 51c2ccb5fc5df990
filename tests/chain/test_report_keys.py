"""Ed25519 report keys (block format 6): bound to the BLS identity at inclusion, every
report verified under its node's key, and a wrong key or signature refused."""

from __future__ import annotations

import dataclasses

import pytest
from chain_world import World, build_slot_1_block, get_slot_1_context, make_world

from edgechain.chain.assembly import make_inclusion_request, make_report
from edgechain.chain.encoding import BLOCK_HASH_DOMAIN, FORMAT_VERSION, compute_block_hash
from edgechain.chain.model import (
    COORD_LIMIT_US,
    UNMEASURED_STATE_ROOM,
    Coordinate,
    ResourceReport,
)
from edgechain.chain.report_encoding import (
    compute_report_signing_root,
    decode_report,
    encode_report,
)
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import validate_block, validate_inclusion
from edgechain.chain.validator_encoding import decode_inclusion, encode_inclusion
from edgechain.crypto import report_key
from edgechain.errors import RejectReason, ValidationError
from edgechain.testing import Identity, make_identity
from edgechain.types import ReportSignature, SecretKey, Slot


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _report(ident: Identity, slot: int = 1, cpu: int = 10) -> ResourceReport:
    return make_report(
        ident.sk, Slot(slot), timestamp_ms=1, cpu_bp=cpu, ram_bp=1, disk_bp=1, rtt_us=1, apps=()
    )


def _validate_with_reports(world: World, reports: tuple[ResourceReport, ...]) -> None:
    block = build_slot_1_block(world, reports=reports)
    ctx = get_slot_1_context(world)
    validate_block(block, compute_block_hash(block), ctx, cache=SignatureCache())


def test_the_format_version_names_the_hash_domains() -> None:
    assert FORMAT_VERSION == 21
    assert BLOCK_HASH_DOMAIN == b"edgechain/block/v21"


def test_the_report_key_is_derived_from_the_bls_key_and_signs_verifiably() -> None:
    a, b = make_identity(1), make_identity(2)
    key_a = report_key.get_report_public_key(a.sk)
    assert len(key_a) == 32 and report_key.is_report_key_valid(key_a)
    assert key_a == report_key.get_report_public_key(SecretKey(int(a.sk)))
    assert key_a != report_key.get_report_public_key(b.sk)
    signature = report_key.sign_report_message(a.sk, b"message")
    assert len(signature) == 64
    assert report_key.verify_report_signature(key_a, b"message", signature)
    assert not report_key.verify_report_signature(key_a, b"messagE", signature)
    other_key = report_key.get_report_public_key(b.sk)
    assert not report_key.verify_report_signature(other_key, b"message", signature)
    assert not report_key.verify_report_signature(key_a, b"message", signature[:63])
    assert not report_key.verify_report_signature(key_a[:31], b"message", signature)
    assert not report_key.verify_report_signature(bytes(32), b"message", signature)


def test_small_order_and_non_canonical_keys_are_invalid() -> None:
    identity_point = b"\x01" + bytes(31)
    assert not report_key.is_report_key_valid(identity_point)
    assert not report_key.is_report_key_valid(bytes(32))
    assert not report_key.is_report_key_valid(b"\xff" * 32)
    assert not report_key.is_report_key_valid(b"")


def test_reports_and_inclusions_round_trip_with_the_ed25519_fields() -> None:
    ident = make_identity(3)
    report = _report(ident)
    assert len(report.signature) == 64
    assert decode_report(encode_report(report)) == report
    request = make_inclusion_request(ident.sk, "127.0.0.1:1", ("eu",))
    assert request.report_key == report_key.get_report_public_key(ident.sk)
    assert decode_inclusion(encode_inclusion(request)) == request


def test_a_report_carries_its_coordinate_signed_and_bounded(world: World) -> None:
    """Format 11: the coordinate is encoded (signed integers), covered by the report's
    signature, and a coordinate off the map makes the block invalid."""
    _, idents, _ = world
    placed = make_report(
        idents[0].sk, Slot(1), timestamp_ms=1, cpu_bp=1, ram_bp=1, disk_bp=1, rtt_us=1,
        apps=(), coordinate=Coordinate(-COORD_LIMIT_US, COORD_LIMIT_US),
    )  # fmt: skip
    assert decode_report(encode_report(placed)) == placed
    _validate_with_reports(world, (placed,))
    moved = dataclasses.replace(placed, coordinate=Coordinate(0, 0))
    with pytest.raises(ValidationError) as refused:
        _validate_with_reports(world, (moved,))
    assert refused.value.reason == RejectReason.BAD_REPORT_SIGNATURE
    off_map = make_report(
        idents[0].sk, Slot(1), timestamp_ms=1, cpu_bp=1, ram_bp=1, disk_bp=1, rtt_us=1,
        apps=(), coordinate=Coordinate(COORD_LIMIT_US + 1, 0),
    )  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        _validate_with_reports(world, (off_map,))
    assert refused.value.reason == RejectReason.BAD_REPORT and "map" in str(refused.value)


def test_a_report_carries_its_state_room_signed_and_bounded(world: World) -> None:
    """Format 17: the room for app state is encoded, covered by the report's signature,
    and a room beyond the unmeasured maximum makes the block invalid."""
    _, idents, _ = world

    def with_room(room: int) -> ResourceReport:
        return make_report(
            idents[0].sk, Slot(1), timestamp_ms=1, cpu_bp=1, ram_bp=1, disk_bp=1, rtt_us=1,
            apps=(), state_room_bytes=room,
        )  # fmt: skip

    measured = with_room(3 << 30)
    assert decode_report(encode_report(measured)) == measured
    _validate_with_reports(world, (measured,))
    _validate_with_reports(world, (with_room(UNMEASURED_STATE_ROOM),))
    grown = dataclasses.replace(measured, state_room_bytes=4 << 30)
    with pytest.raises(ValidationError) as refused:
        _validate_with_reports(world, (grown,))
    assert refused.value.reason == RejectReason.BAD_REPORT_SIGNATURE
    with pytest.raises(ValidationError) as refused:
        _validate_with_reports(world, (with_room(UNMEASURED_STATE_ROOM + 1),))
    assert refused.value.reason == RejectReason.BAD_REPORT and "room" in str(refused.value)


def test_the_genesis_validators_carry_their_report_keys(
    world: World,
) -> None:
    _, idents, vs = world
    for ident in idents:
        info = vs.get(ident.node)
        assert info is not None
        assert info.report_key == report_key.get_report_public_key(ident.sk)


def test_an_inclusion_with_a_bad_or_swapped_report_key_is_refused(
    world: World,
) -> None:
    params = world[0].params
    outsider = make_identity(77)
    request = make_inclusion_request(outsider.sk, "127.0.0.1:1", ())
    open_params = dataclasses.replace(params, admin_key=b"", open_admission=True)
    validate_inclusion(request, open_params)
    with pytest.raises(ValidationError) as bad:
        validate_inclusion(dataclasses.replace(request, report_key=bytes(32)), open_params)
    assert bad.value.reason == RejectReason.BAD_INCLUSION and "report key" in str(bad.value)
    # Another (valid) key swapped in after signing: the BLS signature covers the key.
    swapped = report_key.get_report_public_key(make_identity(78).sk)
    with pytest.raises(ValidationError) as bad:
        validate_inclusion(dataclasses.replace(request, report_key=swapped), open_params)
    assert bad.value.reason == RejectReason.BAD_INCLUSION and "signature" in str(bad.value)


def test_a_block_checks_each_report_under_its_nodes_report_key(
    world: World,
) -> None:
    _, idents, _ = world
    _validate_with_reports(world, tuple(_report(i) for i in idents))
    honest = _report(idents[1])
    # Signed by another validator's report key, over this report's bytes.
    message = compute_report_signing_root(honest)
    by_other = dataclasses.replace(
        honest, signature=report_key.sign_report_message(idents[2].sk, message)
    )
    # Altered after signing.
    altered = dataclasses.replace(honest, cpu_bp=honest.cpu_bp + 1)
    # The BLS-era placeholder.
    unsigned = dataclasses.replace(honest, signature=ReportSignature(bytes(64)))
    for bad in (by_other, altered, unsigned):
        with pytest.raises(ValidationError) as refused:
            _validate_with_reports(world, (_report(idents[0]), bad))
        assert refused.value.reason == RejectReason.BAD_REPORT_SIGNATURE


def test_the_cache_remembers_only_good_report_signatures() -> None:
    ident = make_identity(4)
    key = report_key.get_report_public_key(ident.sk)
    report = _report(ident)
    message = compute_report_signing_root(report)
    cache = SignatureCache()
    bad = (key, message, bytes(64))
    good = (key, message, bytes(report.signature))
    assert cache.verify_reports([good, bad, good]) == [True, False, True]
    assert cache.verify_reports([bad]) == [False]
    cache.add_own_report(key, b"own", bytes(64))
    assert cache.verify_reports([(key, b"own", bytes(64))]) == [True]
