"""asyncio transport: UDP datagrams for small messages, length-prefixed TCP frames for
blocks, sync and bulk data, both on one port number.

The only I/O of the network layer. Everything received is handed up as
``(bytes, transport, source address)``; decoding, verification and routing happen in
``node.py`` with the pure codec, gossip and DHT objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from edgechain.errors import BindError, DecodeError
from edgechain.wire.framing import FrameDecoder, encode_frame
from edgechain.wire.limits import MAX_DATAGRAM_BYTES
from edgechain.wire.message_kinds import Transport

log = logging.getLogger(__name__)

Receiver = Callable[[bytes, Transport, str], None]
"""Called with each datagram or frame, how it came, and ``host:port`` of the sender
(for TCP the peer's ephemeral port: only a hint)."""

CONNECT_TIMEOUT_S = 10.0
"""How long opening a connection may take, as the loop sees it. The kernel completes a
connect to a listening peer at once, but the timer runs on the loop: a loop busy past
the timeout (a block's validation, a sync answer to check, a host of 100 nodes on 2
cores) found the timeout expired before it saw the connection, and dropped the frame.
At 2 s a 100-node testnet lost sync answers and blocks this way (RTT there is 1-4 s:
loops are that late); a late joiner waited 100 s for the genesis that three seeds
were asked for every 8 s (session 26). Not much longer either: frames to an
unreachable peer wait behind the attempt (``_get_connection`` holds its lock)."""
USER_TIMEOUT_MS = 10_000
"""``TCP_USER_TIMEOUT`` of every connection we open: data unacknowledged this long
closes it, and the next frame opens a fresh one. Without it a connection that lived
through a partition keeps its frames queued behind the kernel's exponential
retransmission backoff (up to minutes) after the network heals: the chaos harness
saw a healed minority hear no block of the majority for as long as it watched. With
it, a shorter cut costs at most the backoff reached by then (about 5 s after 10 s).
Not shorter: the timeout also ends a connection whose receiver's window stays shut
(a node starved of CPU not reading a large sync response), which must survive
ordinary overload."""
MAX_CONNECTIONS = 512
MAX_WRITE_BUFFER = 4 * 1024 * 1024
"""Beyond this much unsent data to one peer, frames to it are dropped (it is too slow).
A sync answer of ``sync_limit`` blocks is 1-3 MB; 32 MB per peer let a node serving a
slow, catching-up peer from each of 20 connections grow past a gigabyte."""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def set_user_timeout(writer: asyncio.StreamWriter) -> None:
    """Bound how long sent data may stay unacknowledged (Linux; elsewhere a no-op)."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, USER_TIMEOUT_MS)


UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of datagrams the kernel holds for us while the loop is busy (capped by
``net.core.rmem_max``). At the default 208 KiB, a node of a 100-node testnet on two
cores, its loop late by seconds, lost most of what arrived: one ended the run having
received 153 datagrams and sent 673, its DHT table empty; the host counted 253,204
``RcvbufErrors``. Kernel memory, used only while datagrams wait: not in the RSS."""


def set_receive_buffer(sock: socket.socket | None) -> None:
    """Ask for ``UDP_RECEIVE_BUFFER``: beyond ``rmem_max`` where allowed (root's
    ``SO_RCVBUFFORCE``), otherwise the kernel grants what ``rmem_max`` allows."""
    if sock is None:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    for option in (force, socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
            return
        except OSError:
            continue  # not permitted: the plain request, capped by rmem_max


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) > MAX_DATAGRAM_BYTES:
            return
        self.receiver(data, Transport.DATAGRAM, join_address(str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


@dataclass
class TransportStats:
    datagrams_in: int = 0
    datagrams_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_failures: int = 0
    bad_frames: int = 0


class NetworkTransport:
    """One node's sockets. ``start`` binds; ``send`` picks UDP or TCP as told."""

    def __init__(self, host: str, port: int, receiver: Receiver) -> None:
        self.host = host
        self.port = port
        self.receiver = receiver
        self.stats = TransportStats()
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[str, asyncio.StreamWriter] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind TCP first (port 0 picks a free one), then UDP on the same number."""
        asked = self.port
        try:
            self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._on_datagram), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            if self._server is not None:
                self._server.close()
                self._server = None
            raise BindError("the peers (--listen)", self.host, asked or self.port, exc) from exc
        set_receive_buffer(self._udp.get_extra_info("socket"))

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()
        self._connections.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    # --- receiving -----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, transport: Transport, source: str) -> None:
        self.stats.datagrams_in += 1
        self.stats.bytes_in += len(data)
        self.receiver(data, transport, source)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        source = join_address(str(peer[0]), int(peer[1])) if peer else "unknown:0"
        decoder = FrameDecoder()
        try:
            while True:
                chunk = await reader.read(256 * 1024)
                if not chunk:
                    break
                try:
                    frames = decoder.feed(chunk)
                except DecodeError:
                    # A peer that breaks framing loses the connection, nothing else.
                    self.stats.bad_frames += 1
                    break
                for frame in frames:
                    self.stats.frames_in += 1
                    self.stats.bytes_in += len(frame)
                    self.receiver(frame, Transport.STREAM, source)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            # The node is stopping (asyncio.run cancels what is left). Ended quietly:
            # Python 3.11's StreamReaderProtocol would log a cancelled handler as an
            # "Exception in callback" on every stop.
            pass
        finally:
            writer.close()

    # --- sending -------------------------------------------------------------------------

    def send(self, address: str, data: bytes, transport: Transport) -> None:
        """Fire and forget: UDP at once, TCP through a (possibly new) connection."""
        try:
            host, port = split_address(address)
        except ValueError:
            self.stats.send_failures += 1
            return
        if transport is Transport.DATAGRAM and self._udp is not None:
            self._udp.sendto(data, (host, port))
            self.stats.datagrams_out += 1
            self.stats.bytes_out += len(data)
            return
        writer = self._connections.get(address)
        if writer is not None and not writer.is_closing() and self._write_frame(writer, data):
            return
        # No usable connection yet: a task opens one (and retries once). An open one is
        # written at once instead: a task per frame was a large part of a node's
        # event-loop overhead, and the write buffer bound replaces ``drain``.
        task = asyncio.ensure_future(self._send_frame(address, host, port, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_frame(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Queue ``data`` on an open connection; False if it failed (the caller retries
        through a new connection). A peer too slow to take it loses the frame."""
        if writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.stats.send_failures += 1
            return True
        try:
            writer.write(encode_frame(data))
        except (ConnectionError, OSError, RuntimeError):
            return False
        self.stats.frames_out += 1
        self.stats.bytes_out += len(data)
        return True

    async def _send_frame(self, address: str, host: str, port: int, data: bytes) -> None:
        frame = encode_frame(data)
        for attempt in range(2):
            writer = await self._get_connection(address, host, port)
            if writer is None:
                break
            if writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self.stats.send_failures += 1
                return
            try:
                writer.write(frame)
                await writer.drain()
            except (ConnectionError, OSError):
                self._drop(address)
                if attempt == 0:
                    continue
                break
            self.stats.frames_out += 1
            self.stats.bytes_out += len(data)
            return
        self.stats.send_failures += 1

    async def _get_connection(
        self, address: str, host: str, port: int
    ) -> asyncio.StreamWriter | None:
        writer = self._connections.get(address)
        if writer is not None and not writer.is_closing():
            return writer
        lock = self._connecting.setdefault(address, asyncio.Lock())
        async with lock:
            existing = self._connections.get(address)
            if existing is not None and not existing.is_closing():
                return existing
            try:
                _, opened = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                return None
            set_user_timeout(opened)
            if len(self._connections) >= MAX_CONNECTIONS:
                oldest = next(iter(self._connections))
                self._drop(oldest)
            self._connections[address] = opened
            return opened

    def _drop(self, address: str) -> None:
        writer = self._connections.pop(address, None)
        if writer is not None:
            writer.close()
