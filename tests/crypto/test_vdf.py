"""chiavdf Wesolowski VDF wrapper: correctness, soundness against tampering, no raising."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import chiavdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.crypto import vdf
from edgechain.crypto.vdf import (
    MAX_ITERATIONS,
    OUTPUT_SIZE,
    PROOF_SIZE,
    VdfResult,
    prove,
    verify,
)

# Below ~264 iterations the Wesolowski proof is the identity form; above, it is a real
# group element. Exercise both regimes.
SMALL = 100
MEDIUM = 1000
IDENTITY_FORM = b"\x04" + bytes(99)


def challenge(label: int) -> bytes:
    return hashlib.sha256(b"vdf test challenge" + label.to_bytes(4, "big")).digest()


GROUP = challenge(1000)
"""The group hash of most tests: one epoch's group, several challenges in it."""


@pytest.fixture(scope="module")
def small() -> VdfResult:
    return prove(GROUP, challenge(0), SMALL)


@pytest.fixture(scope="module")
def medium() -> VdfResult:
    return prove(GROUP, challenge(1), MEDIUM)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_roundtrip(small: VdfResult, medium: VdfResult) -> None:
    assert len(small.output) == OUTPUT_SIZE and len(small.proof) == PROOF_SIZE
    assert verify(GROUP, challenge(0), SMALL, small.output, small.proof)
    assert verify(GROUP, challenge(1), MEDIUM, medium.output, medium.proof)


def test_small_iterations_give_identity_proof(small: VdfResult, medium: VdfResult) -> None:
    assert small.proof == IDENTITY_FORM
    assert medium.proof != IDENTITY_FORM


def test_deterministic(small: VdfResult) -> None:
    assert prove(GROUP, challenge(0), SMALL) == small


def test_one_iteration() -> None:
    result = prove(GROUP, challenge(5), 1)
    assert verify(GROUP, challenge(5), 1, result.output, result.proof)


@pytest.mark.parametrize("which", ["small", "medium"])
def test_every_single_bit_flip_fails(which: str, small: VdfResult, medium: VdfResult) -> None:
    result, label, iterations = (small, 0, SMALL) if which == "small" else (medium, 1, MEDIUM)
    blob = result.output + result.proof
    accepted = []
    for bit in range(8 * len(blob)):
        tampered = flip_bit(blob, bit)
        if verify(
            GROUP, challenge(label), iterations, tampered[:OUTPUT_SIZE], tampered[OUTPUT_SIZE:]
        ):
            accepted.append(bit)
    assert accepted == []


