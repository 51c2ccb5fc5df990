"""The whole app lifecycle on a real testnet, driven only through the CLI.

``edgechain testnet --forever`` starts 4 node processes (committee 2, 1 s slots) and
writes ``client.toml``; every step after that is an ``edgechain --client ...``
subprocess: submit, list, stop, start, update, move to a named node, remove. After each
step the host's process table must match what the chain says: one process group per
running instance, on the node the app is placed on (found from the instance's state
directory), none for a stopped or removed app; and the app's state (a counter) is kept
across stop/start, update and move. Ctrl-C then stops the testnet, which still writes
its summary with the app's history.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from edgechain.lab.faults_live import is_dying
from edgechain.runtime.app_cgroups import (
    find_cgroup2_mount,
    get_node_cgroup,
    get_unavailable_reason,
)
from edgechain.runtime.samples import get_apps_dir

from .live_testnet import LiveTestnet

HIDDEN = get_unavailable_reason() == ""
"""Apps get a cgroup here (a root node with a cgroup v2 hierarchy)."""
COMPANIONS = 2 if HIDDEN else 1
"""Companion loops of the app: the one that leaves its session, and the hidden one."""
SETUP_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 90.0
STARTING = re.compile(r"counter: starting from (\d+)")
"""The counter's first line (``apps/counter/counter.sh``): the count a copy starts from."""

pytestmark = pytest.mark.xdist_group("testnet-light")


def _spec_yaml(tag: str, interval: str) -> str:
    """The counter, after it starts a companion loop in a session of its own (as a
    daemon would): that loop leaves the app's process group, and must still stop,
    move and go with the app (``runtime/app_processes.py``)."""
    script = get_apps_dir() / "counter" / "counter.sh"
    hidden = (
        # A second loop that also clears its environment: only its cgroup finds it.
        "env -i setsid /bin/sh -c 'while :; do sleep 0.2; done' \\\"$0-hidden\\\" & "
        if HIDDEN
        else ""  # it would outlive its app, and the test
    )
    wrapper = (
        "setsid /bin/sh -c 'while :; do sleep 0.2; done' \\\"$0-escaped\\\" & "
        f"{hidden}"
        f'exec /bin/sh {script} 0 {interval} \\"$0\\"'
    )
    return (
        "name: lifecycle\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "-c", "{wrapper}", "{tag}"]\n'
        "cpu_bp: 10\n"
        "ram_bp: 10\n"
        "stateful: true\n"
    )


@dataclass(frozen=True)
class Instance:
    """One running copy of the test app: its process group and where it runs."""

    pid: int
    node: str
    """Node name (``node-001``) from the state directory it was started with."""
    app: str
    cmdline: tuple[str, ...]
    frozen: bool
    dying: bool
    """SIGKILL pending, exiting or a zombie (``lab/faults_live.is_dying``): a retired
    origin, frozen for its save and then killed, is woken by the kernel only to die and
    reads as running meanwhile; it runs nothing, so it is no second copy."""


