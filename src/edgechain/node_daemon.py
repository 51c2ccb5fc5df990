"""The node process: a :class:`~edgechain.node.Node` with its HTTP API around it.

``api/`` sits above the node (the node never imports it), so this is where the two meet:
the API server binds first (answering 503 until the node runs), the node starts, and
then the ready file is written with every port, the API's included. ``run_node`` is
the entry point ``edgechain node`` calls.

One process per data directory: ``run_node`` holds its lock for the process's life
(``node/data_dir_lock.py``); a second one exits at once with the holder's pid.

A full disk (ARCHITECTURE.md, "Real node"): when the block store cannot store a block,
the node stops cleanly and the process exits with :data:`EXIT_DISK_FULL` (75, BSD's
``EX_TEMPFAIL``: try again later), or :data:`EXIT_STORE_FAILED` (74, ``EX_IOERR``) for
any other failed store write. Its supervisor restarts it once there is room; it
replays its store and syncs what it missed from its peers.

Another process signing as this node (a copied data directory,
``node/identity_clash.py``): the node stops its apps and exits with
:data:`EXIT_IDENTITY_CLASH` (78, ``EX_CONFIG``), and refuses to start again until the
operator deletes the file it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from edgechain.api.auth import API_FILE, load_or_create_token
from edgechain.api.routes import NodeRoutes
from edgechain.api.server import READ_TIMEOUT_S, HttpServer
from edgechain.errors import StoreCorruptError, StoreFullError
from edgechain.network.transport import join_address, split_address
from edgechain.node import Node, NodeConfig
from edgechain.node.config import WILDCARD_HOSTS
from edgechain.node.data_dir_lock import lock_data_dir
from edgechain.node.identity_clash import EXIT_IDENTITY_CLASH, check_no_clash
from edgechain.runtime.durable_files import write_json_atomically
from edgechain.telemetry import logs

log = logging.getLogger("edgechain.node")

EXIT_DISK_FULL = 75
"""The node stopped because its data directory's file system is full."""
EXIT_STORE_FAILED = 74
"""The node stopped because its block store failed otherwise: a write refused, or the
file damaged (``errors.StoreCorruptError``)."""


class NodeService:
    """One node and its API server, run together by :meth:`run`."""

    def __init__(self, config: NodeConfig, *, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.config = config
        self.node = Node(config)
        self.token = load_or_create_token(config.data_dir)
        self.routes = NodeRoutes(self.node, self.token)
        host, port = split_address(config.http)
        self.api = HttpServer(host, port, self.routes.handle, read_timeout_s=read_timeout_s)

    @property
    def http_port(self) -> int:
        return self.api.port

    async def run(self, stop: asyncio.Event) -> None:
        await self.api.start()
        logs.info(log, "api listening", host=self.api.host, http_port=self.api.port)
        node_task = asyncio.ensure_future(self.node.run(stop))
        try:
            started = asyncio.ensure_future(self.node.started.wait())
            await asyncio.wait({node_task, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if self.node.started.is_set():
                self._write_ready_file()
                self._write_api_file()
            await node_task
        finally:
            if not node_task.done():
                node_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await node_task
            await self.api.close()

    def _write_api_file(self) -> None:
        """``<data_dir>/api.json``: where local tools reach this node's API
        (``edgechain node leave --data-dir``), beside the token they need (api.token)."""
        host = self.api.host if self.api.host not in WILDCARD_HOSTS else "127.0.0.1"
        url = f"http://{join_address(host, self.api.port)}"
        try:
            write_json_atomically(self.config.data_dir / API_FILE, {"url": url})
        except OSError as exc:
            logs.error(log, "cannot write the API file", error=str(exc))

    def _write_ready_file(self) -> None:
        path = self.config.ready_file
        if path is None:
            return
        try:
            write_json_atomically(path, {**self.node.get_identity(), "http_port": self.api.port})
        except OSError as exc:  # a full disk: the node runs, whoever waits for it times out
            logs.error(log, "cannot write the ready file", error=str(exc))


def on_sigterm(node: Node | None, stop: asyncio.Event) -> None:
    """Stop, or with ``--leave-on-sigterm`` leave first (a Kubernetes pod's or a Swarm
    task's shutdown drains the node); a second SIGTERM during a leave stops at once.
    ``node`` None: still being built, nothing to leave yet."""
    if node is not None and node.config.leave_on_sigterm and node.leaving.started_ms is None:
        logs.info(log, "SIGTERM: leaving the network first (send another to stop now)")
        node.leave()
    else:
        stop.set()


async def run_node(config: NodeConfig) -> None:
    """Run a node and its API until SIGTERM or SIGINT; ``SystemExit`` with
    :data:`EXIT_DISK_FULL` or :data:`EXIT_STORE_FAILED` when its store failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before the node is built, as before leaving existed: a signal during start-up
    # stops the node cleanly once it runs.
    built: list[Node] = []
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, lambda: on_sigterm(next(iter(built), None), stop))
    # Before anything in the data directory is read or touched (node/data_dir_lock.py).
    lock = lock_data_dir(config.data_dir)
    try:
        check_no_clash(config.data_dir)
        await _run_service(config, stop, built)
    finally:
        lock.release()


async def _run_service(config: NodeConfig, stop: asyncio.Event, built: list[Node]) -> None:
    try:
        service = NodeService(config)
    except StoreFullError as exc:
        logs.error(log, "disk full: cannot open the block store", error=str(exc))
        raise SystemExit(EXIT_DISK_FULL) from None
    built.append(service.node)
    await service.run(stop)
    if service.node.identity_clash is not None:
        raise SystemExit(EXIT_IDENTITY_CLASH)
    failure = service.node.store_failure
    if failure is not None:
        code = EXIT_DISK_FULL if isinstance(failure, StoreFullError) else EXIT_STORE_FAILED
        logs.error(
            log,
            "node stopped: its block store is damaged"
            if isinstance(failure, StoreCorruptError)
            else "node stopped on a store failure: restart it once the disk has room",
            exit_code=code,
            error=str(failure),
        )
        raise SystemExit(code)
