"""What the exactly-once experiment (``lab/exactly_once.py``) watches and sets up: its
configuration, the apps it submits through the CLI, the process table over the whole
run (:class:`Observer`: the most unfrozen copies of an app ever seen at one moment),
the fleet as the chain places it, the replicas the replica nodes keep, and the count
each new instance started from (its ``app.log``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.lab.faults_live import (
    Instance,
    LiveError,
    LiveTestnet,
    Replica,
    by_app,
    confirm_running,
    read_replica,
    read_start_counts,
    scan_instances,
    wait_until,
)
from edgechain.runtime.samples import get_apps_dir

SETTLE_SLOTS = 2
"""Sampling goes on this long after the last event a scenario waits for, to catch a
second copy that would only show up late."""
START_LINE_TIMEOUT_S = 5.0
NODES_POLL_S = 1.0


@dataclass(frozen=True)
class ExactlyOnceConfig:
    run_dir: Path
    """Must not exist yet, under a directory others may traverse (0711)."""
    nodes: int = 6
    committee: int = 3
    apps: int = 12
    slot_s: float = 1.0
    replica_every: int = 3
    pause_s: float = 20.0
    counter_interval_s: float = 0.5
    sample_s: float = 0.1
    setup_timeout_s: float = 300.0
    vdf_fraction: float | None = None
    """Of a slot, the producer's VDF (``testnet --vdf-fraction``; None: the node's 0.25)."""
    log: Callable[[str], None] = field(default=lambda _: None)


@dataclass(frozen=True)
class CounterApp:
    name: str
    tag: str
    app: str
    """App id (hex)."""


class Observer:
    """The process table over a run, and the worst it ever showed."""

    def __init__(self, net: LiveTestnet, apps: Mapping[str, CounterApp]) -> None:
        self.net = net
        self.apps = apps
        self.tags = {a.tag for a in apps.values()}
        self.samples = 0
        self.max_copies = 0
        """The most unfrozen copies of one app at one moment (confirmed)."""
        self.unconfirmed_doubles = 0
        """Samples showing two unfrozen copies that a second look did not confirm."""
        self.doubles: list[dict[str, Any]] = []
        self.max_gap_s = 0.0
        """The longest time between two samples of a fault's sampling loop."""
        self._last: float | None = None

    def scan(self, timed: bool = False) -> tuple[float, list[Instance]]:
        """One sample of the process table, with the time it ended (what it saw was
        true by then: latencies measured to it are never short); ``timed``: one of a
        fault's sampling loop (between those, the gap is measured; waits between
        faults poll more slowly)."""
        instances = scan_instances(self.net.run_dir, self.tags)
        t = time.time()
        if timed and self._last is not None:
            self.max_gap_s = max(self.max_gap_s, t - self._last)
        self._last = t if timed else None
        self.samples += 1
        for app, group in by_app(instances).items():
            unfrozen = [i for i in group if not i.frozen]
            copies = len(unfrozen)
            if copies > 1:
                copies = len(confirm_running(i.pid for i in unfrozen))
                if copies > 1:
                    nodes = sorted(i.node for i in unfrozen)
                    self.doubles.append({"t": t, "app": app, "nodes": nodes})
                else:
                    self.unconfirmed_doubles += 1
            self.max_copies = max(self.max_copies, copies)
        return t, instances

    def get_running_once(self, instances: list[Instance]) -> dict[str, Instance]:
        """App -> its instance, for the apps running exactly once: one unfrozen instance
        (a frozen copy does not run, wherever it is)."""
        running = by_app(i for i in instances if not i.frozen)
        return {app: group[0] for app, group in running.items() if len(group) == 1}

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_unfrozen_copies": self.max_copies,
            "doubles": self.doubles,
            "unconfirmed_doubles": self.unconfirmed_doubles,
            "max_sample_gap_s": round(self.max_gap_s, 3),
        }


def make_spec(app: CounterApp, config: ExactlyOnceConfig) -> str:
    script = get_apps_dir() / "counter" / "counter.sh"
    return (
        f"name: {app.name}\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "{script}", "0", "{config.counter_interval_s:g}", "{app.tag}"]\n'
        "stateful: true\n"
        f"replica_interval_slots: {config.replica_every}\n"
    )


def submit_apps(net: LiveTestnet, config: ExactlyOnceConfig) -> dict[str, CounterApp]:
    """Submit the apps one by one through the CLI to the first node (each waits for its
    block: submissions sent without waiting could reach a producer out of order and be
    refused as replays)."""
    client = net.write_one_node_client()
    run = secrets.token_hex(3)
    apps = {}
    spec_dir = net.run_dir / "specs"
    spec_dir.mkdir(exist_ok=True)
    for index in range(config.apps):
        name = f"eo-counter-{index:02d}"
        pending = CounterApp(name, f"eo-{os.getpid()}-{run}-{index:02d}", "")
        path = spec_dir / f"{name}.yaml"
        path.write_text(make_spec(pending, config))
        net.tags.add(pending.tag)
        answer = net.cli("apps", "submit", str(path), client=client)
        if not answer.get("applied"):
            raise LiveError(f"submission of {name} not applied: {answer}")
        apps[answer["app_id"]] = CounterApp(name, pending.tag, answer["app_id"])
    return apps


