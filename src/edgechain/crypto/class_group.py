"""Class-group elements for the VDF: hashing a challenge to a form, and chiavdf's encoding.

Why this exists: the VDF's group is fixed for an epoch (``crypto/vdf.py``), so the
element each block's evaluation starts from must differ per block and must be one whose
relation to every other element is unknown. A form derived from the parent hash gives
that: ``x = (a, b, c)`` with ``a`` a 128-bit prime drawn from the hash and ``b`` a
square root of the discriminant ``D`` modulo ``a``, so that ``b^2 - 4ac = D``. Nobody
knows the discrete logarithm of such a form to the base of another without computing
the class group of ``D``, which is the computation the VDF's delay already rests on (a
start of ``g^h`` for a known ``h`` would let ``g^(2^T)``, computed once per epoch, give
every block's output with a 256-bit exponentiation).

The encoding is chiavdf's compressed form (``bqfc``), which its prover and verifier take
as input and which they accept only in canonical form; :func:`encode_form`
computes it, and :func:`compute_input_form` keeps only encodings that chiavdf's strict
decoder maps back to the same form, so an encoding chiavdf would not accept is skipped,
deterministically, on every node alike.

All of it is integer arithmetic on bytes: the same challenge gives the same form on
every machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

INPUT_PRIME_BITS = 128
"""Size of the form's ``a``: a fresh prime per challenge (~0.9 ms to find in Python)."""

_INPUT_DOMAIN = b"edgechain/vdf-input/v1"
_MAX_CANDIDATES = 1 << 20
"""Candidates tried before giving up (a prime with ``D`` a square mod it comes, on
average, within a few hundred; this bound only turns a bug into an error)."""

_SMALL_PRIMES = tuple(p for p in range(3, 2000) if all(p % q for q in range(2, math.isqrt(p) + 1)))
_SMALL_PRIMORIAL = math.prod(_SMALL_PRIMES)
"""A candidate sharing a factor with this is not prime: one gcd instead of trial division."""
_WITNESSES = _SMALL_PRIMES[:12]
"""Miller-Rabin bases. A composite that passed would only yield a form that fails the
exact check ``b^2 = D (mod 4a)`` below, and the search would go on."""


def parse_discriminant(text: str) -> int:
    """chiavdf's discriminant string (``"-0x..."``) as an integer."""
    return int(text, 16)


def parse_form_integer(raw: bytes) -> int:
    """An integer as chiavdf's ``bqfc_deserialize`` returns it: a sign byte (1:
    negative), then the magnitude, big-endian."""
    magnitude = int.from_bytes(raw[1:], "big")
    return -magnitude if raw[:1] == b"\x01" else magnitude


def _is_probable_prime(n: int) -> bool:
    if math.gcd(n, _SMALL_PRIMORIAL) != 1:
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for base in _WITNESSES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def find_input_form(discriminant: int, challenge: bytes, start: int = 0) -> tuple[int, int, int]:
    """The first form ``(a, b)`` of ``discriminant`` drawn from ``challenge`` at or
    after candidate ``start``, and the index of the candidate after it.

    ``a`` runs over ``3 (mod 4)`` numbers upwards from a 128-bit value the hash gives
    (so the square root of ``D`` mod ``a`` is one exponentiation); the first prime for
    which ``D`` is a square gives ``b``, made odd so that ``b^2 = D (mod 4a)`` (``D`` is
    ``1 (mod 8)``). ``|b| < a < c``: the form is reduced.
    """
    if discriminant >= 0 or discriminant % 8 != 1:
        raise ValueError("not a chiavdf discriminant (negative, 1 mod 8)")
    digest = hashlib.sha256(_INPUT_DOMAIN + challenge).digest()
    top = INPUT_PRIME_BITS // 8
    base = int.from_bytes(digest[:top], "big") | (1 << (INPUT_PRIME_BITS - 1))
    base += 3 - base % 4
    for index in range(start, _MAX_CANDIDATES):
        a = base + 4 * index
        if math.gcd(a, _SMALL_PRIMORIAL) != 1:
            continue
        residue = discriminant % a
        if pow(residue, (a - 1) // 2, a) != 1 or not _is_probable_prime(a):
            continue
        b = pow(residue, (a + 1) // 4, a)
        if b % 2 == 0:
            b = a - b
        if (b * b - discriminant) % (4 * a) == 0:
            return a, b, index + 1
    raise RuntimeError("no input form found")  # pragma: no cover - needs a broken prime test


def encode_form(a: int, b: int, discriminant_bits: int) -> bytes:
    """chiavdf's compressed encoding (``bqfc_serialize``) of the reduced form ``(a, b)``.

    Layout (little-endian fields, 100 bytes for a 1024-bit discriminant): a flag byte
    (bit 0: ``b < 0``; bit 1: ``t < 0``), ``len(g) - 1``, ``a / g``, ``|t| / g``, ``g``,
    ``b0 = |b| // (a / g)``, where ``t`` is the cofactor of ``b`` at the step of the
    extended Euclidean algorithm on ``(a, |b|)`` whose remainder first drops to
    ``isqrt(a)`` or below, and ``g = gcd(a, t)``. Raises ``OverflowError`` for a form too
    large for the format (not a reduced form of the discriminant).
    """
    if a == b or a <= 0:
        raise ValueError("special or invalid form")
    bits = (discriminant_bits + 31) // 32 * 32
    size = bits // 32 * 3 + 4
    negative = b < 0
    r_prev, r_next = a, abs(b)
    co_prev, co_next = 0, -1
    bound = math.isqrt(a)
    while r_next and r_next > bound:
        q = r_prev // r_next
        r_prev, r_next = r_next, r_prev - q * r_next
        co_prev, co_next = co_next, co_prev - q * co_next
    t = -co_next
    g = math.gcd(a, t)
    if g == 1:
        a_part, b0 = a, 0
    else:
        a_part, t = a // g, t // g
        b0 = abs(b) // a_part
    g_size = (g.bit_length() + 7) // 8 - 1
    flags = (1 if negative else 0) | (2 if t < 0 else 0)
    body = (
        bytes((flags, g_size))
        + a_part.to_bytes(bits // 16 - g_size, "little")
        + abs(t).to_bytes(bits // 32 - g_size, "little")
        + g.to_bytes(g_size + 1, "little")
        + b0.to_bytes(g_size + 1, "little")
    )
    return body + bytes(max(0, size - len(body)))


def compute_input_form(
    discriminant: int,
    discriminant_bits: int,
    challenge: bytes,
    is_canonical: Callable[[bytes, int, int], bool],
) -> bytes:
    """The encoded starting form for ``challenge``: the first form of
    :func:`find_input_form` whose encoding ``is_canonical`` (chiavdf's strict decoder
    gives back ``(a, b)``) accepts."""
    start = 0
    while True:
        a, b, start = find_input_form(discriminant, challenge, start)
        try:
            encoded = encode_form(a, b, discriminant_bits)
        except (OverflowError, ValueError):  # pragma: no cover - outside the format
            continue
        if is_canonical(encoded, a, b):
            return encoded