class LiveNet(LiveTestnet):
    """The testnet, and the test app's copies on this host."""

    def __init__(self, run_dir: Path, tag: str) -> None:
        super().__init__(run_dir)
        self.tag = tag
        self.max_copies = 0

    def names(self) -> dict[str, str]:
        """Node id -> node name, from the launcher's manifest."""
        manifest = json.loads((self.run_dir / "testnet.json").read_text())
        return {n["node_id"]: n["name"] for n in manifest["nodes"]}

    def instances(self) -> list[Instance]:
        """The test app's copies on this host, one per process group (group leaders:
        the shell's forks carry its command line until they exec)."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = tuple(proc.info["cmdline"] or ())
            if not (any("counter.sh" in part for part in cmdline) and self.tag in cmdline):
                continue
            try:
                if os.getpgid(proc.pid) != proc.pid:
                    continue
                state_dir = Path(proc.environ()["EDGECHAIN_STATE_DIR"])
            except (ProcessLookupError, psutil.Error, KeyError):
                continue
            relative = state_dir.relative_to(self.run_dir)  # node-NNN/apps/<app>/state
            frozen = proc.info["status"] == psutil.STATUS_STOPPED
            found.append(
                Instance(
                    proc.pid, relative.parts[0], relative.parts[2], cmdline, frozen,
                    is_dying(proc.pid),
                )
            )  # fmt: skip
        running = sum(1 for i in found if not i.frozen and not i.dying)
        self.max_copies = max(self.max_copies, running)
        return found

    def escaped(self) -> list[str]:
        """The node (name) of each companion loop that runs (not stopped) here, sorted:
        one per copy, two where the hidden loop runs too (:data:`COMPANIONS`)."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmdline = proc.info["cmdline"] or ()
            if not cmdline or cmdline[-1] not in (f"{self.tag}-escaped", f"{self.tag}-hidden"):
                continue
            if proc.info["status"] in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                continue
            node = self._get_node(proc)
            if node is not None:
                found.append(node)
        return sorted(found)

    def _get_node(self, proc: psutil.Process) -> str | None:
        """The node whose app ``proc`` belongs to: by its environment, or by its cgroup
        (``runtime/app_cgroups.py``) where it has none."""
        try:
            state_dir = proc.environ().get("EDGECHAIN_STATE_DIR")
            if state_dir is not None:
                return Path(state_dir).relative_to(self.run_dir).parts[0]
            with open(f"/proc/{proc.pid}/cgroup") as file:
                lines = file.read().splitlines()
        except (OSError, psutil.Error):
            return None
        mount = find_cgroup2_mount() or ""
        cgroups = [mount + line[3:] for line in lines if line.startswith("0::")]
        for name in self.names().values():
            node = get_node_cgroup(str(self.run_dir / name / "apps"))
            if cgroups and node is not None and os.path.dirname(cgroups[0]) == node:
                return name
        return None

    def read_count(self, node: str, app: str) -> int:
        try:
            return int((self.run_dir / node / "apps" / app / "state" / "count").read_text())
        except (OSError, ValueError):
            return -1

    def describe_copies(self) -> str:
        return f"instances {self.instances()}"


def _placed(net: LiveNet, app: str, node: str | None = None) -> bool:
    view = net.cli("apps", "show", app)
    where = view["node"]
    if view["state"] != "running" or where is None or (node is not None and where != node):
        return False
    name = net.names()[where]
    instances = net.instances()
    return (
        view["reported_on"] == [where]
        and [(i.node, i.app) for i in instances] == [(name, app)]
        and net.read_count(name, app) > 0
    )


def new_counter_net(run_dir: Path, prefix: str) -> tuple[LiveNet, Path]:
    """A testnet (not started) and the spec file of a counter app tagged for it."""
    tag = f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
    spec = run_dir.parent / "app.yaml"
    spec.write_text(_spec_yaml(tag, "0.2"))
    return LiveNet(run_dir, tag), spec


