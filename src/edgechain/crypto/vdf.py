"""Verifiable Delay Function: class-group Wesolowski VDF via chiavdf.

Paper §3.4: the producer of block ``n`` evaluates ``VDF(hash(n - 1), difficulty(n - 1))``
and the output seeds the roles of the next slot (DESIGN.md, "VDF" and "Seed and
roles"). The group is the class group of binary quadratic forms of a 1024-bit negative
discriminant, so no trusted setup is needed.

The group is the group period's, the starting element the block's (block formats 12
and 13). The discriminant is derived from a *group hash*: the hash of the last block
before the block's group period began (``ChainParams.vdf_group_slots``, 32 slots by
default; one 8-slot epoch in format 12), on its own chain
(``consensus/state.compute_vdf_group``), so every block of a period shares one.
Deriving it is a search for a 1024-bit prime, 17-33 ms here, and every validator did
it for every block: most of the VDF check's cost, and the floor of 100 nodes on one
host (ARCHITECTURE.md, "CPU budget"). Now a node derives it once per period. The
starting element is a form hashed from the *challenge*, the parent block hash
(``crypto/class_group.py``), so each block still evaluates from a point nobody knew
before its parent existed. Chia fixes its discriminant for a whole challenge chain
sub-slot (about ten minutes) the same way; the delay rests on nobody computing the
class group of a fresh 1024-bit discriminant within the period, which is
far beyond any known computation.

Byte layout (chiavdf's compressed form encoding, ``FORM_SIZE`` = 100 bytes each):

* ``output``: the form ``y = x^(2^iterations)``;
* ``proof``: the Wesolowski proof ``pi = x^floor(2^iterations / B)`` where ``B`` is a
  prime derived from ``x`` and ``y``. For ``iterations`` below the size of ``B``
  (~264 bits) the proof is legitimately the identity form.

Canonical encodings. chiavdf's verifier accepts some non-canonical encodings of a valid
form: the identity and generator forms are recognised by a flag bit and the other 99
bytes are ignored, and unused high bits of the last field are not checked. Since the
block seed is ``SHA-256(output)``, a producer could otherwise grind the next roles by
re-encoding the same output. :func:`verify` therefore also requires both forms to be
canonical: special forms must be exactly their canonical 100 bytes, other forms must
pass chiavdf's strict deserialisation, which re-serialises and compares every byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import chiavdf

from edgechain.crypto import class_group
from edgechain.types import HASH_SIZE

DISCRIMINANT_BITS = 1024
FORM_SIZE = 100
OUTPUT_SIZE = FORM_SIZE
PROOF_SIZE = FORM_SIZE
CHALLENGE_SIZE = HASH_SIZE

MAX_ITERATIONS = 1 << 32
"""Upper bound on the difficulty: ~6.6 hours of evaluation at ~180k iterations/s.

Anything larger cannot be a sensible slot difficulty; refusing it early keeps absurd
peer values away from the C++ code (which takes an unsigned 64-bit count).
"""

_FLAG_IS_IDENTITY = 0x04
_FLAG_IS_GENERATOR = 0x08
_IDENTITY_FORM = bytes([_FLAG_IS_IDENTITY]) + bytes(FORM_SIZE - 1)
GENERATOR_FORM = bytes([_FLAG_IS_GENERATOR]) + bytes(FORM_SIZE - 1)
"""chiavdf's encoding of the generator form (2, 1)."""

_RECURSION_DEPTH = 0  # plain Wesolowski: one proof, no n-Wesolowski segments
_DISCRIMINANT_CACHE_SIZE = 16
"""Groups in use at once: the current epoch's on a few forks, and a syncing node's."""
_INPUT_CACHE_SIZE = 256
"""Starting forms: a node verifies a handful of recent parents at most."""


@dataclass(frozen=True)
class VdfResult:
    """An evaluated VDF: the output form and its Wesolowski proof (100 bytes each)."""

    output: bytes
    proof: bytes


@lru_cache(maxsize=_DISCRIMINANT_CACHE_SIZE)
def _discriminant(group: bytes) -> str:
    # A search for a 1024-bit prime (17-33 ms here): once per group period, since every
    # block of a period on one chain names the same group hash.
    disc: str = chiavdf.create_discriminant(group, DISCRIMINANT_BITS)
    return disc


def _decodes_to(discriminant: str, encoded: bytes, a: int, b: int) -> bool:
    try:
        got_a, got_b = chiavdf.bqfc_deserialize(discriminant, encoded, True)
    except Exception:  # chiavdf raises RuntimeError on a form it will not take
        return False
    parse = class_group.parse_form_integer
    return (parse(got_a), parse(got_b)) == (a, b)


