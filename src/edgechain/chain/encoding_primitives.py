"""The canonical encoding's primitives (``tests/vectors/README.md``): a Writer and a
strict Reader of big-endian integers, fixed and sized bytes, strings, booleans, lists."""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import CommandKind, PlanAction, RuntimeKind
from edgechain.errors import DecodeError, RejectReason

T = TypeVar("T")


class Writer:
    """Appends primitives to a bytearray.

    ``u8``/``u16``/``u32``/``u64``: unsigned big-endian; ``i32``: signed big-endian;
    ``fixed(n)``: exactly n raw bytes; ``var_bytes``: u32 length, then the bytes;
    ``string``: u16 length, then UTF-8; ``items``: u32 count, then the items;
    ``boolean``: one byte, 0 or 1.
    """

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf += struct.pack(">B", v)

    def u16(self, v: int) -> None:
        self.buf += struct.pack(">H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack(">I", v)

    def u64(self, v: int) -> None:
        self.buf += struct.pack(">Q", v)

    def i32(self, v: int) -> None:
        self.buf += struct.pack(">i", v)

    def fixed(self, v: bytes, size: int) -> None:
        if len(v) != size:
            raise ValueError(f"expected {size} bytes, got {len(v)}")
        self.buf += v

    def var_bytes(self, v: bytes) -> None:
        self.u32(len(v))
        self.buf += v

    def string(self, v: str) -> None:
        raw = v.encode("utf-8")
        self.u16(len(raw))
        self.buf += raw

    def boolean(self, v: bool) -> None:
        self.u8(1 if v else 0)

    def record(self, layout: Layout, *values: int | bytes) -> None:
        """Several fixed-size fields at once, as ``layout`` packs them (big-endian
        integers and ``Ns`` byte strings): the same bytes as one call per field, in one
        C call. Byte strings must be exactly their field's size (``struct`` would pad
        or cut them silently)."""
        layout.check_sizes(values)
        self.buf += layout.pack(*values)

    def table(self, row: str, rows: Sequence[tuple[int | bytes, ...]]) -> None:
        """A u32 count, then fixed-size rows of the ``struct`` format ``row`` (no byte
        order: big-endian, as :meth:`record`): what :meth:`items` writes with one
        record per row, in one C call for the whole table. The state root encodes
        every validator's last-seen slot and coordinate at every block (issue 13)."""
        self.u32(len(rows))
        if rows:
            flat = tuple(itertools.chain.from_iterable(rows))
            self.record(get_table_layout(row, len(rows)), *flat)

    def items(self, values: Sequence[T], write: Callable[[Writer, T], None]) -> None:
        self.u32(len(values))
        for value in values:
            write(self, value)


class Reader:
    """Reads primitives with bounds checks; every failure is a DecodeError.

    Decoding is strict: trailing bytes, out-of-range enums, non-minimal booleans, counts
    beyond a limit or beyond what the remaining bytes could hold are all DecodeErrors.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(RejectReason.TRUNCATED, f"need {n} bytes at {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def fixed(self, size: int) -> bytes:
        return self.take(size)

    def record(self, layout: Layout) -> tuple[Any, ...]:
        """Several fixed-size fields at once (:meth:`Writer.record`), in one C call
        where a report took a dozen (issue 13: every node decodes every block's reports)."""
        return layout.unpack(self.take(layout.size))

    def var_bytes(self, max_len: int) -> bytes:
        n = self.u32()
        if n > max_len:
            raise DecodeError(RejectReason.TOO_LONG, f"{n} bytes > {max_len}")
        return self.take(n)

    def string(self, max_len: int) -> str:
        n = self.u16()
        if n > max_len:
            raise DecodeError(RejectReason.TOO_LONG, f"string of {n} bytes > {max_len}")
        try:
            return self.take(n).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise DecodeError(RejectReason.BAD_UTF8) from None

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise DecodeError(RejectReason.BAD_BOOL, str(v))
        return v == 1

    def items(self, max_count: int, min_item_size: int, read: Callable[[Reader], T]) -> list[T]:
        n = self.u32()
        if n > max_count:
            raise DecodeError(RejectReason.TOO_MANY, f"{n} items > {max_count}")
        # Refuse counts the remaining bytes cannot possibly hold, before allocating.
        if n * min_item_size > self.remaining():
            raise DecodeError(
                RejectReason.TRUNCATED, f"{n} items cannot fit in {self.remaining()} bytes"
            )
        return [read(self) for _ in range(n)]

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(RejectReason.TRAILING_BYTES, f"{len(self.data) - self.pos} bytes")


class Layout(struct.Struct):
    """A ``struct`` format of fixed-size fields (big-endian integers and ``Ns`` byte
    strings) that :meth:`Writer.record` and :meth:`Reader.record` take, with the place
    and size of each byte string, which ``struct`` would pad or cut silently."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        fields: list[tuple[int, int]] = []
        index = 0
        for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt):
            if code == "s":
                fields.append((index, int(count or 1)))
                index += 1
            else:
                index += int(count or 1)
        self.byte_fields = tuple(fields)

    def check_sizes(self, values: tuple[int | bytes, ...]) -> None:
        for index, size in self.byte_fields:
            value = values[index]
            if not isinstance(value, bytes | bytearray) or len(value) != size:
                got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
                raise ValueError(f"expected {size} bytes, got {got}")


@functools.lru_cache(maxsize=64)
def get_table_layout(row: str, count: int) -> Layout:
    """The :class:`Layout` of ``count`` rows of ``row`` (:meth:`Writer.table`)."""
    return Layout(">" + row * count)


def decode_with(data: bytes, read: Callable[[Reader], T]) -> T:
    """``read`` over all of ``data`` (at most ``MAX_BLOCK_BYTES``), no bytes left over."""
    if len(data) > Limits.MAX_BLOCK_BYTES:
        raise DecodeError(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    reader = Reader(bytes(data))
    value = read(reader)
    reader.finish()
    return value


def encode_with(value: T, write: Callable[[Writer, T], None]) -> bytes:
    """The bytes ``write`` writes for ``value``."""
    w = Writer()
    write(w, value)
    return bytes(w.buf)


def compute_signing_root(domain: bytes, value: T, write_body: Callable[[Writer, T], None]) -> bytes:
    """SHA-256 of a domain tag and an object's encoding without its signature."""
    return hashlib.sha256(domain + encode_with(value, write_body)).digest()


def check_enum_value(
    value: int, enum_type: type[PlanAction] | type[RuntimeKind] | type[CommandKind]
) -> int:
    """``value`` if it is one of ``enum_type``'s values, else a BAD_ENUM DecodeError."""
    try:
        return int(enum_type(value))
    except ValueError:
        raise DecodeError(RejectReason.BAD_ENUM, f"{enum_type.__name__}={value}") from None