def test_bit_flips_never_raise_inside_chiavdf(
    medium: VdfResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the canonical-form filter, chiavdf itself raises on some flips: still False."""
    monkeypatch.setattr(vdf, "_is_canonical_form", lambda discriminant, form: True)
    blob = medium.output + medium.proof
    for bit in range(0, 8 * len(blob), 3):
        tampered = flip_bit(blob, bit)
        # Padding bits of the last field are not checked by chiavdf; the filter is
        # what rejects those. Here we only require "no exception".
        verify(GROUP, challenge(1), MEDIUM, tampered[:OUTPUT_SIZE], tampered[OUTPUT_SIZE:])


@pytest.mark.parametrize(
    "proof",
    [
        b"\x05" + bytes(99),  # identity flag plus a stray b-sign bit
        b"\x04" + bytes(98) + b"\x01",  # identity flag with junk after it
        b"\x0c" + bytes(99),  # both special flags
        b"\x08" + bytes(99),  # the generator form is not the proof here
    ],
)
def test_non_canonical_identity_proof_rejected(small: VdfResult, proof: bytes) -> None:
    assert not verify(GROUP, challenge(0), SMALL, small.output, proof)


def test_unused_padding_bits_rejected(medium: VdfResult) -> None:
    # The last byte of a form holds unused high bits that chiavdf's verifier ignores.
    for bit in range(8 * (OUTPUT_SIZE - 1), 8 * OUTPUT_SIZE):
        assert not verify(GROUP, challenge(1), MEDIUM, flip_bit(medium.output, bit), medium.proof)
        assert not verify(GROUP, challenge(1), MEDIUM, medium.output, flip_bit(medium.proof, bit))


@pytest.mark.parametrize("delta", [-1, 1, MEDIUM])
def test_wrong_iterations(medium: VdfResult, delta: int) -> None:
    assert not verify(GROUP, challenge(1), MEDIUM + delta, medium.output, medium.proof)


def test_wrong_challenge(medium: VdfResult) -> None:
    assert not verify(GROUP, challenge(2), MEDIUM, medium.output, medium.proof)


def test_output_and_proof_swapped(medium: VdfResult) -> None:
    assert not verify(GROUP, challenge(1), MEDIUM, medium.proof, medium.output)


@pytest.mark.parametrize("length", [0, 1, OUTPUT_SIZE - 1, OUTPUT_SIZE + 1, 2 * OUTPUT_SIZE])
def test_bad_lengths(medium: VdfResult, length: int) -> None:
    blob = (medium.output + medium.proof + bytes(OUTPUT_SIZE))[:length]
    assert not verify(GROUP, challenge(1), MEDIUM, blob, medium.proof)
    assert not verify(GROUP, challenge(1), MEDIUM, medium.output, blob)


def test_truncated_and_extended(medium: VdfResult) -> None:
    assert not verify(GROUP, challenge(1), MEDIUM, medium.output[:-1], medium.proof)
    assert not verify(GROUP, challenge(1), MEDIUM, medium.output, medium.proof + b"\x00")
    assert not verify(GROUP, challenge(1), MEDIUM, medium.output + b"\x00", medium.proof)
    assert not verify(GROUP, challenge(1), MEDIUM, medium.output, medium.proof[:-1])


@pytest.mark.parametrize("iterations", [0, -1, MAX_ITERATIONS + 1, 2**64, -(2**64)])
def test_iterations_out_of_range(medium: VdfResult, iterations: int) -> None:
    assert not verify(GROUP, challenge(1), iterations, medium.output, medium.proof)
    with pytest.raises(ValueError):
        prove(GROUP, challenge(1), iterations)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33])
def test_challenge_length(medium: VdfResult, bad: bytes) -> None:
    assert not verify(GROUP, bad, MEDIUM, medium.output, medium.proof)
    assert not verify(bad, challenge(1), MEDIUM, medium.output, medium.proof)
    with pytest.raises(ValueError):
        prove(GROUP, bad, MEDIUM)
    with pytest.raises(ValueError):
        prove(bad, challenge(1), MEDIUM)


@settings(max_examples=200, deadline=None)
@given(
    output=st.binary(min_size=OUTPUT_SIZE, max_size=OUTPUT_SIZE),
    proof=st.binary(min_size=PROOF_SIZE, max_size=PROOF_SIZE),
    iterations=st.integers(min_value=-5, max_value=10_000),
)
def test_random_garbage_never_raises(output: bytes, proof: bytes, iterations: int) -> None:
    assert not verify(GROUP, challenge(3), iterations, output, proof)


@settings(max_examples=100, deadline=None)
@given(output=st.binary(max_size=300), proof=st.binary(max_size=300))
def test_random_lengths_never_raise(output: bytes, proof: bytes) -> None:
    assert not verify(GROUP, challenge(3), 10, output, proof)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_edits_of_a_valid_proof_fail(small: VdfResult, data: st.DataObject) -> None:
    blob = bytearray(small.output + small.proof)
    position = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255).filter(lambda v: v != blob[position]))
    blob[position] = value
    assert not verify(
        GROUP, challenge(0), SMALL, bytes(blob[:OUTPUT_SIZE]), bytes(blob[OUTPUT_SIZE:])
    )


def test_discriminant_is_cached() -> None:
    vdf._discriminant.cache_clear()
    result = prove(GROUP, challenge(4), SMALL)
    assert verify(GROUP, challenge(4), SMALL, result.output, result.proof)
    assert verify(GROUP, challenge(4), SMALL, result.output, result.proof)
    assert vdf._discriminant.cache_info().hits >= 1


def test_one_group_derives_its_discriminant_once_for_many_challenges() -> None:
    # The point of the epoch's group (block format 12): blocks of one epoch share it.
    vdf._discriminant.cache_clear()
    for label in range(20, 25):
        result = prove(GROUP, challenge(label), SMALL)
        assert verify(GROUP, challenge(label), SMALL, result.output, result.proof)
    assert vdf._discriminant.cache_info().misses == 1


def test_each_challenge_starts_from_its_own_element_of_the_group() -> None:
    outputs = {prove(GROUP, challenge(label), SMALL).output for label in range(30, 36)}
    assert len(outputs) == 6
    starts = {vdf.get_input_form(GROUP, challenge(label)) for label in range(30, 36)}
    assert len(starts) == 6 and vdf.GENERATOR_FORM not in starts


def test_wrong_group(medium: VdfResult) -> None:
    assert not verify(challenge(1), challenge(1), MEDIUM, medium.output, medium.proof)
    assert not verify(challenge(2), challenge(1), MEDIUM, medium.output, medium.proof)


def test_an_evaluation_from_the_generator_does_not_verify() -> None:
    # The pre-format-12 evaluation (from the generator form) is no proof for a block now.
    blob = chiavdf.prove(GROUP, vdf.GENERATOR_FORM, vdf.DISCRIMINANT_BITS, MEDIUM, "")
    assert not verify(GROUP, challenge(1), MEDIUM, blob[:OUTPUT_SIZE], blob[OUTPUT_SIZE:])


def test_result_is_frozen(small: VdfResult) -> None:
    with pytest.raises(AttributeError):
        small.output = b""  # type: ignore[misc]


def test_precompute_discriminant() -> None:
    vdf._discriminant.cache_clear()
    vdf.precompute_discriminant(GROUP)
    assert vdf._discriminant.cache_info().currsize == 1
    with pytest.raises(ValueError):
        vdf.precompute_discriminant(b"short")


def test_prove_stops_when_its_keep_running_file_goes(tmp_path: Path) -> None:
    keep_running = tmp_path / "vdf.run"
    keep_running.touch()
    outcome: list[BaseException | vdf.VdfResult] = []

    def evaluate() -> None:
        try:
            # About a minute of squarings: only the removal can end it quickly.
            outcome.append(
                vdf.prove(GROUP, challenge(7), 10_000_000, keep_running=str(keep_running))
            )
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=evaluate)
    worker.start()
    keep_running.unlink()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the evaluation did not stop"
    [result] = outcome
    assert isinstance(result, vdf.VdfCancelledError)


def test_prove_with_a_keep_running_file_gives_a_valid_proof(tmp_path: Path) -> None:
    keep_running = tmp_path / "vdf.run"
    keep_running.touch()
    result = vdf.prove(GROUP, challenge(8), 1000, keep_running=str(keep_running))
    assert vdf.verify(GROUP, challenge(8), 1000, result.output, result.proof)
