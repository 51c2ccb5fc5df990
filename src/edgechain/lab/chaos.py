"""``edgechain chaos``: faults on a live testnet of real node processes, with apps
running and migrating, and the invariants checked after every fault (issue 12).

One run (:func:`run_chaos`): a testnet with one network namespace per node
(``lab/chaos_testnet.py``, root), N stateful counter apps submitted through the CLI,
then until the duration is spent, one fault after another (``lab/chaos_faults.py``):

1. a workload step: an operator's ``apps move`` of a random app to a random node,
   through the CLI (half the gaps), so apps migrate throughout besides the planner's
   own balancing;
2. one fault, drawn with the seed: kill -9 and restart, SIGSTOP/SIGCONT, partitions
   (halves, a minority, one node isolated, a ring), one-way loss
   (``lab/chaos_network.py``), clock skew (a restart with ``--clock-offset-ms``) or a
   full disk (the last node's data directory is a small file system of its own,
   filled; it must stop with status 75 or go on, and keep every block it had
   accepted), held for its slots while the process table is sampled;
3. the fault ends (restart, SIGCONT, heal) and the harness measures how long until
   every honest node has one head (limit 5 slots) and every app runs exactly once where
   the chain places it (limit K + 3 slots); a limit passed is a violation.

Throughout: a second unfrozen copy of an app (confirmed) is a violation, and so is a
node process that exits without the harness's signal, and a new copy of an app that
starts from nothing while a node the fault left alone held a replica of its state
(``state_lost``, ``lab/chaos_state.py``). At the end, with the nodes
stopped, every block in every node's store is validated again (``lab/chain_audit.py``):
an invalid one is a violation, and so is any app process left behind.

Hostile nodes are ``edgechain testnet --hostile`` (``hostile.py``), checked by
``tests/lab/test_hostile_live.py``; this harness runs honest nodes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.lab.chain_audit import audit_stores
from edgechain.lab.chaos_disk import (
    CLEAN_STOP_EXIT,
    SMALL_DISK_BYTES,
    find_lost_blocks,
    keep_logs,
    read_accepted,
)
from edgechain.lab.chaos_faults import (
    ALL_KINDS,
    CLOCK_SKEW,
    FULL_DISK,
    KILL,
    LEAVE,
    PAUSE,
    WATCHDOG_KILL,
    Fault,
    compute_drop_rules,
    draw_fault,
    get_cut_off,
)
from edgechain.lab.chaos_leave import LeaveFault, judge_rejoin
from edgechain.lab.chaos_network import PacketFilter
from edgechain.lab.chaos_report import FaultRecord, RunFacts, build_report
from edgechain.lab.chaos_state import StateWatch, get_state_violations
from edgechain.lab.chaos_testnet import ChaosTestnet
from edgechain.lab.chaos_watch import (
    APPS_EXTRA_SLOTS,
    HEAD_LIMIT_SLOTS,
    HeadWatch,
    wait_apps_once,
    wait_heads,
)
from edgechain.lab.chaos_watchdog import kill_watchdog
from edgechain.lab.cluster import get_node_name
from edgechain.lab.exactly_once_watch import (
    CounterApp,
    ExactlyOnceConfig,
    Observer,
    get_fleet,
    submit_apps,
)
from edgechain.lab.faults_live import LiveError
from edgechain.lab.small_disk import SmallDiskError, fill, free, is_small_disk_available, unmount

SAMPLE_S = 0.2
"""Process table samples during a fault."""


@dataclass(frozen=True)
class ChaosConfig:
    run_dir: Path
    """Must not exist yet, under a directory others may traverse (0711)."""
    nodes: int = 8
    duration_s: float = 120.0
    """Faults are started until this much time has passed since the first."""
    seed: int = 1
    slot_s: float = 2.0
    committee: int = 3
    apps: int = 8
    kinds: tuple[str, ...] = ALL_KINDS
    fault_slots: int | None = None
    """Every fault lasts this many slots (None: 2-5, drawn)."""
    max_faults: int | None = None
    sequence: tuple[str, ...] = ()
    """Faults of these kinds in this order, round robin (targets and lengths still
    drawn); empty: each kind drawn from ``kinds``."""
    replica_every: int = 3
    setup_timeout_s: float = 600.0
    netns_prefix: str = "ecc"
    netns_subnet: int = 7
    vdf_fraction: float | None = None
    """Of a slot, the producer's VDF (``testnet --vdf-fraction``; None: the node's 0.25)."""
    log: Callable[[str], None] = field(default=lambda _: None)


class ChaosRun:
    """One run's state: the testnet, the apps, the faults so far and the violations."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        kinds = config.kinds
        if FULL_DISK in kinds and not is_small_disk_available():
            config.log("no loop devices (or not root): full-disk faults left out")
            kinds = tuple(k for k in kinds if k != FULL_DISK)
        self.kinds = kinds
        self.sequence = tuple(k for k in config.sequence if k in kinds)
        self.disk_node = config.nodes - 1 if FULL_DISK in kinds else None
        small_disks = () if self.disk_node is None else ((self.disk_node, SMALL_DISK_BYTES),)
        self.net = ChaosTestnet(
            config.run_dir,
            nodes=config.nodes,
            committee=config.committee,
            slot_s=config.slot_s,
            seed=config.seed,
            netns_prefix=config.netns_prefix,
            netns_subnet=config.netns_subnet,
            small_disks=small_disks,
            vdf_fraction=config.vdf_fraction,
        )
        self.records: list[FaultRecord] = []
        self.violations: list[dict[str, Any]] = []
        self.workload: dict[str, int] = {"moves": 0, "moves_refused": 0}
        self.apps: dict[str, CounterApp] = {}
        self.obs: Observer | None = None
        self.state: StateWatch | None = None
        self.fault: Fault | None = None
        """The latest fault (its nodes' replicas do not count for ``state_lost``)."""
        self.heads: HeadWatch | None = None
        self.filter: PacketFilter | None = None
        self.paused: set[str] = set()
        self.disk_accepted: set[str] = set()
        """Blocks the small-disk node listed as accepted just before its disk filled."""
        self.leave: LeaveFault | None = None
        """The last leave fault's node and command."""
        self.watchdog_restarts: list[float | None] = []
        """Each watchdog-kill's seconds until the node ran a new watchdog."""
        self.disk_exit: int | None = None
        """The small-disk node's exit status in the last full-disk fault (None: it went on)."""
        self._crashes_seen = 0
        self._doubles_seen = 0

    # --- setup ---------------------------------------------------------------------

    def setup(self) -> None:
        config, net = self.config, self.net
        net.start()
        net.wait_ready(config.setup_timeout_s)
        self.filter = PacketFilter(net.plan.namespaces)
        self.filter.setup()
        submit = ExactlyOnceConfig(
            run_dir=config.run_dir,
            nodes=config.nodes,
            committee=config.committee,
            apps=config.apps,
            slot_s=config.slot_s,
            replica_every=config.replica_every,
        )
        self.apps = submit_apps(net, submit)
        self.obs = Observer(net, self.apps)
        self.state = StateWatch(net)
        self.heads = HeadWatch(self._get_urls, config.nodes)
        config.log(f"{len(self.apps)} apps submitted; waiting until each runs once")
        t = time.time()
        steady = wait_apps_once(net, self.obs, t, config.setup_timeout_s, self._tick, tuple)
        if steady.seconds is None:
            raise LiveError(f"the apps never ran exactly once: {steady.last_seen}")

    def _get_urls(self) -> dict[str, str]:
        return {name: node.url for name, node in self.net.get_nodes().items()}

    def get_honest(self) -> Collection[str]:
        """Nodes expected to agree: running and not paused."""
        return [
            node.spec.name
            for node in self.net.cluster.nodes
            if node.is_running() and node.spec.name not in self.paused
        ]

    # --- the loop ------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        t0 = time.time()
        number = 0
        while time.time() - t0 < config.duration_s:
            if config.max_faults is not None and number >= config.max_faults:
                break
            self._workload_step()
            if self.sequence:
                kind = self.sequence[number % len(self.sequence)]
            else:
                kind = self.rng.choice(self.kinds)
            fault = draw_fault(self.rng, number, kind, config.nodes, self.disk_node)
            if config.fault_slots is not None:
                fault = dataclasses.replace(fault, duration_slots=config.fault_slots)
            self._run_fault(fault)
            number += 1

    def _workload_step(self) -> None:
        """Half the time, move a random app to a random other node (the CLI)."""
        net = self.net
        if not self.apps or self.rng.random() < 0.5:
            self._sample_for(self.config.slot_s)
            return
        app = self.rng.choice(sorted(self.apps))
        target = get_node_name(self.rng.randrange(self.config.nodes))
        ids = {name: node.node_id for name, node in net.get_nodes().items()}
        try:
            fleet = get_fleet(net)
            if fleet.get(app, {}).get("node_name") == target or target not in ids:
                return
            net.cli("apps", "move", app, ids[target][:16])
            self.workload["moves"] += 1
            self.config.log(f"moved {self.apps[app].name} to {target}")
        except LiveError as exc:
            # A refused move (policy, a node the chain counts as down) is the operator's
            # problem, not the system's: counted, not a violation.
            self.workload["moves_refused"] += 1
            self.config.log(f"move of {self.apps[app].name} to {target} refused: {exc}")

    def _run_fault(self, fault: Fault) -> None:
        config, net = self.config, self.net
        params = net.get_params()
        k = params.down_after_slots
        cut_off = {get_node_name(i) for i in get_cut_off(fault, config.nodes)}
        before = get_fleet(net)
        on_cut_off = {app for app, view in before.items() if view["node_name"] in cut_off}
        self.fault = fault
        t_start = time.time()
        self._inject(fault)
        config.log(f"fault {fault.describe()} at slot {net.get_slot(t_start):.1f}")
        self._sample_for(fault.duration_slots * config.slot_s - (time.time() - t_start))
        replaced, fenced = self._judge_cut_off(on_cut_off, cut_off)
        self._end(fault)
        t_end = time.time()
        heads = wait_heads(
            self._heads(), self.get_honest, t_end, HEAD_LIMIT_SLOTS * config.slot_s, self._tick
        )
        apps = wait_apps_once(
            net,
            self._observer(),
            t_end,
            (k + APPS_EXTRA_SLOTS) * config.slot_s,
            self._tick,
            lambda: self.paused,
        )
        record = FaultRecord(
            fault,
            net.get_slot(t_start),
            net.get_slot(t_end),
            heads,
            apps,
            len(on_cut_off),
            replaced,
            fenced,
        )
        self.records.append(record)
        if fault.kind == CLOCK_SKEW:
            record.detail["offset_ms"] = fault.offset_ms
        if fault.kind == WATCHDOG_KILL and self.watchdog_restarts:
            record.detail["watchdog_restart_s"] = self.watchdog_restarts[-1]
        if fault.kind == LEAVE:
            assert self.leave is not None
            slots, problem = judge_rejoin(self.leave, config.slot_s, self._tick)
            record.detail["rejoined_slots"] = slots
            if problem is not None:
                self._violate("left_node_rejoins", fault, problem)
        if fault.kind == FULL_DISK:
            (index,) = fault.targets
            data_dir = net.cluster.nodes[index].spec.data_dir
            lost = find_lost_blocks(data_dir / "chain.db", self.disk_accepted)
            record.detail.update(
                disk_exit_status=self.disk_exit,
                accepted_blocks_checked=len(self.disk_accepted),
                accepted_blocks_lost=len(lost),
            )
            if lost:
                self._violate("accepted_block_lost", fault, {"blocks": lost[:10], "n": len(lost)})
        if heads.seconds is None:
            self._violate(
                "heads_converge",
                fault,
                f"not one head {HEAD_LIMIT_SLOTS} slots after: {heads.last_seen}",
            )
        if apps.seconds is None:
            self._violate(
                "apps_exactly_once",
                fault,
                f"not every app once {k + APPS_EXTRA_SLOTS} slots after: {apps.last_seen}",
            )
        self._tick()
        config.log(
            f"  heads one after {_show(heads.seconds)}, apps once after {_show(apps.seconds)}"
        )

    def _judge_cut_off(self, on_cut_off: set[str], cut_off: set[str]) -> tuple[int, int]:
        if not on_cut_off:
            return 0, 0
        honest = [n for n in self.get_honest() if n not in cut_off]
        try:
            fleet = get_fleet(self.net, tuple(sorted(set(self._get_urls()) - set(honest))))
        except LiveError:
            return 0, 0
        replaced = sum(
            1 for app in on_cut_off if fleet.get(app, {}).get("node_name") not in cut_off
        )
        _, instances = self._observer().scan()
        running = {(i.app, i.node) for i in instances if not i.frozen}
        fenced = sum(1 for app in on_cut_off if not any((app, node) in running for node in cut_off))
        return replaced, fenced

    def _inject(self, fault: Fault) -> None:
        net = self.net
        if fault.kind == KILL:
            for index in fault.targets:
                net.crash(index)
        elif fault.kind == CLOCK_SKEW:
            for index in fault.targets:
                net.cluster.stop(index)
                net.restart(index, clock_offset_ms=fault.offset_ms)
        elif fault.kind == FULL_DISK:
            (index,) = fault.targets
            node = net.get_nodes().get(get_node_name(index))
            self.disk_accepted = read_accepted(node.url) if node is not None else set()
            net.expect_exit(index, FULL_DISK)
            fill(net.cluster.nodes[index].spec.data_dir)
        elif fault.kind in (PAUSE, WATCHDOG_KILL):
            for index in fault.targets:
                if fault.kind == WATCHDOG_KILL:
                    self._kill_watchdog(fault, index)
                net.pause(index)
                self.paused.add(get_node_name(index))
        elif fault.kind == LEAVE:
            (index,) = fault.targets
            self.leave = LeaveFault(net, index)
            self.leave.start()
        else:
            self._filter().apply(compute_drop_rules(fault, net.plan.addresses))

    def _kill_watchdog(self, fault: Fault, index: int) -> None:
        killed, seconds = kill_watchdog(self.net.cluster.nodes[index].spec.data_dir)
        self.watchdog_restarts.append(seconds)
        if killed is not None and seconds is None:
            self._violate("watchdog_restarted", fault, f"no new watchdog after {killed}")
        shown = "-" if seconds is None else f"{seconds * 1000:.0f} ms"
        self.config.log(f"  watchdog {killed} killed, a new one running after {shown}")

    def _end(self, fault: Fault) -> None:
        net = self.net
        if fault.kind == KILL:
            for index in fault.targets:
                net.restart(index)
        elif fault.kind == CLOCK_SKEW:
            for index in fault.targets:
                net.cluster.stop(index)
                net.restart(index, clock_offset_ms=0)
        elif fault.kind == FULL_DISK:
            (index,) = fault.targets
            free(net.cluster.nodes[index].spec.data_dir)
            code = net.get_exit(index, FULL_DISK)
            self.disk_exit = code
            if code is not None:
                if code != CLEAN_STOP_EXIT:
                    self._violate("disk_full_unclean_stop", fault, f"exit status {code}")
                net.restart(index)
        elif fault.kind in (PAUSE, WATCHDOG_KILL):
            for index in fault.targets:
                net.resume(index)
                self.paused.discard(get_node_name(index))
        elif fault.kind == LEAVE:
            assert self.leave is not None
            problem = self.leave.finish(self._tick)
            if problem is not None:
                self._violate("leave_unclean", fault, problem)
            # Away for the fault's length, as a node being upgraded is.
            self._sample_for(fault.duration_slots * self.config.slot_s)
            self.leave.restart()
        else:
            self._filter().heal()

    # --- continuous checks -----------------------------------------------------------

    def _sample_for(self, seconds: float) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            self._tick()
            time.sleep(min(SAMPLE_S, max(0.0, deadline - time.time())))

    def _tick(self) -> None:
        """One process table sample; new doubles and crashes become violations."""
        self.net.check_alive()
        obs = self._observer()
        _, instances = obs.scan(timed=True)
        if self.state is not None:
            for lost in get_state_violations(self.state.observe(instances), self.fault):
                self._violate("state_lost", self.fault, lost)
        for double in obs.doubles[self._doubles_seen :]:
            self._violate("app_ran_twice", None, double)
        self._doubles_seen = len(obs.doubles)
        crashes = self.net.get_crashes()
        for crash in crashes[self._crashes_seen :]:
            self._violate("node_crashed", None, crash)
        self._crashes_seen = len(crashes)

    def _violate(self, invariant: str, fault: Fault | None, detail: Any) -> None:
        entry = {
            "invariant": invariant,
            "fault": fault.number if fault is not None else None,
            "slot": round(self.net.get_slot(time.time()), 1),
            "detail": detail,
        }
        self.violations.append(entry)
        self.config.log(f"VIOLATION {invariant}: {detail}")

    def _observer(self) -> Observer:
        assert self.obs is not None
        return self.obs

    def _heads(self) -> HeadWatch:
        assert self.heads is not None
        return self.heads

    def _filter(self) -> PacketFilter:
        assert self.filter is not None
        return self.filter

    # --- the end -------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Stop the testnet, audit every store, and build the report."""
        net, config = self.net, self.config
        last = self.heads.last if self.heads is not None else None
        if self.heads is not None:
            self.heads.close()
        net.stop()
        stores = sorted(config.run_dir.glob("node-*/chain.db"))
        audit = audit_stores(stores)
        for entry in audit.invalid:
            self._violate("invalid_block_accepted", None, entry)
        for leftover in net.leftovers:
            self._violate("process_left_behind", None, leftover)
        for directory in net.mounted:
            keep_logs(directory)
            try:
                unmount(directory)
            except SmallDiskError as exc:
                config.log(f"could not unmount {directory}: {exc}")
        peer_errors: dict[str, int] = {}
        if last is not None:
            for counts in last.peer_errors.values():
                for reason, count in counts.items():
                    peer_errors[reason] = peer_errors.get(reason, 0) + int(count)
        config_json = {
            "nodes": config.nodes,
            "duration_s": config.duration_s,
            "seed": config.seed,
            "slot_s": config.slot_s,
            "committee": config.committee,
            "apps": config.apps,
            "kinds": list(self.kinds),
            "small_disk_node": None if self.disk_node is None else get_node_name(self.disk_node),
            "fault_slots": config.fault_slots,
            "run_dir": str(config.run_dir),
        }
        params = net.params
        facts = RunFacts(
            config=config_json,
            slot_s=config.slot_s,
            k=params.down_after_slots if params is not None else None,
            records=self.records,
            violations=self.violations,
            workload=self.workload,
            process_table=self.obs.to_json() if self.obs is not None else None,
            state=self.state.to_json() if self.state is not None else None,
            audit=audit.to_json(),
            peer_errors=peer_errors,
            launcher_summary=net.summary,
        )
        return build_report(facts)


def _show(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def run_chaos(config: ChaosConfig) -> dict[str, Any]:
    run = ChaosRun(config)
    failure: str | None = None
    try:
        run.setup()
        run.run()
    except LiveError as exc:
        failure = str(exc)
        config.log(f"failed: {exc}")
    finally:
        if run.filter is not None:
            try:
                run.filter.heal()
            except Exception as exc:  # the namespaces go with the testnet anyway
                config.log(f"heal at the end failed: {exc}")
        report = run.finish()
    if failure is not None:
        report["failure"] = failure
        report["violations"].append({"invariant": "harness", "fault": None, "detail": failure})
        report["ok"] = False
    return report