def get_fleet(net: LiveTestnet, avoid: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``GET /apps`` by app id, with node and replica node as node names."""
    names = net.get_names()
    fleet = {}
    for view in net.get("/apps", avoid):
        view["node_name"] = names.get(view.get("node") or "")
        view["replica_name"] = names.get(view.get("replica_node") or "")
        fleet[view["app_id"]] = view
    return fleet


def wait_steady(
    net: LiveTestnet, obs: Observer, since_slot: int, timeout: float, avoid: tuple[str, ...] = ()
) -> None:
    """Every app runs exactly once (one process group, unfrozen), on the node the chain
    places it on, and its replica node holds a replica of a slot >= ``since_slot``."""

    missing = ["nothing sampled yet"]

    def steady() -> bool:
        _, instances = obs.scan()
        once = obs.get_running_once(instances)
        if len(instances) != len(obs.apps) or set(once) != set(obs.apps):
            # Strict here, before a fault: no frozen copy either.
            missing[0] = f"instances {[(i.node, i.app[:8], i.frozen) for i in instances]}"
            return False
        fleet = get_fleet(net, avoid)
        for app in obs.apps:
            view = fleet.get(app)
            where = once[app].node
            if view is None or view["node_name"] != where or view["replica_name"] is None:
                missing[0] = f"{obs.apps[app].name}: runs on {where}, chain view {view}"
                return False
            replica = read_replica(net.run_dir, view["replica_name"], app)
            if replica is None or replica.slot < since_slot:
                where = view["replica_name"]
                missing[0] = f"{obs.apps[app].name}: replica on {where} {replica}"
                return False
        return True

    try:
        wait_until(steady, "every app once, with a replica", timeout, net.check_alive)
    except LiveError as exc:
        raise LiveError(f"{exc}; last: {missing[0]}") from None


def pick_host(instances: list[Instance], avoid: tuple[str, ...]) -> str:
    """The node running the most apps (process table); ties go to the lowest name."""
    counts: dict[str, int] = {}
    for instance in instances:
        if not instance.frozen and instance.node not in avoid:
            counts[instance.node] = counts.get(instance.node, 0) + 1
    if not counts:
        raise LiveError("no node runs any of the apps")
    return min(counts, key=lambda node: (-counts[node], node))


def get_last_seen(net: LiveTestnet, node_id: str, avoid: tuple[str, ...]) -> int | None:
    """The node's latest contribution slot on the chain of a live node (None once it
    has left the validator set)."""
    with contextlib.suppress(LiveError, KeyError, TypeError):
        for entry in net.get("/nodes", avoid):
            if entry["node_id"] == node_id:
                return int(entry["last_seen_slot"])
    return None


def read_start_line(net: LiveTestnet, instance: Instance) -> int | None:
    """The count ``instance`` started from: the last ``starting from`` line of its log,
    once the log was written after the instance began (counter.sh's first output is
    that line); None until then. Read as soon as the instance shows up: the planner may
    move the app on within slots, and its old node deletes the directory, log included
    (so neither can lines be counted from before the fault: a node that held the app
    once may have deleted and recreated its log since)."""
    log = net.run_dir / instance.node / "apps" / instance.app / "app.log"
    with contextlib.suppress(OSError):
        # psutil's creation time has a clock tick's resolution (10 ms)
        if log.stat().st_mtime >= instance.created - 0.02:
            counts = read_start_counts(log)
            return counts[-1] if counts else None
    return None


class StartLines:
    """The count each new instance started from, read while the sampling goes on."""

    def __init__(self, net: LiveTestnet) -> None:
        self.net = net
        self.pending: dict[str, Instance] = {}
        self.found: dict[str, int] = {}

    def add(self, app: str, instance: Instance) -> None:
        self.pending[app] = instance
        self.poll()

    def poll(self) -> None:
        for app, instance in list(self.pending.items()):
            count = read_start_line(self.net, instance)
            if count is not None:
                self.found[app] = count
                del self.pending[app]

    def wait(self) -> None:
        """Give the instances not read yet a last few seconds to write their line."""
        deadline = time.monotonic() + START_LINE_TIMEOUT_S
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
            self.poll()


def get_recover_slot(net: LiveTestnet, app: str, after_slot: float, avoid: tuple[str, ...]) -> Any:
    """The slot of the app's first ``recover`` event after ``after_slot`` (the chain's)."""
    with contextlib.suppress(LiveError):
        for event in net.get(f"/apps/{app}/history", avoid)["events"]:
            if event["kind"] == "recover" and event["slot"] >= after_slot:
                return event["slot"]
    return None


def describe_resumption(started: int | None, replica_count: int | None) -> dict[str, Any]:
    return {
        "started_from": started,
        "replica_count": replica_count,
        "below_replica": started is None or (replica_count is not None and started < replica_count),
    }


class ReplicaWatch:
    """The newest replica of each app seen on its replica node until the app resumed
    elsewhere: one in flight at the fault may still land just after it."""

    def __init__(self, net: LiveTestnet, where: Mapping[str, str | None]) -> None:
        self.net = net
        self.where = where
        self.seen: dict[str, Replica | None] = {app: None for app in where}

    def refresh(self, done: Collection[str] = ()) -> None:
        for app, node in self.where.items():
            if app in done or node is None:
                continue
            replica = read_replica(self.net.run_dir, node, app)
            best = self.seen[app]
            if replica is not None and (best is None or replica.slot > best.slot):
                self.seen[app] = replica


def get_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def check_final(net: LiveTestnet, obs: Observer, dead: tuple[str, ...]) -> list[str]:
    """Every app runs exactly once at the end, where the chain places it."""
    _, instances = obs.scan()
    once = obs.get_running_once(instances)
    fleet = get_fleet(net, dead)
    problems = []
    for app, test_app in sorted(obs.apps.items(), key=lambda item: item[1].name):
        instance = once.get(app)
        where = instance.node if instance is not None else None
        if where is None:
            copies = [(i.node, i.frozen) for i in instances if i.app == app]
            problems.append(f"{test_app.name}: not running exactly once at the end: {copies}")
        elif fleet[app]["node_name"] != where:
            problems.append(
                f"{test_app.name}: runs on {where}, the chain places it on "
                f"{fleet[app]['node_name']}"
            )
    return problems
