"""One Linux network namespace per testnet node, joined by a private bridge.

Layout for ``prefix="ec"``, ``subnet_index=k``::

    root namespace:  bridge ecbr0, address 10.213.k.1/24 (the launcher reaches the nodes here)
    namespace ec-i:  eth0 = 10.213.k.(i+2)/24, veth peer ecv<i> enslaved to ecbr0; lo up

The namespaces get no default route, so a node can only reach addresses on the bridge:
traffic never leaves for other private networks. Everything is created and removed
with ``ip`` (iproute2) and needs root; :func:`get_unavailable_reason` says why not when
it cannot work. A lock file per prefix keeps two launchers from sharing one layout; a
launcher holding the lock may remove leftovers of a run that died without cleaning up.

``tc netem`` does not work on the development kernel, so no latency is injected here.

Linux keeps one IPv4 neighbour (ARP) table for all namespaces, and its garbage-collection
limits count every namespace's entries together: with the default ``gc_thresh3`` of 1024
a full mesh of 50 namespaces (50 x 50 entries) overflows it, ARP fails for the unlucky
ones ("neighbor table overflow!" in the kernel log) and some nodes hear nothing. The
launcher raises the limits for the run (:func:`compute_neighbour_limits`) and puts the
old values back afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from edgechain.errors import LocalError

LAB_NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
"""Every address the lab assigns lies here (a /24 per testnet)."""

MAX_NODES = 253
"""A /24 minus network, broadcast and the bridge address."""

MAX_IFNAME = 15
"""Linux IFNAMSIZ - 1."""

LOCK_DIR = Path("/run/lock")
NEIGH_SYSCTL_DIR = Path("/proc/sys/net/ipv4/neigh/default")
HOST_NEIGHBOUR_ROOM = 512
"""ARP entries left for the host's own use besides the testnet's."""
COMMAND_TIMEOUT_S = 60.0


class NetnsError(LocalError):
    """Network namespaces cannot be set up (not root, no iproute2, a name is taken...)."""


@dataclass(frozen=True)
class NetnsPlan:
    """Names and addresses of one testnet's namespaces (pure data, nothing created)."""

    prefix: str
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: str
    namespaces: tuple[str, ...]
    host_interfaces: tuple[str, ...]
    addresses: tuple[str, ...]

    @property
    def nodes(self) -> int:
        return len(self.namespaces)


def plan_netns(nodes: int, subnet_index: int = 0, prefix: str = "ec") -> NetnsPlan:
    """The layout for ``nodes`` namespaces in ``10.213.<subnet_index>.0/24``."""
    if not 1 <= nodes <= MAX_NODES:
        raise NetnsError(f"--netns supports 1..{MAX_NODES} nodes (one /24), not {nodes}")
    if not 0 <= subnet_index <= 255:
        raise NetnsError(f"subnet index must be 0..255, not {subnet_index}")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,5}", prefix):
        raise NetnsError(f"namespace prefix must be 1-6 lower-case letters/digits: {prefix!r}")
    subnet = list(LAB_NETWORK.subnets(new_prefix=24))[subnet_index]
    hosts = list(subnet.hosts())
    host_interfaces = tuple(f"{prefix}v{i}" for i in range(nodes))
    assert all(len(name) <= MAX_IFNAME for name in host_interfaces)
    return NetnsPlan(
        prefix=prefix,
        bridge=f"{prefix}br0",
        subnet=subnet,
        gateway=str(hosts[0]),
        namespaces=tuple(f"{prefix}-{i}" for i in range(nodes)),
        host_interfaces=host_interfaces,
        addresses=tuple(str(hosts[i + 1]) for i in range(nodes)),
    )


@dataclass(frozen=True)
class NeighbourLimits:
    """The kernel's ARP-table garbage-collection thresholds (``gc_thresh1..3``)."""

    soft_floor: int
    soft: int
    hard: int


