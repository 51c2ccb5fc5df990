"""Hostile bytes: the decoder and validation reject every case cleanly and boundedly.

Random bytes, truncations, bit flips, absurd lengths and counts: each must end in a
PeerError (DecodeError / ValidationError / BlsError), never another exception, and
never allocate memory out of proportion to the input.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgechain.chain.assembly import make_command, make_report
from edgechain.chain.command_encoding import (
    decode_app_spec,
    decode_command,
    encode_app_spec,
    encode_command,
    write_command,
)
from edgechain.chain.encoding import (
    TAG_BLOCK,
    compute_block_hash,
    compute_genesis_hash,
    decode_block,
    decode_block_with_hash,
    decode_genesis,
    encode_block,
    encode_genesis,
)
from edgechain.chain.encoding_primitives import Writer
from edgechain.chain.model import (
    AppPolicy,
    AppSpec,
    AppUsage,
    Block,
    CommandKind,
    PlanAction,
    PlanEntry,
    RuntimeKind,
)
from edgechain.chain.plan_encoding import decode_plan_entry, write_plan_entry
from edgechain.chain.report_encoding import decode_report, write_report
from edgechain.chain.validation import BlockContext, validate_block, validate_skip_block
from edgechain.chain.validator_encoding import decode_inclusion, write_exit, write_inclusion
from edgechain.chain.validator_set import compute_genesis_validator_set
from edgechain.errors import DecodeError, PeerError
from edgechain.testing import build_block, build_skip_block, make_genesis
from edgechain.types import AppId, Slot

ITERATIONS = 100
GENESIS, IDENTS = make_genesis(6, committee_size=4, difficulty=ITERATIONS)
GENESIS_HASH = compute_genesis_hash(GENESIS)
VALIDATORS = compute_genesis_validator_set(GENESIS)
CTX = BlockContext(
    params=GENESIS.params,
    parent_hash=GENESIS_HASH,
    parent_slot=Slot(0),
    vdf_iterations=ITERATIONS,
    vdf_group=GENESIS_HASH,
    validators=VALIDATORS,
    producer_key=IDENTS[0].pk,
    committee=tuple(i.pk for i in IDENTS[1:5]),
)
_USAGE = AppUsage(AppId(b"\x05" * 32), 1, 2, 3, 4, 5)
BLOCK = build_block(
    parent=GENESIS_HASH,
    slot=Slot(1),
    params=GENESIS.params,
    vdf_iterations=ITERATIONS,
    producer=IDENTS[0],
    committee=IDENTS[1:5],
    reports=(
        make_report(
            IDENTS[2].sk, Slot(1), timestamp_ms=9, cpu_bp=1, ram_bp=2, disk_bp=3, rtt_us=4,
            apps=(_USAGE,),
        ),
    ),
    plan=(PlanEntry(PlanAction.MIGRATE, _USAGE.app, IDENTS[2].node, IDENTS[3].node),),
    commands=(
        make_command(
            IDENTS[0].sk, GENESIS.params.chain_id, 1, CommandKind.SUBMIT,
            spec=AppSpec("a", RuntimeKind.PROCESS, command=("true",), policy=AppPolicy(True)),
        ),
    ),
)  # fmt: skip
BLOCK_BYTES = encode_block(BLOCK)
SKIP = build_skip_block(
    parent=GENESIS_HASH, slot=Slot(1), excluded=IDENTS[0].node, committee=IDENTS[1:5]
)
SKIP_BYTES = encode_block(SKIP)
DECODERS = [
    decode_block,
    decode_genesis,
    decode_report,
    decode_plan_entry,
    decode_inclusion,
    decode_app_spec,
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_and_validate(data: bytes) -> None:
    """What a node does with a block from the wire. Only PeerErrors may escape."""
    block, block_hash = decode_block_with_hash(data)
    if isinstance(block, Block):
        validate_block(block, block_hash, CTX)
    else:
        validate_skip_block(block, block_hash, CTX)


def test_valid_block_roundtrips_and_validates() -> None:
    decoded, block_hash = decode_block_with_hash(BLOCK_BYTES)
    assert decoded == BLOCK
    assert block_hash == compute_block_hash(BLOCK)
    _decode_and_validate(BLOCK_BYTES)
    _decode_and_validate(SKIP_BYTES)
    assert decode_genesis(encode_genesis(GENESIS)) == GENESIS


def test_decoding_the_same_block_bytes_again_gives_the_same_objects() -> None:
    """A block arrives several times (gossip from several origins, the direct copy,
    sync): decoding equal bytes again returns the first decode's objects; bytes that
    differ only in a signature decode afresh, and bad bytes are refused every time."""
    first = decode_block_with_hash(BLOCK_BYTES)
    again = decode_block_with_hash(bytes(bytearray(BLOCK_BYTES)))  # equal, another object
    assert again[0] is first[0] and again[1] == first[1]
    assert encode_block(first[0]) == BLOCK_BYTES  # its remembered bytes are its encoding
    resigned = BLOCK_BYTES[:-1] + bytes([BLOCK_BYTES[-1] ^ 1])
    other, other_hash = decode_block_with_hash(resigned)
    assert other is not first[0] and other_hash == first[1]  # signatures are not hashed
    for _ in range(2):
        with pytest.raises(DecodeError):
            decode_block_with_hash(BLOCK_BYTES[:-1])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_clean_rejections(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(PeerError):
            decode(data)


@FUZZ
@given(st.integers(min_value=0, max_value=len(BLOCK_BYTES) - 1))
def test_truncations_are_rejected(cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_block(BLOCK_BYTES[:cut])


@FUZZ
@given(st.sampled_from([BLOCK_BYTES, SKIP_BYTES]), st.data())
def test_bit_flips_never_pass_validation(original: bytes, data: st.DataObject) -> None:
    """Any flipped bit makes the block undecodable or invalid: nothing is unsigned."""
    position = data.draw(st.integers(min_value=0, max_value=len(original) * 8 - 1))
    mutated = bytearray(original)
    mutated[position // 8] ^= 1 << (position % 8)
    with pytest.raises(PeerError):
        _decode_and_validate(bytes(mutated))


@FUZZ
@given(st.sampled_from([BLOCK_BYTES, SKIP_BYTES]), st.data())
def test_spliced_garbage_is_a_clean_rejection(original: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=len(original)))
    garbage = data.draw(st.binary(max_size=64))
    end = data.draw(st.integers(min_value=start, max_value=len(original)))
    mutated = original[:start] + garbage + original[end:]
    if mutated == original:
        return
    with pytest.raises(PeerError):
        _decode_and_validate(mutated)


def _count_offsets() -> list[int]:
    """Offsets of the u32 list counts in BLOCK's header (reports .. commands)."""
    offset = 1 + 32 + 8 + 8 + 32 + 8 + 8 + 100 + 100 + 32  # ... VDF proof, state root
    offsets = []
    lists: list[tuple[Sequence[Any], Callable[[Writer, Any], None]]] = [
        (BLOCK.reports, write_report),
        (BLOCK.plan, write_plan_entry),
        (BLOCK.inclusions, write_inclusion),
        (BLOCK.exits, write_exit),
        (BLOCK.commands, write_command),
    ]
    for items, write in lists:
        offsets.append(offset)
        w = Writer()
        w.items(items, write)
        offset += len(w.buf)
    return offsets


