"""Virtual clock and event queue: ordering, ties, cancellation, time rules, speed."""

from __future__ import annotations

import os
import time
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgechain.sim.clock import (
    MILLISECOND,
    SECOND,
    Callback,
    EventQueue,
    SimClock,
    Timer,
    from_millis,
    from_seconds,
    to_seconds,
)


def recorder(clock: SimClock, log: list[tuple[int, str]], label: str) -> None:
    log.append((clock.now, label))


def schedule_label(
    clock: SimClock, at: int, log: list[tuple[int, str]], label: str
) -> Timer[Callback]:
    return clock.schedule(at, partial(recorder, clock, log, label))


def test_unit_conversions() -> None:
    assert SECOND == 1_000_000 and MILLISECOND == 1_000
    assert from_seconds(1.5) == 1_500_000
    assert from_seconds(0.1) + from_seconds(0.2) == from_seconds(0.3)
    assert from_millis(2.5) == 2_500
    assert to_seconds(2_500_000) == 2.5


def test_events_run_in_time_order() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    for at, label in [(30, "c"), (10, "a"), (20, "b"), (5, "first")]:
        schedule_label(clock, at, log, label)
    assert clock.run() == 4
    assert log == [(5, "first"), (10, "a"), (20, "b"), (30, "c")]
    assert clock.now == 30


def test_equal_times_run_in_insertion_order() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    for i in range(50):
        schedule_label(clock, 100, log, f"e{i}")
    clock.run()
    assert [label for _, label in log] == [f"e{i}" for i in range(50)]


def test_event_scheduled_at_now_runs_after_existing_ties() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []

    def spawn() -> None:
        log.append((clock.now, "spawner"))
        schedule_label(clock, clock.now, log, "spawned")

    clock.schedule(10, spawn)
    schedule_label(clock, 10, log, "sibling")
    clock.run()
    assert log == [(10, "spawner"), (10, "sibling"), (10, "spawned")]


