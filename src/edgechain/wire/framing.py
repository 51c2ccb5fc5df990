"""Length-prefixed TCP frames, sans-I/O: ``u32 big-endian length || envelope``.

The transport feeds whatever ``recv`` returned into :class:`FrameDecoder.feed` and gets
whole frames back. The declared length is checked against the limit as soon as its four
bytes arrive, before a single byte of the body is buffered: a peer announcing a 4 GiB
frame costs us four bytes, not four gigabytes. After any error the decoder stays failed
(the stream is out of sync; the connection must be closed).
"""

from __future__ import annotations

import struct

from edgechain.errors import DecodeError, LocalError, RejectReason
from edgechain.wire.limits import FRAME_HEADER_BYTES, MAX_FRAME_BYTES


def encode_frame(data: bytes, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    if not 0 < len(data) <= max_frame:
        raise LocalError(f"frame of {len(data)} bytes (limit {max_frame})")
    return struct.pack(">I", len(data)) + data


class FrameDecoder:
    """Reassembles frames from a byte stream."""

    __slots__ = ("_buf", "_failed", "_max_frame")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame
        self._failed = False

    def feed(self, data: bytes, max_frames: int | None = None) -> list[bytes]:
        """Append ``data``; return the frame bodies it completes, in order.

        With ``max_frames``, stop after that many and leave the rest buffered (for a
        protocol that reads a header frame, then :meth:`take_buffered`).
        """
        if self._failed:
            raise DecodeError(RejectReason.STREAM_FAILED, "decoder already failed")
        self._buf += data
        frames: list[bytes] = []
        while len(self._buf) >= FRAME_HEADER_BYTES and (
            max_frames is None or len(frames) < max_frames
        ):
            (size,) = struct.unpack_from(">I", self._buf)
            if not 0 < size <= self._max_frame:
                self._failed = True
                self._buf.clear()
                raise DecodeError(
                    RejectReason.BAD_FRAME_SIZE, f"{size} bytes (limit {self._max_frame})"
                )
            end = FRAME_HEADER_BYTES + size
            if len(self._buf) < end:
                break
            frames.append(bytes(self._buf[FRAME_HEADER_BYTES:end]))
            del self._buf[:end]
        return frames

    def take_buffered(self) -> bytes:
        """Hand over the bytes received after the last frame (and stop framing them).

        For a protocol that switches the connection to a raw stream after a header
        frame: the bytes of that stream that arrived together with the header.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    @property
    def buffered(self) -> int:
        return len(self._buf)
