"""The node loop's schedule (node/tick_schedule.py): one timer, moved only earlier."""

from __future__ import annotations

import asyncio
import itertools
import random

from edgechain.node.tick_schedule import (
    HOUSEKEEPING_GRID_MS,
    IDLE_HOUSEKEEPING_GRID_MS,
    HousekeepingGrid,
    TickSchedule,
    get_housekeeping_phase,
    get_housekeeping_time,
)


class _Clock:
    def __init__(self) -> None:
        self.ms = 1_000

    def now_ms(self) -> int:
        return self.ms


def test_a_later_request_does_not_arm_another_timer() -> None:
    async def scenario() -> None:
        clock = _Clock()
        schedule = TickSchedule(clock.now_ms)
        schedule.set_next(1_500)
        assert schedule.arms == 1
        schedule.request(1_700)  # later than the pass already due: nothing to do
        schedule.request(1_500)
        assert (schedule.due_ms, schedule.arms) == (1_500, 1)
        schedule.request(1_020)  # earlier: the one timer moves
        assert (schedule.due_ms, schedule.arms) == (1_020, 2)
        schedule.close()

    asyncio.run(scenario())


def test_the_timer_wakes_the_loop_once_the_pass_is_due() -> None:
    async def scenario() -> None:
        clock = _Clock()
        schedule = TickSchedule(clock.now_ms)
        schedule.set_next(1_005)
        assert not schedule.wake.is_set()
        await asyncio.wait_for(schedule.wake.wait(), timeout=5)
        clock.ms = 1_005
        assert schedule.is_due(clock.now_ms())
        schedule.arm()  # the fired timer was forgotten: arming again sets a new one
        assert schedule.arms == 2
        schedule.close()

    asyncio.run(scenario())


def test_an_immediate_request_wakes_at_once() -> None:
    async def scenario() -> None:
        clock = _Clock()
        schedule = TickSchedule(clock.now_ms)
        schedule.set_next(60_000)
        schedule.request(clock.ms)
        await asyncio.wait_for(schedule.wake.wait(), timeout=5)
        assert schedule.is_due(clock.now_ms())
        schedule.close()

    asyncio.run(scenario())


def test_housekeeping_waits_for_the_next_point_of_the_nodes_grid() -> None:
    grid = HOUSEKEEPING_GRID_MS
    for phase in (0, 1, 437, grid - 1):
        for due in (0, 1, phase, phase + 1, 5 * grid + 3, 7 * grid + phase):
            at = get_housekeeping_time(due, phase)
            assert due <= at < due + grid
            assert at % grid == phase
    # Two deadlines within one interval share a pass.
    assert get_housekeeping_time(1_100, 300) == get_housekeeping_time(1_250, 300) == 1_300


def test_an_idle_node_wakes_on_every_other_point_of_its_grid() -> None:
    grid, idle = HOUSEKEEPING_GRID_MS, IDLE_HOUSEKEEPING_GRID_MS
    assert idle % grid == 0
    for phase in (0, 1, 437, grid + 5, idle - 1):
        for due in (0, 1, phase, phase + 1, 5 * idle + 3, 7 * idle + phase):
            at = get_housekeeping_time(due, phase, idle=True)
            assert due <= at < due + idle
            assert at % idle == phase
            # A point of the idle grid is one of the busy grid's: the same phase.
            busy = get_housekeeping_time(due, phase)
            assert busy % grid == phase % grid and busy <= at
    assert get_housekeeping_time(1_100, 300, idle=True) == 2_300


def test_nodes_sit_at_different_places_on_the_grid() -> None:
    phases = {get_housekeeping_phase(bytes([i]) * 32) for i in range(20)}
    assert all(0 <= p < IDLE_HOUSEKEEPING_GRID_MS for p in phases)
    assert len(phases) > 15


def test_a_pass_shortly_before_a_grid_point_serves_it_and_the_loop_skips_it() -> None:
    grid = HousekeepingGrid(phase_ms=300)
    # Within half an interval before a point: served early, as at the point itself.
    assert grid.take(50, idle=True) == 300
    assert grid.get_next_point(50, idle=True) == 2_300
    # More than half an interval before the next point: nothing to serve.
    assert grid.take(1_200, idle=True) is None
    assert grid.take(1_500, idle=True) == 2_300
    assert grid.take(1_600, idle=True) is None, "a point is served once"
    assert grid.get_next_point(1_600, idle=True) == 4_300, "the loop does not wake at 2_300"
    # A pass after the next point (the loop woke late): served as of now, once.
    assert grid.take(4_900, idle=True) == 4_900
    assert grid.take(4_950, idle=True) is None
    assert grid.get_next_point(4_950, idle=True) == 6_300


def test_serving_early_keeps_each_parts_period() -> None:
    """Housekeeping run at its points, early or not, never comes more often than the
    grid: passes at random times serve each point at most once."""
    grid = HousekeepingGrid(phase_ms=437)
    rng = random.Random(7)
    now, served = 0, []
    while now < 200_000:
        at = grid.take(now, idle=True)
        if at is not None:
            served.append(at)
        # The loop wakes at the next point or earlier, as other deadlines ask.
        now = min(grid.get_next_point(now, idle=True), now + rng.randrange(1, 900))
    gaps = [b - a for a, b in itertools.pairwise(served)]
    assert min(gaps) >= IDLE_HOUSEKEEPING_GRID_MS
    assert max(gaps) <= IDLE_HOUSEKEEPING_GRID_MS
    assert all(at % IDLE_HOUSEKEEPING_GRID_MS == 437 for at in served[1:])
