"""BLS (IETF PoP ciphersuite) cross-checked against py_ecc in both directions.

py_ecc is a pure-Python implementation (~0.1 s to sign, ~0.3 s to verify), so the
cross-checks use few keys and few hypothesis examples; the pure edgechain properties
run more examples.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_arkworks_bls12381 import G2Point
from py_ecc.bls.ciphersuites import G2ProofOfPossession
from py_ecc.bls.point_compression import compress_G1, compress_G2, modular_squareroot_in_FQ2
from py_ecc.fields import optimized_bls12_381_FQ as FQ
from py_ecc.fields import optimized_bls12_381_FQ2 as FQ2
from py_ecc.optimized_bls12_381.optimized_curve import (
    b,
    b2,
    curve_order,
    field_modulus,
    is_inf,
    multiply,
)

from edgechain.crypto import bls
from edgechain.crypto.bls import BlsError
from edgechain.errors import LocalError, PeerError
from edgechain.types import PublicKey, SecretKey, Signature

# py_ecc types keys and signatures with its own NewTypes; compare bytes, not types.
PyEcc: Any = G2ProofOfPossession

MESSAGE = b"edgechain block header"
G1_INFINITY = bytes([0xC0]) + bytes(47)
G2_INFINITY = bytes([0xC0]) + bytes(95)


def ikm(label: int) -> bytes:
    return hashlib.sha256(b"bls test ikm" + label.to_bytes(4, "big")).digest()


SKS = [bls.keygen(ikm(i)) for i in range(3)]
PKS = [bls.sk_to_pk(sk) for sk in SKS]


# --- Constructing invalid points with py_ecc's field arithmetic


def _g1_bytes(point: Any) -> bytes:
    value: int = compress_G1(point)
    return value.to_bytes(48, "big")


def _g2_bytes(point: Any) -> bytes:
    z1, z2 = compress_G2(point)
    return int(z1).to_bytes(48, "big") + int(z2).to_bytes(48, "big")


def _is_square(value: int) -> bool:
    return value == 0 or pow(value, (field_modulus - 1) // 2, field_modulus) == 1


def g1_on_curve_not_in_subgroup() -> bytes:
    """A point of y^2 = x^3 + 4 over Fp, no cofactor clearing: outside the r-torsion."""
    x = 1
    while not _is_square((x**3 + b.n) % field_modulus):
        x += 1
    # p = 3 mod 4, so a square root is a single exponentiation.
    y = pow((x**3 + b.n) % field_modulus, (field_modulus + 1) // 4, field_modulus)
    point = (FQ(x), FQ(y), FQ(1))
    assert not is_inf(multiply(point, curve_order))
    return _g1_bytes(point)


def g1_off_curve() -> bytes:
    """Compressed bytes whose x has no y on the curve."""
    x = 1
    while _is_square((x**3 + b.n) % field_modulus):
        x += 1
    return (x + (1 << 383)).to_bytes(48, "big")  # compression flag set, b and a flags clear


def g2_on_curve_not_in_subgroup() -> bytes:
    k = 1
    while True:
        x = FQ2([k, 1])
        y = modular_squareroot_in_FQ2(x**3 + b2)
        if y is not None:
            break
        k += 1
    point = (x, y, FQ2.one())
    assert not is_inf(multiply(point, curve_order))
    return _g2_bytes(point)


def g2_off_curve() -> bytes:
    k = 1
    while modular_squareroot_in_FQ2(FQ2([k, 1]) ** 3 + b2) is not None:
        k += 1
    return ((1 + (1 << 383)).to_bytes(48, "big")) + k.to_bytes(48, "big")


NON_SUBGROUP_PK = g1_on_curve_not_in_subgroup()
OFF_CURVE_PK = g1_off_curve()
NON_SUBGROUP_SIG = g2_on_curve_not_in_subgroup()
OFF_CURVE_SIG = g2_off_curve()
X_TOO_LARGE_PK = (field_modulus + (1 << 383)).to_bytes(48, "big")  # x >= p, non-canonical
UNCOMPRESSED_FLAG_PK = bytes([PKS[0][0] & 0x7F]) + PKS[0][1:]  # compression bit cleared
# Non-canonical encodings of the identity: py_arkworks_bls12381 decodes these as the
# point at infinity (bls.py must reject them by re-encoding).
INFINITY_VARIANTS = {
    "infinity-x-nonzero": bytes([0xC0]) + bytes(46) + b"\x01",
    "infinity-sign-flag": bytes([0xE0]) + bytes(47),
    "infinity-stray-high-bit": bytes([0xC1]) + bytes(47),
}

BAD_PUBLIC_KEYS = {
    "infinity": G1_INFINITY,
    "not-in-subgroup": NON_SUBGROUP_PK,
    "off-curve": OFF_CURVE_PK,
    "x-too-large": X_TOO_LARGE_PK,
    "uncompressed-flag": UNCOMPRESSED_FLAG_PK,
    **INFINITY_VARIANTS,
    "short": PKS[0][:47],
    "long": PKS[0] + b"\x00",
    "empty": b"",
}


# --- Cross-checks with py_ecc


@pytest.mark.parametrize("label", range(3))
def test_keygen_and_sk_to_pk_match_py_ecc(label: int) -> None:
    sk = bls.keygen(ikm(label))
    assert sk == PyEcc.KeyGen(ikm(label))
    assert bls.sk_to_pk(sk) == PyEcc.SkToPk(sk)
    assert bls.keygen(ikm(label), b"info") == PyEcc.KeyGen(ikm(label), b"info")


def test_signature_equal_and_verifies_under_py_ecc() -> None:
    ours = bls.sign(SKS[0], MESSAGE)
    assert ours == PyEcc.Sign(SKS[0], MESSAGE)
    assert PyEcc.Verify(PKS[0], MESSAGE, ours)


def test_py_ecc_signature_verifies_under_ours() -> None:
    theirs = PyEcc.Sign(SKS[1], MESSAGE)
    assert bls.verify(PKS[1], MESSAGE, theirs)
    assert not bls.verify(PKS[0], MESSAGE, theirs)
    assert not bls.verify(PKS[1], MESSAGE + b"!", theirs)


def test_proof_of_possession_both_ways() -> None:
    ours = bls.pop_prove(SKS[0])
    assert ours == PyEcc.PopProve(SKS[0])
    assert PyEcc.PopVerify(PKS[0], ours)
    theirs = PyEcc.PopProve(SKS[1])
    assert bls.pop_verify(PKS[1], theirs)
    assert not bls.pop_verify(PKS[0], theirs)
    # A PoP is not a signature over the key under the message tag, and vice versa.
    assert not bls.verify(PKS[1], PKS[1], theirs)
    assert not bls.pop_verify(PKS[1], bls.sign(SKS[1], PKS[1]))


def test_aggregate_equal_and_fast_aggregate_verify_both_ways() -> None:
    signatures = [bls.sign(sk, MESSAGE) for sk in SKS]
    ours = bls.aggregate(signatures)
    assert ours == PyEcc.Aggregate(signatures)
    assert PyEcc.FastAggregateVerify(PKS, MESSAGE, ours)
    assert bls.fast_aggregate_verify(PKS, MESSAGE, ours)
    # py_ecc's aggregate of its own signatures (equal bytes, checked by ours).
    theirs = PyEcc.Aggregate([PyEcc.Sign(sk, MESSAGE) for sk in SKS[:2]])
    assert bls.fast_aggregate_verify(PKS[:2], MESSAGE, theirs)
    assert not bls.fast_aggregate_verify(PKS, MESSAGE, theirs)
    assert not bls.fast_aggregate_verify(PKS[:2], MESSAGE + b"!", theirs)


def test_key_validate_agrees_with_py_ecc() -> None:
    assert bls.is_public_key_valid(PKS[0]) and PyEcc.KeyValidate(PKS[0])
    for name, pk in BAD_PUBLIC_KEYS.items():
        assert not bls.is_public_key_valid(pk), name
        assert not PyEcc.KeyValidate(pk), name


@settings(max_examples=3, deadline=None)
@given(message=st.binary(max_size=200))
def test_hypothesis_cross_verify(message: bytes) -> None:
    ours = bls.sign(SKS[2], message)
    assert PyEcc.Verify(PKS[2], message, ours)
    assert bls.verify(PKS[2], message, PyEcc.Sign(SKS[2], message))


# --- Rejections


@pytest.mark.parametrize("name", sorted(BAD_PUBLIC_KEYS))
def test_bad_public_key_rejected_everywhere(name: str) -> None:
    pk = BAD_PUBLIC_KEYS[name]
    signature = bls.sign(SKS[0], MESSAGE)
    assert not bls.verify(pk, MESSAGE, signature)
    assert not bls.pop_verify(pk, bls.pop_prove(SKS[0]))
    assert not bls.fast_aggregate_verify([pk], MESSAGE, signature)
    assert not bls.fast_aggregate_verify([PKS[0], pk], MESSAGE, signature)
    with pytest.raises(BlsError):
        bls.aggregate_public_keys([PKS[0], pk])


def test_infinity_key_with_infinity_signature_rejected() -> None:
    # The classic forgery: (infinity, infinity) satisfies the pairing equation.
    assert not bls.verify(G1_INFINITY, MESSAGE, G2_INFINITY)
    assert not bls.pop_verify(G1_INFINITY, G2_INFINITY)
    assert not bls.fast_aggregate_verify([G1_INFINITY], MESSAGE, G2_INFINITY)


@pytest.mark.parametrize("name", sorted(INFINITY_VARIANTS))
def test_non_canonical_infinity_key_cannot_forge(name: str) -> None:
    # Regression: these decoded to the identity and verified every message with the
    # infinity signature (and passed PoP the same way).
    pk = INFINITY_VARIANTS[name]
    assert not bls.verify(pk, b"any message at all", G2_INFINITY)
    assert not bls.pop_verify(pk, G2_INFINITY)
    assert not bls.fast_aggregate_verify([pk], MESSAGE, G2_INFINITY)
    with pytest.raises(BlsError, match="non-canonical"):
        bls.aggregate_public_keys([pk])


def test_keys_summing_to_infinity_do_not_verify_infinity_signature() -> None:
    # pk and -pk: rogue keys the PoP requirement keeps out; the verify still fails.
    negated = bytes([PKS[0][0] ^ 0x20]) + PKS[0][1:]  # flip the y-sign flag
    assert bls.is_public_key_valid(negated)
    assert not bls.fast_aggregate_verify([PKS[0], negated], MESSAGE, G2_INFINITY)


BAD_SIGNATURES = {
    "not-in-subgroup": NON_SUBGROUP_SIG,
    "off-curve": OFF_CURVE_SIG,
    "short": bytes(95),
    "long": bytes(97),
    "empty": b"",
    "zeros": bytes(96),
    "infinity-x-nonzero": bytes([0xC0]) + bytes(94) + b"\x01",
    "infinity-sign-flag": bytes([0xE0]) + bytes(95),
}


@pytest.mark.parametrize("name", sorted(BAD_SIGNATURES))
def test_bad_signature_rejected(name: str) -> None:
    signature = BAD_SIGNATURES[name]
    assert not bls.verify(PKS[0], MESSAGE, signature)
    assert not bls.pop_verify(PKS[0], signature)
    assert not bls.fast_aggregate_verify(PKS, MESSAGE, signature)
    with pytest.raises(BlsError):
        bls.aggregate([bls.sign(SKS[0], MESSAGE), signature])


def test_non_subgroup_signature_rejected_by_py_ecc_too() -> None:
    assert not PyEcc.Verify(PKS[0], MESSAGE, NON_SUBGROUP_SIG)


def test_infinity_signature_is_not_a_valid_signature() -> None:
    assert not bls.verify(PKS[0], MESSAGE, G2_INFINITY)
    # ... but it is a well-formed point: aggregating it is the identity operation.
    signature = bls.sign(SKS[0], MESSAGE)
    assert bls.aggregate([signature, G2_INFINITY]) == signature


@pytest.mark.parametrize("name", ["infinity-x-nonzero", "infinity-sign-flag"])
def test_non_canonical_signature_rejected_by_py_ecc_too(name: str) -> None:
    signature = BAD_SIGNATURES[name]
    with pytest.raises(ValueError):
        PyEcc.Aggregate([signature])


def test_empty_signer_lists() -> None:
    with pytest.raises(BlsError):
        bls.aggregate([])
    with pytest.raises(BlsError):
        bls.aggregate_public_keys([])
    assert not bls.fast_aggregate_verify([], MESSAGE, bls.sign(SKS[0], MESSAGE))
    assert not bls.fast_aggregate_verify([], MESSAGE, G2_INFINITY)
    assert not PyEcc.FastAggregateVerify([], MESSAGE, G2_INFINITY)


def test_bls_error_is_a_peer_error() -> None:
    with pytest.raises(PeerError) as info:
        bls.aggregate([b"\x00"])
    assert info.value.reason == "bad_signature"


def test_secret_key_checks() -> None:
    for bad in (0, bls.CURVE_ORDER, -1):
        with pytest.raises(LocalError):
            bls.sk_to_pk(SecretKey(bad))
        with pytest.raises(LocalError):
            bls.sign(SecretKey(bad), MESSAGE)
    with pytest.raises(LocalError):
        bls.keygen(bytes(31))


def test_fast_aggregate_verify_needs_every_signer() -> None:
    signatures = [bls.sign(sk, MESSAGE) for sk in SKS]
    aggregate = bls.aggregate(signatures[:2])
    assert bls.fast_aggregate_verify(PKS[:2], MESSAGE, aggregate)
    assert not bls.fast_aggregate_verify(PKS[:1], MESSAGE, aggregate)
    assert not bls.fast_aggregate_verify([PKS[0], PKS[2]], MESSAGE, aggregate)
    # The key order does not matter; duplicates do.
    assert bls.fast_aggregate_verify(PKS[1::-1], MESSAGE, aggregate)
    assert not bls.fast_aggregate_verify([PKS[0], PKS[0]], MESSAGE, aggregate)


def test_a_batch_that_shares_messages_agrees_with_one_by_one_checks() -> None:
    """``batch_verify`` pairs each (tag, message) once with the keys that sign it; the
    verdict is still every item's, and a point moved between two signatures of one
    message (same sum) is refused."""
    other = b"another message"
    signatures = [bls.sign(sk, MESSAGE) for sk in SKS]
    pops = [bls.pop_prove(sk) for sk in SKS]
    items = [
        (PKS[0], MESSAGE, signatures[0]),
        (PKS[1], MESSAGE, signatures[1]),
        (PKS[2], other, bls.sign(SKS[2], other)),
        (PKS[2], MESSAGE, signatures[2]),
        (PKS[0], bytes(PKS[0]), pops[0]),
    ]
    tags = [bls.DST_SIGNATURE] * 4 + [bls.DST_POP]
    assert bls.batch_verify(items, b"r", tags)
    # The proof of possession signs the key under its own tag: not under the default.
    assert not bls.batch_verify(items, b"r")
    swapped = [(PKS[1], MESSAGE, signatures[0]), (PKS[0], MESSAGE, signatures[1])]
    assert not bls.batch_verify(swapped, b"r")
    shift = G2Point.hash_to_curve(b"shift", bls.DST_SIGNATURE)
    first = G2Point.from_compressed_bytes(signatures[0]) + shift
    second = G2Point.from_compressed_bytes(signatures[1]) - shift
    moved = [
        (PKS[0], MESSAGE, first.to_compressed_bytes()),
        (PKS[1], MESSAGE, second.to_compressed_bytes()),
    ]
    assert bls.aggregate([item[2] for item in moved]) == bls.aggregate(signatures[:2])
    assert not bls.batch_verify(moved, b"r")


@settings(max_examples=40, deadline=None)
@given(message=st.binary(max_size=300), other=st.binary(max_size=300))
def test_hypothesis_sign_verify(message: bytes, other: bytes) -> None:
    signature = bls.sign(SKS[0], message)
    assert bls.verify(PKS[0], message, signature)
    assert bls.verify(PublicKey(bytes(PKS[0])), message, Signature(bytes(signature)))
    assert not bls.verify(PKS[1], message, signature)
    if other != message:
        assert not bls.verify(PKS[0], other, signature)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=48, max_size=48))
def test_hypothesis_random_public_key_bytes_never_raise(data: bytes) -> None:
    # A random string is a valid key with negligible probability (it must be a
    # canonical x of the curve *and* land in the prime-order subgroup).
    assert bls.is_public_key_valid(data) == (data in PKS)
    assert bls.verify(data, MESSAGE, bls.sign(SKS[0], MESSAGE)) == (data == PKS[0])


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=96, max_size=96))
def test_hypothesis_random_signature_bytes_never_raise(data: bytes) -> None:
    assert not bls.verify(PKS[0], MESSAGE, data)
    assert not bls.fast_aggregate_verify(PKS, MESSAGE, data)
