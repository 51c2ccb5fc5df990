"""The node processes of a local testnet: command lines, start, kill, stop, reap.

Each node runs in its own process group (``start_new_session``), which is signalled as
a whole; where ``setpriv`` exists it also gets a parent-death signal, so a launcher
killed with SIGKILL takes its nodes with it. :class:`Cluster` stops everything on
``stop_all`` (SIGTERM, SIGKILL after a grace), which it also registers with ``atexit``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edgechain.crypto.hashing import compute_node_id
from edgechain.lab.summary_records import Interval, RecordError
from edgechain.node.config import HOSTILE_ENV
from edgechain.types import PublicKey

HTTP_TIMEOUT_S = 3.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class NodePorts:
    listen: int
    """UDP and TCP (same number); 0: the node picks one."""
    http: int


def allocate_ports(nodes: int, base_port: int | None) -> list[NodePorts]:
    """Node ``i`` gets ``base+2i`` (UDP/TCP) and ``base+2i+1`` (HTTP); no base: port 0."""
    if base_port is None:
        return [NodePorts(0, 0) for _ in range(nodes)]
    return [NodePorts(base_port + 2 * i, base_port + 2 * i + 1) for i in range(nodes)]


@dataclass(frozen=True)
class NodeSpec:
    """Everything needed to start node ``index`` (and to restart it identically)."""

    index: int
    data_dir: Path
    public_key: PublicKey
    ticket: bytes
    host: str
    ports: NodePorts
    exec_prefix: tuple[str, ...] = ()
    """``ip netns exec ec-<i>`` with --netns."""
    container_engine: str | None = None
    """The node's ``--container-engine`` URL (``edgechain testnet --containers``)."""
    hostile: str | None = None
    """``EDGECHAIN_HOSTILE`` for this node (``edgechain testnet --hostile``)."""
    clock_offset_ms: int = 0
    """The node's ``--clock-offset-ms`` (the chaos harness's clock-skew fault)."""

    @property
    def name(self) -> str:
        return get_node_name(self.index)

    @property
    def node_id(self) -> str:
        return compute_node_id(self.public_key).hex()

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "ready.json"


def get_node_name(index: int) -> str:
    return f"node-{index:03d}"


@dataclass(frozen=True)
class Seeds:
    """What a joining node is told: where to find the network, and the genesis key."""

    addresses: tuple[str, ...]
    genesis_key: PublicKey


EXTRA_SEEDS = 2
"""Seeds a joining node gets besides the genesis node (``Cluster.get_seeds_for``)."""


@dataclass(frozen=True)
class NodeReady:
    """The node's ready file: written once it listens."""

    node_id: str
    public_key: str
    udp_port: int
    tcp_port: int
    http_port: int
    pid: int


