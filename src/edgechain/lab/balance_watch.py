"""What the balance lab (``lab/balance.py``) reads: the CPU each node's apps use, from
the host's process table, and the fleet as the nodes' APIs describe it.

**The host's account** (:class:`HostSampler`). Each app instance is a process group
(``runtime/spawner.py``: the app's session); its leader carries the app's tag as its
last argument and the node it runs for in ``EDGECHAIN_STATE_DIR``
(``RUN/node-NNN/apps/<app>/state``), which is how ``faults_live.scan_instances``
attributes it. An instance's CPU is its process group's (``process_group.read_groups``:
every live member's, the busy loop included, to the nanosecond, plus the children they
reaped: a cpu-load app forks ``sleep`` twice a period). A sample is the CPU used since the
previous one: an instance seen for the first time counts from its creation (it started
after the previous sample), and the CPU an instance used between the previous sample
and its end is lost (a migration's origin copy: milliseconds). Node processes are
measured the same way, without their children (the apps they reaped).

**The nodes' account** (:func:`read_fleet`): where the chain places each app (``GET
/apps``), what each node's runtime says it runs (``GET /runtime/apps``), and each
validator's latest report (``GET /nodes``: ``cpu_bp``, ``pressure_bp``, status).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psutil

from edgechain.lab.faults_live import Instance, LiveError, LiveTestnet, http_get
from edgechain.runtime.process_group import read_groups


@dataclass(frozen=True)
class HostSample:
    """CPU used over one span, seen from the host."""

    t: float
    """When the sample ended (epoch seconds)."""
    span_s: float
    app_cores: dict[str, float]
    """Node name -> CPU seconds per second of its app instances (frozen ones too)."""
    node_cores: dict[str, float]
    """Node name -> CPU seconds per second of the node process itself."""
    app_cpu: dict[str, tuple[str, float]]
    """App id (hex) -> (node, CPU seconds per second) of its busiest unfrozen instance."""
    running: dict[str, list[str]]
    """Node name -> app ids (hex) with an unfrozen instance there."""


@dataclass
class HostSampler:
    """CPU per node and per app between calls of :meth:`sample` (module docstring)."""

    node_pids: Mapping[str, int]
    """Node name -> node process id."""
    _last_t: float | None = None
    _apps: dict[tuple[int, float], float] = field(default_factory=dict)
    """(leader pid, creation time) -> CPU seconds at the previous sample."""
    _nodes: dict[str, float] = field(default_factory=dict)

    def sample(self, instances: Iterable[Instance]) -> HostSample | None:
        """The span since the previous call (None on the first: the baseline)."""
        groups = read_groups()  # one pass over /proc for every app
        cpu: dict[tuple[int, float], float] = {}
        found = [i for i in instances if i.pid in groups]
        for instance in found:
            cpu[(instance.pid, instance.created)] = groups[instance.pid].cpu_s
        nodes = {name: get_own_cpu(pid) for name, pid in self.node_pids.items()}
        t = time.time()
        last_t, last_apps, last_nodes = self._last_t, self._apps, self._nodes
        self._last_t, self._apps = t, cpu
        self._nodes = {name: value for name, value in nodes.items() if value is not None}
        if last_t is None or t <= last_t:
            return None
        span = t - last_t
        app_cores = dict.fromkeys(self.node_pids, 0.0)
        app_cpu: dict[str, tuple[str, float]] = {}
        running: dict[str, list[str]] = {name: [] for name in self.node_pids}
        for instance in found:
            key = (instance.pid, instance.created)
            used = cpu[key] - last_apps.get(key, 0.0)
            if key not in last_apps and instance.created < last_t:
                # Started before the previous sample yet not seen by it (a scan racing
                # its start): only the share of its life within this span counts.
                used *= span / max(span, t - instance.created)
            cores = max(0.0, used) / span
            app_cores[instance.node] = app_cores.get(instance.node, 0.0) + cores
            if not instance.frozen:
                running.setdefault(instance.node, []).append(instance.app)
                best = app_cpu.get(instance.app)
                if best is None or cores > best[1]:
                    app_cpu[instance.app] = (instance.node, cores)
        node_cores = {
            name: max(0.0, value - last_nodes[name]) / span
            for name, value in self._nodes.items()
            if name in last_nodes
        }
        return HostSample(t, span, app_cores, node_cores, app_cpu, running)


def get_own_cpu(pid: int) -> float | None:
    """CPU seconds of process ``pid`` itself (all its threads, not its children)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


