"""A committee member checks a block twice: as its candidate before it votes and once
attested. The second check covers only what the hash does not (the producer's
signature and the aggregate): ``consensus/state.py``'s ``_is_checked_candidate``."""

from __future__ import annotations

import dataclasses
import os

import pytest

from edgechain.chain.model import Block
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.memo import Memo
from edgechain.crypto import bls, vdf
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import Signature

from .test_engine import Harness

NO_AGGREGATE = Signature(bytes(96))
STRANGER = bls.keygen(b"not the producer nor the committee, 32 bytes of seed")
CANDIDATE = ValidationMode(check_attestation=False)
ATTESTED = ValidationMode(check_attestation=True)


@pytest.fixture(scope="module")
def chain() -> Harness:
    harness = Harness(4)
    harness.start_chain()
    for slot in range(1, 4):
        harness.run_slot(slot)
    return harness


def _last_block(chain: Harness) -> tuple[Block, BlockState]:
    engine = chain.engine(0)
    block_hash = engine.head
    block = engine.blocks[block_hash]  # type: ignore[index]
    while not isinstance(block, Block):
        block_hash = block.parent
        block = engine.blocks[block_hash]
    return block, engine.states[block.parent]


class CountingVerify:
    """The real ``vdf.verify``, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = vdf.verify

    def __call__(self, *args: object) -> bool:
        self.calls += 1
        return self.real(*args)  # type: ignore[arg-type]


def _count_vdf_checks(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counting = CountingVerify()
    monkeypatch.setattr(vdf, "verify", counting)
    return counting


def _validate(
    memo: Memo, chain: Harness, block: Block, parent: BlockState, mode: ValidationMode
) -> int:
    params = chain.chain_params()
    return validate_full(memo, params, parent, block, memo.get_block_hash(block), mode)


def test_the_attested_block_after_its_candidate_checks_the_vdf_once(
    chain: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    block, parent = _last_block(chain)
    counting = _count_vdf_checks(monkeypatch)
    memo = Memo(randomness=os.urandom(32))
    candidate = dataclasses.replace(block, signers=b"", aggregate_signature=NO_AGGREGATE)
    assert _validate(memo, chain, candidate, parent, CANDIDATE) == 0
    assert _validate(memo, chain, block, parent, ATTESTED) >= 1
    assert counting.calls == 1
    # Without the candidate before it, the attested block is checked in full.
    assert _validate(Memo(randomness=os.urandom(32)), chain, block, parent, ATTESTED) >= 1
    assert counting.calls == 2


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("aggregate_signature", RejectReason.BAD_AGGREGATE_SIGNATURE),
        ("producer_signature", RejectReason.BAD_PRODUCER_SIGNATURE),
    ],
)
def test_what_the_hash_does_not_cover_is_still_checked(
    chain: Harness, field: str, reason: RejectReason
) -> None:
    block, parent = _last_block(chain)
    memo = Memo(randomness=os.urandom(32))
    candidate = dataclasses.replace(block, signers=b"", aggregate_signature=NO_AGGREGATE)
    _validate(memo, chain, candidate, parent, CANDIDATE)
    wrong = bls.sign(STRANGER, b"something else")
    if field == "aggregate_signature":
        forged = dataclasses.replace(block, aggregate_signature=wrong)
    else:
        forged = dataclasses.replace(block, producer_signature=wrong)
    with pytest.raises(ValidationError) as caught:
        _validate(memo, chain, forged, parent, ATTESTED)
    assert caught.value.reason == reason


def test_a_refused_candidate_does_not_shorten_the_check(
    chain: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    block, parent = _last_block(chain)
    counting = _count_vdf_checks(monkeypatch)
    memo = Memo(randomness=os.urandom(32))
    # The same hash, refused for what the hash does not cover.
    refused = dataclasses.replace(
        block,
        signers=b"",
        aggregate_signature=NO_AGGREGATE,
        producer_signature=bls.sign(STRANGER, b"something else"),
    )
    with pytest.raises(ValidationError):
        _validate(memo, chain, refused, parent, CANDIDATE)
    assert _validate(memo, chain, block, parent, ATTESTED) >= 1
    assert counting.calls == 1  # the refused candidate never reached its VDF
