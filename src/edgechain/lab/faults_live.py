"""A live testnet seen from the host, for fault experiments on real node processes.

:class:`LiveTestnet` runs ``edgechain testnet --forever`` as a subprocess (its own
process group) and drives the fleet only the ways an operator could: the CLI (as a
subprocess) and the nodes' HTTP API. What actually runs is read from the host, never
from the nodes' own account: :func:`scan_instances` counts one instance per process
group of a tagged app (the group leader, ``os.getpgid(pid) == pid``), with the node it
runs for (its ``EDGECHAIN_STATE_DIR``) and whether it is frozen
(``process_group.is_stopped``: stopped, or a SIGSTOP pending); a leader being killed
is no instance at all (:func:`is_dying`). State is read from the
disk: an app's ``state/count`` and the newest replica archive a replica node keeps
(``runtime/replica.py``: ``replicas/<app hex>/replica.json`` names the archive, a tar
of ``state/``).

Used by ``lab/exactly_once.py`` (the scenarios), ``benchmarks/exactly_once.py`` and
``tests/lab/test_exactly_once_live.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from edgechain.chain.encoding import decode_genesis
from edgechain.chain.model import ChainParams
from edgechain.cli.common import DEFAULT_HTTP_TIMEOUT_S
from edgechain.lab.cluster import get_guard_prefix
from edgechain.lab.operator import CLIENT_FILE, OPERATOR_KEY_FILE
from edgechain.runtime.app_processes import read_stat_fields
from edgechain.runtime.process_group import is_stopped
from edgechain.runtime.replica import META_FILE, REPLICAS_DIR

CLI = (sys.executable, "-m", "edgechain.cli")
"""The CLI as a subprocess of this interpreter (the venv's ``edgechain``)."""
ONE_NODE_CLIENT = "client-first.toml"
"""A client config naming only the first node of ``client.toml``: the CLI has no
option to target one node, and a config of several sends each request to the first
that answers, which would let a submission land elsewhere when node 0 is slow."""
HTTP_TIMEOUT_S = 3.0
CLI_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 90.0
"""The launcher collects every node's figures, then stops them (SIGTERM, a grace)."""
STOP_S_PER_NODE = 3.0
"""Added to the launcher's time to stop per node: 100 nodes with 200 apps on 2 cores
(load average 240) were still being collected after 90 s and the kill left their
watchdogs behind."""
LEFTOVER_GRACE_S = 10.0
POLL_S = 0.2
_STARTING = re.compile(rb"counter: starting from (\d+)")
_PF_EXITING = 0x4
"""``/proc/PID/stat`` flags (field 9): the process is exiting (linux/sched.h)."""


class LiveError(Exception):
    """The testnet did not get where the experiment needs it (a timeout, a CLI error)."""


@dataclass(frozen=True)
class Instance:
    """One running copy of a tagged app: a process group on this host."""

    pid: int
    """The group leader (= the process group id)."""
    node: str
    """The node whose runtime started it (``node-003``), from its state directory."""
    app: str
    """The app id in hex (the state directory's parent)."""
    tag: str
    frozen: bool
    created: float
    """The leader's creation time (epoch seconds, psutil's)."""


@dataclass(frozen=True)
class NodeHandle:
    name: str
    node_id: str
    data_dir: Path
    pid: int
    """The node process (from its ready file): the leader of its own process group."""
    url: str


@dataclass(frozen=True)
class Replica:
    """The newest replica of an app a node keeps, with the count inside it."""

    node: str
    slot: int
    count: int
    archive: str


def is_dying(pid: int) -> bool:
    """True when process ``pid`` will never run user code again: a zombie, exiting
    (``PF_EXITING``), or with a SIGKILL pending.

    Why: a group the watchdog froze and the node then SIGKILLs is woken by the kernel to
    die; until it gets a CPU and exits (tens of ms on a loaded host) its state is R with
    no SIGSTOP pending, which ``is_stopped`` reads as running. Such a copy runs nothing.
    """
    fields = read_stat_fields(pid)
    if fields is None:
        return True  # gone meanwhile
    try:
        if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
            return True
        with open(f"/proc/{pid}/status", "rb") as file:
            pending = 0
            for line in file:
                if line.startswith((b"SigPnd:", b"ShdPnd:")):
                    pending |= int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return True  # gone meanwhile
    return bool(pending & 1 << (signal.SIGKILL - 1))


def is_cgroup_frozen(pid: int) -> bool:
    """Is process ``pid`` in a frozen cgroup? The container engine's pause uses the
    cgroup freezer, whose tasks show as "D", not "T": only the cgroup says so (v1: the
    freezer hierarchy's ``freezer.state``; v2: ``cgroup.events``)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "freezer":
            state = Path("/sys/fs/cgroup/freezer", path.lstrip("/"), "freezer.state")
            with contextlib.suppress(OSError):
                return state.read_text().strip() in ("FROZEN", "FREEZING")
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            events = Path("/sys/fs/cgroup", path.lstrip("/"), "cgroup.events")
            with contextlib.suppress(OSError):
                return "frozen 1" in events.read_text().splitlines()
    return False


def scan_instances(run_dir: Path, tags: Collection[str]) -> list[Instance]:
    """The copies of the apps tagged ``tags`` running on this host, one per process group.

    counter.sh's leader has the tag as its last argument; forks of the shell carry its
    command line until they exec, but are not group leaders, so they are skipped. So
    is a leader being killed (:func:`is_dying`): neither a running nor a frozen copy.
    """
    root = run_dir.resolve()
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"]
        if not cmdline or cmdline[-1] not in tags:
            continue
        try:
            if os.getpgid(proc.pid) != proc.pid:
                continue
            state_dir = Path(proc.environ()["EDGECHAIN_STATE_DIR"])
            parts = state_dir.relative_to(root).parts  # node-NNN/apps/<app>/state
        except (ProcessLookupError, psutil.Error, KeyError, ValueError):
            continue
        if is_dying(proc.pid):
            continue
        with contextlib.suppress(psutil.Error):
            frozen = is_stopped(proc.pid)
            created = proc.create_time()
            found.append(Instance(proc.pid, parts[0], parts[2], cmdline[-1], frozen, created))
    return found


def find_leftovers(run_dir: Path, tags: Collection[str]) -> list[str]:
    """Processes of this testnet still alive: any whose command line names the run
    directory (launcher, nodes, watchdogs: ``--data-dir RUN/node-NNN``) or ends with one
    of the apps' tags, or whose state directory lies under the run directory. This
    process and its ancestors (``edgechain chaos --run-dir RUN`` under ``timeout``) are
    the harness, not leftovers."""
    root = str(run_dir.resolve())
    harness = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid in harness:
            continue
        cmdline = proc.info["cmdline"] or []
        mine = any(root in part for part in cmdline) or bool(cmdline and cmdline[-1] in tags)
        if not mine:
            with contextlib.suppress(psutil.Error):
                mine = proc.environ().get("EDGECHAIN_STATE_DIR", "").startswith(root)
        if mine:
            left.append(f"{proc.pid}: {' '.join(cmdline)[:160]}")
    return left


def read_count(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def read_replica(run_dir: Path, node: str, app: str) -> Replica | None:
    """The newest replica of ``app`` on ``node``: the archive ``replica.json`` names (the
    store's commit point), and the ``state/count`` inside it."""
    app_dir = run_dir / node / REPLICAS_DIR / app
    for _ in range(5):  # the archive may be replaced between the two reads
        try:
            meta = json.loads((app_dir / META_FILE).read_text())
            with tarfile.open(app_dir / meta["archive"]) as tar:
                member = tar.extractfile("state/count")
                if member is None:
                    return None
                count = int(member.read())
            return Replica(node, int(meta["slot"]), count, str(meta["archive"]))
        except FileNotFoundError:
            if not (app_dir / META_FILE).exists():
                return None
        except (OSError, ValueError, KeyError, tarfile.TarError):
            return None
    return None


def get_watchdog_pid(data_dir: Path) -> int | None:
    """The node's watchdog (``watchdog.pid``: "<pid> <creation time>"); it leads its
    own session, so the pid is also its process group."""
    try:
        return int((data_dir / "watchdog.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_start_counts(app_log: Path) -> list[int]:
    """Every ``counter: starting from N`` of an app's log, oldest first."""
    try:
        data = app_log.read_bytes()
    except OSError:
        return []
    return [int(m.group(1)) for m in _STARTING.finditer(data)]


def read_genesis_params(chain_db: Path) -> ChainParams:
    """The chain's parameters, from a node's store (read-only: the node owns it)."""
    with contextlib.closing(sqlite3.connect(f"file:{chain_db}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT encoded FROM genesis WHERE id = 0").fetchone()
    if row is None:
        raise LiveError(f"{chain_db}: no genesis yet")
    return decode_genesis(bytes(row[0])).params


def http_get(url: str, path: str, timeout: float = HTTP_TIMEOUT_S) -> Any:
    with urllib.request.urlopen(url + path, timeout=timeout) as reply:
        return json.loads(reply.read())


def signal_groups(groups: Iterable[int], signum: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float, check: Callable[[], None]
) -> None:
    """Poll ``predicate`` (``check`` raises if waiting is pointless) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        if predicate():
            return
        time.sleep(POLL_S)
    raise LiveError(f"timed out after {timeout:.0f}s waiting for {what}")


class LiveTestnet:
    """``edgechain testnet --forever`` in ``run_dir`` (under a 0711 directory: the
    nodes run their apps as an unprivileged user, who must reach their state dirs)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        nodes: int,
        committee: int,
        slot_s: float,
        join_s: float = 0.3,
        cpu_capacity: float | None = None,
        containers: int = 0,
        vdf_fraction: float | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.nodes, self.committee, self.slot_s, self.join_s = nodes, committee, slot_s, join_s
        self.cpu_capacity = cpu_capacity
        """Every node's ``--cpu-capacity`` (None: shares of the whole host)."""
        self.containers = containers
        """How many nodes (the first ones) get a container engine (``--containers``)."""
        self.vdf_fraction = vdf_fraction
        """Of a slot, the producer's VDF (``--vdf-fraction``; None: the node's 0.25)."""
        self.launcher: subprocess.Popen[bytes] | None = None
        self.params: ChainParams | None = None
        self.tags: set[str] = set()
        """Every app tag submitted, for the sweep of leftovers."""
        self.leftovers: list[str] = []
        """What was still alive after the launcher stopped the testnet (then killed)."""
        self.stop_code: int | None = None
        self.http_timeout_s: float | None = None
        """How long one node may take to answer, for :meth:`get` and the CLI's
        ``--http-timeout`` (None: their defaults, 3 s and 5 s). Raised where 100 nodes
        saturate the host; a paused node then holds each request this long before the
        next node is tried."""

    # --- start and stop --------------------------------------------------------------

    def start(self) -> None:
        # The guard (setpriv --pdeathsig KILL) takes the launcher down should this
        # process die without its cleanup (SIGKILL); the nodes have the same guard.
        argv = [*get_guard_prefix(), *CLI, "testnet", "--forever", "--quiet",
                "--nodes", str(self.nodes), "--committee", str(self.committee),
                "--slot-duration", f"{self.slot_s:g}", "--join-interval", f"{self.join_s:g}",
                "--run-dir", str(self.run_dir)]  # fmt: skip
        if self.cpu_capacity is not None:
            argv += ["--cpu-capacity", f"{self.cpu_capacity:g}"]
        if self.containers:
            argv += ["--containers", str(self.containers)]
        if self.vdf_fraction is not None:
            argv += ["--vdf-fraction", f"{self.vdf_fraction:g}"]
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        with (self.run_dir.parent / f"{self.run_dir.name}.launcher.out").open("ab") as out:
            # Its own session: our Ctrl-C does not reach it before we stop it in order,
            # and its process group can be killed as a whole.
            self.launcher = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        if self.launcher is None or self.launcher.poll() is not None:
            raise LiveError(f"the testnet launcher exited (see {self.run_dir}/launcher.log)")

    def wait_ready(self, timeout: float) -> None:
        """Genesis reached and the operator key granted: ``client.toml`` exists (written
        once the grant settled) and ``edgechain status`` shows the key as operator."""
        client = self.run_dir / CLIENT_FILE
        wait_until(client.exists, "client.toml (genesis, grant)", timeout, self.check_alive)
        status = self.cli("status")
        if not status["operator"]["operator"]:
            raise LiveError(f"the operator key was not granted: {status['operator']}")
        self.params = read_genesis_params(self.run_dir / "node-000" / "chain.db")

    def stop(self) -> None:
        """Stop everything this testnet started; never raises.

        Paused nodes are continued first (a stopped node cannot act on SIGTERM). The
        launcher is interrupted (it stops its nodes, which stop their apps and watchdogs)
        and killed with its group if it hangs. Anything of the run still alive after
        :data:`LEFTOVER_GRACE_S` is recorded in :attr:`leftovers`, then killed."""
        launcher = self.launcher
        if launcher is None:
            return
        with contextlib.suppress(OSError, ValueError):
            signal_groups([n.pid for n in self.get_nodes().values()], signal.SIGCONT)
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(timeout=STOP_TIMEOUT_S + STOP_S_PER_NODE * self.nodes)
        except subprocess.TimeoutExpired:
            signal_groups([launcher.pid], signal.SIGKILL)
            launcher.wait()
        self.stop_code = launcher.returncode
        self.sweep_leftovers()

    def stop_and_record(self, started: float) -> dict[str, Any]:
        """:meth:`stop`, then what a run's result records of it: what was left behind,
        the launcher's exit code, the run's time since ``started`` (monotonic)."""
        self.stop()
        return {
            "leftover_processes": self.leftovers,
            "launcher_exit_code": self.stop_code,
            "elapsed_s": round(time.monotonic() - started, 1),
        }

    def sweep_leftovers(self) -> None:
        """Record in :attr:`leftovers` what of the run's apps outlived the testnet by
        :data:`LEFTOVER_GRACE_S`, then kill it."""
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        left = find_leftovers(self.run_dir, self.tags)
        while left and time.monotonic() < deadline:
            time.sleep(POLL_S)
            left = find_leftovers(self.run_dir, self.tags)
        self.leftovers = left
        for entry in left:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(entry.split(":")[0]), signal.SIGKILL)

    # --- the fleet ---------------------------------------------------------------------

    def cli(self, *argv: str, client: Path | None = None, timeout_s: float = CLI_TIMEOUT_S) -> Any:
        """``edgechain --client CLIENT ARGV --json`` (default: ``RUN/client.toml``);
        LiveError when it fails or is still running after ``timeout_s`` (then killed:
        what it sent before may still land)."""
        config = client if client is not None else self.run_dir / CLIENT_FILE
        try:
            done = subprocess.run(
                [*CLI, "--client", str(config), "--http-timeout",
                 f"{self.http_timeout_s or DEFAULT_HTTP_TIMEOUT_S:g}", *argv, "--json"],
                capture_output=True, text=True, timeout=timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise LiveError(
                f"edgechain {' '.join(argv[:3])}...: killed after {timeout_s:g} s"
            ) from None
        if done.returncode != 0:
            raise LiveError(f"edgechain {' '.join(argv)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def write_one_node_client(self) -> Path:
        """``RUN/client-first.toml``: the first node of ``client.toml`` alone."""
        text = (self.run_dir / CLIENT_FILE).read_text()
        match = re.search(r'nodes = \["([^"]+)"', text)
        if match is None:
            raise LiveError(f"no node URL in {self.run_dir / CLIENT_FILE}")
        path = self.run_dir / ONE_NODE_CLIENT
        path.write_text(f'nodes = ["{match.group(1)}"]\nkey = "{OPERATOR_KEY_FILE}"\n')
        return path

    def get_nodes(self) -> dict[str, NodeHandle]:
        """Every node that has written its ready file, by name."""
        manifest = json.loads((self.run_dir / "testnet.json").read_text())
        nodes = {}
        for entry in manifest["nodes"]:
            data_dir = self.run_dir / entry["name"]
            with contextlib.suppress(OSError, ValueError, KeyError):
                ready = json.loads((data_dir / "ready.json").read_text())
                url = f"http://{entry['host']}:{ready['http_port']}"
                nodes[entry["name"]] = NodeHandle(
                    entry["name"], entry["node_id"], data_dir, int(ready["pid"]), url
                )
        return nodes

    def get_names(self) -> dict[str, str]:
        """Node id (hex) -> node name."""
        manifest = json.loads((self.run_dir / "testnet.json").read_text())
        return {n["node_id"]: n["name"] for n in manifest["nodes"]}

    def get(self, path: str, avoid: Collection[str] = ()) -> Any:
        """``GET path`` from the first node not in ``avoid`` that answers."""
        for node in self.get_nodes().values():
            if node.name in avoid:
                continue
            with contextlib.suppress(OSError, ValueError):
                return http_get(node.url, path, self.http_timeout_s or HTTP_TIMEOUT_S)
        raise LiveError(f"no node answered GET {path}")

    # --- time ----------------------------------------------------------------------------

    def get_slot(self, t: float) -> float:
        """The (fractional) slot at wall-clock time ``t`` (seconds since the epoch)."""
        params = self.get_params()
        return (t * 1000 - params.genesis_time_ms) / params.slot_duration_ms

    def get_slot_start(self, slot: int) -> float:
        params = self.get_params()
        return (params.genesis_time_ms + slot * params.slot_duration_ms) / 1000

    def get_params(self) -> ChainParams:
        if self.params is None:
            raise LiveError("no chain parameters before wait_ready")
        return self.params


def confirm_running(pids: Iterable[int]) -> list[int]:
    """The group leaders among ``pids`` alive and unfrozen now (a second look)."""
    return [pid for pid in pids if not is_dying(pid) and not is_stopped(pid)]


def by_app(instances: Iterable[Instance]) -> Mapping[str, list[Instance]]:
    grouped: dict[str, list[Instance]] = {}
    for instance in instances:
        grouped.setdefault(instance.app, []).append(instance)
    return grouped
