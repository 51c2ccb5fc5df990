"""Container apps on a real testnet, driven only through the CLI.

``edgechain testnet --containers 3`` starts 4 node processes; nodes 0-2 each get a
private Podman API service with the sample image (``lab/containers.py``), node 3 has no
container engine. A container counter app submitted with ``edgechain apps submit``:

* runs in a container (its processes are in a libpod cgroup), as an unprivileged user,
  on a node with an engine, never on node 3;
* ``apps move`` to node 3 is refused (no engine); to another engine node it migrates,
  and the counter goes on from the state it had;
* killed with its containers (the node's process group SIGKILLed, its containers
  removed from its engine: a device that died), its node is taken for down and the app
  is recovered on another engine node, never node 3; one copy runs at every step. It
  keeps no replicas, so it starts there from nothing, and ``apps show`` says so
  (``state lost``).

Skips only where podman cannot run here (and fails instead with
``EDGECHAIN_REQUIRE_PODMAN=1``, as in CI).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest

from edgechain.lab.faults_live import is_cgroup_frozen, is_dying
from edgechain.runtime.podman import get_unavailable_reason
from edgechain.runtime.samples import SAMPLE_IMAGE

from .live_testnet import EDGECHAIN, LiveTestnet

SETUP_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 90.0
RECOVERY_TIMEOUT_S = 150.0
ENGINE_NODES = ("node-000", "node-001", "node-002")
PLAIN_NODE = "node-003"

pytestmark = pytest.mark.xdist_group("testnet")


@pytest.fixture(autouse=True)
def _needs_podman() -> None:
    reason = get_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("EDGECHAIN_REQUIRE_PODMAN") == "1":
        pytest.fail(f"podman required but unavailable: {reason}")
    pytest.skip(reason)


def _spec_yaml(tag: str) -> str:
    return (
        "name: boxed\n"
        "runtime: container\n"
        f"image: {SAMPLE_IMAGE}\n"
        f'command: ["/bin/sh", "/apps/counter/counter.sh", "0", "0.2", "{tag}"]\n'
        "cpu_bp: 10\n"
        "ram_bp: 10\n"
        "stateful: true\n"
    )


@dataclass(frozen=True)
class Copy:
    """One running copy of the test app on this host: its container's init process."""

    pid: int
    node: str
    uid: int
    cgroup: str
    frozen: bool
    dying: bool
    """SIGKILL pending, exiting or a zombie (``lab/faults_live.is_dying``)."""


class ContainerNet(LiveTestnet):
    def __init__(self, run_dir: Path, tag: str) -> None:
        super().__init__(run_dir, ("--containers", str(len(ENGINE_NODES))))
        self.tag = tag
        self.max_copies = 0
        self.max_copies_seen: list[Copy] = []
        """The unfrozen copies when ``max_copies`` was last raised (for the failure)."""

    def manifest(self) -> dict[str, dict[str, object]]:
        nodes = json.loads((self.run_dir / "testnet.json").read_text())["nodes"]
        return {n["name"]: n for n in nodes}

    def name_of(self, node_id: str) -> str:
        return next(name for name, n in self.manifest().items() if n["node_id"] == node_id)

    def id_of(self, name: str) -> str:
        return str(self.manifest()[name]["node_id"])

    def copies(self) -> list[Copy]:
        """The container inits running the test app (group leaders with our tag), and
        the node whose apps directory their state is bind-mounted from."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status", "uids"]):
            cmdline = proc.info["cmdline"] or []
            if self.tag not in cmdline or "/apps/counter/counter.sh" not in cmdline:
                continue
            try:
                if os.getpgid(proc.pid) != proc.pid:
                    continue
                cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
            except (ProcessLookupError, OSError):
                continue
            node = self.node_running(cgroup)
            frozen = proc.info["status"] == psutil.STATUS_STOPPED or is_cgroup_frozen(proc.pid)
            found.append(
                Copy(proc.pid, node, proc.info["uids"].real, cgroup, frozen, is_dying(proc.pid))
            )
        # A copy killed while paused is thawed to die: awake, SIGKILL pending, it runs
        # no code of its own again (the engine's kill; ``runtime/container_control._discard``).
        running = [c for c in found if not c.frozen and not c.dying]
        if len(running) > self.max_copies:
            self.max_copies = len(running)
            self.max_copies_seen = running
        return found

    def node_running(self, cgroup: str) -> str:
        """The engine node whose container has this cgroup (``libpod-<container id>``)."""
        for name in ENGINE_NODES:
            if any(c.id in cgroup for c in self.engine_containers(name)):
                return name
        return "?"

    def engine_containers(self, name: str) -> list[Any]:
        """The containers of a node's engine, through its Engine API (none once the
        engine is gone)."""
        client = docker.DockerClient(base_url=str(self.manifest()[name]["container_engine"]))
        try:
            return list(client.containers.list(all=True))
        except docker.errors.DockerException:
            return []
        finally:
            client.close()

    def remove_containers(self, name: str) -> None:
        for container in self.engine_containers(name):
            container.remove(force=True)

    def get_app(self) -> str:
        assert self.app is not None, "the test app is not submitted yet"
        return self.app

    def count_on(self, name: str) -> int:
        count = self.run_dir / name / "apps" / self.get_app() / "state" / "count"
        try:
            return int(count.read_text())
        except (OSError, ValueError):
            return -1

    def runs_on(self, name: str) -> bool:
        view = self.cli("apps", "show", self.get_app())
        if view["state"] != "running" or view["node"] is None:
            return False
        copies = self.copies()
        return (
            self.name_of(view["node"]) == name
            and view["reported_on"] == [view["node"]]
            and [(c.node, c.frozen) for c in copies] == [(name, False)]
            and self.count_on(name) > 0
        )

    def describe_copies(self) -> str:
        return f"copies {self.copies()}"

    def node_status(self, name: str) -> dict[str, Any]:
        port = json.loads((self.run_dir / name / "ready.json").read_text())["http_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as reply:
            status: dict[str, Any] = json.load(reply)
        return status

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's process group (node and watchdog are gone at once)."""
        pid = json.loads((self.run_dir / name / "ready.json").read_text())["pid"]
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def _logged_start(net: ContainerNet, node: str) -> bool:
    """``apps logs`` shows the counter's first line, from the engine on ``node``."""
    assert net.app is not None
    logs = net.cli("apps", "logs", net.app, "--lines", "20")["logs"]
    return any(
        log["node_id"] == node and any("counter: starting" in line for line in log["lines"])
        for log in logs
    )


