"""The testnet summary figures, computed from hand-made node answers."""

from __future__ import annotations

import pytest

from edgechain.lab.summary import (
    annotate_chain,
    assess_kill,
    classify_slot,
    compute_propagation_samples,
    find_join_slot,
    get_down_slots,
    get_election_slots,
    get_majority,
    get_skip_slots,
    get_tip_at,
    get_unexplained_skips,
    merge_counters,
)
from edgechain.lab.summary_records import (
    BlockRecord,
    CanonicalBlock,
    ChainEntry,
    HeadObservation,
    Interval,
    KillRecord,
    RecordError,
    count_validators,
    parse_block_records,
    parse_chain,
)
from edgechain.lab.summary_stats import describe, describe_per_node, percentile


def record(block: str, slot: int, at: int, *, skip: bool = False, **kw: str) -> BlockRecord:
    return BlockRecord(
        hash=block,
        slot=slot,
        skip=skip,
        signers=3,
        producer=kw.get("producer"),
        excluded=kw.get("excluded"),
        accepted_ms=at,
    )


def canonical(
    slot: int, *, skip: bool = False, producer: str = "p", excluded: str = ""
) -> CanonicalBlock:
    return CanonicalBlock(
        hash=f"h{slot}",
        slot=slot,
        skip=skip,
        producer=None if skip else producer,
        excluded=excluded if skip else None,
    )


ALWAYS = (Interval(0, None),)


# --- parsing --------------------------------------------------------------------------


def test_parse_block_records_reads_the_documented_shape() -> None:
    data = [
        {
            "hash": "ab",
            "slot": 3,
            "skip": True,
            "signers": 2,
            "producer": None,
            "excluded": "cd",
            "accepted_ms": 1000,
        }
    ]
    assert parse_block_records(data) == [BlockRecord("ab", 3, True, 2, None, "cd", 1000)]


def test_parse_block_records_accepts_signers_as_a_list() -> None:
    data = [
        {
            "hash": "ab",
            "slot": 1,
            "skip": False,
            "signers": ["a", "b"],
            "producer": "p",
            "excluded": None,
            "accepted_ms": 5,
        }
    ]
    assert parse_block_records(data)[0].signers == 2


@pytest.mark.parametrize(
    "data",
    [
        {"not": "a list"},
        [{"hash": "ab", "slot": "3", "skip": False, "signers": 1, "accepted_ms": 1}],
        [{"hash": "ab", "slot": True, "skip": False, "signers": 1, "accepted_ms": 1}],
        [{"hash": "ab", "slot": 1, "skip": False, "signers": None, "accepted_ms": 1}],
    ],
)
def test_parse_block_records_rejects_other_shapes(data: object) -> None:
    with pytest.raises(RecordError):
        parse_block_records(data)


def test_parse_chain_and_count_validators() -> None:
    assert parse_chain([{"hash": "ab", "slot": 1, "skip": False}]) == [ChainEntry("ab", 1, False)]
    with pytest.raises(RecordError):
        parse_chain([{"hash": "ab", "slot": 1}])
    assert count_validators(5) == 5
    assert count_validators(["a", "b"]) == 2
    assert count_validators(None) == 0


# --- statistics -----------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 1.0) == 40.0
    assert percentile(values, 0.5) == 25.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_describe_and_describe_per_node() -> None:
    assert describe([]) is None
    d = describe([1.0, 2.0, 3.0])
    assert d is not None
    assert (d.p50, d.max, d.mean, d.samples) == (2.0, 3.0, 2.0, 3)
    per_node = describe_per_node({"node-001": 30.0, "node-000": 40.0})
    assert per_node == {
        "per_node": {"node-000": 40.0, "node-001": 30.0},
        "max": 40.0,
        "mean": 35.0,
        "min": 30.0,
        "total": 70.0,
    }
    assert describe_per_node({})["max"] is None


def test_merge_counters_sums_per_reason() -> None:
    merged = merge_counters([{"bad_vote": 2, "x": "ignored"}, {"bad_vote": 1, "late": 4}, {}])
    assert merged == {"bad_vote": 3, "late": 4}


# --- propagation ----------------------------------------------------------------------


def test_propagation_is_delay_after_the_earliest_acceptance() -> None:
    blocks = {
        "a": [record("b1", 1, 1000), record("b2", 2, 2000)],
        "b": [record("b1", 1, 1030), record("b2", 2, 2005)],
        "c": [record("b1", 1, 1100)],
    }
    runs = {name: ALWAYS for name in blocks}
    samples = sorted(compute_propagation_samples(blocks, runs))
    assert samples == [0.0, 0.0, 5.0, 30.0, 100.0]
    assert compute_propagation_samples(blocks, runs, min_slot=2) == [0.0, 5.0]


def test_propagation_ignores_blocks_a_node_only_synced() -> None:
    """Started after the block appeared, or killed in between: not propagation."""
    blocks = {
        "a": [record("b1", 1, 1000), record("b2", 2, 5000)],
        "late": [record("b1", 1, 3000), record("b2", 2, 5040)],
        "restarted": [record("b1", 1, 9000), record("b2", 2, 9001)],
    }
    runs = {
        "a": ALWAYS,
        "late": (Interval(2000, None),),
        # Running when b1 appeared, killed before accepting it, restarted much later.
        "restarted": (Interval(0, 1500), Interval(8000, None)),
    }
    samples = sorted(compute_propagation_samples(blocks, runs))
    assert samples == [0.0, 0.0, 40.0]


def test_propagation_takes_a_nodes_first_acceptance_of_a_block() -> None:
    blocks = {"a": [record("b1", 1, 1000)], "b": [record("b1", 1, 1010), record("b1", 1, 1500)]}
    runs = {"a": ALWAYS, "b": ALWAYS}
    assert sorted(compute_propagation_samples(blocks, runs)) == [0.0, 10.0]