def compute_neighbour_limits(nodes: int, current: NeighbourLimits) -> NeighbourLimits:
    """Limits under which ``nodes`` fully meshed namespaces never overflow the table.

    Every namespace learns its ``nodes - 1`` peers and the bridge address, the root
    namespace learns every node: about ``nodes * (nodes + 1)`` entries, on top of what the
    host already holds (the kernel's default soft limit, 512, is left for that). Never
    lowers a limit.
    """
    needed = nodes * (nodes + 1)
    soft = max(current.soft, needed + HOST_NEIGHBOUR_ROOM)
    return NeighbourLimits(
        soft_floor=current.soft_floor,
        soft=soft,
        hard=max(current.hard, 2 * soft),
    )


def read_neighbour_limits(directory: Path = NEIGH_SYSCTL_DIR) -> NeighbourLimits:
    values = [int((directory / f"gc_thresh{i}").read_text()) for i in (1, 2, 3)]
    return NeighbourLimits(*values)


def write_neighbour_limits(limits: NeighbourLimits, directory: Path = NEIGH_SYSCTL_DIR) -> None:
    # The kernel checks no order between the three; each takes effect on its own.
    for name, value in (("gc_thresh3", limits.hard), ("gc_thresh2", limits.soft)):
        (directory / name).write_text(f"{value}\n")
    (directory / "gc_thresh1").write_text(f"{limits.soft_floor}\n")


def build_setup_batch(plan: NetnsPlan) -> list[str]:
    """``ip -batch`` lines (root namespace): the bridge, the namespaces, the veths."""
    lines = [
        f"link add {plan.bridge} type bridge",
        f"addr add {plan.gateway}/{plan.subnet.prefixlen} dev {plan.bridge}",
        f"link set {plan.bridge} up",
    ]
    for namespace, veth in zip(plan.namespaces, plan.host_interfaces, strict=True):
        lines += [
            f"netns add {namespace}",
            # The peer is created directly inside the namespace, already named eth0.
            f"link add {veth} type veth peer name eth0 netns {namespace}",
            f"link set {veth} master {plan.bridge} up",
        ]
    return lines


def build_namespace_batch(plan: NetnsPlan, index: int) -> list[str]:
    """``ip -n <namespace> -batch`` lines: address eth0, bring it and lo up.

    A separate batch per namespace because ``-n`` cannot appear inside batch lines.
    """
    return [
        f"addr add {plan.addresses[index]}/{plan.subnet.prefixlen} dev eth0",
        "link set eth0 up",
        "link set lo up",
    ]


def build_exec_prefix(plan: NetnsPlan, index: int) -> list[str]:
    """The argv prefix that runs a command inside node ``index``'s namespace."""
    return ["ip", "netns", "exec", plan.namespaces[index]]


def get_unavailable_reason() -> str | None:
    """Why ``--netns`` cannot work here, or None when it can."""
    if os.geteuid() != 0:
        return "--netns needs root (it creates network namespaces, a bridge and veth pairs)"
    if shutil.which("ip") is None:
        return "--netns needs the ip command (iproute2), which is not installed"
    if not Path("/var/run/netns").exists() and not os.access("/var/run", os.W_OK):
        return "--netns needs a writable /var/run for ip netns"
    return None


def run_ip(args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["ip", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"ip {' '.join(args)}: {exc}") from None
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of the existing network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in run_ip(["netns", "list"]).splitlines() if line.strip()]


def list_links() -> list[str]:
    """Names of the network interfaces of the root namespace."""
    return sorted(os.listdir("/sys/class/net"))


@dataclass(frozen=True)
class Leftovers:
    namespaces: tuple[str, ...]
    links: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.links)


def find_leftovers(plan: NetnsPlan, namespaces: Sequence[str], links: Sequence[str]) -> Leftovers:
    """Objects named with ``plan``'s prefix that exist (pure: inputs are the listings)."""
    prefix = re.escape(plan.prefix)
    namespace_name = re.compile(rf"{prefix}-\d+")
    link_name = re.compile(rf"{prefix}br0|{prefix}v\d+")
    return Leftovers(
        namespaces=tuple(sorted(n for n in namespaces if namespace_name.fullmatch(n))),
        # Host veth ends vanish with their namespace; list them anyway for half-made ones.
        links=tuple(sorted(n for n in links if link_name.fullmatch(n))),
    )


