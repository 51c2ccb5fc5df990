"""The live form of ``edgechain experiment paper``: the paper's §4 figures from a local
testnet of real node processes on this host.

One run (:func:`run_live_paper`):

1. ``edgechain testnet --forever`` (``lab/faults_live.LiveTestnet``: process runtime,
   SQLite, every node offering its apps 1 core); wait for genesis, the operator's
   grant and every node in the validator set;
2. ``apps`` ``cpu-load`` apps of mixed load (each burns 2-8 % of a core, drawn from
   the seed, and requests that share) submitted through the CLI
   (``lab/balance_setup.submit_specs``); with ``start_on_one_node`` every node but
   ``node-000`` is drained first and undrained once every app runs there (§4.2's worst
   case, live);
3. ``slots`` slots from then on (slot 0: the apps on chain, or the chain showing every
   node undrained: the planner is free to spread them from then),
   sampling the host's process table every second for copies of the apps
   (``exactly_once_watch.Observer``) and the fleet (``GET /dashboard/snapshot``) at
   four moments for Fig. 11;
4. every app once where the chain places it (waited for a few slots), every node's
   ``/chain``, ``/blocks`` and ``/migrations`` (``live_data.collect_nodes``), then the
   testnet stopped (nothing left running, even on an error or Ctrl-C) and its
   ``summary.json`` read; the canonical chain replayed from the reference node's store
   (``live_data.replay_chain``);
5. ``live_result.py``: the planner model's worst case (``worst_case.py``; the
   simulated one only if asked), then ``result.json``, the figures and ``report.md``
   (``report_live.py``), and ``collected.json``: the snapshots and every node's
   migrations as answered.

An error (a step timed out, the launcher died) stops the testnet and raises LiveError;
Ctrl-C or SIGTERM stop it too. Either way no result is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgechain.errors import LocalError
from edgechain.lab.balance_setup import set_draining, submit_specs, wait_all_on
from edgechain.lab.exactly_once_watch import CounterApp, Observer, check_final
from edgechain.lab.faults_live import LiveError, LiveTestnet, wait_until
from edgechain.lab.fleet_claim import read_testnet_summary
from edgechain.lab.live_runs import make_run_base
from edgechain.lab.paper import live_data
from edgechain.lab.paper.live_config import (
    CPU_CAPACITY,
    PERIOD_MS,
    LiveConfig,
    Log,
    Progress,
    get_app_shares,
)
from edgechain.lab.paper.live_result import (
    build_live_data,
    get_config_record,
    get_testnet_record,
)
from edgechain.lab.paper.migration_table import read_migration_files
from edgechain.lab.paper.report_live import write_live_report
from edgechain.lab.paper.run import run_worst_cases, write_figures
from edgechain.lab.paper.stacks import STACK_MOMENTS, pick_even_moments
from edgechain.lab.summary_records import RecordError
from edgechain.runtime.appuser import is_open_to_others
from edgechain.runtime.samples import get_apps_dir

HOST = "node-000"
"""The node every app starts on with ``start_on_one_node``: the first of
``client.toml``, which the one-node client config submits through."""
SAMPLE_S = 1.0
SETTLE_SLOTS = 5
"""At the end, every app must run once where the chain places it within this many
slots (a migration may be in flight when the run ends)."""


# --- setup ------------------------------------------------------------------------------


def get_testnet_dir(out: Path) -> Path:
    """``OUT/testnet``, unless a root run's apps (run as an unprivileged user) could not
    reach it: then a fresh 0711 directory in the temporary directory."""
    if os.geteuid() != 0 or is_open_to_others(out.resolve()):
        return out / "testnet"
    return make_run_base("edgechain-paper-", None) / "testnet"


def write_specs(config: LiveConfig, net: LiveTestnet) -> tuple[dict[str, Path], dict[str, str]]:
    """The apps' spec files (the API's JSON form): name -> path, and name -> tag."""
    spec_dir = config.out / "specs"
    spec_dir.mkdir(exist_ok=True)
    script = get_apps_dir() / "cpu-load" / "cpu-load.sh"
    run = secrets.token_hex(3)
    paths, tags = {}, {}
    for index, share in enumerate(get_app_shares(config.apps, config.seed)):
        name = f"load-{index:03d}-{share}pct"
        # cpu-load.sh reads two arguments; the tag after them names it in the process table.
        tags[name] = f"paper-{os.getpid()}-{run}-{index:03d}"
        spec = {
            "name": name,
            "runtime": "process",
            "command": ["/bin/sh", str(script), str(share), str(PERIOD_MS), tags[name]],
            "cpu_bp": round(share / 100 / CPU_CAPACITY * 10_000),
            "ram_bp": 1,
            "stateful": False,
        }
        paths[name] = spec_dir / f"{name}.json"
        paths[name].write_text(json.dumps(spec, indent=1) + "\n")
    net.tags.update(tags.values())
    return paths, tags


def get_requests(paths: Mapping[str, Path]) -> dict[str, float]:
    """App name -> its spec's CPU request in % of a node."""
    return {name: json.loads(p.read_text())["cpu_bp"] / 100 for name, p in paths.items()}


