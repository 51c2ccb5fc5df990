"""node/seeds.py: which seeds are pinged when, and what their answers teach."""

from __future__ import annotations

import random

from edgechain.node.seeds import (
    MAX_SEEDS,
    PINGS_REMEMBERED,
    SEED_RECHECK_MS,
    SEED_RETRY_MS,
    SeedContacts,
)
from edgechain.types import NodeId
from edgechain.wire.messages import Contact

A, B = NodeId(b"\x0a" * 32), NodeId(b"\x0b" * 32)


def make(*addresses: str) -> SeedContacts:
    return SeedContacts(addresses, random.Random(1))


def test_unanswered_seeds_are_pinged_until_one_answers_then_rarely() -> None:
    seeds = make("seed-0:7000", "seed-1:7000", "seed-0:7000", "")
    pings = seeds.get_pings_due(0)
    assert [a for a, _ in pings] == ["seed-0:7000", "seed-1:7000"]  # deduplicated
    assert seeds.get_pings_due(SEED_RETRY_MS - 1) == []
    again = seeds.get_pings_due(SEED_RETRY_MS)
    assert [a for a, _ in again] == ["seed-0:7000", "seed-1:7000"]
    assert {r for _, r in again}.isdisjoint({r for _, r in pings})  # fresh request ids
    # The answer to the first ping arrives after the retry (a loaded seed): it counts.
    contact = seeds.on_pong(A, pings[1][1], "10.0.0.2:7000")
    assert contact == Contact(A, "10.0.0.2:7000")
    assert seeds.get_contacts() == [contact] and seeds.get_node_ids() == [A]
    assert seeds.on_pong(A, again[1][1], "10.0.0.2:7000") is None  # answered once
    # From now on only the silent seed, and only every SEED_RECHECK_MS.
    assert [a for a, _ in seeds.get_pings_due(2 * SEED_RETRY_MS)] == ["seed-0:7000"]
    assert seeds.get_pings_due(2 * SEED_RETRY_MS + SEED_RECHECK_MS - 1) == []
    assert len(seeds.get_pings_due(2 * SEED_RETRY_MS + SEED_RECHECK_MS)) == 1
    assert seeds.to_json() == [
        {"address": "seed-0:7000", "node_id": None, "reached_at": None},
        {"address": "seed-1:7000", "node_id": A.hex(), "reached_at": "10.0.0.2:7000"},
    ]
    assert (seeds.pings_sent, seeds.answers) == (6, 1)


def test_a_pong_for_a_request_we_never_sent_is_not_a_seed() -> None:
    seeds = make("seed-0:7000")
    ((_, request_id),) = seeds.get_pings_due(0)
    assert seeds.on_pong(B, request_id ^ 2, "10.0.0.3:7000") is None
    assert seeds.get_contacts() == []


def test_the_list_is_bounded() -> None:
    seeds = make(*(f"10.0.{i // 250}.{i % 250}:7000" for i in range(MAX_SEEDS + 10)))
    assert len(seeds.get_pings_due(0)) == MAX_SEEDS
    assert make().get_pings_due(0) == []


def test_only_the_last_pings_of_a_silent_seed_are_remembered() -> None:
    seeds = make("seed-0:7000")
    sent = [seeds.get_pings_due(i * SEED_RETRY_MS)[0][1] for i in range(PINGS_REMEMBERED + 1)]
    assert seeds.on_pong(A, sent[0], "10.0.0.2:7000") is None  # forgotten
    assert seeds.on_pong(A, sent[1], "10.0.0.2:7000") == Contact(A, "10.0.0.2:7000")