def test_count_offsets_point_at_counts() -> None:
    counts = [struct.unpack(">I", BLOCK_BYTES[o : o + 4])[0] for o in _count_offsets()]
    assert counts == [1, 1, 0, 0, 1]


@pytest.mark.parametrize("absurd", [0xFFFFFFFF, 0x7FFFFFFF, 4096, 4097, 1 << 20])
def test_absurd_counts_do_not_allocate(absurd: int) -> None:
    """A tiny message claiming billions of items is refused before any allocation."""
    for offset in _count_offsets():
        data = bytearray(BLOCK_BYTES)
        data[offset : offset + 4] = struct.pack(">I", absurd)
        tracemalloc.start()
        with pytest.raises(DecodeError):
            decode_block(bytes(data))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 4 * len(BLOCK_BYTES) + 65536


@pytest.mark.parametrize("length", [0xFFFFFFFF, 1 << 30, 257])
def test_absurd_lengths_are_rejected(length: int) -> None:
    spec = encode_app_spec(AppSpec("x", RuntimeKind.PROCESS, command=("y",)))
    # The name's u16 length, then a command's u32 app length (after signer, seq, kind).
    bad_name = struct.pack(">H", min(length, 0xFFFF)) + spec[2:]
    with pytest.raises(DecodeError):
        decode_app_spec(bad_name)
    stop = make_command(IDENTS[0].sk, "c", 1, CommandKind.STOP, app=bytes(32))
    encoded = encode_command(stop)
    at = 48 + 8 + 1
    bad_app = encoded[:at] + struct.pack(">I", length) + encoded[at + 4 :]
    with pytest.raises(DecodeError):
        decode_command(bad_app)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        decode_block(bytes([TAG_BLOCK]) + b"\x00" * (9 * 1024 * 1024))
    assert info.value.reason == "too_large"


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=40),
    command=st.lists(st.text(max_size=20), max_size=5),
    cpu=st.integers(0, 10_000),
    labels=st.lists(st.text(max_size=10), max_size=4),
    seq=st.integers(1, 2**64 - 1),
    interval=st.integers(0, 2**32 - 1),
)
def test_app_spec_and_command_roundtrip(
    name: str, command: list[str], cpu: int, labels: list[str], seq: int, interval: int
) -> None:
    spec = AppSpec(
        name,
        RuntimeKind.PROCESS,
        command=tuple(command),
        cpu_bp=cpu,
        policy=AppPolicy(allowed_labels=tuple(labels), min_interval_slots=interval),
    )
    assert decode_app_spec(encode_app_spec(spec)) == spec
    update = make_command(IDENTS[0].sk, "c", seq, CommandKind.UPDATE, app=bytes(32), spec=spec)
    assert decode_command(encode_command(update)) == update


@FUZZ
@given(st.sampled_from([BLOCK_BYTES, SKIP_BYTES]), st.data())
def test_bytes_that_decode_are_the_canonical_encoding(original: bytes, data: st.DataObject) -> None:
    """A node takes a received block's hash from its bytes (``decode_block_with_hash``,
    ``BlockMsg.block_hash``) rather than encoding it again. That is the same hash only
    if every byte string that decodes is the one encoding of what it decodes to."""
    position = data.draw(st.integers(min_value=0, max_value=len(original) * 8 - 1))
    mutated = bytearray(original)
    mutated[position // 8] ^= 1 << (position % 8)
    start = data.draw(st.integers(min_value=0, max_value=len(mutated)))
    garbage = data.draw(st.binary(max_size=16))
    spliced = bytes(mutated[:start]) + garbage + bytes(mutated[start + len(garbage) :])
    for candidate in (bytes(mutated), spliced):
        try:
            block, block_hash = decode_block_with_hash(candidate)
        except PeerError:
            continue
        assert encode_block(block) == candidate
        assert block_hash == compute_block_hash(block)