def parse_ready(data: Any) -> NodeReady:
    try:
        ready = NodeReady(
            node_id=str(data["node_id"]),
            public_key=str(data["public_key"]),
            udp_port=int(data["udp_port"]),
            tcp_port=int(data["tcp_port"]),
            http_port=int(data["http_port"]),
            pid=int(data["pid"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"ready file without the documented members: {exc}") from None
    return ready


@dataclass(frozen=True)
class NodeOptions:
    """What every node of one testnet is started with (besides its own identity)."""

    command: tuple[str, ...]
    chain_id: str
    committee: int
    """Genesis parameters, given to the genesis node only."""
    slot_duration: float
    open_admission: bool = False
    """Nodes join without tickets (the admin key still grants operators)."""
    cpu_capacity: float | None = None
    """Every node's ``--cpu-capacity`` (None: each reports shares of the whole host)."""
    epoch_length: int | None = None
    """Genesis parameters too (None: the node's default)."""
    down_after_slots: int | None = None
    genesis_delay: float | None = None
    """Seconds from the genesis to its first slot (None: the node's default, 3 s)."""
    vdf_fraction: float | None = None
    """Genesis parameter: the share of a slot the producer's VDF takes (None: the
    node's default, 0.25)."""


def build_node_argv(
    spec: NodeSpec,
    options: NodeOptions,
    *,
    admin_key: PublicKey,
    seeds: Seeds | None,
    guard: Sequence[str] = (),
) -> list[str]:
    """The command line of one node; ``seeds=None`` makes it the genesis node.

    Every node gets the admin key (a new chain needs one); with open admission it gets
    ``--open-admission`` instead of its ticket.

    ``guard`` goes first (``setpriv --pdeathsig KILL``): it survives the ``exec`` of
    ``ip netns exec`` and of the node itself, so the node dies with the launcher.
    """
    argv = [
        *guard,
        *spec.exec_prefix,
        *options.command,
        "--data-dir",
        str(spec.data_dir),
        "--listen",
        f"{spec.host}:{spec.ports.listen}",
        "--http",
        f"{spec.host}:{spec.ports.http}",
        "--chain-id",
        options.chain_id,
        "--ready-file",
        str(spec.ready_file),
    ]
    argv += ["--admin-key", bytes(admin_key).hex()]
    if options.open_admission:
        argv.append("--open-admission")
    else:
        argv += ["--ticket", spec.ticket.hex()]
    if options.cpu_capacity is not None:
        argv += ["--cpu-capacity", f"{options.cpu_capacity:g}"]
    if spec.container_engine is not None:
        argv += ["--container-engine", spec.container_engine]
    if spec.clock_offset_ms:
        argv += ["--clock-offset-ms", str(spec.clock_offset_ms)]
    if seeds is None:
        argv += [
            "--genesis",
            "--committee",
            str(options.committee),
            "--slot-duration",
            f"{options.slot_duration:g}",
        ]
        if options.epoch_length is not None:
            argv += ["--epoch-length", str(options.epoch_length)]
        if options.down_after_slots is not None:
            argv += ["--down-after-slots", str(options.down_after_slots)]
        if options.genesis_delay is not None:
            argv += ["--genesis-delay", f"{options.genesis_delay:g}"]
        if options.vdf_fraction is not None:
            argv += ["--vdf-fraction", f"{options.vdf_fraction:g}"]
    else:
        argv += ["--seeds", ",".join(seeds.addresses), "--genesis-key", seeds.genesis_key.hex()]
    return argv


def get_guard_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL`` when available (util-linux), else nothing."""
    return ("setpriv", "--pdeathsig", "KILL") if shutil.which("setpriv") else ()


def build_node_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The nodes' environment: ours minus EDGECHAIN_* (the node reads options from
    those; a testnet node must get exactly the launcher's flags)."""
    env = {k: v for k, v in environ.items() if not k.startswith("EDGECHAIN_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def now_ms() -> int:
    return int(time.time() * 1000)


# --- talking to nodes -----------------------------------------------------------------


class NodeApiError(Exception):
    """A node's HTTP API did not answer as documented."""


def http_get_json(host: str, port: int, path: str, timeout: float = HTTP_TIMEOUT_S) -> Any:
    """GET ``path`` from a node; http.client, not urllib, so no proxy is ever used."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise NodeApiError(f"{host}:{port}{path}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise NodeApiError(f"{host}:{port}{path}: HTTP {response.status}")
    try:
        return json.loads(body)
    except ValueError:
        raise NodeApiError(f"{host}:{port}{path}: not JSON") from None


# --- processes ------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One run of a node process (a restart after a kill is a new incarnation)."""

    popen: subprocess.Popen[bytes]
    start_ms: int
    end_ms: int | None = None
    exit_code: int | None = None
    ended_by: str | None = None
    """"kill" or "stop" when the launcher signalled it; None: it exited on its own."""
    cpu_seconds: float = 0.0
    """Latest sample (a SIGKILLed process cannot be measured any more)."""


class NodeProcess:
    """One node's processes over the run, and what the launcher measured of them."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.incarnations: list[Incarnation] = []
        self.ready: NodeReady | None = None
        self.rss_mb: float | None = None
        self.rss_peak_mb: float = 0.0
        self.sigkilled_at_stop = False

    @property
    def current(self) -> Incarnation | None:
        return self.incarnations[-1] if self.incarnations else None

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.spec.ready_file.unlink(missing_ok=True)
        self.ready = None
        with (
            (self.spec.data_dir / "stdout.log").open("ab") as out,
            (self.spec.data_dir / "stderr.log").open("ab") as err,
        ):
            # start_new_session: the node leads its own process group (signalled as a
            # whole) and does not receive the terminal's Ctrl-C: the launcher stops it.
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.spec.data_dir,
                env=dict(env),
                start_new_session=True,
            )
        self.incarnations.append(Incarnation(popen, now_ms()))

    def is_running(self) -> bool:
        current = self.current
        return current is not None and current.exit_code is None and current.popen.poll() is None

    def poll_ready(self) -> NodeReady | None:
        """The ready file, once the current incarnation has written it."""
        if self.ready is None and self.spec.ready_file.exists():
            with contextlib.suppress(OSError, ValueError, RecordError):
                self.ready = parse_ready(json.loads(self.spec.ready_file.read_text()))
        return self.ready

    def signal(self, signum: int) -> None:
        current = self.current
        if current is None or current.exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(current.popen.pid, signum)

    def reap(self) -> Incarnation | None:
        """Record the exit of the current incarnation; returns it if it just ended."""
        current = self.current
        if current is None or current.exit_code is not None:
            return None
        code = current.popen.poll()
        if code is None:
            return None
        current.exit_code = code
        current.end_ms = now_ms()
        return current

    def sample_resources(self) -> None:
        current = self.current
        if current is None or current.exit_code is not None:
            return
        try:
            process = psutil.Process(current.popen.pid)
            with process.oneshot():
                memory = process.memory_info()
                cpu = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        self.rss_mb = memory.rss / 2**20
        self.rss_peak_mb = max(self.rss_peak_mb, self.rss_mb)
        current.cpu_seconds = cpu.user + cpu.system

    def get_cpu_seconds(self) -> float:
        return sum(i.cpu_seconds for i in self.incarnations)

    def get_runs(self) -> tuple[Interval, ...]:
        return tuple(Interval(i.start_ms, i.end_ms) for i in self.incarnations)

    def get_group_ids(self) -> list[int]:
        return [i.popen.pid for i in self.incarnations]


def find_live_groups(group_ids: Sequence[int]) -> list[int]:
    """Process groups among ``group_ids`` that still have a member."""
    alive = []
    for group in group_ids:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive.append(group)
    return alive


class Cluster:
    """The node processes; ``stop_all`` is idempotent and registered with ``atexit``."""

    def __init__(
        self,
        options: NodeOptions,
        specs: Sequence[NodeSpec],
        admin_key: PublicKey,
        log: Callable[[str], None],
        stop_grace: float = STOP_GRACE_S,
    ) -> None:
        self.options = options
        self.stop_grace = stop_grace
        self.nodes = [NodeProcess(spec) for spec in specs]
        self.admin_key = admin_key
        self.seeds: Seeds | None = None
        self.guard = get_guard_prefix()
        self.env = build_node_env(os.environ)
        self.log = log
        self.stopped = False
        atexit.register(self.stop_all)

    def start(self, index: int) -> None:
        node = self.nodes[index]
        argv = build_node_argv(
            node.spec,
            self.options,
            admin_key=self.admin_key,
            seeds=None if index == 0 else self.get_seeds_for(index),
            guard=self.guard,
        )
        env = self.env
        if node.spec.hostile:
            env = {**env, HOSTILE_ENV: node.spec.hostile}
        node.start(argv, env)
        pid = node.current.popen.pid if node.current else None
        self.log(f"started {node.spec.name} pid {pid}: {shlex.join(argv)}")

    def get_seeds_for(self, index: int) -> Seeds | None:
        """The genesis node's address and up to ``EXTRA_SEEDS`` other running nodes'
        (drawn by ``index``), as an operator lists several seeds: 100 nodes given only
        node 0 kept it, their one seed, too busy to answer them (session 24)."""
        if self.seeds is None:
            return None
        running = [
            f"{n.spec.host}:{ready.udp_port}"
            for n in self.nodes[1:index]
            if n.is_running() and (ready := n.poll_ready()) is not None
        ]
        extra = random.Random(index).sample(running, min(EXTRA_SEEDS, len(running)))
        return dataclasses.replace(self.seeds, addresses=(*self.seeds.addresses, *extra))

    def restart(self, index: int) -> None:
        """Start a killed node again with its data dir and the ports it had."""
        node = self.nodes[index]
        ready = node.poll_ready()  # the killed incarnation's file is still there
        if ready is not None:
            # Same ports: its address is in the validator set and other nodes' tables,
            # and nothing updates it there (a new port makes the node unreachable).
            ports = NodePorts(ready.udp_port, ready.http_port)
            node.spec = dataclasses.replace(node.spec, ports=ports)
        self.start(index)

    def kill(self, index: int) -> None:
        node = self.nodes[index]
        current = node.current
        if current is None:
            return
        current.ended_by = "kill"
        node.sample_resources()
        node.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            current.popen.wait(timeout=10)
        node.reap()
        self.log(f"killed {node.spec.name} (SIGKILL)")

    def stop(self, index: int) -> None:
        """SIGTERM one node, as an operator stops it; SIGKILL after the grace."""
        node = self.nodes[index]
        current = node.current
        if current is None or current.exit_code is not None:
            return
        current.ended_by = "stop"
        node.signal(signal.SIGTERM)
        try:
            current.popen.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            node.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                current.popen.wait(timeout=10)
        node.reap()
        self.log(f"stopped {node.spec.name}")

    def stop_all(self) -> None:
        """SIGTERM every node, SIGKILL what is left after the grace, reap everything.

        Another Ctrl-C during the grace skips to SIGKILL; only a complete pass marks
        the cluster stopped, so the ``atexit`` call finishes an interrupted one.
        """
        if self.stopped:
            return
        try:
            self._terminate()
        except KeyboardInterrupt:
            self.log("interrupted again: killing the nodes")
        self._kill_and_reap()
        self.stopped = True
        atexit.unregister(self.stop_all)

    def _terminate(self) -> None:
        for node in self.nodes:
            if node.current is not None and node.current.exit_code is None:
                node.current.ended_by = "stop"
                node.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while any(n.is_running() for n in self.nodes) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _kill_and_reap(self) -> None:
        for node in self.nodes:
            if node.is_running():
                node.sigkilled_at_stop = True
                self.log(f"{node.spec.name} ignored SIGTERM for {self.stop_grace}s")
        for node in self.nodes:
            # The whole group: also catches anything a node started and left behind.
            for group in find_live_groups(node.get_group_ids()):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            current = node.current
            if current is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    current.popen.wait(timeout=10)
                node.reap()

    def get_group_ids(self) -> list[int]:
        return [group for node in self.nodes for group in node.get_group_ids()]
