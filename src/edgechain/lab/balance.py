"""Live evidence that the planner balances (issue 10, "The planner balances"): the
paper's worst case (§4.2, Fig. 9 and 11), every app submitted to one node, on a testnet
of real node processes that declare small CPU capacities.

One run (:func:`run_balance`):

1. ``edgechain testnet --forever --cpu-capacity C`` (``lab/faults_live.LiveTestnet``):
   every node reports CPU shares of C cores (``runtime/usage.py``);
2. ``edgechain admin drain`` every node but the first (``node-000``), so the planner
   can place nothing elsewhere;
3. N ``cpu-load`` apps submitted with ``edgechain apps submit`` (a JSON spec file each)
   through the first node: each burns ``share_percent`` % of a core
   (``apps/cpu-load/cpu-load.sh``, one period of ``period_ms``) and declares a request
   ``cpu_bp`` of that share of C; the planner places all of them on ``node-000``;
4. once all run there (the host's process table and the chain agree), the others are
   undrained (``edgechain admin drain NODE --undo``), from a thread so that sampling
   goes on; **slot 0** is the slot in which the first undrain command is sent (the
   commands' own latency, a few CLI calls and a block, counts against the planner);
   ``undrained_slot`` is the slot at which the chain first showed none draining;
5. at every slot boundary until slot ``slots`` the host is sampled
   (``lab/balance_watch.py``): each node's measured load is the CPU its app processes
   used during the slot, in % of C, with the node process's own CPU alongside; the
   nodes' APIs give the chain's placement, each runtime's app list and the reports.
   Between samples the process table is scanned every ``copy_scan_s`` for copies
   (``exactly_once_watch.Observer``: never two unfrozen copies of an app).

**Even**: max/mean over the nodes of their measured app load, each over the last
``window_slots`` slots, at most ``even_ratio``. ``slots_to_even`` is the first slot
k >= 0 whose sample and the ``even_hold - 1`` samples after it are all even (None if
that never happens within the run). ``slots_to_even_reported`` is the same of the
``cpu_bp`` the nodes reported, what the planner evens: under a declared capacity the
sum of a node's apps' shares, the same quantity as the host's account but measured by
the node (averaged over its last 5 samples, and one report behind).
``slots_to_even_total`` adds each node process's own CPU to its apps'
(``node_process_pct``), for information: the nodes leave it out of their reports (it
is the same protocol on every node, and noisy: a produced block's VDF is a quarter of
a core for a quarter of the slot, the bootstrap node serves every join), so nothing
evens it.

Commands go through the CLI a few at a time, without waiting for their blocks
(``lab/balance_setup.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.chain.model import BASIS_POINTS
from edgechain.lab.balance_report import compute_ratio, count_moves, summarize_series
from edgechain.lab.balance_setup import set_draining, submit_specs, wait_all_on
from edgechain.lab.balance_watch import (
    FleetView,
    HostSample,
    HostSampler,
    compare_with_host,
    count_by_node,
    read_fleet,
)
from edgechain.lab.exactly_once_watch import CounterApp, Observer, get_fleet
from edgechain.lab.faults_live import LiveError, LiveTestnet, wait_until
from edgechain.runtime.samples import get_apps_dir

HOST = "node-000"
"""The node every app starts on: the first of ``client.toml``, which the one-node
client config submits through."""
FINAL_SETTLE_SLOTS = 10


@dataclass(frozen=True)
class BalanceConfig:
    run_dir: Path
    """Must not exist yet, under a directory others may traverse (0711)."""
    nodes: int = 8
    committee: int = 3
    apps: int = 40
    cpu_capacity: float = 0.5
    """Cores every node offers its apps: 40 apps of 2 % of a core are then 160 % of
    one node (it reports 100 %, saturated), 20 % of each of 8, far from saturation
    (95 %)."""
    share_percent: int = 2
    """Of one core, per app."""
    period_ms: int = 500
    """cpu-load's duty cycle. Two ``sleep`` forks per period cost CPU too (at 100 ms a
    3 % app burns ~9 %), while a period near the slot makes a slot's measurement
    count one burst or two (at 1 s a 2 % app reads 1 % or 2 % per 2 s slot); 500 ms
    reads within ~15 % per app and slot."""
    slot_s: float = 2.0
    slots: int = 30
    """Slots measured after slot 0 (the undrain)."""
    pre_slots: int = 2
    """Slots sampled before the undrain starts (all apps on one node)."""
    even_ratio: float = 1.25
    even_hold: int = 3
    window_slots: int = 3
    """A node's load is its CPU over the last this many slots: an app burns in bursts
    and the host's other work delays them, so one 2 s slot of 5 apps reads +-20 %."""
    copy_scan_s: float = 1.0
    """The process table is scanned for a second copy of an app this often."""
    setup_timeout_s: float = 300.0
    stop_when: Callable[[Sequence[dict[str, Any]]], bool] | None = None
    """Ends the measurement early (before ``slots``) once it holds for the samples
    taken since slot 0: a test waits for a condition, not for a number of slots."""
    vdf_fraction: float | None = None
    """Of a slot, the producer's VDF (``testnet --vdf-fraction``; None: the node's 0.25)."""
    log: Callable[[str], None] = field(default=lambda _: None)

    def get_request_bp(self) -> int:
        """The apps' declared ``cpu_bp``: their share in basis points of a node's
        declared capacity."""
        share = self.share_percent / 100 / self.cpu_capacity
        return max(1, min(BASIS_POINTS, round(share * BASIS_POINTS)))


