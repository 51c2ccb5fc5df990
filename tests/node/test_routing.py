"""PeerRouting (node/routing.py): where a node sends what it sends to one peer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgechain.crypto.hashing import compute_node_id
from edgechain.node import Node
from edgechain.node import routing as routing_module
from edgechain.testing import ADMIN
from edgechain.types import NodeId, PublicKey
from edgechain.wire import codec
from edgechain.wire.message_kinds import Transport
from edgechain.wire.messages import GossipMsg, IHave, compute_message_id

from .live_nodes import make_configs


def test_a_seed_that_answered_stays_reachable_without_the_dht(tmp_path: Path) -> None:
    """A joiner's routing table may drop a seed too loaded to answer; its requests for
    the chain (HEAD_WANT) must still reach where the seed answered from."""
    config = make_configs(tmp_path, 2, admin=ADMIN.sk, chain_id="t", committee=1)[1]
    node = Node(config)
    try:
        seed = compute_node_id(PublicKey(config.genesis_key))
        assert node.routing.resolve(seed) is None  # nothing learned, nothing answered
        node.routing.configured[seed] = config.seeds[0]  # what _on_seed_answer records
        assert node.dht.get_address(seed) is None
        assert node.routing.resolve(seed) == config.seeds[0]
        # What the node learns itself comes first (the seed may have moved).
        node.routing.on_datagram_from(seed, "127.0.0.1:9")
        assert node.routing.resolve(seed) == "127.0.0.1:9"
        assert node.routing.resolve(NodeId(b"\x05" * 32)) is None
    finally:
        node.store.close()


def test_copies_of_one_message_are_encoded_once_and_sent_to_each_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gossip push sends one message to ``fanout`` peers: the same bytes to each
    known peer, encoded once; a peer with no known address is counted, not sent to."""
    config = make_configs(tmp_path, 2, admin=ADMIN.sk, chain_id="t", committee=1)[1]
    node = Node(config)
    sent: list[tuple[str, bytes, Transport]] = []
    encodings: list[object] = []
    real_encode = codec.encode_message

    def counting_encode(message: Any, *args: Any, **kwargs: Any) -> bytes:
        encodings.append(message)
        return real_encode(message, *args, **kwargs)

    def record(address: str, data: bytes, transport: Transport) -> None:
        sent.append((address, data, transport))

    monkeypatch.setattr(routing_module, "encode_message", counting_encode)
    monkeypatch.setattr(node.transport, "send", record)
    try:
        peers = [NodeId(bytes([i]) * 32) for i in (1, 2, 3)]
        for i, peer in enumerate(peers[:2]):
            node.routing.on_datagram_from(peer, f"127.0.0.1:{9000 + i}")
        payload = b"block bytes"
        message = GossipMsg(compute_message_id(payload), 3, payload)
        ihave = IHave((message.message_id,))
        node.routing.send_copies(
            [(peers[0], message), (peers[1], message), (peers[2], message), (peers[0], ihave)]
        )
    finally:
        node.store.close()
    assert encodings == [message, ihave]
    addresses = [address for address, _, _ in sent]
    assert addresses == ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9000"]
    assert sent[0][1] == sent[1][1] != sent[2][1]
    assert node.routing.counters.unresolved == 1
