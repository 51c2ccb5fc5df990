"""The testnet launcher (:class:`Launcher`): one run of ``edgechain testnet`` from
start to summary (what it does and writes: :mod:`edgechain.lab.testnet`). It prepares
keys, tickets and data directories, starts the network, watches it, kills and restarts
nodes on request, then collects the nodes' answers (:mod:`edgechain.lab.testnet_collect`)
and writes the summary (:mod:`edgechain.lab.testnet_summary`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from edgechain.chain.assembly import make_ticket
from edgechain.chain.attestation import is_one_failure_fatal
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.errors import CANNOT_LISTEN
from edgechain.lab.cluster import (
    HTTP_TIMEOUT_S,
    Cluster,
    NodeApiError,
    NodeProcess,
    NodeReady,
    NodeSpec,
    Seeds,
    allocate_ports,
    get_node_name,
    http_get_json,
    now_ms,
)
from edgechain.lab.containers import ContainerEngines
from edgechain.lab.netns import NetnsNetwork, NetnsPlan, build_exec_prefix, plan_netns
from edgechain.lab.operator import OperatorSetup
from edgechain.lab.package_sources import PACKAGE_DIR, compile_package, compute_source_digest
from edgechain.lab.small_disk import mount_small_disk
from edgechain.lab.summary import Collected, find_join_slot
from edgechain.lab.summary_records import HeadObservation, KillRecord, count_validators
from edgechain.lab.testnet_collect import collect
from edgechain.lab.testnet_config import LaunchConfig, LaunchError
from edgechain.lab.testnet_progress import LaunchOutput, Progress
from edgechain.lab.testnet_summary import (
    Observed,
    summarize_run,
    write_summary,
)
from edgechain.node.identity_clash import EXIT_IDENTITY_CLASH
from edgechain.node_daemon import EXIT_DISK_FULL, EXIT_STORE_FAILED
from edgechain.runtime.appuser import is_open_to_others
from edgechain.types import PublicKey

RESOURCE_SAMPLE_INTERVAL_S = 2.0
MAX_POLL_THREADS = 16

EXIT_REASONS = {
    EXIT_DISK_FULL: "crash: its disk is full",
    EXIT_STORE_FAILED: "crash: its block store failed",
    EXIT_IDENTITY_CLASH: "crash: another process signs as it",
}
"""What the log says of a node that exited by itself with a status that tells why
(``node_daemon.py``); any other status is a crash without a reason."""


PORT_RETRIES = 3
"""Starts again of a node that could not listen on its ports before it was ever ready:
a testnet's fixed ports lie in the kernel's ephemeral range, where another process's
outgoing socket may hold one for a moment (seen: a 6-node testnet whose node-001 found
its peer port taken, and the testnet waited for it for good)."""
PORT_RETRY_DELAY_S = 1.0
"""The wait before such a start again."""


class Launcher:
    """Runs one testnet from start to summary; see :mod:`edgechain.lab.testnet`."""

    def __init__(self, config: LaunchConfig, stderr: TextIO | None = None) -> None:
        config.check()
        self.config = config
        self.observed = Observed()
        self.interrupted = False
        self.stop_requested = threading.Event()
        """Set from another thread (``lab/chaos_testnet.py`` runs the launcher in one):
        the watch loop ends as after its last slot, and the run collects and stops."""
        self.failure: str | None = None
        self.mounted: list[Path] = []
        """Data directories on a small disk of their own (``LaunchConfig.small_disks``),
        left mounted for the caller."""
        self.plan: NetnsPlan | None = None
        self.cluster: Cluster | None = None
        self.operator: OperatorSetup | None = None
        self.started_at = time.monotonic()
        self.output = LaunchOutput(
            stderr if stderr is not None else sys.stderr, config.progress, self.started_at
        )
        self.source_digest = compute_source_digest(PACKAGE_DIR)
        self.rng = random.Random(config.seed)
        self._pool = ThreadPoolExecutor(max_workers=min(MAX_POLL_THREADS, config.nodes))
        self._port_retries: dict[int, int] = {}
        """Each node's starts again for a taken port (``PORT_RETRIES``)."""
        self._port_retry_due: dict[int, float] = {}
        """Nodes to start again for a taken port, and when."""

    # -- public --

    def run(self) -> dict[str, Any]:
        """Start, watch, collect, stop; returns the summary (also written to disk)."""
        run_dir = self.config.run_dir
        if run_dir.exists() and any(run_dir.iterdir()):
            # Fresh keys every run: reusing a directory would mix two networks' nodes.
            raise LaunchError(f"run directory {run_dir} exists and is not empty")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.output.open_log(self.config.run_dir / "launcher.log")
        if os.geteuid() == 0 and not is_open_to_others(run_dir):
            self.output.log(
                f"warning: {run_dir} is closed to others: the nodes' apps run as an "
                "unprivileged user and cannot start there (use a --run-dir whose "
                "directories all have o+x)"
            )
        floor = self.config.committee + 1
        if is_one_failure_fatal(floor, self.config.committee):
            self.output.log(
                f"warning: a committee of {self.config.committee} needs every member's "
                f"vote: once the chain is down to its floor of {floor} validators, one "
                "dead node stops it (no block; every app frozen) until that node returns "
                "(--committee 3 tolerates one)"
            )
        collected: Collected | None = None
        if not compile_package(PACKAGE_DIR):
            self.output.log(f"bytecode of {PACKAGE_DIR} not written: each node compiles it")
        try:
            specs, admin_key = self._prepare()
            with contextlib.ExitStack() as stack:
                # First in, last out: the nodes remove their containers before their
                # engines stop.
                engines = stack.enter_context(ContainerEngines(self.output.log))
                urls = engines.start((s.index, s.data_dir) for s in specs[: self.config.containers])
                specs = [dataclasses.replace(s, container_engine=urls.get(s.index)) for s in specs]
                self._write_manifest(specs, admin_key)
                if self.plan is not None:
                    stack.enter_context(NetnsNetwork(self.plan))
                self.cluster = Cluster(
                    self.config.get_node_options(),
                    specs,
                    admin_key,
                    self.output.log,
                    self.config.stop_grace,
                )
                # Registered after the namespaces: runs first, nodes stop before their
                # namespaces go away.
                stack.callback(self.cluster.stop_all)
                collected = self._run_and_collect()
            summary = summarize_run(
                self.config,
                self._cluster(),
                self.observed,
                collected,
                interrupted=self.interrupted,
                failure=self.failure,
                started_at=self.started_at,
                source_digest=self.source_digest,
                operator=self.operator,
                log=self.output.log,
            )
            write_summary(summary, self.config.run_dir, self.config.json_path)
            return summary
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.output.end_progress_line()
            self.output.close_log()

    # -- phases --

    def _prepare(self) -> tuple[list[NodeSpec], PublicKey]:
        """Keys, tickets, data dirs and (with --netns) the address plan."""
        config = self.config
        admin_sk = create_keystore(config.run_dir / "admin.key")
        admin_pk = bls.sk_to_pk(admin_sk)
        self.operator = OperatorSetup(
            config.run_dir, admin_sk, config.slot_duration, self.output.log
        )
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
            small_disk = dict(config.small_disks).get(index)
            if small_disk is not None:
                mount_small_disk(data_dir, small_disk)
                self.mounted.append(data_dir)
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
                    hostile=dict(config.hostile).get(index),
                )
            )
        return specs, admin_pk

    def _run_and_collect(self) -> Collected | None:
        try:
            self._start_network()
            self._watch()
        except KeyboardInterrupt:
            self.interrupted = True
            self.output.log("interrupted: stopping the testnet")
        except LaunchError as exc:
            self.failure = str(exc)
            self.output.log(f"failed: {exc}")
        if not self._any_running():
            return None
        try:
            self._sample_resources()
            join_slot = find_join_slot(self.observed.heads, self.config.nodes)
            return collect(self._cluster(), self.config.run_dir, self._get, self._pool, join_slot)
        except KeyboardInterrupt:
            # A second Ctrl-C: skip collecting, just stop.
            self.interrupted = True
            return None

    def _start_network(self) -> None:
        cluster = self._cluster()
        cluster.start(0)
        ready = self._wait_ready(0)
        host = cluster.nodes[0].spec.host
        address = f"{host}:{ready.udp_port}"
        cluster.seeds = Seeds((address,), cluster.nodes[0].spec.public_key)
        self.output.log(f"genesis node ready at {address} (http {ready.http_port})")

    def _wait_ready(self, index: int) -> NodeReady:
        node = self._cluster().nodes[index]
        deadline = time.monotonic() + self.config.ready_timeout
        while time.monotonic() < deadline:
            ready = node.poll_ready()
            if ready is not None:
                return ready
            if not node.is_running() and node.reap() and self._is_port_retry(node):
                time.sleep(PORT_RETRY_DELAY_S)
                self._cluster().start(index)
            elif not node.is_running():
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
            ) or self.stop_requested.is_set():
                break
            if not self._any_running():
                raise LaunchError("every node has exited")
            upcoming = [next_reference, next_sample]
            if joined < config.nodes:
                upcoming.append(next_join)
            time.sleep(max(0.02, min(upcoming) - time.monotonic()))
        operator = self.operator
        if operator is not None and operator.is_in_flight() and not self.stop_requested.is_set():
            # A short run (--slots 2) can end while the grant waits for its block: the
            # nodes run on until it settles, so the run still leaves client.toml.
            self.output.log("the last slot passed: waiting for the operator key's grant")
            operator.settle(self._pool)
        # Slot S's block is gossiped within slot S; a short settle lets the last
        # copies arrive before the heads are compared.
        time.sleep(config.slot_duration / 4)

    def _setup_operator(self, joined: int) -> None:
        """Grant the operator key once there is a chain and every node is up."""
        operator = self.operator
        if operator is None:
            return
        urls = None
        if (
            operator.future is None
            and self.observed.genesis_after_s is not None
            and joined == self.config.nodes
            and not self._port_retry_due
        ):
            nodes = self._cluster().nodes
            addresses = [self._node_address(i) for i in range(self.config.nodes)]
            # A node that crashed is not waited for: the run went on without a client
            # config for good when one crashed before the grant. (A node the launcher
            # killed is, until it is started again.)
            crashed = {c["name"] for c in self.observed.crashes}
            exited = [n.spec.name for n in nodes if n.spec.name in crashed and not n.is_running()]
            if all(
                a is not None or n.spec.name in exited
                for a, n in zip(addresses, nodes, strict=True)
            ):
                urls = [f"http://{a[0]}:{a[1]}" for a in addresses if a is not None]
                if exited and urls:  # the grant starts now: said once
                    self.output.log(
                        f"client config without {', '.join(exited)} (exited: see its stderr.log)"
                    )
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
            self.output.log(f"genesis after {observed.genesis_after_s:.1f}s")
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
        """Read new ready files; reap exited nodes (one not told to exit crashed, unless
        it exited 0: only a node that left the network on purpose does, node/leaving.py)."""
        now = time.monotonic()
        for index, due in list(self._port_retry_due.items()):
            if now >= due:
                del self._port_retry_due[index]
                self._cluster().start(index)
        for node in self._cluster().nodes:
            node.poll_ready()
            ended = node.reap()
            if ended is None or ended.ended_by is not None:
                continue
            if ended.exit_code == 0:
                self.observed.left.append({"name": node.spec.name, "slot": self.observed.slot})
                self.output.log(f"{node.spec.name} left the network (exit code 0)")
                continue
            if self._is_port_retry(node):
                self._port_retry_due[node.spec.index] = now + PORT_RETRY_DELAY_S
                continue
            crash = {
                "name": node.spec.name,
                "exit_code": ended.exit_code,
                "slot": self.observed.slot,
                "stderr_tail": self._tail(node),
            }
            self.observed.crashes.append(crash)
            why = EXIT_REASONS.get(ended.exit_code or 0, "crash")
            self.output.log(f"{node.spec.name} exited with {ended.exit_code} ({why})")

    def _is_port_retry(self, node: NodeProcess) -> bool:
        """Whether to start ``node`` again: its incarnation that just ended never got
        ready because a port was taken (``PORT_RETRIES`` times at most). Counted and
        logged here; the caller starts it after ``PORT_RETRY_DELAY_S``."""
        tried = self._port_retries.get(node.spec.index, 0)
        if node.ready is not None or tried >= PORT_RETRIES:
            return False
        tail = self._tail(node, lines=2)
        if CANNOT_LISTEN not in tail:
            return False
        self._port_retries[node.spec.index] = tried + 1
        self.output.log(
            f"{node.spec.name} {tail.splitlines()[-1].split(': ', 1)[-1]}: starting it "
            f"again ({tried + 1} of {PORT_RETRIES})"
        )
        return True

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

    def _show_progress(self) -> None:
        if not self.config.progress:
            return
        cluster = self._cluster()
        observed = self.observed
        self.output.show_progress(
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


def run_testnet(config: LaunchConfig, stderr: TextIO | None = None) -> dict[str, Any]:
    """Run one testnet in this process and return its summary (tests, benchmarks)."""
    return Launcher(config, stderr).run()
