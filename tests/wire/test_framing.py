"""Length-prefixed frames: reassembly across arbitrary splits, limits before buffering."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.errors import DecodeError, LocalError
from edgechain.wire.framing import FrameDecoder, encode_frame
from edgechain.wire.limits import MAX_FRAME_BYTES


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=20),
)
def test_frames_survive_any_split(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += decoder.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == frames
    assert decoder.buffered == 0


def test_oversized_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(DecodeError, match="bad_frame_size"):
        decoder.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))
    # Failed for good: the stream is out of sync.
    with pytest.raises(DecodeError, match="stream_failed"):
        decoder.feed(encode_frame(b"x"))


def test_empty_frame_is_refused() -> None:
    with pytest.raises(DecodeError):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_custom_limit() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    with pytest.raises(DecodeError):
        decoder.feed(encode_frame(b"0123456789a"))


def test_encode_refuses_what_a_peer_would_refuse() -> None:
    with pytest.raises(LocalError):
        encode_frame(b"")
    with pytest.raises(LocalError):
        encode_frame(b"abc", max_frame=2)


def test_raw_stream_after_a_header_frame() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"header") + b"raw-archive-bytes"
    assert decoder.feed(data[:3], max_frames=1) == []
    assert decoder.feed(data[3:], max_frames=1) == [b"header"]
    assert decoder.take_buffered() == b"raw-archive-bytes"
    assert decoder.buffered == 0