@lru_cache(maxsize=_INPUT_CACHE_SIZE)
def get_input_form(group: bytes, challenge: bytes) -> bytes:
    """The starting element for ``challenge`` (the parent hash) in ``group``'s class
    group, in chiavdf's encoding (~1 ms; cached, so the producer and a verifier in one
    process pay once)."""
    problem = _check_hash("group", group) or _check_hash("challenge", challenge)
    if problem is not None:
        raise ValueError(problem)
    discriminant = _discriminant(bytes(group))
    return class_group.compute_input_form(
        class_group.parse_discriminant(discriminant),
        DISCRIMINANT_BITS,
        bytes(challenge),
        lambda encoded, a, b: _decodes_to(discriminant, encoded, a, b),
    )


def precompute_discriminant(group: bytes) -> None:
    """Derive and cache the discriminant of ``group`` ahead of time (23-33 ms)."""
    problem = _check_hash("group", group)
    if problem is not None:
        raise ValueError(problem)
    _discriminant(bytes(group))


def _check_hash(name: str, value: bytes) -> str | None:
    if len(value) != CHALLENGE_SIZE:
        return f"{name} must be {CHALLENGE_SIZE} bytes, got {len(value)}"
    return None


def _check_arguments(group: bytes, challenge: bytes, iterations: int) -> str | None:
    """The reason the arguments are unusable, or ``None`` if they are fine."""
    problem = _check_hash("group", group) or _check_hash("challenge", challenge)
    if problem is not None:
        return problem
    if not 1 <= iterations <= MAX_ITERATIONS:
        return f"iterations must be in [1, {MAX_ITERATIONS}], got {iterations}"
    return None


class VdfCancelledError(Exception):
    """The evaluation was stopped: its ``keep_running`` file was removed."""


def prove(group: bytes, challenge: bytes, iterations: int, *, keep_running: str = "") -> VdfResult:
    """Evaluate the VDF on ``challenge`` (the parent block hash) in ``group``'s class
    group (the epoch's group hash) for ``iterations`` squarings.

    Takes ``iterations`` / ~180k seconds. chiavdf releases the GIL while it works, so it
    may run in a worker thread. Raises ``ValueError`` on a group or challenge that is not
    32 bytes or iterations outside ``[1, MAX_ITERATIONS]`` (local misuse).

    ``keep_running``: the path of an existing file; chiavdf checks it as it goes and
    stops within milliseconds once it is gone (:class:`VdfCancelledError`). That is how a
    producer drops an evaluation nobody wants any more (its slot passed, or a new head
    made it a different slot's producer) instead of burning a core on it.
    """
    problem = _check_arguments(group, challenge, iterations)
    if problem is not None:
        raise ValueError(problem)
    start = get_input_form(bytes(group), bytes(challenge))
    # chiavdf derives the discriminant from its first argument: the group hash.
    blob: bytes = chiavdf.prove(bytes(group), start, DISCRIMINANT_BITS, iterations, keep_running)
    if not blob and keep_running:
        raise VdfCancelledError(f"VDF evaluation stopped: {keep_running} was removed")
    if len(blob) != OUTPUT_SIZE + PROOF_SIZE:
        raise RuntimeError(f"chiavdf returned {len(blob)} bytes, expected 200")
    return VdfResult(output=blob[:OUTPUT_SIZE], proof=blob[OUTPUT_SIZE:])


def _is_canonical_form(discriminant: str, form: bytes) -> bool:
    if form[0] & (_FLAG_IS_IDENTITY | _FLAG_IS_GENERATOR):
        return form in (_IDENTITY_FORM, GENERATOR_FORM)
    try:
        chiavdf.bqfc_deserialize(discriminant, form, True)
    except Exception:  # chiavdf raises RuntimeError; be defensive about peer bytes
        return False
    return True


def verify(group: bytes, challenge: bytes, iterations: int, output: bytes, proof: bytes) -> bool:
    """Whether ``output``/``proof`` is the canonical VDF evaluation for the inputs (~6 ms,
    and the group's discriminant once per group period).

    Never raises on peer data: wrong lengths, out-of-range iterations, undecodable or
    non-canonical forms and wrong proofs all return ``False``.
    """
    if _check_arguments(group, challenge, iterations) is not None:
        return False
    if len(output) != OUTPUT_SIZE or len(proof) != PROOF_SIZE:
        return False
    output, proof = bytes(output), bytes(proof)
    discriminant = _discriminant(bytes(group))
    if not (_is_canonical_form(discriminant, output) and _is_canonical_form(discriminant, proof)):
        return False
    start = get_input_form(bytes(group), bytes(challenge))
    try:
        ok: bool = chiavdf.verify_n_wesolowski(
            discriminant,
            start,
            output + proof,
            iterations,
            DISCRIMINANT_BITS,
            _RECURSION_DEPTH,
        )
    except Exception:  # chiavdf raises RuntimeError on some malformed forms
        return False
    return bool(ok)
