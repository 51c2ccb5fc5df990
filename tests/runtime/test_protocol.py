"""The transfer's wire format: round trips, bounds, and garbage that must not crash."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.chain.model import AppSpec, PlanAction, PlanEntry, RuntimeKind
from edgechain.errors import DecodeError, PeerError
from edgechain.runtime.protocol import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Begin,
    End,
    FrameKind,
    Offer,
    TransferError,
    Verdict,
    VerdictMessage,
    decode_begin,
    decode_end,
    decode_offer,
    decode_verdict,
    encode_begin,
    encode_end,
    encode_frame,
    encode_offer,
    encode_verdict,
    read_frame,
)
from edgechain.types import AppId, BlockHash, NodeId

SPEC = AppSpec("counter", RuntimeKind.PROCESS, command=("/bin/sh", "counter.sh"), stateful=True)
ENTRY = PlanEntry(PlanAction.MIGRATE, AppId(b"\x01" * 32), b"\x02" * 32, NodeId(b"\x03" * 32))
OFFER = Offer(BlockHash(b"\x04" * 32), ENTRY, SPEC)


def _read(data: bytes, timeout_s: float = 1.0) -> tuple[FrameKind, bytes]:
    async def run() -> tuple[FrameKind, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader, timeout_s)

    return asyncio.run(run())


def test_offer_round_trip() -> None:
    assert decode_offer(encode_offer(OFFER)) == OFFER


def test_small_messages_round_trip() -> None:
    for message in (
        VerdictMessage(Verdict.ACCEPT, True, ""),
        VerdictMessage(Verdict.REFUSED, False, "not_planned"),
        VerdictMessage(Verdict.ALREADY_RUNNING, False, ""),
        VerdictMessage(Verdict.ACCEPT, False, "", precopy=True),
    ):
        assert decode_verdict(encode_verdict(message)) == message
    for begin in (Begin(15 << 20, True), Begin(7, False, delta=True), Begin(7, False, True, True)):
        assert decode_begin(encode_begin(begin)) == begin


@pytest.mark.parametrize("flags", [0x04, 0x03, 0x07, 0x08])
def test_begin_flags_that_make_no_sense_are_refused(flags: int) -> None:
    """FINAL without DELTA, a delta carrying an image, an unknown bit."""
    with pytest.raises(DecodeError):
        decode_begin(struct.pack(">QB", 10, flags))
    end = End(123, b"\x05" * 32)
    assert decode_end(encode_end(end)) == end


def test_long_reasons_are_cut_to_the_bound() -> None:
    body = encode_verdict(VerdictMessage(Verdict.REFUSED, False, "é" * 500))
    assert len(body) <= MAX_BODY_BYTES[FrameKind.VERDICT]
    assert decode_verdict(body).reason.startswith("é")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"XXXX" + b[4:], "bad_magic"),
        (lambda b: b[:4] + b"\x09" + b[5:], "bad_version"),
        (lambda b: b[:20], "header_truncated"),
        (lambda b: b + b"\x00", "header_trailing_bytes"),
        (lambda b: b[:37] + struct.pack(">I", 2**32 - 1) + b[41:], "header_truncated"),
        (lambda b: b"EMIG\x01" + b"\x00" * (MAX_HEADER_BYTES), "header_too_large"),
    ],
)
def test_bad_offers_are_decode_errors(mutate: object, reason: str) -> None:
    body = mutate(encode_offer(OFFER))  # type: ignore[operator]
    with pytest.raises(DecodeError) as caught:
        decode_offer(body)
    assert caught.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_offer_bodies_never_crash(body: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_offer(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=41, max_size=300), st.integers(0, 200))
def test_corrupted_offers_never_crash(noise: bytes, position: int) -> None:
    body = bytearray(encode_offer(OFFER))
    for i, byte in enumerate(noise[:8]):
        body[(position + i * 7) % len(body)] ^= byte or 1
    with contextlib.suppress(DecodeError):
        decode_offer(bytes(body))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_small_bodies_never_crash(body: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_verdict(body)
    with contextlib.suppress(DecodeError):
        decode_begin(body)
    with contextlib.suppress(DecodeError):
        decode_end(body)


def test_frames_round_trip() -> None:
    assert _read(encode_frame(FrameKind.DATA, b"abc")) == (FrameKind.DATA, b"abc")
    assert _read(encode_frame(FrameKind.DONE)) == (FrameKind.DONE, b"")


def test_oversize_frame_is_refused_before_its_body_is_read() -> None:
    # Claims a 4 GiB DATA body; only the 5-byte head exists. Must not wait or allocate.
    with pytest.raises(DecodeError) as caught:
        _read(struct.pack(">BI", FrameKind.DATA, 2**32 - 1))
    assert caught.value.reason == "frame_too_large"
    with pytest.raises(DecodeError):
        _read(struct.pack(">BI", FrameKind.DONE, 1) + b"x")  # DONE carries no body


def test_unknown_frame_kind_is_refused() -> None:
    with pytest.raises(DecodeError) as caught:
        _read(struct.pack(">BI", 99, 0))
    assert caught.value.reason == "unknown_frame"


def test_truncated_stream_is_a_transfer_error() -> None:
    with pytest.raises(TransferError) as caught:
        _read(encode_frame(FrameKind.DATA, b"abcdef")[:-2])
    assert caught.value.reason == "connection_closed"
    assert isinstance(caught.value, PeerError)


def test_silent_peer_times_out() -> None:
    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x04")  # half a frame head, then silence
        await read_frame(reader, 0.1)

    with pytest.raises(TransferError) as caught:
        asyncio.run(run())
    assert caught.value.reason == "timeout"


def test_encode_frame_enforces_the_bounds() -> None:
    with pytest.raises(ValueError):
        encode_frame(FrameKind.DATA, b"x" * (MAX_BODY_BYTES[FrameKind.DATA] + 1))
