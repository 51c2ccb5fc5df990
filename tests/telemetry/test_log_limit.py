"""``LogLimit``: the first event logged, then one line per interval counting the rest."""

from __future__ import annotations

from edgechain.telemetry.log_limit import LogLimit


def test_the_first_event_is_logged_then_one_per_interval_counting_the_rest() -> None:
    limit = LogLimit(60.0)
    taken = [(now, limit.take(now)) for now in (0.0, 1.0, 2.0, 59.9, 60.0, 61.0, 200.0)]
    assert taken == [
        (0.0, 0),
        (1.0, None),
        (2.0, None),
        (59.9, None),
        (60.0, 3),  # stands for the three not logged since the first line
        (61.0, None),
        (200.0, 1),
    ]


def test_an_interval_of_zero_logs_every_event() -> None:
    limit = LogLimit(0.0)
    assert [limit.take(float(now)) for now in range(3)] == [0, 0, 0]