def test_app_lifecycle_through_the_cli(run_dir: Path) -> None:
    net, spec = new_counter_net(run_dir, "cli-live")
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        status = net.cli("status")
        assert status["operator"]["operator"], status

        # submit: placed on one node, one copy running there.
        submitted = net.cli("apps", "submit", str(spec))
        assert submitted["applied"] and submitted["kind"] == "submit"
        app = net.app = submitted["app_id"]
        net.wait_for(lambda: _placed(net, app), "placement", STEP_TIMEOUT_S)
        # listed fleet-wide, with its node, by every node of the config
        node = net.cli("apps", "show", "lifecycle")["node"]
        listed = [a for a in net.cli("apps", "list") if a["app_id"] == app]
        assert [(a["name"], a["node"], a["state"]) for a in listed] == [
            ("lifecycle", node, "running")
        ]
        name = net.names()[node]
        net.wait_for(
            lambda: net.escaped() == [name] * COMPANIONS, "its companion loop", STEP_TIMEOUT_S
        )
        # submit again (an operator's retry): refused, the name is taken; still one app.
        refusal = net.cli_refused("apps", "submit", str(spec))
        assert f"an app named 'lifecycle' exists (app {app[:16]})" in refusal, refusal
        assert [a["app_id"] for a in net.cli("apps", "list") if a["name"] == "lifecycle"] == [app]

        # stop: no copy left anywhere, the record keeps its node and the state stays.
        # (The node is read again right before each command: the planner may have moved
        # the app since, which is not what these steps check.)
        node = net.cli("apps", "show", app)["node"]
        name = net.names()[node]
        stopped = net.cli("apps", "stop", "lifecycle")
        assert stopped["app"]["state"] == "stopped" and stopped["app"]["node"] == node
        net.wait_for(lambda: net.instances() == [], "the app to stop", STEP_TIMEOUT_S)
        net.wait_for(lambda: net.escaped() == [], "its companion to stop", STEP_TIMEOUT_S)
        count_stopped = net.read_count(name, app)
        assert count_stopped > 0

        # start: runs again on the same node, counting on from the kept state.
        assert net.cli("apps", "start", app[:10])["app"]["state"] == "running"
        net.wait_for(
            lambda: _placed(net, app, node) and net.read_count(name, app) > count_stopped,
            "the app to start again",
            STEP_TIMEOUT_S,
        )

        # update: a new spec version (faster interval), same id, same node, state kept.
        spec.write_text(_spec_yaml(net.tag, "0.1"))
        node = net.cli("apps", "show", app)["node"]
        name = net.names()[node]
        count_before_update = net.read_count(name, app)
        updated = net.cli("apps", "update", app, str(spec))
        assert updated["app"]["version"] == 2 and updated["app"]["node"] == node

        def runs_new_version() -> bool:
            instances = net.instances()
            return (
                _placed(net, app, node)
                and len(instances) == 1
                and "0.1" in instances[0].cmdline
                and net.read_count(name, app) > count_before_update
            )

        net.wait_for(runs_new_version, "the updated app", STEP_TIMEOUT_S)
        net.wait_for(
            lambda: net.escaped() == [name] * COMPANIONS, "one companion loop", STEP_TIMEOUT_S
        )

        # logs: its output on its node, read with the operator's signature; each start
        # (the first, after the stop, after the update) said where it counts from. The
        # first may lie in another node's log: a stop that lands while the planner moves
        # the app ends the handover with the state on the new node, which never ran it
        # (CI: that node's log began at the start after the stop).
        logs = net.cli("apps", "logs", app, "--lines", "1000")["logs"]
        assert logs[-1]["node_id"] == node and logs[-1]["running"], logs
        lines = [line for log in logs for line in log["lines"]]
        starts = [int(m.group(1)) for line in lines if (m := STARTING.search(line))]
        assert len(starts) >= 3 and count_stopped in starts, logs
        assert starts[-1] >= count_before_update, (starts, count_before_update)

        # move to a named node (by id prefix): one copy, there, the counter goes on.
        target = sorted(n for n in net.names() if n != node)[0]
        count_before_move = net.read_count(name, app)
        moved = net.cli("apps", "move", app, target[:12])
        assert moved["applied"]
        net.wait_for(lambda: _placed(net, app, target), "the move", STEP_TIMEOUT_S)
        target_name = net.names()[target]
        assert net.read_count(target_name, app) >= count_before_move
        net.wait_for(
            lambda: not (run_dir / name / "apps" / app).exists(),
            "the origin to delete its copy",
            STEP_TIMEOUT_S,
        )
        # The origin deleted its copy but kept its log: both nodes' output is shown,
        # the origin's before (not running there), the chain's node last.
        logs = net.cli("apps", "logs", app, "--lines", "1000")["logs"]
        shown = [(log["node_id"], log["running"]) for log in logs]
        assert shown[-1] == (target, True) and (node, False) in shown[:-1], logs
        assert any(line.startswith("counter: starting") for line in logs[0]["lines"]), logs
        # The companion moved too: none left at the origin beside the new copy's.
        net.wait_for(
            lambda: net.escaped() == [target_name] * COMPANIONS,
            "one companion, moved",
            STEP_TIMEOUT_S,
        )
        history = net.cli("apps", "history", app)
        assert history["events"], history

        # remove: gone from the chain, no copy, its state deleted.
        removed = net.cli("apps", "rm", "lifecycle")
        assert removed["applied"]
        net.wait_for(
            lambda: all(a["app_id"] != app for a in net.cli("apps", "list")),
            "the app to leave the registry",
            STEP_TIMEOUT_S,
        )
        net.wait_for(
            lambda: net.instances() == [] and not (run_dir / target_name / "apps" / app).exists(),
            "the app and its state to be deleted",
            STEP_TIMEOUT_S,
        )
        assert net.max_copies == 1
        net.wait_for(lambda: net.escaped() == [], "the companion to go", STEP_TIMEOUT_S)
    finally:
        code, output = net.stop()
    # Ctrl-C is how a --forever testnet ends: it stops every node and writes its summary.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 0, output
    assert summary["interrupted"] and summary["ok"]
    assert summary["client"]["granted"]
    assert summary["leftover_process_groups"] == []
    assert net.instances() == []
