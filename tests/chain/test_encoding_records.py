"""``Writer.record`` / ``Reader.record``: several fixed-size fields in one ``struct``
call must give exactly the bytes of one call per field, refuse byte strings of the wrong
size (``struct`` alone would pad or cut them), and read strictly."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgechain.chain.encoding_primitives import Layout, Reader, Writer
from edgechain.errors import DecodeError, RejectReason

LAYOUT = Layout(">32sQIi2s")

hashes = st.binary(min_size=32, max_size=32)
u64s = st.integers(0, 2**64 - 1)
u32s = st.integers(0, 2**32 - 1)
i32s = st.integers(-(2**31), 2**31 - 1)
pairs = st.binary(min_size=2, max_size=2)


@given(hashes, u64s, u32s, i32s, pairs)
def test_a_record_is_the_fields_one_by_one(h: bytes, a: int, b: int, c: int, p: bytes) -> None:
    fields = Writer()
    fields.fixed(h, 32)
    fields.u64(a)
    fields.u32(b)
    fields.i32(c)
    fields.fixed(p, 2)
    record = Writer()
    record.record(LAYOUT, h, a, b, c, p)
    assert record.buf == fields.buf
    reader = Reader(bytes(record.buf))
    assert reader.record(LAYOUT) == (h, a, b, c, p)
    reader.finish()


def test_the_layout_knows_its_byte_strings() -> None:
    assert LAYOUT.byte_fields == ((0, 32), (4, 2))
    assert Layout(">QQ").byte_fields == ()


@pytest.mark.parametrize("bad", [b"\x00" * 31, b"\x00" * 33, 7])
def test_a_byte_string_of_another_size_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="expected 32 bytes"):
        Writer().record(LAYOUT, bad, 1, 2, 3, b"ab")  # type: ignore[arg-type]


def test_an_integer_out_of_range_is_refused_as_one_field_would_be() -> None:
    with pytest.raises(struct.error):
        Writer().u64(-1)
    with pytest.raises(struct.error):
        Writer().record(LAYOUT, b"\x00" * 32, -1, 2, 3, b"ab")


def test_a_short_input_is_a_truncation_and_reads_nothing() -> None:
    reader = Reader(b"\x00" * (LAYOUT.size - 1))
    with pytest.raises(DecodeError) as caught:
        reader.record(LAYOUT)
    assert caught.value.reason is RejectReason.TRUNCATED
    assert reader.pos == 0


@given(st.lists(st.tuples(hashes, u64s, i32s), max_size=40))
def test_a_table_is_its_count_and_rows_one_by_one(rows: list[tuple[bytes, int, int]]) -> None:
    one_by_one = Writer()
    one_by_one.u32(len(rows))
    for h, a, c in rows:
        one_by_one.fixed(h, 32)
        one_by_one.u64(a)
        one_by_one.i32(c)
    table = Writer()
    table.table("32sQi", rows)
    assert table.buf == one_by_one.buf


def test_a_table_refuses_a_short_byte_string_in_any_row() -> None:
    rows = [(b"\x00" * 32, 1), (b"\x00" * 31, 2)]
    with pytest.raises(ValueError, match="expected 32 bytes"):
        Writer().table("32sQ", rows)
