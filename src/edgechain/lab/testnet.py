"""``edgechain testnet``: a whole network of real node processes on one machine.

Paper §4 testbed, locally: node 0 is the bootstrap node (``--genesis``), known to all by
address and public key; the others start one every ``--join-interval`` seconds (the
paper used 10 s), join through it, and the bootstrap creates genesis once
``committee + 1`` inclusion requests are in. The launcher:

* creates the run directory: ``admin.key`` (the network admin key), ``operator.key``
  (an operator key, granted on chain right after genesis), ``testnet.json``
  (manifest: every node's public key and id), ``launcher.log`` and one ``node-NNN/``
  per node holding its ``node.key`` (created here, so the launcher knows every public
  key and signs every admission ticket), ``chain.db``, ``ready.json``,
  ``stdout.log`` and ``stderr.log``;
* starts the nodes (optionally one network namespace each, ``--netns``), shows one
  live progress line on stderr, kills and restarts nodes on request (``--kill``);
* once genesis is reached and every node is up, grants ``operator.key`` with the admin
  key (a signed GRANT_OPERATOR, as ``edgechain admin grant`` sends it) and then writes
  ``client.toml`` (every node's URL, ``key = "operator.key"``, ``admin_key =
  "admin.key"``): ``edgechain --client RUN/client.toml apps ...`` works from then on;
* after ``--slots`` slots past genesis (``--slots 0`` / ``--forever``: until Ctrl-C or
  SIGTERM) collects every node's ``/status``, ``/chain``, ``/blocks``, the fleet's apps
  with their history (``/apps``, ``/apps/{id}/history``) and every node's
  ``/migrations``, stops every node (SIGTERM, SIGKILL after a grace), and writes the
  summary (``summary.json`` in the run directory, and ``--json FILE``).

No node outlives the launcher: each runs in its own process group which is signalled
as a whole; ``stop_all`` runs from ``finally`` and ``atexit``; and where ``setpriv``
exists each node is started with a parent-death signal (SIGKILL), which covers the
launcher itself being killed with SIGKILL.

Summary JSON (figures computed by :mod:`edgechain.lab.summary`)::

    ok                      genesis reached by every node, one head, no node crashed
    source_changed          the edgechain sources changed during the run (an
                            editable install edited meanwhile: nodes may differ)
    nodes, committee, slot_duration, slots (slots past genesis when stopped),
      cpu_capacity (every node's declared cores, default 1; null: shares of the whole host),
      containers (how many nodes, the first ones, have a container engine)
    genesis, genesis_after_s (launch to genesis), join_slot (head slot whose state
      first held all nodes), validators_at_end
    blocks, skip_blocks, skip_slots, missing_slots, skip_blocks_after_join
    distinct_heads          distinct canonical tips at the final slot among answering
                            nodes with genesis (live_heads: distinct /status heads at
                            collection); nodes_without_genesis: names of the others
    block_propagation_ms    {p50, p99, max, mean, samples}: per block and node, the
                            node's accepted_ms minus the block's earliest accepted_ms,
                            counted only if the node was running at that moment;
                            block_propagation_ms_after_join: only blocks after join_slot
    signers_per_block       {p50, ...} over canonical non-skip blocks
    rss_mb, rss_peak_mb, cpu_seconds   {per_node: {name: value}, max, mean, min, total}
    peer_errors, decode_errors         summed over nodes
    kills                   per killed node: kill_slot, restart_slot, down_slots;
                            elected_while_down {slot: outcome} for the slots it was
                            elected producer of (kill slot and down slots, elected from
                            the chain by lab.elections), elected_slots_skipped (all
                            became skip blocks excluding it), skip_blocks_excluding_it,
                            blocks_it_produced_while_down (should be none), resynced
                            (its tip at the final slot = the majority tip)
    unexplained_skip_slots  skip blocks after join not excluding a node that was down
    crashes                 node processes that exited without being told to
    exit_codes              {name: code} of nodes that did not exit 0 on SIGTERM
    stop_sigkilled          nodes that ignored SIGTERM for the whole grace period
    until_interrupted       ``--slots 0``: the run was meant to end at Ctrl-C
    client                  {config, operator_key, granted, error}: the client config
    apps                    per app on chain at the end: name, state, node (name), and
                            its history from the chain (placements, moves, stops ...
                            with their slots, node ids as names) with the migration
                            timings the nodes reported
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import edgechain
from edgechain.chain.assembly import make_ticket
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.errors import LocalError
from edgechain.lab.apps import format_app_line, summarize_apps
from edgechain.lab.cluster import (
    HTTP_TIMEOUT_S,
    STOP_GRACE_S,
    Bootstrap,
    Cluster,
    NodeApiError,
    NodeOptions,
    NodeProcess,
    NodeReady,
    NodeSpec,
    allocate_ports,
    find_live_groups,
    get_node_name,
    http_get_json,
    now_ms,
)
from edgechain.lab.containers import ContainerEngines
from edgechain.lab.elections import load_producers
from edgechain.lab.netns import NetnsNetwork, NetnsPlan, build_exec_prefix, plan_netns
from edgechain.lab.operator import OperatorSetup
from edgechain.lab.summary import (
    ChainEntry,
    Collected,
    HeadObservation,
    KillRecord,
    RecordError,
    build_chain_summary,
    count_validators,
    describe_per_node,
    find_join_slot,
    get_canonical_hashes,
    get_election_slots,
    merge_counters,
    parse_block_records,
    parse_chain,
    pick_reference,
)
from edgechain.runtime.appuser import is_open_to_others
from edgechain.types import PublicKey

DEFAULT_CHAIN_ID = "edgechain-testnet"
DEFAULT_NODE_COMMAND = (sys.executable, "-m", "edgechain.cli", "node")
COLLECT_TIMEOUT_S = 10.0
COLLECT_TRIES = 2
READY_TIMEOUT_S = 60.0
RESOURCE_SAMPLE_INTERVAL_S = 2.0
QUIET_PROGRESS_INTERVAL_S = 10.0
MAX_POLL_THREADS = 16


class LaunchError(LocalError):
    """The testnet cannot be started or did not come up (bad options, no genesis...)."""


# --- configuration and pure helpers ---------------------------------------------------


DEFAULT_CPU_CAPACITY = 1.0
"""The cores each testnet node offers its apps unless told otherwise. Its reports then
carry its own apps' usage only. The nodes of a testnet share one host, and host-wide
shares (what a node reports without a capacity) are the same figure for all of them,
sampled at different instants: the planner would move apps after that sampling noise,
not after the apps' loads."""


