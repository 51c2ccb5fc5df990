"""Each app's network traffic, in bytes per second (paper §3.2's resource vector; issue
15, item 1). Never a share of the host's counters.

* **Container apps** have a network namespace of their own with its own veth, so
  ``/proc/<leader pid>/net/dev`` lists the container's interfaces: their receive and
  transmit byte counters (loopback left out) are the app's real traffic
  (:func:`read_netns_bytes`).
* **Process apps** share the node's network namespace, whose interface counters are the
  host's. Their traffic is counted from their TCP sockets: the kernel's per-socket
  ``tcp_info`` (``tcpi_bytes_acked``, bytes sent and acknowledged, plus
  ``tcpi_bytes_received``), read for every TCP socket in one netlink ``sock_diag`` dump
  (:func:`read_tcp_socket_bytes`) and attributed to the app by the socket inodes its
  processes hold (``/proc/PID/fd``, :func:`get_socket_inodes`). Limits, stated: TCP
  only (UDP and raw sockets are not counted), and a socket's bytes between the last
  sample and its close are missed (short connections count only while they were open at
  a sample).

The netlink request is built by hand (``struct``, about forty lines): pyroute2 would
cost the node's memory budget more than the rest of this module.

:class:`TrafficMeter` turns counters into a rate per app.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2
ALL_TCP_STATES = 0xFFFFFFFF
NLMSG_HEADER = struct.Struct("=IHHII")
INET_DIAG_REQ_V2 = struct.Struct("=BBBBI48s")
INET_DIAG_MSG_SIZE = 72
"""family, state, timer, retrans (4 bytes), the 48-byte socket id, expires, rqueue,
wqueue, uid, inode (5 x 4 bytes)."""
INODE_OFFSET = 68
RTATTR = struct.Struct("=HH")
TCP_INFO_BYTES = struct.Struct("=QQ")
TCP_INFO_BYTES_OFFSET = 120
"""``struct tcp_info``: ``tcpi_bytes_acked`` then ``tcpi_bytes_received`` (Linux 4.1+)."""


class TrafficError(OSError):
    """The kernel's socket table could not be read (no netlink, an odd reply)."""


def read_tcp_socket_bytes() -> dict[int, int]:
    """Socket inode → bytes sent (acknowledged) plus received, for every TCP socket of
    the caller's network namespace, IPv4 and IPv6."""
    found: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            request = INET_DIAG_REQ_V2.pack(
                family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, ALL_TCP_STATES, b""
            )
            header = NLMSG_HEADER.pack(
                NLMSG_HEADER.size + len(request),
                SOCK_DIAG_BY_FAMILY,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                0,
            )
            sock.sendall(header + request)
            _read_dump(sock, found)
    return found


def _read_dump(sock: socket.socket, found: dict[int, int]) -> None:
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + NLMSG_HEADER.size <= len(data):
            length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
            if length < NLMSG_HEADER.size:
                raise TrafficError(f"a netlink message of {length} bytes")
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HEADER.size)
                raise TrafficError(-code, f"sock_diag: {os.strerror(-code)}")
            body = offset + NLMSG_HEADER.size
            if kind == SOCK_DIAG_BY_FAMILY and length >= NLMSG_HEADER.size + INET_DIAG_MSG_SIZE:
                (inode,) = struct.unpack_from("=I", data, body + INODE_OFFSET)
                sent_received = _read_tcp_info(data, body + INET_DIAG_MSG_SIZE, offset + length)
                if inode and sent_received is not None:
                    found[inode] = sent_received
            offset += (length + 3) & ~3


def _read_tcp_info(data: bytes, start: int, end: int) -> int | None:
    """The attributes after an ``inet_diag_msg``: the INET_DIAG_INFO one's byte counts."""
    while start + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, start)
        if length < RTATTR.size:
            return None
        payload = start + RTATTR.size
        if kind == INET_DIAG_INFO and length - RTATTR.size >= TCP_INFO_BYTES_OFFSET + 16:
            acked, received = TCP_INFO_BYTES.unpack_from(data, payload + TCP_INFO_BYTES_OFFSET)
            return int(acked + received)
        start += (length + 3) & ~3
    return None


def get_socket_inodes(pids: Iterable[int]) -> set[int]:
    """The socket inodes the processes ``pids`` hold open (``/proc/PID/fd``)."""
    inodes: set[int] = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to read
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def read_netns_bytes(pid: int) -> int | None:
    """Bytes received plus sent on the interfaces of ``pid``'s network namespace,
    loopback left out; None if unreadable (the process is gone)."""
    try:
        with open(f"/proc/{pid}/net/dev") as file:
            lines = file.read().splitlines()[2:]
    except OSError:
        return None
    total = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        total += int(fields[0]) + int(fields[8])  # receive bytes, transmit bytes
    return total


def is_own_netns(pid: int) -> bool:
    """Does ``pid`` live in a network namespace other than ours (a container's)?"""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


@dataclass
class TrafficMeter:
    """Per app, counters at the previous sample → bytes per second since then. A
    counter that appears counts in full (a new socket's bytes are all since it opened);
    one that went back (another container, a reused inode) counts from zero."""

    _previous: dict[bytes, tuple[float, Mapping[int, int]]] = field(default_factory=dict)

    def get_rate(self, app: bytes, now: float, counters: Mapping[int, int]) -> int:
        """Bytes per second since the previous call for ``app`` (0 at the first)."""
        previous = self._previous.get(app)
        self._previous[app] = (now, dict(counters))
        if previous is None or now <= previous[0]:
            return 0
        then, before = previous
        moved = sum(
            value - before.get(key, 0) if value >= before.get(key, 0) else value
            for key, value in counters.items()
        )
        return int(moved / (now - then))

    def forget(self, app: bytes) -> None:
        self._previous.pop(app, None)
