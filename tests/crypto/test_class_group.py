"""The VDF's starting forms and chiavdf's form encoding (``crypto/class_group.py``),
checked against chiavdf itself."""

from __future__ import annotations

import hashlib

import chiavdf
import pytest

from edgechain.crypto import class_group, vdf

BITS = vdf.DISCRIMINANT_BITS


def digest(label: bytes, i: int) -> bytes:
    return hashlib.sha256(label + i.to_bytes(4, "big")).digest()


def discriminant_of(group: bytes) -> tuple[str, int]:
    text: str = chiavdf.create_discriminant(group, BITS)
    return text, class_group.parse_discriminant(text)


def decode(text: str, encoded: bytes) -> tuple[int, int]:
    a, b = chiavdf.bqfc_deserialize(text, encoded, True)
    return class_group.parse_form_integer(a), class_group.parse_form_integer(b)


def test_encode_form_gives_chiavdfs_own_bytes_for_its_outputs() -> None:
    # Outputs and proofs of real evaluations are chiavdf's canonical encodings of
    # arbitrary reduced forms (either sign of b): ours must be byte for byte the same.
    checked = 0
    for i in range(12):
        group = digest(b"group", i)
        text, _ = discriminant_of(group)
        blob = chiavdf.prove(group, vdf.GENERATOR_FORM, BITS, 300 + 7 * i, "")
        for encoded in (blob[:100], blob[100:]):
            if encoded[0] & 0x0C:
                continue  # identity or generator: one flag byte, not a compressed form
            a, b = decode(text, encoded)
            assert class_group.encode_form(a, b, BITS) == encoded
            checked += 1
    assert checked >= 20


def test_input_forms_are_reduced_forms_of_the_discriminant() -> None:
    _, d = discriminant_of(digest(b"group", 99))
    for i in range(50):
        a, b, _ = class_group.find_input_form(d, digest(b"challenge", i))
        assert (b * b - d) % (4 * a) == 0
        c = (b * b - d) // (4 * a)
        assert 0 < b < a < c
        assert a.bit_length() == class_group.INPUT_PRIME_BITS and a % 4 == 3
        assert pow(2, a - 1, a) == 1  # prime (base-2 Fermat, independent of the search's test)


def test_input_forms_decode_strictly_and_differ_per_challenge() -> None:
    group = digest(b"group", 7)
    text, d = discriminant_of(group)
    seen = set()
    for i in range(100):
        encoded = vdf.get_input_form(group, digest(b"challenge", i))
        assert len(encoded) == vdf.FORM_SIZE
        a, b = decode(text, encoded)  # raises unless canonical
        assert (a, b) == class_group.find_input_form(d, digest(b"challenge", i))[:2]
        seen.add(encoded)
    assert len(seen) == 100


def test_the_input_form_is_a_function_of_its_bytes() -> None:
    # Consensus: every node must derive the same start from the same hashes.
    group, challenge = digest(b"group", 1), digest(b"challenge", 1)
    first = vdf.get_input_form(group, challenge)
    vdf.get_input_form.cache_clear()
    assert vdf.get_input_form(group, challenge) == first
    assert vdf.get_input_form(group, digest(b"challenge", 2)) != first
    assert vdf.get_input_form(digest(b"group", 2), challenge) != first


def test_a_search_past_a_form_finds_the_next_one() -> None:
    _, d = discriminant_of(digest(b"group", 3))
    a1, _, after = class_group.find_input_form(d, digest(b"challenge", 0))
    a2, _, _ = class_group.find_input_form(d, digest(b"challenge", 0), after)
    assert a2 > a1


@pytest.mark.parametrize("bad", [5, 0, -3, -5])
def test_find_input_form_refuses_what_is_no_chiavdf_discriminant(bad: int) -> None:
    with pytest.raises(ValueError):
        class_group.find_input_form(bad, digest(b"challenge", 0))
