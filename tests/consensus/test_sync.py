"""Sync under catch-up load: only the oldest missing ancestor is asked for, a peer's
repeated request is answered once per interval, orphans below finality are dropped.
(A 20-node testnet's new node, joining at slot 1000, used to make every peer answer
``sync_limit`` blocks each slot and each retry: the peers grew past a gigabyte.)"""

from __future__ import annotations

from itertools import pairwise

from edgechain.chain.model import AnyBlock
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import BlockMsg, SyncRequestMsg, SyncResponseMsg
from edgechain.consensus.sync import (
    SYNC_ANSWER_INTERVAL_MS,
    SYNC_FORK_MARGIN,
    get_sync_retry_ms,
)

from .test_engine import Harness


def _sync_requests(out: object) -> list[SyncRequestMsg]:
    return [o.message for o in out.messages if isinstance(o.message, SyncRequestMsg)]  # type: ignore[attr-defined]


def _chain(slots: int) -> Harness:
    net = Harness(4)
    net.start_chain()
    for slot in range(1, slots + 1):
        net.run_slot(slot)
    return net


def _newcomer(net: Harness) -> tuple[ConsensusEngine, list[AnyBlock]]:
    """A node with only the genesis, and node 0's chain (oldest first)."""
    source = net.engine(0)
    newcomer = net.add(7)
    newcomer.on_message(source.genesis_msg, net.order[0], net.now)  # type: ignore[arg-type]
    assert newcomer.genesis is not None
    return newcomer, [source.blocks[h] for h in source.get_chain()]


def test_a_catching_up_node_asks_only_for_its_oldest_missing_ancestor() -> None:
    net = _chain(5)
    newcomer, chain = _newcomer(net)
    # Block 3 arrives first: its parent is asked for. Blocks 4 and 5 follow by gossip
    # from other peers: their parents are orphans held here, nobody is asked.
    first = newcomer.on_message(BlockMsg(chain[2]), net.order[0], net.now)
    assert [r.want for r in _sync_requests(first)] == [chain[2].parent]
    for block, sender in ((chain[3], net.order[1]), (chain[4], net.order[2])):
        assert _sync_requests(newcomer.on_message(BlockMsg(block), sender, net.now)) == []
    # The retry asks again for the one missing root only.
    retry = newcomer.on_tick(net.now + 1_500)
    assert [r.want for r in _sync_requests(retry)] == [chain[2].parent]


def test_a_repeated_sync_request_is_answered_once_per_interval() -> None:
    net = _chain(3)
    engine = net.engine(0)
    head = engine.head
    assert head is not None
    asker = net.order[1]

    def answers(now: int) -> int:
        out = engine.on_message(SyncRequestMsg(head, 16), asker, now)
        return sum(isinstance(o.message, SyncResponseMsg) for o in out.messages)

    now = net.now
    assert answers(now) == 1
    assert answers(now + 1_000) == 0
    assert answers(now + SYNC_ANSWER_INTERVAL_MS) == 1
    assert engine.sync.requests_ignored == 1
    # Another peer asking for the same block is answered.
    out = engine.on_message(SyncRequestMsg(head, 16), net.order[2], now + 1_000)
    assert any(isinstance(o.message, SyncResponseMsg) for o in out.messages)


def test_orphans_at_or_below_a_finalized_slot_are_dropped() -> None:
    net = _chain(4)
    newcomer, chain = _newcomer(net)
    for block in chain[1:]:
        newcomer.on_message(BlockMsg(block), net.order[0], net.now)
    sync = newcomer.sync
    assert sync.orphan_count == len(chain) - 1
    sync.drop_orphans_upto(chain[2].slot)
    assert sync.orphan_count == len(chain) - 3
    assert sync.orphan_hashes == {net.engine(0).memo.get_block_hash(b) for b in chain[3:]}


def test_a_node_one_block_behind_asks_for_the_gap_not_the_whole_chain() -> None:
    net = _chain(8)
    newcomer, chain = _newcomer(net)
    for block in chain[:-2]:
        newcomer.on_message(BlockMsg(block), net.order[0], net.now)
    head = newcomer.get_head_state()
    assert head is not None
    out = newcomer.on_message(BlockMsg(chain[-1]), net.order[0], net.now)
    (request,) = _sync_requests(out)
    assert request.want == chain[-1].parent
    assert request.limit == chain[-1].slot - head.slot - 1 + SYNC_FORK_MARGIN
    assert request.limit < newcomer.config.sync_limit
    # The answer of that many blocks joins the chain.
    answer = net.engine(0).on_message(request, newcomer.node_id, net.now)
    (response,) = [o.message for o in answer.messages if isinstance(o.message, SyncResponseMsg)]
    assert len(response.blocks) == request.limit
    newcomer.on_message(response, net.order[0], net.now)
    assert newcomer.head == net.engine(0).head


def test_a_missing_block_is_asked_for_again_less_and_less_often() -> None:
    assert [get_sync_retry_ms(n) for n in range(1, 7)] == [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]
    net = _chain(5)
    newcomer, chain = _newcomer(net)
    start = net.now
    assert _sync_requests(newcomer.on_message(BlockMsg(chain[-1]), net.order[0], start))
    asked = [
        at for at in range(start + 100, start + 16_000, 100) if _sync_requests(newcomer.on_tick(at))
    ]
    # Ticks come every 100 ms here; requests at +1 s, +3 s, +7 s and +15 s.
    assert [at - start for at in asked] == [1_000, 3_000, 7_000, 15_000]


def test_a_missing_block_is_asked_for_from_another_peer_each_time() -> None:
    """One slow peer must not hold a catching-up node back: the retries go to the other
    senders and then to the validators of its head, each peer once in turn."""
    net = _chain(5)
    newcomer, chain = _newcomer(net)
    start = net.now
    first = newcomer.on_message(BlockMsg(chain[-1]), net.order[0], start)
    asked = [o.to for o in first.messages if isinstance(o.message, SyncRequestMsg)]
    for at in range(start + 100, start + 40_000, 100):
        out = newcomer.on_tick(at)
        asked += [o.to for o in out.messages if isinstance(o.message, SyncRequestMsg)]
    assert asked[0] == (net.order[0],)  # the block's sender first
    peers = [to[0] for to in asked]
    validators = set(net.order[:4])  # the genesis validators, newcomer's head's set
    assert set(peers) == validators and newcomer.node_id not in peers
    assert all(a != b for a, b in pairwise(peers))