# --- chain figures --------------------------------------------------------------------


def test_tip_at_a_slot_ignores_later_blocks() -> None:
    chain = [ChainEntry("h1", 1, False), ChainEntry("h3", 3, True), ChainEntry("h4", 4, False)]
    assert get_tip_at(chain, 3) == "h3"
    assert get_tip_at(chain, 2) == "h1"
    assert get_tip_at(chain, 0) == "genesis"
    assert get_tip_at([], 5) == "genesis"


def test_majority_breaks_ties_by_the_first_name() -> None:
    assert get_majority({"a": "x", "b": "y", "c": "y"}) == "y"
    assert get_majority({"b": "y", "a": "x"}) == "x"
    assert get_majority({}) is None


def test_annotate_chain_takes_producer_and_exclusion_from_blocks() -> None:
    chain = [ChainEntry("h1", 1, False), ChainEntry("h2", 2, True), ChainEntry("h3", 3, False)]
    blocks = [record("h1", 1, 0, producer="p1"), record("h2", 2, 0, skip=True, excluded="x")]
    assert annotate_chain(chain, blocks) == [
        CanonicalBlock("h1", 1, False, "p1", None),
        CanonicalBlock("h2", 2, True, None, "x"),
        CanonicalBlock("h3", 3, False, None, None),
    ]


def test_join_slot_is_the_first_head_with_every_validator() -> None:
    heads = [HeadObservation(3, 4), HeadObservation(5, 6), HeadObservation(4, 6)]
    assert find_join_slot(heads, 6) == 4
    assert find_join_slot(heads, 7) is None


def test_skip_slots_after_join() -> None:
    chain = [canonical(1, skip=True), canonical(2), canonical(3, skip=True)]
    assert get_skip_slots(chain) == [1, 3]
    assert get_skip_slots(chain, after_slot=1) == [3]


# --- kills ----------------------------------------------------------------------------


KILL = KillRecord("node-003", "dead", kill_slot=5, kill_ms=0, restart_slot=10, restart_ms=1)


def test_down_slots_exclude_the_kill_and_restart_slots() -> None:
    assert get_down_slots(KILL, end_slot=20) == range(6, 10)
    assert get_election_slots(KILL, end_slot=20) == range(5, 10)
    never_restarted = KillRecord("n", "dead", 5, 0)
    assert get_down_slots(never_restarted, end_slot=8) == range(6, 9)


def test_classify_slot() -> None:
    by_slot = {
        1: canonical(1, skip=True, excluded="dead"),
        2: canonical(2, skip=True, excluded="other"),
        3: canonical(3, producer="dead"),
        4: canonical(4, producer="other"),
    }
    assert [classify_slot(s, "dead", by_slot) for s in (1, 2, 3, 4, 5)] == [
        "skip_excluding_it",
        "skip_excluding_other",
        "block_by_it",
        "block_by_other",
        "empty",
    ]


def test_assess_kill_reports_skips_elections_and_resync() -> None:
    chain = [
        canonical(5, producer="dead"),  # produced in its kill slot: before it died
        canonical(6),
        canonical(7, skip=True, excluded="dead"),
        canonical(9),
        canonical(10),
    ]
    producers = {5: "dead", 6: "p", 7: "dead", 8: "q", 9: "p"}
    report = assess_kill(
        KILL, chain, tip="h10", majority_tip="h10", end_slot=12, producers=producers
    )
    assert report["down_slots"] == [6, 9]
    assert report["elected_while_down"] == {5: "block_by_it", 7: "skip_excluding_it"}
    assert report["elected_slots_skipped"] is True
    assert report["skip_blocks_excluding_it"] == [7]
    assert report["blocks_it_produced_while_down"] == []
    assert report["resynced"] is True
    lagging = assess_kill(
        KILL, chain, tip="h6", majority_tip="h10", end_slot=12, producers={8: "dead"}
    )
    assert lagging["resynced"] is False
    assert lagging["elected_while_down"] == {8: "empty"}
    assert lagging["elected_slots_skipped"] is False
    missed_kill_slot = [canonical(5, skip=True, excluded="dead"), canonical(6)]
    report = assess_kill(KILL, missed_kill_slot, "h6", "h6", 12, producers={5: "dead"})
    assert report["elected_while_down"] == {5: "skip_excluding_it"}
    assert report["elected_slots_skipped"] is True
    assert report["skip_blocks_excluding_it"] == []  # the kill slot is not a down slot
    # Killed after its candidate went out: the committee voted, so no skip block; the
    # kill slot may stay empty. A later empty slot it was elected to is still a miss.
    died_mid_duty = [canonical(4), canonical(6)]
    report = assess_kill(KILL, died_mid_duty, "h6", "h6", 12, producers={5: "dead"})
    assert report["elected_while_down"] == {5: "empty"}
    assert report["elected_slots_skipped"] is True
    report = assess_kill(KILL, died_mid_duty, "h6", "h6", 12, producers={7: "dead"})
    assert report["elected_slots_skipped"] is False


def test_unexplained_skips_are_those_not_excluding_a_down_node() -> None:
    chain = [
        canonical(2, skip=True, excluded="live"),  # before the join: not counted
        canonical(6, skip=True, excluded="dead"),
        canonical(8, skip=True, excluded="live"),
        canonical(12, skip=True, excluded="dead"),  # after its restart slot
    ]
    assert get_unexplained_skips(chain, [KILL], after_slot=3) == [8, 12]
    assert get_unexplained_skips(chain, [], after_slot=None) == [2, 6, 8, 12]
