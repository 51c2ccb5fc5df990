"""PeerRouting (node/routing.py): where a node sends what it sends to one peer."""

from __future__ import annotations

from pathlib import Path

from edgechain.crypto.hashing import compute_node_id
from edgechain.node import Node
from edgechain.testing import ADMIN
from edgechain.types import NodeId, PublicKey

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
