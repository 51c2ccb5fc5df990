"""The options of one testnet run (``edgechain testnet``, :mod:`edgechain.lab.testnet`):
:class:`LaunchConfig` with its defaults and checks, :class:`LaunchError`, and the
default run directory."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgechain.consensus.context import DEFAULT_GENESIS_DELAY_MS
from edgechain.errors import LocalError
from edgechain.lab.cluster import STOP_GRACE_S, NodeOptions
from edgechain.runtime.appuser import is_open_to_others

DEFAULT_CHAIN_ID = "edgechain-testnet"
DEFAULT_NODE_COMMAND = (sys.executable, "-m", "edgechain.cli", "node")
READY_TIMEOUT_S = 60.0


class LaunchError(LocalError):
    """The testnet cannot be started or did not come up (bad options, no genesis...)."""


DEFAULT_CPU_CAPACITY = 1.0
"""The cores each testnet node offers its apps unless told otherwise. Its reports then
carry its own apps' usage only. The nodes of a testnet share one host, and host-wide
shares (what a node reports without a capacity) are the same figure for all of them,
sampled at different instants: the planner would move apps after that sampling noise,
not after the apps' loads."""


@dataclass(frozen=True)
class LaunchConfig:
    nodes: int
    committee: int
    slot_duration: float
    slots: int
    """Slots past genesis to run; 0: until interrupted."""
    run_dir: Path
    join_interval: float = 1.0
    json_path: Path | None = None
    netns: bool = False
    netns_prefix: str = "ec"
    netns_subnet: int = 0
    base_port: int | None = None
    host: str = "127.0.0.1"
    chain_id: str = DEFAULT_CHAIN_ID
    open_admission: bool = False
    cpu_capacity: float | None = DEFAULT_CPU_CAPACITY
    """Every node's declared CPU cores (``edgechain node --cpu-capacity``); None: each
    reports shares of the whole host."""
    containers: int = 0
    """Nodes 0..containers-1 get a private container engine (``lab/containers.py``)."""
    epoch_length: int | None = None
    """Genesis parameters (None: the node's defaults, 8 and 12): together they set the
    report interval (``ChainParams.report_interval_slots``)."""
    down_after_slots: int | None = None
    vdf_fraction: float | None = None
    """Genesis parameter: the share of a slot the producer's VDF takes (None: the
    node's, 0.25). Lower leaves more of a crowded host's CPU to the rest: in a 3-node
    testnet at 1 s slots, proving was about 70 % of the nodes' CPU."""
    kill: int = 0
    kill_at: int | None = None
    restart_after: int | None = 5
    """Slots after the kill to restart the killed nodes; None: never."""
    seed: int | None = None
    small_disks: tuple[tuple[int, int], ...] = ()
    """(node index, bytes): that node's data directory is a small file system of its
    own (``lab/small_disk.py``, root), for the chaos harness's full-disk fault. The
    launcher mounts them; its caller unmounts them (``Launcher.mounted``) once done
    with the stores on them."""
    hostile: tuple[tuple[int, str], ...] = ()
    """(node index, behaviours): those nodes run with ``EDGECHAIN_HOSTILE`` (``hostile.py``)."""
    stop_grace: float = STOP_GRACE_S
    genesis_timeout: float | None = None
    """Seconds from launch; None: all joins plus 60 s."""
    ready_timeout: float = READY_TIMEOUT_S
    node_command: tuple[str, ...] = DEFAULT_NODE_COMMAND
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`LaunchError` on options that cannot make a network."""
        if self.nodes < self.committee + 1:
            raise LaunchError(
                f"--nodes {self.nodes} is fewer than committee + 1 = {self.committee + 1}: "
                "genesis needs that many inclusion requests"
            )
        if self.committee < 1 or self.slot_duration <= 0:
            raise LaunchError("--committee and --slot-duration must be positive")
        for flag, slots in (
            ("--epoch-length", self.epoch_length),
            ("--down-after-slots", self.down_after_slots),
        ):
            if slots is not None and slots < 1:
                raise LaunchError(f"{flag} must be at least 1 slot")
        if self.vdf_fraction is not None and not 0 < self.vdf_fraction <= 1:
            raise LaunchError(f"--vdf-fraction {self.vdf_fraction:g}: expected above 0, at most 1")
        if self.slots < 0:
            raise LaunchError("--slots must not be negative (0: until interrupted)")
        if self.join_interval < 0:
            raise LaunchError("--join-interval must not be negative")
        if self.cpu_capacity is not None and not 0 < self.cpu_capacity < float("inf"):
            raise LaunchError(
                f"--cpu-capacity {self.cpu_capacity:g}: expected a number of CPU cores above 0"
            )
        if not 0 <= self.containers <= self.nodes:
            raise LaunchError(f"--containers must be 0..{self.nodes} (nodes with an engine)")
        if self.kill:
            if not 0 < self.kill < self.nodes:
                raise LaunchError(f"--kill must be 1..{self.nodes - 1} (never the bootstrap)")
            if self.kill_at is None or not 0 < self.kill_at < (self.slots or 2**62):
                raise LaunchError("--kill needs --kill-at SLOT with 0 < SLOT < --slots")
        for index, _ in self.hostile:
            if not 0 <= index < self.nodes:
                raise LaunchError(f"--hostile {index}: no such node (0..{self.nodes - 1})")
        if self.base_port is not None and not 1024 <= self.base_port <= 65535 - 2 * self.nodes:
            raise LaunchError(f"--base-port must leave room for {2 * self.nodes} ports")

    def get_node_options(self) -> NodeOptions:
        return NodeOptions(
            self.node_command,
            self.chain_id,
            self.committee,
            self.slot_duration,
            self.open_admission,
            self.cpu_capacity,
            self.epoch_length,
            self.down_after_slots,
            get_testnet_genesis_delay(self.slot_duration),
            self.vdf_fraction,
        )

    def get_genesis_timeout(self) -> float:
        if self.genesis_timeout is not None:
            return self.genesis_timeout
        return self.join_interval * self.nodes + 60.0


def parse_vdf_fraction(text: str) -> float:
    """``--vdf-fraction``'s value: a share of a slot above 0 and at most 1."""
    try:
        fraction = float(text)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share of a slot above 0, at most 1")
    return fraction


VDF_FRACTION_HELP = (
    "genesis: share of a slot the producer's VDF takes (default 0.25); lower leaves more "
    "CPU to the nodes' other work and the host's, on a crowded host"
)


def get_testnet_genesis_delay(slot_duration: float) -> float:
    """The genesis node's wait from the genesis to its first slot in a testnet: one slot,
    at least 1 s and at most the node's default (3 s). The wait is for the genesis to
    reach the first committee; the nodes of a testnet are one host's processes, which
    it reaches in milliseconds, so the node's 3 s (for a real network) only delayed
    every testnet's start, the live tests' included."""
    return min(DEFAULT_GENESIS_DELAY_MS / 1000, max(1.0, slot_duration))


def default_run_dir(now: float | None = None) -> Path:
    """``runs/testnet-<timestamp>``; as root in a directory closed to others (a checkout
    in a 0700 ``mktemp -d``), a fresh 0711 directory under the temporary directory
    instead, since the nodes' apps run as an unprivileged user who must reach it."""
    name = f"testnet-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    if os.geteuid() == 0 and not is_open_to_others(Path.cwd()):
        base = Path(tempfile.mkdtemp(prefix="edgechain-runs-"))
        base.chmod(0o711)
        return base / name
    return Path("runs") / name
