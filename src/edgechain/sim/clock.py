"""Virtual time and a deterministic event queue for the simulator.

Time is an ``int`` count of **microseconds** since the start of the simulation
(:data:`Micros`). Integers, not float seconds, because:

* equal times compare equal exactly, so "same instant" is well defined and ties are
  broken only by the insertion sequence number, never by rounding noise
  (``0.1 + 0.2 != 0.3``);
* a sum of delays is exact however long the run, so a trace is byte-identical across
  machines and Python versions;
* one microsecond is far below anything the protocol cares about (the testbed latency is
  0-5 ms, a slot is seconds), and a 64-bit count covers ~292 000 years.

Use :func:`from_seconds` / :func:`from_millis` at the edges and :func:`to_seconds` for
display; the protocol objects may use any unit, the driver converts.

Two layers:

* :class:`EventQueue` holds arbitrary event objects (``EventQueue[E]``) for drivers that
  prefer to dispatch events themselves: ``schedule(at, event)``, ``pop()``.
* :class:`SimClock` is an ``EventQueue`` of callbacks that runs them:
  ``schedule(at, callback)``, ``run_next()``, ``run_until(t)``, ``run()``.

Both are a binary heap (``heapq``) of ``(at, seq, timer)`` tuples. ``seq`` is a
monotonically increasing insertion counter, unique per queue, so entries with equal
``at`` run in the order they were scheduled (FIFO) and the tuple comparison never
reaches the :class:`Timer`. Cancellation is lazy: the timer is flagged and its heap entry
skipped when popped; the heap is compacted when cancelled entries dominate it, so code
that re-arms a timeout on every message does not grow the heap without bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, TypeAlias, TypeVar

Micros: TypeAlias = int
"""Virtual time or duration in integer microseconds."""

MICROSECOND: Micros = 1
MILLISECOND: Micros = 1_000
SECOND: Micros = 1_000_000

E = TypeVar("E")

Callback: TypeAlias = Callable[[], object]
"""What :class:`SimClock` runs: a no-argument callable (use ``functools.partial``)."""

_PENDING = 0
_FIRED = 1
_CANCELLED = 2

# Compact only when it pays: below this many dead entries the skipping is cheaper.
_COMPACT_MIN_CANCELLED = 1024


def from_seconds(seconds: float) -> Micros:
    """Seconds (float) to microseconds, rounded to the nearest microsecond."""
    return round(seconds * SECOND)


def from_millis(millis: float) -> Micros:
    """Milliseconds to microseconds, rounded to the nearest microsecond."""
    return round(millis * MILLISECOND)


def to_seconds(t: Micros) -> float:
    """Microseconds to float seconds, for display and reports only."""
    return t / SECOND


class Timer(Generic[E]):
    """Handle to one scheduled event; :meth:`cancel` it before it fires.

    A mutable handle rather than a frozen record because its whole purpose is to carry
    the pending/fired/cancelled state that lazy deletion needs. ``__slots__`` keep it
    small: one is created per scheduled event.
    """

    __slots__ = ("_queue", "_state", "at", "event", "seq")

    def __init__(self, queue: EventQueue[E], at: Micros, seq: int, event: E) -> None:
        self._queue = queue
        self._state = _PENDING
        self.at = at
        self.seq = seq
        self.event = event

    @property
    def pending(self) -> bool:
        """Neither fired nor cancelled yet."""
        return self._state == _PENDING

    @property
    def fired(self) -> bool:
        return self._state == _FIRED

    @property
    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def cancel(self) -> bool:
        """Cancel if still pending; returns whether this call cancelled it.

        Cancelling a timer that already fired or was cancelled is a harmless no-op, so
        callers need not track whether their timeout already ran.
        """
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._queue._note_cancelled()
        return True

    def __repr__(self) -> str:
        state = ("pending", "fired", "cancelled")[self._state]
        return f"Timer(at={self.at}, seq={self.seq}, {state}, event={self.event!r})"


class EventQueue(Generic[E]):
    """Deterministic priority queue of events keyed by virtual time, with a clock.

    ``now`` only moves forward: it advances to an event's time when the event is
    popped, or explicitly with :meth:`advance_to`. Scheduling in the past is an error
    (it would make the order depend on when the caller happened to look).
    """

    def __init__(self, start: Micros = 0) -> None:
        _check_time(start)
        self._now: Micros = start
        self._heap: list[tuple[Micros, int, Timer[E]]] = []
        self._seq = 0
        self._cancelled = 0  # dead entries still in the heap

    @property
    def now(self) -> Micros:
        """Current virtual time in microseconds."""
        return self._now

    def __len__(self) -> int:
        """Number of pending (not cancelled) events."""
        return len(self._heap) - self._cancelled

    def schedule(self, at: Micros, event: E) -> Timer[E]:
        """Schedule ``event`` at absolute time ``at`` (>= ``now``)."""
        if at < self._now or not isinstance(at, int):
            raise ValueError(f"cannot schedule at {at!r}: now is {self._now} (int µs)")
        seq = self._seq
        self._seq = seq + 1
        timer = Timer(self, at, seq, event)
        heapq.heappush(self._heap, (at, seq, timer))
        return timer

    def call_later(self, delay: Micros, event: E) -> Timer[E]:
        """Schedule ``event`` ``delay`` microseconds from now."""
        return self.schedule(self._now + delay, event)

    def cancel(self, timer: Timer[E]) -> bool:
        """Same as ``timer.cancel()``."""
        return timer.cancel()

    def peek_time(self) -> Micros | None:
        """Time of the next pending event, or ``None`` if there is none."""
        heap = self._heap
        while heap and heap[0][2]._state == _CANCELLED:
            self._drop_cancelled_head()
        return heap[0][0] if heap else None

    def pop(self, until: Micros | None = None) -> Timer[E] | None:
        """Remove and return the next pending event, advancing ``now`` to its time.

        With ``until``, only an event at or before ``until`` is returned; otherwise
        ``None`` and the clock is left where it is.
        """
        heap = self._heap
        while heap:
            at, _, timer = heap[0]
            if timer._state == _CANCELLED:
                self._drop_cancelled_head()
                continue
            if until is not None and at > until:
                return None
            heapq.heappop(heap)
            timer._state = _FIRED
            self._now = at
            return timer
        return None

    def advance_to(self, t: Micros) -> None:
        """Move ``now`` forward to ``t`` without running anything.

        Refuses to jump over a pending event, which would then run "in the past".
        """
        _check_time(t)
        if t < self._now:
            raise ValueError(f"time cannot go backwards: now {self._now}, asked {t}")
        nxt = self.peek_time()
        if nxt is not None and nxt < t:
            raise ValueError(f"cannot advance to {t}: an event is pending at {nxt}")
        self._now = t

    def _drop_cancelled_head(self) -> None:
        heapq.heappop(self._heap)
        self._cancelled -= 1

    def _note_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN_CANCELLED and 2 * self._cancelled > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        # (at, seq) keys are unique, so rebuilding the heap cannot change the order.
        # In place: a run loop may hold a reference to the list while a callback cancels.
        self._heap[:] = [entry for entry in self._heap if entry[2]._state != _CANCELLED]
        heapq.heapify(self._heap)
        self._cancelled = 0


class SimClock(EventQueue[Callback]):
    """Virtual clock that runs scheduled callbacks in (time, insertion) order.

    Callbacks may schedule more callbacks, including at ``now`` (they run after every
    event already scheduled for ``now``). An exception in a callback propagates to the
    caller of ``run*``; that event counts as run and the queue stays consistent.
    """

    def __init__(self, start: Micros = 0) -> None:
        super().__init__(start)
        self.events_run = 0
        """Total callbacks run so far (for benchmarks and livelock guards)."""

    def run_next(self) -> bool:
        """Run the next pending callback; returns ``False`` if there was none."""
        heap = self._heap
        while heap:
            at, _, timer = heapq.heappop(heap)
            if timer._state == _CANCELLED:
                self._cancelled -= 1
                continue
            timer._state = _FIRED
            self._now = at
            self.events_run += 1
            timer.event()
            return True
        return False

    def run_until(self, t: Micros) -> int:
        """Run every callback due at or before ``t``, then set ``now`` to ``t``.

        Includes callbacks scheduled during the run if they are due by ``t``. Returns
        how many callbacks ran.
        """
        _check_time(t)
        if t < self._now:
            raise ValueError(f"time cannot go backwards: now {self._now}, asked {t}")
        heap = self._heap
        heappop = heapq.heappop
        ran = 0
        try:
            # Inlined pop loop: this is the simulator's hot path.
            while heap:
                at, _, timer = heap[0]
                if at > t:
                    break
                heappop(heap)
                if timer._state == _CANCELLED:
                    self._cancelled -= 1
                    continue
                timer._state = _FIRED
                self._now = at
                ran += 1
                timer.event()
        finally:
            self.events_run += ran
        self._now = t
        return ran

    def run_for(self, duration: Micros) -> int:
        """``run_until(now + duration)``."""
        return self.run_until(self._now + duration)

    def run(self, max_events: int | None = None) -> int:
        """Run until no callback is pending (or ``max_events`` ran); returns the count.

        ``max_events`` guards against protocols that re-arm timers forever.
        """
        ran = 0
        while (max_events is None or ran < max_events) and self.run_next():
            ran += 1
        return ran


def _check_time(t: Micros) -> None:
    if not isinstance(t, int):
        raise ValueError(f"virtual time must be int microseconds, got {t!r}")
