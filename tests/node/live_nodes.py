"""Loopback node configurations for the live tests (``tests/node``, ``tests/api``).

``count`` nodes in ``tmp/n0`` .. ``tmp/n{count-1}``, each with its node key created;
node 0 creates the chain on a port chosen here and the others join through it, each
with the admin's ticket. 1 s slots (the genesis 1 s before its first) and a fixed VDF
difficulty, so no test measures this machine. ``tests/api`` imports it as
``node.live_nodes`` (pytest puts ``tests/`` on the path for its test packages).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgechain.chain.assembly import make_ticket
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.node import NodeConfig
from edgechain.types import SecretKey


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_configs(
    tmp: Path, count: int, *, admin: SecretKey, chain_id: str, committee: int
) -> list[NodeConfig]:
    for i in range(count):
        (tmp / f"n{i}").mkdir()
    keys = [create_keystore(tmp / f"n{i}" / "node.key") for i in range(count)]
    pks = [bls.sk_to_pk(sk) for sk in keys]
    bootstrap_port = _free_port()
    return [
        NodeConfig(
            data_dir=tmp / f"n{i}",
            listen=f"127.0.0.1:{bootstrap_port if i == 0 else 0}",
            http="127.0.0.1:0",
            seeds=() if i == 0 else (f"127.0.0.1:{bootstrap_port}",),
            genesis_key=b"" if i == 0 else pks[0],
            chain_id=chain_id,
            admin_key=bls.sk_to_pk(admin),
            ticket=make_ticket(admin, chain_id, pk),
            genesis=i == 0,
            committee=committee,
            slot_duration_ms=1_000,
            genesis_delay_ms=1_000,  # one slot, as a testnet's (lab/testnet_config.py)
            initial_difficulty=5_000,
        )
        for i, pk in enumerate(pks)
    ]


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Polls ``predicate`` every 0.2 s; False if it never held within ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False