@dataclass
class Undrain:
    """The undrain, run on a thread while the main loop samples."""

    slot0: int | None = None
    """The slot the first undrain command was sent in."""
    applied_slot: int | None = None
    """The head slot when the chain first showed none of the nodes draining."""
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


# --- setup through the CLI ----------------------------------------------------------


def make_spec(config: BalanceConfig, name: str, tag: str) -> dict[str, Any]:
    """The app's spec (the API's JSON form). cpu-load.sh reads two arguments; the tag
    after them identifies the instance in the process table."""
    script = get_apps_dir() / "cpu-load" / "cpu-load.sh"
    return {
        "name": name,
        "runtime": "process",
        "command": ["/bin/sh", str(script), str(config.share_percent), str(config.period_ms), tag],
        "cpu_bp": config.get_request_bp(),
        "ram_bp": 1,
        "stateful": False,
    }


def submit_apps(net: LiveTestnet, config: BalanceConfig) -> dict[str, CounterApp]:
    """Write the spec files and submit them through the first node (app id hex -> the
    app; ``CounterApp`` is the observer's name for any tagged app)."""
    spec_dir = net.run_dir / "specs"
    spec_dir.mkdir(exist_ok=True)
    run = secrets.token_hex(3)
    tags, paths = {}, {}
    for index in range(config.apps):
        name = f"load-{index:02d}"
        tags[name] = f"bal-{os.getpid()}-{run}-{index:02d}"
        paths[name] = spec_dir / f"{name}.json"
        paths[name].write_text(json.dumps(make_spec(config, name, tags[name]), indent=1) + "\n")
        net.tags.add(tags[name])
    client = net.write_one_node_client()
    ids = submit_specs(net, paths, client, config.setup_timeout_s, config.log)
    return {app: CounterApp(name, tags[name], app) for name, app in ids.items()}


def undrain(
    net: LiveTestnet,
    nodes: Sequence[str],
    state: Undrain,
    timeout_s: float,
    log: Callable[[str], None],
) -> None:
    """Undrain ``nodes`` and wait until the chain shows none of them draining. Runs on
    a thread; never raises."""
    try:
        state.slot0 = int(net.get_slot(time.time()))
        set_draining(net, nodes, False, timeout_s, log)
        state.applied_slot = int(net.get("/status")["head_slot"])
    except LiveError as exc:
        state.error = str(exc)
    finally:
        state.done.set()


# --- the run ------------------------------------------------------------------------


def describe_sample(
    config: BalanceConfig,
    sample: HostSample,
    fleet: FleetView,
    apps: Mapping[str, CounterApp],
    previous: tuple[dict[str, str | None], dict[str, str]] | None,
) -> dict[str, Any]:
    """One slot's figures (JSON)."""
    nodes = sorted(sample.app_cores)
    cap = config.cpu_capacity

    def pct(cores: float) -> float:
        return round(100 * cores / cap, 1)

    load = {n: pct(sample.app_cores[n]) for n in nodes}
    own = {n: pct(sample.node_cores[n]) for n in nodes if n in sample.node_cores}
    total = {n: round(load[n] + own.get(n, 0.0), 1) for n in nodes}
    ratio = compute_ratio(load)
    running_on = {a: node for a, (node, _) in sample.app_cpu.items()}
    moved_chain = moved_host = None
    if previous is not None:
        moved_chain = count_moves(previous[0], fleet.placed)
        moved_host = count_moves(dict(previous[1]), dict(running_on))
    return {
        "t": round(sample.t, 3),
        "span_s": round(sample.span_s, 3),
        "head_slot": fleet.head_slot,
        "load_pct": load,
        "mean_pct": round(sum(load.values()) / len(load), 1) if load else None,
        "max_pct": max(load.values(), default=None),
        "ratio": None if ratio is None else round(ratio, 3),
        "node_process_pct": own,
        "total_pct": total,
        "apps_chain": count_by_node(fleet.placed, nodes),
        "apps_host": count_by_node(running_on, nodes),
        "reported_cpu_bp": {n: r.get("cpu_bp") for n, r in sorted(fleet.reports.items())},
        "reported_pressure_bp": {n: r.get("pressure_bp") for n, r in sorted(fleet.reports.items())},
        "status": {n: r.get("status") for n, r in sorted(fleet.reports.items())},
        "moved_chain": moved_chain,
        "moved_host": moved_host,
        "mismatch": compare_with_host(fleet, sample),
        "app_load_pct": {
            apps[a].name: [node, pct(cores)]
            for a, (node, cores) in sorted(sample.app_cpu.items())
            if a in apps
        },
    }


