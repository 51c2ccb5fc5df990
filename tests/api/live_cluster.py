"""Live in-process nodes for the API tests: ``NodeService`` objects (a node with its API
server, what ``edgechain node`` runs) on an event loop thread of their own, loopback
port 0, 1 s slots, committee of one, each with an operator key of its own (not granted).

:func:`run_cluster` starts them, waits until every node is a validator producing
blocks, and stops them all, whatever happened meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.live_nodes import make_configs

from edgechain.api.auth import TOKEN_FILE
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.node import NodeConfig
from edgechain.node_daemon import NodeService

from .http_client import call
from .loop_thread import LoopThread

CHAIN_ID = "apilive"
ADMIN_SK = bls.keygen(b"\x09" * 32)


@dataclass
class Cluster:
    services: list[NodeService]
    ports: list[int]
    tokens: list[str]
    operators: list[bytes]
    """Public keys of each node's operator key."""

    def get(self, index: int, target: str) -> Any:
        reply = call(self.ports[index], "GET", target)
        assert reply.status == 200, (target, reply)
        return reply.body


CAPACITIES = (None, 0.5)


def _configs(tmp: Path, count: int) -> list[NodeConfig]:
    """The live nodes' configurations, each node with an operator key of its own."""
    configs = make_configs(tmp, count, admin=ADMIN_SK, chain_id=CHAIN_ID, committee=1)
    for i in range(count):
        create_keystore(tmp / f"operator{i}.key")
    # Node 1 declares a CPU capacity (--cpu-capacity), node 0 reports host shares.
    return [
        dataclasses.replace(
            config, operator_key=tmp / f"operator{i}.key", cpu_capacity=CAPACITIES[i]
        )
        for i, config in enumerate(configs)
    ]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _make_services(configs: list[NodeConfig]) -> list[NodeService]:
    # On the loop's thread: a node's SQLite store belongs to the thread that opened it.
    return [NodeService(c) for c in configs]


@contextmanager
def run_cluster(count: int = 2) -> Iterator[Cluster]:
    """``count`` (at most 2) live nodes producing blocks; stopped on exit."""
    # As root, apps run as an unprivileged user, who must reach the node's data dir:
    # pytest's temporary directories are 0700, this one is 0711 (searchable, not listable).
    tmp = Path(tempfile.mkdtemp(prefix="apilive-", dir="/tmp"))
    tmp.chmod(0o711)
    configs = _configs(tmp, count)
    loop = LoopThread()
    stop = asyncio.Event()
    services = loop.run(_make_services(configs))
    runs = [asyncio.run_coroutine_threadsafe(services[0].run(stop), loop.loop)]

    def started(count: int) -> bool:
        for run in runs:
            if run.done():
                run.result()  # raises what stopped the node
                raise AssertionError("a node stopped")
        return all(s.node.started.is_set() for s in services[:count])

    try:
        wait_for(lambda: started(1), 30, "the bootstrap node")
        runs += [asyncio.run_coroutine_threadsafe(s.run(stop), loop.loop) for s in services[1:]]
        wait_for(lambda: started(len(services)), 30, "the nodes")
        ports = [s.http_port for s in services]
        tokens = [(c.data_dir / TOKEN_FILE).read_text().strip() for c in configs]
        operators = [bytes.fromhex(call(p, "GET", "/status").body["operator_key"]) for p in ports]
        result = Cluster(services, ports, tokens, operators)

        def producing() -> bool:
            statuses = [call(p, "GET", "/status").body for p in ports]
            return all(s["validators"] == count and (s["head_slot"] or 0) >= 2 for s in statuses)

        wait_for(producing, 60, "every node a validator, producing blocks")
        yield result
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        for run in runs:
            run.result(30)
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