def _parse_cpu_capacity(text: str) -> float | None:
    if text == "host":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a number of CPU cores or 'host'"
        ) from None


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
    kill: int = 0
    kill_at: int | None = None
    restart_after: int | None = 5
    """Slots after the kill to restart the killed nodes; None: never."""
    seed: int | None = None
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
        )

    def get_genesis_timeout(self) -> float:
        if self.genesis_timeout is not None:
            return self.genesis_timeout
        return self.join_interval * self.nodes + 60.0


@dataclass(frozen=True)
class Progress:
    """What the live line shows."""

    elapsed_s: float
    nodes: int
    up: int
    target_slots: int
    genesis: bool = False
    slot: int = 0
    head_slot: int | None = None
    validators: int = 0
    skip_blocks: int = 0
    down: int = 0


def format_progress(p: Progress) -> str:
    up = f"up {p.up}/{p.nodes}" + (f" ({p.down} down)" if p.down else "")
    if not p.genesis:
        return f"testnet  waiting for genesis | {up} | {p.elapsed_s:5.1f}s"
    head = "-" if p.head_slot is None else str(p.head_slot)
    target = f"/{p.target_slots}" if p.target_slots else " (Ctrl-C stops)"
    return (
        f"testnet  slot {p.slot}{target}  head {head} | {up} | "
        f"validators {p.validators} | skip blocks {p.skip_blocks} | {p.elapsed_s:5.1f}s"
    )


def compute_source_digest(package_dir: Path) -> str:
    """SHA-256 over the package's Python sources (path and content, sorted).

    The nodes run whatever is on disk when each starts; with an editable install being
    edited, a late joiner can run different code. Compared at start and end of a run.
    """
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


PACKAGE_DIR = Path(edgechain.__file__).parent


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


# --- the run --------------------------------------------------------------------------


@dataclass
class Observed:
    """What the launcher has seen so far (mutable state of one run)."""

    genesis_after_s: float | None = None
    slot: int = 0
    head_slot: int | None = None
    validators: int = 0
    skip_blocks: int = 0
    heads: list[HeadObservation] = field(default_factory=list)
    kills: list[KillRecord] = field(default_factory=list)
    killed_indices: list[int] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)