class BalanceRun:
    """The state of one run while it goes on (see :func:`run_balance`)."""

    def __init__(self, config: BalanceConfig) -> None:
        self.config = config
        self.net = LiveTestnet(
            config.run_dir,
            nodes=config.nodes,
            committee=config.committee,
            slot_s=config.slot_s,
            cpu_capacity=config.cpu_capacity,
            vdf_fraction=config.vdf_fraction,
        )
        self.apps: dict[str, CounterApp] = {}
        self.obs: Observer | None = None
        self.samples: list[dict[str, Any]] = []
        self.undrain = Undrain()
        self.slot_s = config.slot_s

    def setup(self, result: dict[str, Any], started: float) -> list[str]:
        """Steps 1-4 of the module docstring but the undrain; returns the drained nodes."""
        config, net = self.config, self.net
        net.start()
        net.wait_ready(config.setup_timeout_s)
        self.slot_s = net.get_params().slot_duration_ms / 1000
        result["ready_after_s"] = round(time.monotonic() - started, 1)
        others = sorted(name for name in net.get_names().values() if name != HOST)
        config.log(f"testnet ready after {result['ready_after_s']} s; draining {len(others)}")
        set_draining(net, others, True, config.setup_timeout_s, config.log)
        config.log(f"submitting {config.apps} apps through {HOST}")
        self.apps = submit_apps(net, config)
        self.obs = Observer(net, self.apps)
        wait_all_on(net, self.obs, HOST, config.setup_timeout_s)
        result["all_on_host_after_s"] = round(time.monotonic() - started, 1)
        config.log(f"all {config.apps} apps run on {HOST} after {result['all_on_host_after_s']} s")
        return others

    def measure(self, others: list[str]) -> None:
        """Step 5: sample at every slot boundary; undrain after ``pre_slots`` samples;
        stop ``slots`` slots after slot 0."""
        config, net, obs = self.config, self.net, self.obs
        assert obs is not None
        names = net.get_names()
        sampler = HostSampler({name: n.pid for name, n in net.get_nodes().items()})
        slot = int(net.get_slot(time.time())) + 1
        self._scan_until(net.get_slot_start(slot))
        _, instances = obs.scan(timed=True)
        sampler.sample(instances)  # the baseline, at the start of `slot`
        previous: tuple[dict[str, str | None], dict[str, str]] | None = None
        thread: threading.Thread | None = None
        undrain_timeout = 30 * self.slot_s + 60
        while True:
            self._scan_until(net.get_slot_start(slot + 1))  # the sample covers `slot`
            _, instances = obs.scan(timed=True)
            sample = sampler.sample(instances)
            # Each node answers in turn: the harness's own requests cost the node CPU.
            fleet = read_fleet(net, names, len(self.samples))
            if sample is not None:
                entry = describe_sample(config, sample, fleet, self.apps, previous)
                entry["chain_slot"] = slot
                self.samples.append(entry)
                running = {a: node for a, (node, _) in sample.app_cpu.items()}
                previous = (fleet.placed, running)
            net.check_alive()
            if thread is None and len(self.samples) >= config.pre_slots:
                thread = threading.Thread(
                    target=undrain,
                    args=(net, others, self.undrain, undrain_timeout, config.log),
                    daemon=True,
                )
                thread.start()
                config.log(f"undrain sent at slot {slot + 1}")
            if self.undrain.error is not None:
                raise LiveError(self.undrain.error)
            slot0 = self.undrain.slot0
            if slot0 is not None and self.undrain.done.is_set():
                since = [e for e in self.samples if e["chain_slot"] > slot0]
                if slot >= slot0 + config.slots or (
                    since and config.stop_when is not None and config.stop_when(since)
                ):
                    break
            # A sample that ran late (a slow node answering) skips the slots it missed.
            slot = max(slot + 1, int(net.get_slot(time.time())))

    def _scan_until(self, target: float) -> None:
        """Scan the process table for copies every ``copy_scan_s`` until ``target``."""
        obs = self.obs
        assert obs is not None
        while time.time() < target:
            obs.scan(timed=True)
            time.sleep(max(0.0, min(self.config.copy_scan_s, target - time.time())))

    def finish(self) -> dict[str, Any]:
        """Where each app ended, the chain's migrations since slot 0, the copies."""
        net, obs, slot0 = self.net, self.obs, self.undrain.slot0
        assert obs is not None and slot0 is not None
        migrations: dict[int, int] = {}
        moves_per_app: dict[str, int] = {}
        for app, tagged in sorted(self.apps.items(), key=lambda a: a[1].name):
            events = net.get(f"/apps/{app}/history")["events"]
            moved = [e for e in events if e["kind"] == "migrate" and e["slot"] > slot0]
            moves_per_app[tagged.name] = len(moved)
            for event in moved:
                slot = int(event["slot"]) - slot0
                migrations[slot] = migrations.get(slot, 0) + 1
        end = self._wait_settled()
        listed = net.cli("apps", "list")  # what the operator sees at the end
        where = {str(a["app_id"]): a.get("node") for a in listed}
        names = net.get_names()
        return {
            "migrations": {
                "total": sum(migrations.values()),
                "per_slot": {str(k): v for k, v in sorted(migrations.items())},
                "most_moves_of_an_app": max(moves_per_app.values(), default=0),
                "per_app": moves_per_app,
            },
            "apps_per_node_end": count_by_node(
                {a: names.get(str(n)) if n else None for a, n in where.items() if a in self.apps},
                sorted(names.values()),
            ),
            "final_problems": end,
        }

    def _wait_settled(self) -> list[str]:
        """Every app once, where the chain places it (migrations in flight landed);
        the problems left after FINAL_SETTLE_SLOTS slots, else none."""
        net, obs = self.net, self.obs
        assert obs is not None
        problems = ["not checked"]

        def settled() -> bool:
            _, instances = obs.scan()
            once = obs.get_running_once(instances)
            fleet = get_fleet(net)
            problems[:] = [
                f"{tagged.name}: runs on {once[app].node if app in once else None}, "
                f"placed on {fleet.get(app, {}).get('node_name')}"
                for app, tagged in sorted(self.apps.items(), key=lambda a: a[1].name)
                if app not in once or fleet.get(app, {}).get("node_name") != once[app].node
            ]
            return not problems

        with contextlib.suppress(LiveError):  # what is left is the answer
            wait_until(settled, "settled", FINAL_SETTLE_SLOTS * self.slot_s, net.check_alive)
        return problems