@dataclass(frozen=True)
class FleetView:
    """The nodes' account of the fleet at one moment."""

    placed: dict[str, str | None]
    """App id (hex) -> the node name the head chain places it on (None: queued)."""
    runtime: dict[str, list[str] | None]
    """Node name -> app ids its runtime runs (``/runtime/apps``); None: no answer."""
    reports: dict[str, dict[str, Any]]
    """Node name -> ``{status, cpu_bp, pressure_bp, report_slot}`` from ``/nodes``."""
    head_slot: int | None


def read_fleet(net: LiveTestnet, names: Mapping[str, str], turn: int) -> FleetView:
    """One look at the fleet through the API (``names``: node id hex -> node name):
    the chain's view from node number ``turn`` (modulo their count; the next that
    answers), every runtime's at once."""
    nodes = net.get_nodes()
    order = sorted(nodes)
    asked = order[turn % len(order) :] + order[: turn % len(order)]

    def get(path: str) -> Any:
        for name in asked:
            with contextlib.suppress(OSError, ValueError):
                return http_get(nodes[name].url, path)
        raise LiveError(f"no node answered GET {path}")

    def get_running(url: str) -> list[str] | None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return sorted(str(v["app"]) for v in http_get(url, "/runtime/apps") if v["running"])
        return None

    with ThreadPoolExecutor(max_workers=len(order) + 2) as pool:
        running = {name: pool.submit(get_running, nodes[name].url) for name in order}
        apps, listed = pool.submit(get, "/apps"), pool.submit(get, "/nodes")
        status = get("/status")
        placed: dict[str, str | None] = {}
        for view in apps.result():
            node = view.get("node")
            placed[str(view["app_id"])] = names.get(node) if isinstance(node, str) else None
        reports = {}
        for entry in listed.result():
            name = names.get(str(entry.get("node_id")))
            if name is not None:
                keys = ("status", "cpu_bp", "pressure_bp", "report_slot")
                reports[name] = {key: entry.get(key) for key in keys}
        runtime = {name: future.result() for name, future in running.items()}
    head_slot = status.get("head_slot") if isinstance(status, dict) else None
    return FleetView(placed, runtime, reports, head_slot if isinstance(head_slot, int) else None)


def count_by_node(where: Mapping[str, str | None], nodes: Iterable[str]) -> dict[str, int]:
    """Apps per node (every node listed, 0 included; queued apps left out)."""
    counts = dict.fromkeys(nodes, 0)
    for node in where.values():
        if node is not None:
            counts[node] = counts.get(node, 0) + 1
    return counts


def compare_with_host(fleet: FleetView, sample: HostSample) -> dict[str, int]:
    """How far the nodes' account is from the host's at one sample: apps the chain
    places elsewhere than where they run (a migration in flight), and apps a node's
    runtime lists as running that do not run there, or the other way round."""
    running_on = {app: node for node, apps in sample.running.items() for app in apps}
    elsewhere = sum(1 for app, node in fleet.placed.items() if running_on.get(app) != node)
    runtime_diff = 0
    for node, listed in fleet.runtime.items():
        if listed is not None:
            runtime_diff += len(set(listed) ^ set(sample.running.get(node, [])))
    return {"chain_vs_host": elsewhere, "runtime_vs_host": runtime_diff}
