"""The RTT probe (node/rtt.py): whom it pings, which answers it takes, the average."""

from __future__ import annotations

import random

from edgechain.chain.model import ORIGIN, Coordinate
from edgechain.node.rtt import MAX_OUTSTANDING, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, RttProbe
from edgechain.types import NodeId

ME, A, B = (NodeId(bytes([i]) * 32) for i in (1, 2, 3))


def no_coordinate(_: NodeId) -> Coordinate | None:
    """A peer that is not a validator on our head: no Vivaldi sample."""
    return None


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
    assert not probe.on_pong(
        B, request_id, 5 * MS, no_coordinate
    )  # another peer's answer: not ours
    assert not probe.on_pong(
        A, request_id + 1, 5 * MS, no_coordinate
    )  # an id we never sent: the DHT's
    assert probe.on_pong(A, request_id, 4 * MS, no_coordinate)
    assert probe.get_rtt_us() == 4000
    assert not probe.on_pong(A, request_id, 9 * MS, no_coordinate)  # each probe is answered once
    _, request_id = probe.choose(PROBE_INTERVAL_MS, 0, [A]) or (None, 0)
    assert probe.on_pong(A, request_id, 12 * MS, no_coordinate)  # a slow answer moves it an eighth
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


def test_answers_from_validators_move_the_network_coordinate() -> None:
    """Each answer from a validator is a Vivaldi sample against the coordinate our head
    has for it; an answer from a non-validator (None) times the RTT only."""
    probe = RttProbe(ME, random.Random(4))
    _, request_id = probe.choose(0, 0, [A]) or (None, 0)
    assert probe.on_pong(A, request_id, 30 * MS, no_coordinate)
    assert probe.get_coordinate() == ORIGIN and probe.vivaldi.samples == 0
    far = Coordinate(80_000, 0)
    for i in range(1, 40):
        _, request_id = probe.choose(i * PROBE_INTERVAL_MS, 0, [A]) or (None, 0)
        assert probe.on_pong(A, request_id, 30 * MS, lambda _: far)
    # 30 ms from a peer at x = 80 ms: Vivaldi settles about 30 ms away from it.
    distance = abs(probe.get_coordinate().x_us - far.x_us)
    assert probe.vivaldi.samples == 39 and 20_000 < distance < 40_000, probe.vivaldi