def wait_joined(net: LiveTestnet, nodes: int, timeout_s: float) -> None:
    def joined() -> bool:
        try:
            return len(net.get("/nodes")) >= nodes
        except LiveError:
            return False

    wait_until(joined, f"all {nodes} nodes in the validator set", timeout_s, net.check_alive)


class Undrain(threading.Thread):
    """The undrain of every node but ``HOST``, on a thread: the process table is
    sampled meanwhile (a migration starts with the first block that shows a node
    active)."""

    def __init__(self, net: LiveTestnet, nodes: list[str], timeout_s: float, log: Log) -> None:
        super().__init__(daemon=True)
        self.net, self.nodes, self.timeout_s, self.log = net, nodes, timeout_s, log
        self.error: str | None = None
        self.applied_slot: int | None = None
        """The slot in which the chain showed every node active (as ``set_draining``
        polls it: within about a second)."""

    def run(self) -> None:
        try:
            set_draining(self.net, self.nodes, False, self.timeout_s, self.log)
            self.applied_slot = int(self.net.get_slot(time.time()))
        except LiveError as exc:
            self.error = str(exc)


def start_apps(
    config: LiveConfig, net: LiveTestnet, progress: Progress, log: Log
) -> tuple[Observer, dict[str, float], Undrain | None]:
    """Submit the apps (on one node first, if asked); returns the observer, the apps'
    requests, and the undrain under way (None without ``start_on_one_node``)."""
    others = [f"node-{i:03d}" for i in range(1, config.nodes)]
    if config.start_on_one_node:
        log(f"draining every node but {HOST}")
        set_draining(net, others, True, config.setup_timeout_s, log)
    paths, tags = write_specs(config, net)
    client = net.write_one_node_client()
    log(f"submitting {config.apps} apps through the CLI")
    ids = submit_specs(net, paths, client, config.setup_timeout_s, log)
    obs = Observer(net, {ids[n]: CounterApp(n, tags[n], ids[n]) for n in paths})
    log(f"{len(ids)} of {config.apps} apps on chain after {progress.mark('apps_on_chain_s')} s")
    undrain = None
    if config.start_on_one_node:
        wait_all_on(net, obs, HOST, config.setup_timeout_s)
        log(f"every app runs on {HOST} after {progress.mark('all_on_one_node_s')} s; undraining")
        undrain = Undrain(net, others, config.setup_timeout_s, log)
        progress.undrain_sent_slot = int(net.get_slot(time.time()))
        undrain.start()
    else:
        progress.first_slot = int(net.get_slot(time.time()))
    return obs, get_requests(paths), undrain


# --- the run ------------------------------------------------------------------------------


def get_first_slot(progress: Progress, undrain: Undrain | None) -> int | None:
    """Slot 0 once known: set at the submission, or when the undrain reached the chain
    (LiveError if it failed)."""
    if progress.first_slot is None and undrain is not None:
        alive = undrain.is_alive()  # first: a thread found ended has set all it will
        progress.first_slot = undrain.applied_slot
        if progress.first_slot is None and not alive:
            raise LiveError(f"the undrain failed: {undrain.error or 'see the log above'}")
    return progress.first_slot


def watch(
    config: LiveConfig,
    net: LiveTestnet,
    obs: Observer,
    progress: Progress,
    log: Log,
    undrain: Undrain | None,
) -> None:
    """Sample the process table until slot ``slots`` after slot 0 is over, and the
    fleet at four moments: from slot 0 to the end, or with an undrain, when it is sent
    (every app on one node) and three from slot 0 on."""
    moments = [] if undrain is None else [progress.undrain_sent_slot or 0]
    first: int | None = None
    shown = -1

    def take_due_snapshots(slot: int) -> None:
        while moments and slot >= moments[0]:
            snapshot = live_data.take_snapshot(net, moments.pop(0))
            if snapshot is not None:
                progress.snapshots.append(snapshot)

    while True:
        net.check_alive()
        slot = int(net.get_slot(time.time()))
        if first is None and (first := get_first_slot(progress, undrain)) is not None:
            count = STACK_MOMENTS - (undrain is not None)  # the undrain's moment is one
            moments += pick_even_moments(first, first + config.slots, count)
        if first is not None and slot > first + config.slots:
            # A slow pass on a loaded host can step over the last moment (the window's
            # end): its snapshot is still taken, a slot late, as any late moment is.
            take_due_snapshots(slot)
            return
        _, instances = obs.scan(timed=True)
        once = len(obs.get_running_once(instances))
        progress.samples_not_all_once += once != len(obs.apps)
        take_due_snapshots(slot)
        if slot != shown:
            shown = slot
            reached = "undrain sent" if first is None else f"slot {slot - first} of {config.slots}"
            log(f"{reached} (chain slot {slot}); apps on chain "
                f"{len(obs.apps)}/{config.apps}, running once {once}, most copies seen "
                f"{obs.max_copies}")  # fmt: skip
        time.sleep(SAMPLE_S)