def test_container_app_through_the_cli(run_dir: Path) -> None:
    tag = f"ct-live-{os.getpid()}-{time.monotonic_ns()}"
    net = ContainerNet(run_dir, tag)
    spec = run_dir.parent / "boxed.yaml"
    spec.write_text(_spec_yaml(tag))
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        engines = {name: n["container_engine"] for name, n in net.manifest().items()}
        assert [name for name, url in sorted(engines.items()) if url] == list(ENGINE_NODES)
        # each node says which runtimes it has (GET /status)
        for name in (*ENGINE_NODES, PLAIN_NODE):
            runtimes = net.node_status(name)["runtimes"]
            assert runtimes == (["container", "process"] if name in ENGINE_NODES else ["process"])

        # submit: placed on an engine node, in a container, as an unprivileged user.
        submitted = net.cli("apps", "submit", str(spec))
        assert submitted["applied"]
        net.app = submitted["app_id"]
        net.wait_for(
            lambda: any(net.runs_on(name) for name in ENGINE_NODES), "placement", STEP_TIMEOUT_S
        )
        shown = net.cli("apps", "show", net.app)["node"]
        first = net.name_of(shown)
        (copy,) = net.copies()
        assert copy.uid != 0 and "libpod" in copy.cgroup, copy
        # its output, from the engine's log, read with the operator's signature
        net.wait_for(lambda: _logged_start(net, shown), "the container's output", STEP_TIMEOUT_S)

        # a node without an engine is refused outright
        refused = subprocess.run(
            [EDGECHAIN, "--client", str(net.client), "apps", "move", net.app,
             net.id_of(PLAIN_NODE)[:12]],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "lacks a container engine" in refused.stderr, refused

        # move to another engine node (not the bootstrap node, which the kill spares)
        target = next(n for n in ENGINE_NODES[1:] if n != first)
        before = net.count_on(first)
        assert net.cli("apps", "move", net.app, net.id_of(target)[:12])["applied"]
        net.wait_for(lambda: net.runs_on(target), "the move", STEP_TIMEOUT_S)
        assert net.count_on(target) >= before > 0
        history = net.cli("apps", "history", net.app)
        (timing,) = [m for m in history["migrations"] if m["outcome"] == "completed"]
        assert timing["save_ms"] >= 0 and timing["resume_ms"] >= 0, timing

        # the device dies: its node and its containers; the app comes back elsewhere
        net.kill_node(target)
        net.remove_containers(target)
        net.wait_for(
            lambda: any(net.runs_on(n) for n in ENGINE_NODES if n != target),
            "the recovery",
            RECOVERY_TIMEOUT_S,
        )
        events = [e["kind"] for e in net.cli("apps", "history", net.app)["events"]]
        assert "recover" in events, events

        # It keeps no replicas, and no node it is recovered onto holds a copy (the move's
        # origin deleted its own once the move landed): it started from nothing, and
        # its new node says so where the user looks.
        def is_loss_told() -> bool:
            on_node = net.cli("apps", "show", net.get_app()).get("on_node") or {}
            return "it keeps no replicas" in str(on_node.get("state_lost"))

        net.wait_for(is_loss_told, "its node to tell the state was lost", STEP_TIMEOUT_S)
        assert PLAIN_NODE not in {c.node for c in net.copies()}
        assert net.max_copies == 1, net.max_copies_seen

        assert net.cli("apps", "rm", net.app)["applied"]
        net.wait_for(lambda: net.copies() == [], "the app to be removed", STEP_TIMEOUT_S)
    finally:
        _, output = net.stop()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] and summary["containers"] == len(ENGINE_NODES), output
    assert summary["leftover_process_groups"] == []
    assert net.copies() == []
