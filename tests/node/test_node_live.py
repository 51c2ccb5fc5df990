"""Real nodes over real sockets, in one event loop: chain progress, and hostile input.

Four ``Node`` objects (the same class the daemon runs) bind loopback port 0, join
through the bootstrap node, create genesis and produce blocks. One node's UDP and TCP
ports are then bombarded with random and mutated datagrams and frames: it must stay up,
keep its duties, and count every rejection. ``EDGECHAIN_LONG=1`` fuzzes for 60 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
from pathlib import Path
from typing import Any

from edgechain.consensus.messages import SyncRequestMsg, VoteMsg
from edgechain.crypto import bls
from edgechain.node import Node
from edgechain.types import BlockHash, NodeId, Signature, Slot
from edgechain.wire.codec import encode_message
from edgechain.wire.messages import FindNode, Ping

from .live_nodes import make_configs, wait_until

LONG = os.environ.get("EDGECHAIN_LONG") == "1"
FUZZ_SECONDS = 60.0 if LONG else 8.0
ADMIN = bls.keygen(b"\x07" * 32)


async def _status(node: Node) -> dict[str, Any]:
    return node.get_status()


def _hostile_inputs(rng: random.Random, victim: NodeId) -> list[bytes]:
    """Random bytes, and valid messages with bit flips, truncations and splices."""
    sender = NodeId(rng.randbytes(32))
    sk = bls.keygen(rng.randbytes(32))
    valid = [
        encode_message(FindNode(1, victim), _node_of(sk), sk),
        encode_message(Ping(7), _node_of(sk), sk),
        encode_message(
            VoteMsg(BlockHash(rng.randbytes(32)), Slot(3), sender, Signature(rng.randbytes(96))),
            sender,
        ),
        encode_message(SyncRequestMsg(BlockHash(rng.randbytes(32)), 10**6), sender),
    ]
    out = [rng.randbytes(rng.randrange(0, 1400)) for _ in range(4)]
    for data in valid:
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        out += [bytes(flipped), data[: rng.randrange(len(data))], data + rng.randbytes(8)]
    return out


def _node_of(sk: int) -> NodeId:
    from edgechain.crypto.hashing import compute_node_id

    return compute_node_id(bls.sk_to_pk(sk))  # type: ignore[arg-type]


async def _fuzz(victim: Node, seconds: float, seed: int) -> int:
    """Throw hostile datagrams and frames at ``victim`` for ``seconds``; returns count."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    port = victim.transport.port
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    sent = 0
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            for data in _hostile_inputs(rng, victim.node_id):
                udp.sendto(data[:1232], ("127.0.0.1", port))
                sent += 1
            # TCP: garbage frames, absurd lengths, and half frames on fresh connections.
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                for data in _hostile_inputs(rng, victim.node_id)[:6]:
                    writer.write(struct.pack(">I", len(data)) + data)
                    sent += 1
                writer.write(struct.pack(">I", 0xFFFFFFF0) + b"\x00" * 64)
                await writer.drain()
                writer.close()
            except OSError:
                pass
            await asyncio.sleep(0.01)
    finally:
        udp.close()
    return sent


async def _run(tmp: Path) -> dict[str, Any]:
    configs = make_configs(tmp, 4, admin=ADMIN, chain_id="live", committee=2)
    nodes = [Node(c) for c in configs]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(nodes[0].run(stop))]
    await asyncio.sleep(0.5)
    tasks += [asyncio.ensure_future(n.run(stop)) for n in nodes[1:]]
    try:

        async def producing() -> bool:
            if any(n.engine is None for n in nodes):
                return False
            statuses = [await _status(n) for n in nodes]
            return all((s["head_slot"] or 0) >= 3 for s in statuses)

        assert await wait_until(producing, 40), [await _status(n) for n in nodes]
        victim = nodes[1]
        before = await _status(victim)
        sent = await _fuzz(victim, FUZZ_SECONDS, seed=5)
        after_fuzz = await _status(victim)

        async def progressed() -> bool:
            status = await _status(victim)
            return int(status["head_slot"] or 0) >= int(after_fuzz["head_slot"] or 0) + 2

        assert await wait_until(progressed, 20), "the fuzzed node stopped following the chain"
        statuses = [await _status(n) for n in nodes]
        return {"before": before, "after": statuses[1], "all": statuses, "sent": sent}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


def test_live_nodes_survive_hostile_input(tmp_path: Path) -> None:
    result = asyncio.run(_run(tmp_path))
    after = result["after"]
    rejected = sum(after["decode_errors"].values()) + sum(after["peer_errors"].values())
    rejected += after["transport"]["bad_frames"]
    print(
        json.dumps(
            {
                "fuzz_seconds": FUZZ_SECONDS,
                "hostile_inputs_sent": result["sent"],
                "rejected": rejected,
                "decode_errors": after["decode_errors"],
                "peer_errors": after["peer_errors"],
                "bad_frames": after["transport"]["bad_frames"],
                "blocks_accepted_during": after["blocks_accepted"]
                - result["before"]["blocks_accepted"],
                "rss_mb": after["rss_mb"],
            }
        )
    )
    assert result["sent"] > 100
    assert rejected > result["sent"] // 4, json.dumps(after, indent=1)
    # It kept its duties: it still accepts blocks and is a validator; no skips for it.
    assert after["is_validator"]
    assert after["blocks_accepted"] > result["before"]["blocks_accepted"]
    heads = {s["head"] for s in result["all"]}
    assert len(heads) <= 2  # the last block may be in flight to one node
    # Keys stayed private (0600) and each node persisted its chain.
    for i in range(4):
        assert (tmp_path / f"n{i}" / "node.key").stat().st_mode & 0o077 == 0
        assert (tmp_path / f"n{i}" / "chain.db").exists()
