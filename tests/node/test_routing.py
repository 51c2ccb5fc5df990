"""PeerRouting (node/routing.py): where a node sends what it sends to one peer."""

from __future__ import annotations

from pathlib import Path

from edgechain.crypto.hashing import compute_node_id
from edgechain.node import Node
from edgechain.testing import ADMIN
from edgechain.types import NodeId, PublicKey

from .live_nodes import make_configs


def test_the_configured_bootstrap_stays_reachable_without_the_dht(tmp_path: Path) -> None:
    """A joiner's routing table may drop a bootstrap too loaded to answer; its requests
    for the chain (HEAD_WANT) must still reach the address the operator gave."""
    config = make_configs(tmp_path, 2, admin=ADMIN.sk, chain_id="t", committee=1)[1]
    node = Node(config)
    try:
        bootstrap = compute_node_id(PublicKey(config.bootstrap_key))
        assert node.dht.get_address(bootstrap) is None  # never joined: nothing learned
        assert node.routing.resolve(bootstrap) == config.bootstrap
        # What the node learns itself comes first (the bootstrap may have moved).
        node.routing.on_datagram_from(bootstrap, "127.0.0.1:9")
        assert node.routing.resolve(bootstrap) == "127.0.0.1:9"
        assert node.routing.resolve(NodeId(b"\x05" * 32)) is None
    finally:
        node.store.close()
