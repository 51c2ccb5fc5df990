"""The chaos harness's fault schedule and packet filter rules (pure)."""

from __future__ import annotations

import random

import pytest

from edgechain.lab.chaos_faults import (
    ALL_KINDS,
    CLOCK_SKEW,
    FULL_DISK,
    ISOLATE,
    KILL,
    ONE_WAY_LOSS,
    PARTITION_HALVES,
    PARTITION_MINORITY,
    RING,
    WATCHDOG_KILL,
    DropRule,
    Fault,
    FaultError,
    check_kinds,
    compute_drop_rules,
    draw_fault,
    get_cut_off,
)

ADDRESSES = [f"10.0.0.{i + 2}" for i in range(6)]


def _hears(rules: list[DropRule], node: int, source: int) -> bool:
    return not any(
        r.node == node and r.source == ADDRESSES[source] and r.probability == 1.0 for r in rules
    )


def test_the_same_seed_draws_the_same_faults() -> None:
    def draw(seed: int) -> list[Fault]:
        rng = random.Random(seed)
        return [draw_fault(rng, n, rng.choice(ALL_KINDS), 20, 19) for n in range(50)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_draws_valid_targets(kind: str) -> None:
    rng = random.Random(1)
    for number in range(30):
        fault = draw_fault(rng, number, kind, 7, disk_node=6)
        assert 2 <= fault.duration_slots <= 5
        assert fault.targets and all(0 <= t < 7 for t in fault.targets)
        assert list(fault.targets) == sorted(set(fault.targets))
        if kind == PARTITION_MINORITY:
            assert len(fault.targets) <= 2  # fewer than a third of 7
        if kind == PARTITION_HALVES:
            assert len(fault.targets) == 3
        if kind == CLOCK_SKEW:
            assert 500 <= abs(fault.offset_ms) <= 3_000
        else:
            assert fault.offset_ms == 0
        if kind == FULL_DISK:
            assert fault.targets == (6,)


def test_a_partition_cuts_both_ways_and_nothing_else() -> None:
    fault = Fault(0, PARTITION_HALVES, 3, (0, 2, 4))
    rules = compute_drop_rules(fault, ADDRESSES)
    side = {0, 2, 4}
    for a in range(6):
        for b in range(6):
            if a != b:
                assert _hears(rules, a, b) == ((a in side) == (b in side)), (a, b)
    assert len(rules) == 2 * 3 * 3


def test_an_isolated_node_hears_nobody_and_nobody_hears_it() -> None:
    rules = compute_drop_rules(Fault(0, ISOLATE, 2, (5,)), ADDRESSES)
    assert all(not _hears(rules, 5, b) for b in range(5))
    assert all(not _hears(rules, a, 5) for a in range(5))
    assert all(_hears(rules, a, b) for a in range(5) for b in range(5) if a != b)


def test_a_ring_keeps_only_the_two_neighbours() -> None:
    rules = compute_drop_rules(Fault(0, RING, 2, tuple(range(6))), ADDRESSES)
    for a in range(6):
        heard = {b for b in range(6) if b != a and _hears(rules, a, b)}
        assert heard == {(a - 1) % 6, (a + 1) % 6}


def test_one_way_loss_drops_only_inbound_at_the_victim_with_a_probability() -> None:
    rules = compute_drop_rules(Fault(0, ONE_WAY_LOSS, 2, (1,), 0.6), ADDRESSES)
    assert {r.node for r in rules} == {1}
    assert {r.probability for r in rules} == {0.6}
    assert ADDRESSES[1] not in {r.source for r in rules}
    argv = rules[0].to_iptables()
    assert argv[-2:] == ["-j", "DROP"] and "statistic" in argv and "0.6000" in argv


def test_process_faults_install_no_rules() -> None:
    assert compute_drop_rules(Fault(0, KILL, 2, (1,)), ADDRESSES) == []
    assert compute_drop_rules(Fault(0, WATCHDOG_KILL, 2, (1,)), ADDRESSES) == []


def test_the_cut_off_side_is_the_smaller_one() -> None:
    assert get_cut_off(Fault(0, PARTITION_MINORITY, 2, (4, 5)), 6) == (4, 5)
    assert get_cut_off(Fault(0, PARTITION_HALVES, 2, (0, 1, 2, 3)), 6) == (4, 5)
    assert get_cut_off(Fault(0, KILL, 2, (3,)), 6) == (3,)
    assert get_cut_off(Fault(0, WATCHDOG_KILL, 2, (2,)), 6) == (2,)  # then paused
    assert get_cut_off(Fault(0, RING, 2, tuple(range(6))), 6) == ()


def test_unknown_kinds_and_tiny_testnets_are_refused() -> None:
    with pytest.raises(FaultError):
        check_kinds(["kill", "meteor"])
    with pytest.raises(FaultError):
        check_kinds([])
    assert check_kinds(["kill", "pause", "kill"]) == ("kill", "pause")
    with pytest.raises(FaultError):
        draw_fault(random.Random(0), 0, KILL, 3)
    with pytest.raises(FaultError):
        draw_fault(random.Random(0), 0, FULL_DISK, 6)  # no node on a small disk