def test_scheduling_in_the_past_or_with_float_time_is_refused() -> None:
    clock = SimClock(start=1_000)
    with pytest.raises(ValueError):
        clock.schedule(999, lambda: None)
    with pytest.raises(ValueError):
        clock.schedule(1_500.0, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SimClock(start=0.5)  # type: ignore[arg-type]


def test_call_later_is_relative_to_now() -> None:
    clock = SimClock(start=7)
    timer = clock.call_later(3, lambda: None)
    assert timer.at == 10


def test_cancelled_timer_never_runs() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    keep = schedule_label(clock, 10, log, "keep")
    drop = schedule_label(clock, 5, log, "drop")
    assert len(clock) == 2
    assert drop.cancel() is True
    assert drop.cancelled and not drop.pending
    assert len(clock) == 1
    assert drop.cancel() is False  # idempotent
    clock.run()
    assert log == [(10, "keep")]
    assert keep.fired
    assert keep.cancel() is False  # cancelling a fired timer is a no-op
    assert len(clock) == 0


def test_callback_can_cancel_a_later_timer_at_the_same_time() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    victim = schedule_label(clock, 10, log, "victim")
    clock.schedule(10, victim.cancel)
    # The canceller was scheduled after the victim, so the victim already ran.
    clock.run()
    assert log == [(10, "victim")]

    clock2 = SimClock()
    log2: list[tuple[int, str]] = []
    holder: list[Timer[Callback]] = []

    def cancel_victim() -> None:  # the victim does not exist yet when this is scheduled
        holder[0].cancel()

    clock2.schedule(10, cancel_victim)
    holder.append(schedule_label(clock2, 10, log2, "victim"))
    clock2.run()
    assert log2 == []


def test_mass_cancellation_compacts_heap_and_keeps_order() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    timers = [schedule_label(clock, 1_000 - (i % 100), log, f"t{i}") for i in range(5_000)]
    for i, timer in enumerate(timers):
        if i % 5:
            timer.cancel()
    assert len(clock) == 1_000
    assert len(clock._heap) < 5_000  # compaction happened
    clock.run()
    expected = sorted((1_000 - (i % 100), i) for i in range(0, 5_000, 5))
    assert log == [(at, f"t{i}") for at, i in expected]


def test_compaction_triggered_inside_run_until_is_safe() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    later = [schedule_label(clock, 100 + i, log, f"later{i}") for i in range(3_000)]

    def cancel_most() -> None:
        for timer in later[1:]:
            timer.cancel()

    clock.schedule(50, cancel_most)
    assert clock.run_until(10_000) == 2
    assert log == [(100, "later0")]
    assert len(clock) == 0


def test_run_until_runs_due_events_only_and_sets_now() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []
    for at in (10, 20, 30):
        schedule_label(clock, at, log, str(at))

    def chain() -> None:  # scheduled during the run, due before the horizon
        schedule_label(clock, clock.now + 1, log, "chained")

    clock.schedule(15, chain)
    assert clock.run_until(20) == 4
    assert [label for _, label in log] == ["10", "chained", "20"]
    assert clock.now == 20
    assert clock.run_until(25) == 0
    assert clock.now == 25
    with pytest.raises(ValueError):
        clock.run_until(24)
    assert clock.run_for(5) == 1
    assert clock.now == 30


def test_run_next_and_max_events() -> None:
    clock = SimClock()
    assert clock.run_next() is False

    def forever() -> None:
        clock.call_later(1, forever)

    clock.schedule(0, forever)
    assert clock.run(max_events=100) == 100
    assert clock.events_run == 100
    assert clock.now == 99


def test_exception_in_callback_propagates_and_queue_stays_usable() -> None:
    clock = SimClock()
    log: list[tuple[int, str]] = []

    def boom() -> None:
        raise RuntimeError("boom")

    clock.schedule(5, boom)
    schedule_label(clock, 6, log, "after")
    with pytest.raises(RuntimeError):
        clock.run_until(100)
    assert clock.now == 5
    assert clock.run_until(100) == 1
    assert log == [(6, "after")]


def test_event_queue_with_event_objects() -> None:
    queue: EventQueue[str] = EventQueue()
    queue.schedule(20, "b")
    queue.schedule(10, "a")
    cancelled = queue.schedule(5, "x")
    queue.cancel(cancelled)
    assert queue.peek_time() == 10
    assert queue.pop(until=9) is None
    assert queue.now == 0
    first = queue.pop(until=10)
    assert first is not None and first.event == "a" and queue.now == 10
    with pytest.raises(ValueError):
        queue.advance_to(25)  # would jump over "b"
    queue.advance_to(15)
    second = queue.pop()
    assert second is not None and second.event == "b" and queue.now == 20
    assert queue.pop() is None and queue.peek_time() is None


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=50), st.booleans()),
        max_size=200,
    )
)
def test_order_is_time_then_insertion_for_any_schedule(ops: list[tuple[int, bool]]) -> None:
    clock = SimClock()
    ran: list[int] = []
    timers = [clock.schedule(at, partial(ran.append, i)) for i, (at, _) in enumerate(ops)]
    for timer, (_, cancel) in zip(timers, ops, strict=True):
        if cancel:
            timer.cancel()
    clock.run()
    expected = [i for _, i in sorted((at, i) for i, (at, cancel) in enumerate(ops) if not cancel)]
    assert ran == expected


def _noop() -> None:
    pass


def test_benchmark_many_events(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints events/s; asserts only the count (no wall-clock assertion). A million
    events with EDGECHAIN_LONG=1 (14 s of the suite), 200,000 otherwise."""
    n = 1_000_000 if os.environ.get("EDGECHAIN_LONG") == "1" else 200_000
    clock = SimClock()
    # Bulk: n events pre-loaded at pseudo-random times, then drained.
    state = 12345
    start = time.perf_counter()
    for _ in range(n):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        clock.schedule(state % 10_000_000, _noop)
    loaded = time.perf_counter()
    ran = clock.run_until(10_000_000)
    done = time.perf_counter()
    assert ran == n

    # Steady state: 1000 actors each re-arming itself, as simulated nodes do.
    steady = SimClock()
    actors = 1_000

    def tick() -> None:
        steady.call_later(1_000, tick)

    for i in range(actors):
        steady.schedule(i, tick)
    steady_start = time.perf_counter()
    steady_ran = steady.run(max_events=n)
    steady_done = time.perf_counter()
    assert steady_ran == n

    with capsys.disabled():
        print(
            f"\n[sim.clock] bulk: schedule {n / (loaded - start):,.0f}/s, "
            f"run {n / (done - loaded):,.0f}/s, "
            f"schedule+run {n / (done - start):,.0f} events/s; "
            f"steady state ({actors} actors): {n / (steady_done - steady_start):,.0f} events/s"
        )
