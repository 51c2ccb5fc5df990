"""Swap-or-not shuffle against an independent, literal transcription of the spec."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.crypto.shuffle import (
    MAX_COUNT,
    SHUFFLE_ROUND_COUNT,
    compute_shuffled_index,
    compute_shuffled_list,
)

# --- Independent reference: the consensus spec's text, transcribed as literally as
# --- Python allows (phase0 "compute_shuffled_index"). Deliberately naive.

SPEC_SHUFFLE_ROUND_COUNT = 90


def spec_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def spec_uint_to_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def spec_bytes_to_uint64(data: bytes) -> int:
    return int.from_bytes(data, "little")


def spec_compute_shuffled_index(index: int, index_count: int, seed: bytes) -> int:
    assert index < index_count
    for current_round in range(SPEC_SHUFFLE_ROUND_COUNT):
        pivot = (
            spec_bytes_to_uint64(spec_hash(seed + spec_uint_to_bytes(current_round, 1))[0:8])
            % index_count
        )
        flip = (pivot + index_count - index) % index_count
        position = max(index, flip)
        source = spec_hash(
            seed + spec_uint_to_bytes(current_round, 1) + spec_uint_to_bytes(position // 256, 4)
        )
        byte = source[(position % 256) // 8]
        bit = (byte >> (position % 8)) % 2
        index = flip if bit else index
    return index


def spec_mapping(count: int, seed: bytes) -> list[int]:
    return [spec_compute_shuffled_index(i, count, seed) for i in range(count)]


# --- Tests


def make_seed(label: int) -> bytes:
    return hashlib.sha256(b"shuffle test seed" + label.to_bytes(4, "big")).digest()


SMALL_COUNTS = [0, 1, 2, 3, 5, 10, 33, 100]


def test_round_count_matches_spec() -> None:
    assert SHUFFLE_ROUND_COUNT == SPEC_SHUFFLE_ROUND_COUNT


@pytest.mark.parametrize("count", [*SMALL_COUNTS, 255, 256, 257, 512, 513])
@pytest.mark.parametrize("label", range(4))
def test_matches_spec_small_counts(count: int, label: int) -> None:
    seed = make_seed(label)
    expected = spec_mapping(count, seed)
    assert [compute_shuffled_index(i, count, seed) for i in range(count)] == expected
    assert compute_shuffled_list(count, seed) == expected


@pytest.mark.parametrize("label", range(2))
def test_matches_spec_count_1000(label: int) -> None:
    seed = make_seed(100 + label)
    expected = spec_mapping(1000, seed)
    assert compute_shuffled_list(1000, seed) == expected
    assert [compute_shuffled_index(i, 1000, seed) for i in range(1000)] == expected


def test_matches_spec_count_9999() -> None:
    seed = make_seed(9999)
    assert compute_shuffled_list(9999, seed) == spec_mapping(9999, seed)


@pytest.mark.parametrize("label", range(3))
def test_count_9999_sampled_indices(label: int) -> None:
    seed = make_seed(20_000 + label)
    whole = compute_shuffled_list(9999, seed)
    for index in [0, 1, 255, 256, 4999, 5000, 9997, 9998, *range(17, 9999, 331)]:
        assert whole[index] == spec_compute_shuffled_index(index, 9999, seed)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    count=st.one_of(st.sampled_from(SMALL_COUNTS), st.integers(min_value=0, max_value=300)),
)
def test_hypothesis_matches_spec(seed: bytes, count: int) -> None:
    expected = spec_mapping(count, seed)
    assert compute_shuffled_list(count, seed) == expected
    assert [compute_shuffled_index(i, count, seed) for i in range(count)] == expected


@settings(max_examples=30, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    count=st.integers(min_value=1, max_value=2_000),
)
def test_whole_list_is_permutation(seed: bytes, count: int) -> None:
    assert sorted(compute_shuffled_list(count, seed)) == list(range(count))


@settings(max_examples=20, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    count=st.integers(min_value=2**20, max_value=MAX_COUNT),
    data=st.data(),
)
def test_huge_counts_per_index(seed: bytes, count: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    assert compute_shuffled_index(index, count, seed) == spec_compute_shuffled_index(
        index, count, seed
    )


def test_items_follow_index_mapping() -> None:
    seed = make_seed(7)
    items = [f"item-{i}" for i in range(777)]
    mapping = compute_shuffled_list(777, seed)
    assert compute_shuffled_list(items, seed) == [items[j] for j in mapping]
    assert compute_shuffled_list(tuple(items), seed) == [items[j] for j in mapping]


def test_input_not_mutated() -> None:
    items = list(range(50))
    compute_shuffled_list(items, make_seed(1))
    assert items == list(range(50))


def test_empty_and_single() -> None:
    assert compute_shuffled_list(0, make_seed(0)) == []
    assert compute_shuffled_list([], make_seed(0)) == []
    assert compute_shuffled_list(["only"], make_seed(0)) == ["only"]
    assert compute_shuffled_index(0, 1, make_seed(0)) == 0


def test_depends_on_seed() -> None:
    assert compute_shuffled_list(100, make_seed(1)) != compute_shuffled_list(100, make_seed(2))


@pytest.mark.parametrize(("index", "count"), [(0, 0), (5, 5), (6, 5), (-1, 5)])
def test_index_out_of_range(index: int, count: int) -> None:
    with pytest.raises(ValueError):
        compute_shuffled_index(index, count, make_seed(0))


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33])
def test_seed_length(seed: bytes) -> None:
    with pytest.raises(ValueError):
        compute_shuffled_index(0, 10, seed)
    with pytest.raises(ValueError):
        compute_shuffled_list(10, seed)


def test_count_bounds() -> None:
    with pytest.raises(ValueError):
        compute_shuffled_index(0, MAX_COUNT + 1, make_seed(0))
    with pytest.raises(ValueError):
        compute_shuffled_list(-1, make_seed(0))
    # The largest count still works per index (uint32(position // 256) fits).
    assert 0 <= compute_shuffled_index(MAX_COUNT - 1, MAX_COUNT, make_seed(0)) < MAX_COUNT