class Launcher:
    """Runs one testnet from start to summary; see the module docstring."""

    def __init__(self, config: LaunchConfig, stderr: TextIO | None = None) -> None:
        config.check()
        self.config = config
        self.stderr = stderr if stderr is not None else sys.stderr
        self.observed = Observed()
        self.interrupted = False
        self.failure: str | None = None
        self.plan: NetnsPlan | None = None
        self.cluster: Cluster | None = None
        self.operator: OperatorSetup | None = None
        self.started_at = time.monotonic()
        self.source_digest = compute_source_digest(PACKAGE_DIR)
        self.rng = random.Random(config.seed)
        self._log_file: TextIO | None = None
        self._progress_shown = False
        self._last_quiet_progress = 0.0
        self._pool = ThreadPoolExecutor(max_workers=min(MAX_POLL_THREADS, config.nodes))

    # -- public --

    def run(self) -> dict[str, Any]:
        """Start, watch, collect, stop; returns the summary (also written to disk)."""
        run_dir = self.config.run_dir
        if run_dir.exists() and any(run_dir.iterdir()):
            # Fresh keys every run: reusing a directory would mix two networks' nodes.
            raise LaunchError(f"run directory {run_dir} exists and is not empty")
        run_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = (self.config.run_dir / "launcher.log").open("a")
        if os.geteuid() == 0 and not is_open_to_others(run_dir):
            self._log(
                f"warning: {run_dir} is closed to others: the nodes' apps run as an "
                "unprivileged user and cannot start there (use a --run-dir whose "
                "directories all have o+x)"
            )
        collected: Collected | None = None
        try:
            specs, admin_key = self._prepare()
            with contextlib.ExitStack() as stack:
                # First in, last out: the nodes remove their containers before their
                # engines stop.
                engines = stack.enter_context(ContainerEngines(self._log))
                urls = engines.start((s.index, s.data_dir) for s in specs[: self.config.containers])
                specs = [dataclasses.replace(s, container_engine=urls.get(s.index)) for s in specs]
                self._write_manifest(specs, admin_key)
                if self.plan is not None:
                    stack.enter_context(NetnsNetwork(self.plan))
                self.cluster = Cluster(
                    self.config.get_node_options(),
                    specs,
                    admin_key,
                    self._log,
                    self.config.stop_grace,
                )
                # Registered after the namespaces: runs first, nodes stop before their
                # namespaces go away.
                stack.callback(self.cluster.stop_all)
                collected = self._run_and_collect()
            summary = self._summarize(collected)
            self._write_summary(summary)
            return summary
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._end_progress_line()
            if self._log_file is not None:
                self._log_file.close()

    # -- phases --

    def _prepare(self) -> tuple[list[NodeSpec], PublicKey]:
        """Keys, tickets, data dirs and (with --netns) the address plan."""
        config = self.config
        admin_sk = create_keystore(config.run_dir / "admin.key")
        admin_pk = bls.sk_to_pk(admin_sk)
        self.operator = OperatorSetup(config.run_dir, admin_sk, config.slot_duration, self._log)
        if config.netns:
            self.plan = plan_netns(config.nodes, config.netns_subnet, config.netns_prefix)
        ports = allocate_ports(config.nodes, config.base_port)
        specs = []
        for index in range(config.nodes):
            data_dir = config.run_dir / get_node_name(index)
            # Searchable, not listable, by others: a root node runs its apps as an
            # unprivileged user, who must reach its state dir under here. The secrets
            # in it (node.key, api.token) are 0600 files.
            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir.chmod(0o711)
            pk = bls.sk_to_pk(create_keystore(data_dir / "node.key"))
            plan = self.plan
            specs.append(
                NodeSpec(
                    index=index,
                    data_dir=data_dir.resolve(),
                    public_key=pk,
                    ticket=make_ticket(admin_sk, config.chain_id, pk),
                    host=plan.addresses[index] if plan else config.host,
                    ports=ports[index],
                    exec_prefix=tuple(build_exec_prefix(plan, index)) if plan else (),
                )
            )
        return specs, admin_pk

    def _run_and_collect(self) -> Collected | None:
        try:
            self._start_network()
            self._watch()
        except KeyboardInterrupt:
            self.interrupted = True
            self._log("interrupted: stopping the testnet")
        except LaunchError as exc:
            self.failure = str(exc)
            self._log(f"failed: {exc}")
        if not self._any_running():
            return None
        try:
            self._sample_resources()
            return self._collect()
        except KeyboardInterrupt:
            # A second Ctrl-C: skip collecting, just stop.
            self.interrupted = True
            return None

    def _start_network(self) -> None:
        cluster = self._cluster()
        cluster.start(0)
        ready = self._wait_ready(0)
        host = cluster.nodes[0].spec.host
        cluster.bootstrap = Bootstrap(f"{host}:{ready.udp_port}", cluster.nodes[0].spec.public_key)
        self._log(f"bootstrap ready at {cluster.bootstrap.address} (http {ready.http_port})")

    def _wait_ready(self, index: int) -> NodeReady:
        node = self._cluster().nodes[index]
        deadline = time.monotonic() + self.config.ready_timeout
        while time.monotonic() < deadline:
            ready = node.poll_ready()
            if ready is not None:
                return ready
            if not node.is_running():
                raise LaunchError(
                    f"{node.spec.name} exited before it was ready; see "
                    f"{node.spec.data_dir / 'stderr.log'}:\n{self._tail(node)}"
                )
            time.sleep(0.05)
        raise LaunchError(f"{node.spec.name} not ready after {self.config.ready_timeout}s")

    def _watch(self) -> None:
        """Start the others staggered, poll, kill/restart, until the last slot passed."""
        config = self.config
        reference_interval = max(0.1, min(0.5, config.slot_duration / 4))
        joined = 1
        next_join = time.monotonic() + config.join_interval
        next_reference = next_sample = 0.0
        genesis_deadline = self.started_at + config.get_genesis_timeout()
        while True:
            now = time.monotonic()
            if joined < config.nodes and now >= next_join:
                self._cluster().start(joined)
                joined += 1
                # From now if the loop fell behind: a late loop must not start a burst.
                next_join = max(next_join + config.join_interval, now)
            self._check_nodes()
            if now >= next_reference:
                self._poll_reference()
                self._setup_operator(joined)
                next_reference = now + reference_interval
            if now >= next_sample:
                self._sample_resources()
                next_sample = now + RESOURCE_SAMPLE_INTERVAL_S
            if self.observed.genesis_after_s is None and now > genesis_deadline:
                raise LaunchError(f"no genesis after {config.get_genesis_timeout():.0f}s")
            self._kill_and_restart()
            self._show_progress()
            if (
                config.slots
                and self.observed.genesis_after_s is not None
                and self.observed.slot > config.slots
            ):
                break
            if not self._any_running():
                raise LaunchError("every node has exited")
            upcoming = [next_reference, next_sample]
            if joined < config.nodes:
                upcoming.append(next_join)
            time.sleep(max(0.02, min(upcoming) - time.monotonic()))
        # Slot S's block is gossiped within slot S; a short settle lets the last
        # copies arrive before the heads are compared.
        time.sleep(config.slot_duration / 4)

    def _setup_operator(self, joined: int) -> None:
        """Grant the operator key once there is a chain and every node is up."""
        operator = self.operator
        if operator is None:
            return
        urls = None
        if self.observed.genesis_after_s is not None and joined == self.config.nodes:
            addresses = [self._node_address(i) for i in range(self.config.nodes)]
            if all(a is not None for a in addresses):
                urls = [f"http://{a[0]}:{a[1]}" for a in addresses if a is not None]
        operator.poll(self._pool, urls)

    # -- polling --

    def _cluster(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    def _node_address(self, index: int) -> tuple[str, int] | None:
        node = self._cluster().nodes[index]
        ready = node.poll_ready()
        if ready is None or not node.is_running():
            return None
        return node.spec.host, ready.http_port

    def _get(self, index: int, path: str, timeout: float = HTTP_TIMEOUT_S, tries: int = 1) -> Any:
        address = self._node_address(index)
        if address is None:
            return None
        for _ in range(tries):
            try:
                return http_get_json(address[0], address[1], path, timeout)
            except NodeApiError:
                continue
        return None

    def _get_all(self, path: str) -> dict[int, Any]:
        """Every node's answer; patient, since an overloaded node answers slowly and a
        missing answer loses that node's figures."""
        indices = range(self.config.nodes)
        answers = self._pool.map(
            lambda i: self._get(i, path, COLLECT_TIMEOUT_S, COLLECT_TRIES), indices
        )
        return dict(zip(indices, answers, strict=True))

    def _reference_index(self) -> int | None:
        """Node 0 (never killed) unless it is down, then the first node running."""
        nodes = self._cluster().nodes
        return next((n.spec.index for n in nodes if n.is_running() and n.ready), None)

    def _poll_reference(self) -> None:
        index = self._reference_index()
        status = self._get(index, "/status") if index is not None else None
        if isinstance(status, dict):
            self._observe(status)

    def _observe(self, status: dict[str, Any]) -> None:
        observed = self.observed
        if not status.get("genesis"):
            return
        if observed.genesis_after_s is None:
            observed.genesis_after_s = time.monotonic() - self.started_at
            self._log(f"genesis after {observed.genesis_after_s:.1f}s")
        observed.slot = int(status.get("slot") or 0)
        head_slot = status.get("head_slot")
        observed.head_slot = head_slot if isinstance(head_slot, int) else None
        observed.validators = count_validators(status.get("validators"))
        observed.skip_blocks = int(status.get("skip_blocks_accepted") or 0)
        if observed.head_slot is not None:
            observed.heads.append(HeadObservation(observed.head_slot, observed.validators))

    def _sample_resources(self) -> None:
        for node in self._cluster().nodes:
            node.sample_resources()

    def _check_nodes(self) -> None:
        """Read new ready files; reap exited nodes (one not told to exit crashed)."""
        for node in self._cluster().nodes:
            node.poll_ready()
            ended = node.reap()
            if ended is None or ended.ended_by is not None:
                continue
            crash = {
                "name": node.spec.name,
                "exit_code": ended.exit_code,
                "slot": self.observed.slot,
                "stderr_tail": self._tail(node),
            }
            self.observed.crashes.append(crash)
            self._log(f"{node.spec.name} exited with {ended.exit_code} (crash)")

    # -- faults --

    def _kill_and_restart(self) -> None:
        config, observed = self.config, self.observed
        if observed.genesis_after_s is None:
            return
        cluster = self._cluster()
        if config.kill and not observed.kills and observed.slot >= (config.kill_at or 0):
            candidates = [n.spec.index for n in cluster.nodes[1:] if n.is_running()]
            chosen = sorted(self.rng.sample(candidates, min(config.kill, len(candidates))))
            for index in chosen:
                cluster.kill(index)
                spec = cluster.nodes[index].spec
                observed.kills.append(KillRecord(spec.name, spec.node_id, observed.slot, now_ms()))
                observed.killed_indices.append(index)
        if config.restart_after is None:
            return
        for position, (index, kill) in enumerate(
            zip(observed.killed_indices, observed.kills, strict=True)
        ):
            if kill.restart_slot is None and observed.slot >= kill.kill_slot + config.restart_after:
                cluster.restart(index)
                observed.kills[position] = dataclasses.replace(
                    kill, restart_slot=observed.slot, restart_ms=now_ms()
                )

    # -- collection and summary --

    def _collect(self) -> Collected:
        statuses = self._get_all("/status")
        chains = self._get_all("/chain")
        blocks = self._get_all("/blocks?since=0")
        apps, histories = self._collect_apps()
        migrations = self._get_all("/migrations")
        self._write_raw(statuses, chains, blocks, migrations)
        fleet = {"apps": apps, "histories": histories}
        (self.config.run_dir / "collected-apps.json").write_text(json.dumps(fleet) + "\n")
        return Collected(
            statuses={i: s if isinstance(s, dict) else None for i, s in statuses.items()},
            chains={i: _parse_or_none(parse_chain, c) for i, c in chains.items()},
            blocks={i: _parse_or_none(parse_block_records, b) for i, b in blocks.items()},
            apps=apps,
            histories=histories,
            migrations=migrations,
        )

    def _collect_apps(self) -> tuple[list[Any] | None, dict[str, Any]]:
        """The fleet view and every app's history, from the first node that answers."""
        for index in range(self.config.nodes):
            apps = self._get(index, "/apps", COLLECT_TIMEOUT_S, COLLECT_TRIES)
            if not isinstance(apps, list):
                continue
            histories = {}
            for view in apps:
                app_id = view.get("app_id") if isinstance(view, dict) else None
                if isinstance(app_id, str):
                    path = f"/apps/{app_id}/history"
                    histories[app_id] = self._get(index, path, COLLECT_TIMEOUT_S, COLLECT_TRIES)
            return apps, histories
        return None, {}

    def _write_raw(self, *answers: Mapping[int, Any]) -> None:
        """The answers as received, per node: for analyses the summary does not do."""
        cluster = self._cluster()
        raw = {
            node.spec.name: {
                "runs": [dataclasses.asdict(run) for run in node.get_runs()],
                "status": answers[0].get(index),
                "chain": answers[1].get(index),
                "blocks": answers[2].get(index),
                "migrations": answers[3].get(index),
            }
            for index, node in enumerate(cluster.nodes)
        }
        (self.config.run_dir / "collected.json").write_text(json.dumps(raw) + "\n")

    def _summarize(self, collected: Collected | None) -> dict[str, Any]:
        cluster = self._cluster()
        config = self.config
        observed = self.observed
        end_slot = self._get_end_slot()
        summary: dict[str, Any] = {
            "nodes": config.nodes,
            "committee": config.committee,
            "slot_duration": config.slot_duration,
            "join_interval": config.join_interval,
            "cpu_capacity": config.cpu_capacity,
            "containers": config.containers,
            "netns": config.netns,
            "run_dir": str(config.run_dir),
            "interrupted": self.interrupted,
            "until_interrupted": config.slots == 0,
            "failure": self.failure,
            "genesis": observed.genesis_after_s is not None,
            "genesis_after_s": _round(observed.genesis_after_s),
            "slots": max(end_slot, 0),
            "wall_seconds": round(time.monotonic() - self.started_at, 1),
            "source_digest": self.source_digest[:16],
            "source_changed": compute_source_digest(PACKAGE_DIR) != self.source_digest,
        }
        collected = collected or Collected({}, {}, {})
        summary.update(
            build_chain_summary(
                nodes={n.spec.index: n.spec.name for n in cluster.nodes},
                collected=collected,
                runs={n.spec.name: n.get_runs() for n in cluster.nodes},
                end_slot=end_slot,
                join_slot=find_join_slot(observed.heads, config.nodes),
                kills=observed.kills,
                producers=self._load_producers(collected, end_slot),
            )
        )
        summary["validators_at_end"] = observed.validators
        summary["rss_mb"] = describe_per_node(
            {n.spec.name: n.rss_mb for n in cluster.nodes if n.rss_mb is not None}
        )
        summary["rss_peak_mb"] = describe_per_node(
            {n.spec.name: n.rss_peak_mb for n in cluster.nodes if n.rss_peak_mb}
        )
        summary["cpu_seconds"] = describe_per_node(
            {n.spec.name: n.get_cpu_seconds() for n in cluster.nodes if n.incarnations}, 2
        )
        statuses = [s for s in collected.statuses.values() if s is not None]
        summary["peer_errors"] = merge_counters(s.get("peer_errors") or {} for s in statuses)
        summary["decode_errors"] = merge_counters(s.get("decode_errors") or {} for s in statuses)
        summary["crashes"] = observed.crashes
        summary["exit_codes"] = {
            n.spec.name: n.current.exit_code
            for n in cluster.nodes
            if n.current is not None
            and n.current.ended_by == "stop"
            and n.current.exit_code not in (0, None)
        }
        summary["stop_sigkilled"] = [n.spec.name for n in cluster.nodes if n.sigkilled_at_stop]
        summary["leftover_process_groups"] = find_live_groups(cluster.get_group_ids())
        summary["client"] = self.operator.to_json() if self.operator is not None else None
        summary["apps"] = summarize_apps(
            collected.apps,
            collected.histories,
            {cluster.nodes[i].spec.name: m for i, m in collected.migrations.items()},
            {n.spec.node_id: n.spec.name for n in cluster.nodes},
        )
        summary["ok"] = bool(
            summary["genesis"]
            and summary["distinct_heads"] == 1
            and not summary["nodes_without_genesis"]
            and not summary["crashes"]
            and not self.failure
        )
        return summary

    def _get_end_slot(self) -> int:
        """Last slot the run completed: slot ``S``, or the one before an interruption."""
        if self.observed.genesis_after_s is None:
            return 0
        last = self.observed.slot - 1
        return max(0, min(last, self.config.slots) if self.config.slots else last)

    def _load_producers(self, collected: Collected, end_slot: int) -> dict[int, str]:
        """Elected producers of the slots killed nodes were down (from a stopped node's
        store); empty without kills, or if the store cannot say."""
        if not self.observed.kills:
            return {}
        names = {n.spec.name: n for n in self._cluster().nodes}
        chains = self._named(collected.chains)
        reference = pick_reference(chains, end_slot)
        if reference is None:
            return {}
        slots = sorted({s for k in self.observed.kills for s in get_election_slots(k, end_slot)})
        store = names[reference].spec.data_dir / "chain.db"
        try:
            return load_producers(store, get_canonical_hashes(chains[reference], end_slot), slots)
        except (LocalError, ValueError) as exc:
            self._log(f"cannot compute elected producers from {store}: {exc}")
            return {}

    def _named(self, answers: Mapping[int, list[ChainEntry] | None]) -> dict[str, list[ChainEntry]]:
        nodes = self._cluster().nodes
        return {nodes[i].spec.name: a for i, a in answers.items() if a is not None}

    def _write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(summary, indent=1) + "\n"
        (self.config.run_dir / "summary.json").write_text(text)
        if self.config.json_path is not None:
            self.config.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.config.json_path.write_text(text)

    def _write_manifest(self, specs: Sequence[NodeSpec], admin_pk: PublicKey) -> None:
        manifest = {
            "chain_id": self.config.chain_id,
            "admin_public_key": bytes(admin_pk).hex(),
            "admission": "open" if self.config.open_admission else "ticket",
            "netns": None
            if self.plan is None
            else {"bridge": self.plan.bridge, "subnet": str(self.plan.subnet)},
            "nodes": [
                {
                    "name": s.name,
                    "node_id": s.node_id,
                    "public_key": bytes(s.public_key).hex(),
                    "host": s.host,
                    "namespace": s.exec_prefix[-1] if s.exec_prefix else None,
                    "container_engine": s.container_engine,
                }
                for s in specs
            ],
        }
        (self.config.run_dir / "testnet.json").write_text(json.dumps(manifest, indent=1) + "\n")

    # -- output --

    def _any_running(self) -> bool:
        return self.cluster is not None and any(n.is_running() for n in self.cluster.nodes)

    def _tail(self, node: NodeProcess, lines: int = 5) -> str:
        path = node.spec.data_dir / "stderr.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started_at
        line = f"[{elapsed:7.1f}s] {message}"
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()
        if self.config.progress and not message.startswith("started "):
            self._end_progress_line()
            self.stderr.write(line + "\n")
            self.stderr.flush()

    def _show_progress(self) -> None:
        if not self.config.progress:
            return
        cluster = self._cluster()
        observed = self.observed
        line = format_progress(
            Progress(
                elapsed_s=time.monotonic() - self.started_at,
                nodes=self.config.nodes,
                up=sum(1 for n in cluster.nodes if n.is_running() and n.poll_ready()),
                target_slots=self.config.slots,
                genesis=observed.genesis_after_s is not None,
                slot=observed.slot,
                head_slot=observed.head_slot,
                validators=observed.validators,
                skip_blocks=observed.skip_blocks,
                down=sum(1 for n in cluster.nodes[1:] if n.incarnations and not n.is_running()),
            )
        )
        if self.stderr.isatty():
            self.stderr.write("\r" + line + "\x1b[K")
            self._progress_shown = True
        elif time.monotonic() - self._last_quiet_progress >= QUIET_PROGRESS_INTERVAL_S:
            self._last_quiet_progress = time.monotonic()
            self.stderr.write(line + "\n")
        self.stderr.flush()

    def _end_progress_line(self) -> None:
        if self._progress_shown:
            self.stderr.write("\n")
            self._progress_shown = False


def _parse_or_none(parse: Callable[[Any], Any], data: Any) -> Any:
    if data is None:
        return None
    try:
        return parse(data)
    except RecordError:
        return None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --- command line ---------------------------------------------------------------------


def add_testnet_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``testnet`` to an ``edgechain`` sub-command set; it runs :func:`cmd_testnet`."""
    parser = subparsers.add_parser(
        "testnet",
        help="run a network of real node processes on this machine",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_testnet_arguments(parser)
    parser.set_defaults(func=cmd_testnet)
    return parser


def add_testnet_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--nodes", type=int, default=5, help="number of nodes (default 5)")
    add("--committee", type=int, default=3, help="committee size (default 3)")
    add("--slot-duration", type=float, default=2.0, metavar="SEC", help="default 2")
    add(
        "--slots",
        type=int,
        default=30,
        help="stop this many slots after genesis (default 30; 0: run until Ctrl-C)",
    )
    add("--forever", action="store_true", help="run until Ctrl-C (same as --slots 0)")
    add(
        "--join-interval",
        type=float,
        default=1.0,
        metavar="SEC",
        help="seconds between node starts (default 1; the paper used 10)",
    )
    add("--run-dir", type=Path, help="default runs/testnet-<timestamp>")
    add("--json", type=Path, metavar="FILE", help="also write the summary here")
    add("--netns", action="store_true", help="one network namespace per node (root)")
    add("--netns-prefix", default="ec", help="namespace names PREFIX-<i> (default ec)")
    add("--netns-subnet", type=int, default=0, metavar="K", help="use 10.213.K.0/24")
    add("--base-port", type=int, help="node i: UDP/TCP base+2i, HTTP base+2i+1 (default: any)")
    add("--chain-id", default=DEFAULT_CHAIN_ID)
    add("--open-admission", action="store_true", help="no admin key or tickets")
    add(
        "--cpu-capacity",
        type=_parse_cpu_capacity,
        default=DEFAULT_CPU_CAPACITY,
        metavar="CORES|host",
        help="every node offers its apps this many CPU cores (edgechain node --cpu-capacity; "
        f"default {DEFAULT_CPU_CAPACITY:g}); 'host': each reports shares of the whole host, "
        "which every node of one host shares",
    )
    add(
        "--containers",
        type=int,
        nargs="?",
        const=-1,
        default=0,
        metavar="N",
        help="give the first N nodes (all without N) a private Podman service with the "
        "sample image, so they run container apps (needs podman, runc, busybox-static)",
    )
    add("--kill", type=int, default=0, metavar="N", help="kill -9 N random non-bootstrap nodes")
    add("--kill-at", type=int, metavar="SLOT", help="slot at which to kill them")
    add(
        "--restart-after",
        type=int,
        default=5,
        metavar="SLOTS",
        help="restart killed nodes this many slots later (default 5; <0: never)",
    )
    add("--seed", type=int, help="seed of the choice of nodes to kill")
    add("--stop-grace", type=float, default=STOP_GRACE_S, metavar="SEC")
    add("--genesis-timeout", type=float, metavar="SEC")
    add(
        "--node-command",
        default=shlex.join(DEFAULT_NODE_COMMAND),
        help="command that runs one node (default: this python -m edgechain.cli node)",
    )
    add("--quiet", action="store_true", help="no progress line")


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    return LaunchConfig(
        nodes=args.nodes,
        committee=args.committee,
        slot_duration=args.slot_duration,
        slots=0 if args.forever else args.slots,
        run_dir=args.run_dir or default_run_dir(),
        join_interval=args.join_interval,
        json_path=args.json,
        netns=args.netns,
        netns_prefix=args.netns_prefix,
        netns_subnet=args.netns_subnet,
        base_port=args.base_port,
        chain_id=args.chain_id,
        open_admission=args.open_admission,
        cpu_capacity=args.cpu_capacity,
        containers=args.nodes if args.containers == -1 else args.containers,
        kill=args.kill,
        kill_at=args.kill_at,
        restart_after=args.restart_after if args.restart_after >= 0 else None,
        seed=args.seed,
        stop_grace=args.stop_grace,
        genesis_timeout=args.genesis_timeout,
        node_command=tuple(shlex.split(args.node_command)),
        progress=not args.quiet,
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few readable lines for the terminal (the JSON has everything)."""

    def dist(key: str, unit: str) -> str:
        d = summary.get(key)
        return f"p50 {d['p50']} {unit}, p99 {d['p99']} {unit}" if d else "-"

    rss, cpu = summary["rss_mb"], summary["cpu_seconds"]
    lines = [
        f"testnet: {summary['nodes']} nodes, committee {summary['committee']}, "
        f"{summary['slots']} slots of {summary['slot_duration']:g} s"
        + (
            ("  (until Ctrl-C)" if summary.get("until_interrupted") else "  (interrupted)")
            if summary["interrupted"]
            else ""
        ),
        f"  genesis           {'after ' + str(summary['genesis_after_s']) + ' s' if summary['genesis'] else 'NO'}",  # noqa: E501
        f"  join slot         {summary['join_slot']}",
        f"  blocks / skips    {summary['blocks']} / {summary['skip_blocks']} "
        f"(after join: {summary['skip_blocks_after_join']})",
        f"  distinct heads    {summary['distinct_heads']} "
        f"({summary['nodes_answering']} nodes answering)",
        f"  propagation       {dist('block_propagation_ms', 'ms')}",
        f"  rss per node      mean {rss['mean']} MB, max {rss['max']} MB",
        f"  cpu per node      mean {cpu['mean']} s, max {cpu['max']} s",
    ]
    for kill in summary["kills"]:
        lines.append(
            f"  killed {kill['name']} at slot {kill['kill_slot']}: skip blocks excluding it "
            f"{kill['skip_blocks_excluding_it']}, restarted at {kill['restart_slot']}, "
            f"resynced {kill['resynced']}"
        )
    client = summary.get("client")
    if client and client.get("config"):
        granted = "operator key granted" if client["granted"] else "operator key NOT granted"
        lines.append(f"  client config     {client['config']} ({granted})")
    apps = summary.get("apps")
    if apps:
        lines.append(f"  apps              {len(apps)} on chain at the end:")
        width = max(len(str(app["name"])) for app in apps)
        lines += [f"    {format_app_line(app, width)}" for app in apps]
    if summary["crashes"]:
        lines.append(f"  CRASHES           {[c['name'] for c in summary['crashes']]}")
    if summary["failure"]:
        lines.append(f"  FAILURE           {summary['failure']}")
    lines.append(f"  run dir           {summary['run_dir']}")
    return "\n".join(lines)


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so cleanup runs.

    SIGINT too: a launcher started in the background by a non-interactive shell
    inherits SIGINT ignored, and Ctrl-C / ``kill -INT`` must still stop it cleanly.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_testnet(args: argparse.Namespace) -> int:
    """Exit 0: the network worked (genesis, one head, no crash); 1: it did not; 130:
    interrupted before ``--slots`` (with ``--slots 0`` an interruption is the end: 0 or
    1); 2: bad options or the launcher could not start it."""
    try:
        config = config_from_args(args)
        with interrupt_on_termination():
            summary = Launcher(config).run()
    except LocalError as exc:  # LaunchError, NetnsError, KeystoreError
        print(f"edgechain testnet: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        print(f"  json              {args.json}")
    if summary["interrupted"] and config.slots:
        return 130
    # --slots 0: Ctrl-C is the planned end of the run, not an interruption of it.
    return 0 if summary["ok"] else 1


def run_testnet(config: LaunchConfig, stderr: TextIO | None = None) -> dict[str, Any]:
    """Run one testnet in this process and return its summary (tests, benchmarks)."""
    return Launcher(config, stderr).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgechain.lab.testnet`` (same options as ``edgechain testnet``)."""
    parser = argparse.ArgumentParser(prog="edgechain testnet", description=__doc__)
    add_testnet_arguments(parser)
    return cmd_testnet(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