class NetnsNetwork:
    """Creates the plan's namespaces on ``create`` and removes them on ``destroy``.

    Use as a context manager; ``destroy`` is idempotent and also kills any process
    still inside one of *these* namespaces (they can only be the launcher's nodes).
    """

    def __init__(self, plan: NetnsPlan) -> None:
        self.plan = plan
        self._lock: IO[bytes] | None = None
        self._created = False
        self._saved_limits: NeighbourLimits | None = None
        self._raised_limits: NeighbourLimits | None = None

    def __enter__(self) -> NetnsNetwork:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def create(self) -> None:
        reason = get_unavailable_reason()
        if reason is not None:
            raise NetnsError(reason)
        self._acquire_lock()
        try:
            self._remove_leftovers()
            self._raise_neighbour_limits()
            self._created = True
            self._run_batch(build_setup_batch(self.plan))
            for index, namespace in enumerate(self.plan.namespaces):
                self._run_batch(build_namespace_batch(self.plan, index), namespace=namespace)
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        if self._created:
            self._created = False
            self._remove_leftovers()
        self._restore_neighbour_limits()
        self._release_lock()

    def exec_prefix(self, index: int) -> list[str]:
        return build_exec_prefix(self.plan, index)

    def _raise_neighbour_limits(self) -> None:
        try:
            current = read_neighbour_limits()
            wanted = compute_neighbour_limits(self.plan.nodes, current)
            if wanted != current:
                write_neighbour_limits(wanted)
                self._saved_limits, self._raised_limits = current, wanted
        except (OSError, ValueError) as exc:
            raise NetnsError(
                f"cannot raise the ARP table limits in {NEIGH_SYSCTL_DIR} for "
                f"{self.plan.nodes} namespaces: {exc}"
            ) from None

    def _restore_neighbour_limits(self) -> None:
        saved, raised = self._saved_limits, self._raised_limits
        self._saved_limits = self._raised_limits = None
        if saved is None:
            return
        # Someone else (another launcher) changed them meanwhile: theirs now, leave them.
        with contextlib.suppress(OSError, ValueError):
            if read_neighbour_limits() == raised:
                write_neighbour_limits(saved)

    def _acquire_lock(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        path = LOCK_DIR / f"edgechain-netns-{self.plan.prefix}.lock"
        lock = path.open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NetnsError(
                f"another testnet holds {path}: namespaces {self.plan.prefix}-* are in use"
            ) from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def _remove_leftovers(self) -> None:
        """Remove this prefix's namespaces and links (ours: we hold the prefix lock)."""
        leftovers = find_leftovers(self.plan, list_namespaces(), list_links())
        for namespace in leftovers.namespaces:
            self._kill_inside(namespace)
        lines = [f"netns del {n}" for n in leftovers.namespaces]
        lines += [f"link del {n}" for n in leftovers.links]
        if lines:
            # -force: keep deleting the rest when one object is already gone (a veth
            # end disappears with its namespace).
            self._run_batch(lines, force=True)

    @staticmethod
    def _kill_inside(namespace: str) -> None:
        """SIGKILL processes left in one of our namespaces (normally none)."""
        output = run_ip(["netns", "pids", namespace], check=False)
        for token in output.split():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(token), 9)

    @staticmethod
    def _run_batch(
        lines: Sequence[str], *, force: bool = False, namespace: str | None = None
    ) -> None:
        options = (["-force"] if force else []) + (["-n", namespace] if namespace else [])
        with tempfile.NamedTemporaryFile("w", prefix="edgechain-ip-", suffix=".batch") as batch:
            batch.write("\n".join(lines) + "\n")
            batch.flush()
            run_ip([*options, "-batch", batch.name], check=not force)


__all__ = [
    "LAB_NETWORK",
    "MAX_NODES",
    "NetnsError",
    "NetnsNetwork",
    "NetnsPlan",
    "build_exec_prefix",
    "build_namespace_batch",
    "build_setup_batch",
    "Leftovers",
    "NeighbourLimits",
    "compute_neighbour_limits",
    "find_leftovers",
    "get_unavailable_reason",
    "plan_netns",
]
