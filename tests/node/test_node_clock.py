"""The node's clock and ``--clock-offset-ms``: one offset, the same in every reading the
node and its watchdog make (clock-skew experiments, ``node/clock.py``)."""

from __future__ import annotations

import time

import pytest

from edgechain.node.clock import NodeClock
from edgechain.runtime.lease import get_now_ms


def _true_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize("offset", [0, 1_500, -86_400_000])
def test_the_offset_shifts_every_reading(offset: int) -> None:
    clock = NodeClock(offset)
    before = _true_ms()
    node, watchdog = clock.now_ms(), get_now_ms(offset)
    after = _true_ms()
    for reading in (node, watchdog):
        assert before + offset <= reading <= after + offset


def test_a_clock_without_offset_is_the_hosts() -> None:
    assert NodeClock().offset_ms == 0
    before = _true_ms()
    assert before <= NodeClock().now_ms() <= _true_ms()
