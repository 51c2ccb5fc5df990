"""The RTT probe (node/rtt.py): whom it pings, which answers it takes, the average."""

from __future__ import annotations

import random

from edgechain.node.rtt import MAX_OUTSTANDING, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, RttProbe
from edgechain.types import NodeId

ME, A, B = (NodeId(bytes([i]) * 32) for i in (1, 2, 3))
MS = 1_000_000
"""Nanoseconds in a millisecond."""


def test_it_pings_another_validator_once_per_interval() -> None:
    probe = RttProbe(ME, random.Random(1))
    assert probe.choose(0, 0, [ME]) is None  # nobody else
    choice = probe.choose(PROBE_INTERVAL_MS, 0, [ME, A, B])
    assert choice is not None and choice[0] in (A, B)
    assert probe.choose(PROBE_INTERVAL_MS + 1, 0, [ME, A, B]) is None  # not yet time
    chosen = set()
    for i in range(2, 40):
        choice = probe.choose(i * PROBE_TIMEOUT_MS, 0, [ME, A, B])
        assert choice is not None
        chosen.add(choice[0])
    assert chosen == {A, B}  # both chosen, never itself


def test_answers_make_a_smoothed_average_and_others_are_not_ours() -> None:
    probe = RttProbe(ME, random.Random(2))
    assert probe.get_rtt_us() == 0
    _, request_id = probe.choose(0, 0, [A]) or (None, 0)
    assert not probe.on_pong(B, request_id, 5 * MS)  # another peer's answer: not ours
    assert not probe.on_pong(A, request_id + 1, 5 * MS)  # an id we never sent: the DHT's
    assert probe.on_pong(A, request_id, 4 * MS)
    assert probe.get_rtt_us() == 4000
    assert not probe.on_pong(A, request_id, 9 * MS)  # each probe is answered once
    _, request_id = probe.choose(PROBE_INTERVAL_MS, 0, [A]) or (None, 0)
    assert probe.on_pong(A, request_id, 12 * MS)  # a slow answer moves it an eighth
    assert probe.get_rtt_us() == 4000 + (12000 - 4000) // 8
    assert probe.samples == 2


def test_unanswered_probes_expire_and_are_bounded() -> None:
    probe = RttProbe(ME, random.Random(3))
    now = 0
    for _ in range(MAX_OUTSTANDING):
        assert probe.choose(now, 0, [A]) is not None
        now += PROBE_INTERVAL_MS
    if PROBE_TIMEOUT_MS > PROBE_INTERVAL_MS * MAX_OUTSTANDING:
        assert probe.choose(now, 0, [A]) is None
    # Past the timeout every one is dropped (a lost ping says nothing of the delay).
    later = now + PROBE_TIMEOUT_MS
    assert probe.choose(later, 0, [A]) is not None
    assert len(probe.outstanding) == 1
    assert probe.get_rtt_us() == 0