def run_balance(config: BalanceConfig) -> dict[str, Any]:
    """One run (module docstring). Never leaves a process behind; a step that cannot
    complete ends the run with ``error`` set."""
    run = BalanceRun(config)
    result: dict[str, Any] = {
        "params": {
            "nodes": config.nodes,
            "committee": config.committee,
            "apps": config.apps,
            "cpu_capacity": config.cpu_capacity,
            "share_percent": config.share_percent,
            "period_ms": config.period_ms,
            "request_cpu_bp": config.get_request_bp(),
            "slot_s": config.slot_s,
            "slots": config.slots,
            "even_ratio": config.even_ratio,
            "even_hold": config.even_hold,
            "window_slots": config.window_slots,
        },
        "run_dir": str(config.run_dir),
        "host_node": HOST,
        "error": None,
    }
    started = time.monotonic()
    try:
        others = run.setup(result, started)
        run.measure(others)
        if run.undrain.slot0 is not None and run.undrain.applied_slot is not None:
            result["undrained_slot"] = run.undrain.applied_slot - run.undrain.slot0
        result.update(run.finish())
    except LiveError as exc:
        result["error"] = str(exc)
        config.log(f"error: {exc}")
    except KeyboardInterrupt:
        result["error"] = "interrupted"  # the testnet still stops, below
    finally:
        result.update(run.net.stop_and_record(started))
    even = (config.even_ratio, config.even_hold, config.window_slots)
    result.update(summarize_series(run.samples, run.undrain.slot0, *even))
    result["series"] = run.samples
    obs = run.obs
    result["copies"] = obs.to_json() if obs is not None else None
    result["max_copies"] = obs.max_copies if obs is not None else None
    return result