def settle(config: LiveConfig, net: LiveTestnet, obs: Observer) -> list[str]:
    """Every app once where the chain places it, within ``SETTLE_SLOTS``; what is not."""
    problems: list[str] = []

    def settled() -> bool:
        try:
            problems[:] = check_final(net, obs, ())
        except LiveError as exc:  # no node answered: not checked, so not passed
            problems[:] = [f"not checked: {exc}"]
        return not problems

    with contextlib.suppress(LiveError):
        timeout = SETTLE_SLOTS * config.slot_duration_s + 5
        wait_until(settled, "every app once", timeout, net.check_alive)
    return problems


@contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does (the testnet is stopped on the way out)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_testnet(config: LiveConfig, net: LiveTestnet, log: Log) -> dict[str, Any]:
    """Steps 1-4 (module docstring): the raw material of the figures. Stops the
    testnet whatever happens."""
    progress = Progress()
    raw: dict[str, Any] = {"progress": progress}
    try:
        net.start()
        log(f"testnet of {config.nodes} nodes starting in {net.run_dir}")
        net.wait_ready(config.setup_timeout_s)
        wait_joined(net, config.nodes, config.setup_timeout_s)
        log(f"genesis, grant and {config.nodes} validators after {progress.mark('ready_s')} s")
        obs, raw["requests"], undrain = start_apps(config, net, progress, log)
        watch(config, net, obs, progress, log, undrain)
        raw["problems"] = settle(config, net, obs)
        raw["observer"] = obs.to_json()
        raw["end_slot"] = int(net.get_slot(time.time())) - 1
        log(f"run over at slot {raw['end_slot']}; asking every node for its chain and migrations")
        raw["collected"] = live_data.collect_nodes(net)
        raw["names"] = net.get_names()
    finally:
        raw["stopped"] = net.stop_and_record(progress.started)
        log(f"testnet stopped ({len(raw['stopped']['leftover_processes'])} processes left behind)")
    return raw


def run_live_paper(config: LiveConfig, log: Log = lambda _: None) -> dict[str, Any]:
    """The whole live experiment into ``config.out``; returns what ``result.json``
    holds. LiveError when the testnet did not get where the run needs it."""
    files = None
    if config.migration_json:
        # Read first: a bad file fails before the testnet starts.
        files = read_migration_files(config.migration_json, config.runtime)
        files["files"] = [p.name for p in config.migration_json]
    config.out.mkdir(parents=True, exist_ok=True)
    net = LiveTestnet(get_testnet_dir(config.out), nodes=config.nodes,
                      committee=config.committee, slot_s=config.slot_duration_s)  # fmt: skip
    with interrupted_by_sigterm():
        try:
            raw = run_testnet(config, net, log)
        except LiveError as exc:  # the launcher's own reason, if it gave up
            failure = (read_testnet_summary(net.run_dir) or {}).get("failure")
            raise LiveError(f"{exc}: {failure}" if failure else str(exc)) from None
    progress: Progress = raw["progress"]
    (config.out / "collected.json").write_text(json.dumps({
        "snapshots": progress.snapshots, "migrations": raw["collected"].migrations,
    }) + "\n")  # fmt: skip
    log(f"replaying the canonical chain to slot {raw['end_slot']}")
    try:
        data = build_live_data(config, raw, net)
    except (LocalError, RecordError) as exc:  # no node's chain, or a store without it
        raise LiveError(f"the chain could not be read back: {exc}") from None
    timing: dict[str, Any] = dict(progress.timing)
    live_rows = live_data.get_live_migration_rows(data["migrations"], config.runtime)
    result: dict[str, Any] = {
        "config": get_config_record(config, raw, net),
        "live": data,
        "checks": {
            "copies": raw["observer"],
            "samples_not_all_once": progress.samples_not_all_once,
            "not_once_at_end": raw["problems"],
            **raw["stopped"],
        },
        "testnet": get_testnet_record(net),
        "worst_case": run_worst_cases(config, timing, log),
        "migration": live_data.merge_migration(live_rows, files, config.runtime),
    }
    result["figures"] = write_figures(result, config.out, log)
    timing["total_s"] = round(time.monotonic() - progress.started, 1)
    result["timing"] = timing
    (config.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    (config.out / "report.md").write_text(write_live_report(result))
    log(f"wrote {config.out / 'report.md'}")
    return result
