"""The testnet of a chaos run: ``edgechain testnet``'s launcher (``lab/testnet_launcher``)
run in a thread of this process, one network namespace per node, so that the harness
can crash and restart a node on its own data directory (a launcher in another process
would take a node that died without its word for a crash, and never restart it).

Everything else is :class:`~edgechain.lab.faults_live.LiveTestnet`'s: the operator
drives the fleet through the CLI and the HTTP API, and what runs is read from the
process table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from pathlib import Path
from typing import Any

from edgechain.lab.cluster import Cluster
from edgechain.lab.faults_live import (
    STOP_TIMEOUT_S,
    LiveError,
    LiveTestnet,
    get_watchdog_pid,
    scan_instances,
    signal_groups,
)
from edgechain.lab.netns import NetnsPlan
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.lab.testnet_launcher import Launcher


class ChaosTestnet(LiveTestnet):
    """A testnet whose launcher runs in this process (see the module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        nodes: int,
        committee: int,
        slot_s: float,
        seed: int,
        join_s: float = 0.3,
        netns_prefix: str = "ecc",
        netns_subnet: int = 7,
        small_disks: tuple[tuple[int, int], ...] = (),
        vdf_fraction: float | None = None,
    ) -> None:
        super().__init__(run_dir, nodes=nodes, committee=committee, slot_s=slot_s, join_s=join_s)
        self.config = LaunchConfig(
            nodes=nodes,
            committee=committee,
            slot_duration=slot_s,
            slots=0,
            run_dir=run_dir,
            join_interval=join_s,
            netns=True,
            netns_prefix=netns_prefix,
            netns_subnet=netns_subnet,
            seed=seed,
            progress=False,
            small_disks=small_disks,
            vdf_fraction=vdf_fraction,
        )
        self.runner: Launcher | None = None
        self.summary: dict[str, Any] | None = None
        """The launcher's summary, once it stopped."""
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.paused: set[int] = set()

    def start(self) -> None:
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.runner = Launcher(self.config)
        self._thread = threading.Thread(target=self._run, name="launcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.runner is not None
        try:
            self.summary = self.runner.run()
        except BaseException as exc:  # reported by check_alive in the harness's thread
            self.error = exc

    def check_alive(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise LiveError(
                f"the testnet launcher ended ({self.error!r}; see {self.run_dir}/launcher.log)"
            )
        if self.runner is not None and self.runner.failure is not None:
            raise LiveError(f"the testnet failed: {self.runner.failure}")

    def stop(self) -> None:
        """Continue paused nodes, let the launcher collect and stop its nodes, sweep."""
        runner, thread = self.runner, self._thread
        if runner is None or thread is None:
            return
        for index in sorted(self.paused):
            self.resume(index)
        runner.stop_requested.set()
        thread.join(STOP_TIMEOUT_S + 60.0)
        if thread.is_alive() and runner.cluster is not None:
            runner.cluster.stop_all()
            thread.join(STOP_TIMEOUT_S)
        self.sweep_leftovers()

    # --- what the faults act on ------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        if self.runner is None or self.runner.cluster is None:
            raise LiveError("the testnet has not started")
        return self.runner.cluster

    @property
    def plan(self) -> NetnsPlan:
        if self.runner is None or self.runner.plan is None:
            raise LiveError("the testnet has no namespaces")
        return self.runner.plan

    def get_crashes(self) -> list[dict[str, Any]]:
        """Nodes that exited without the launcher's or the harness's signal."""
        if self.runner is None:
            return []
        return list(self.runner.observed.crashes)

    def crash(self, index: int) -> None:
        """A device crash: the node, its watchdog and its apps are stopped together,
        then SIGKILLed, so nothing of it acts after the first signal."""
        node = self.cluster.nodes[index]
        name = node.spec.name
        groups = [i.pid for i in scan_instances(self.run_dir, self.tags) if i.node == name]
        watchdog = get_watchdog_pid(node.spec.data_dir)
        if watchdog is not None:
            groups.append(watchdog)
        current = node.current
        if current is not None:
            groups.append(current.popen.pid)
        signal_groups(groups, signal.SIGSTOP)
        self.cluster.kill(index)  # SIGKILL of the node's group, reaped, not a crash
        signal_groups(groups, signal.SIGKILL)

    def restart(self, index: int, clock_offset_ms: int | None = None) -> None:
        """Start a stopped node again on its data directory (with another clock
        offset when given: the clock-skew fault)."""
        node = self.cluster.nodes[index]
        if clock_offset_ms is not None:
            node.spec = dataclasses.replace(node.spec, clock_offset_ms=clock_offset_ms)
        self.cluster.restart(index)

    def expect_exit(self, index: int, why: str) -> None:
        """The node may exit on its own now (a full disk): not a crash; the harness
        judges its exit code (:meth:`get_exit`)."""
        current = self.cluster.nodes[index].current
        if current is not None and current.exit_code is None:
            current.ended_by = why

    def get_exit(self, index: int, why: str) -> int | None:
        """The exit code of the incarnation :meth:`expect_exit` marked, once it ended;
        None while it runs (the mark is then taken back)."""
        node = self.cluster.nodes[index]
        node.reap()
        current = node.current
        if current is None or current.ended_by != why:
            return None
        if current.exit_code is None:
            current.ended_by = None
        return current.exit_code

    @property
    def mounted(self) -> list[Path]:
        return list(self.runner.mounted) if self.runner is not None else []

    def pause(self, index: int) -> None:
        """SIGSTOP of the node process alone: its watchdog and apps run on."""
        node = self.cluster.nodes[index]
        current = node.current
        if current is not None and current.exit_code is None:
            self.paused.add(index)
            signal_groups([current.popen.pid], signal.SIGSTOP)

    def resume(self, index: int) -> None:
        node = self.cluster.nodes[index]
        self.paused.discard(index)
        current = node.current
        if current is not None:
            with contextlib.suppress(OSError):
                signal_groups([current.popen.pid], signal.SIGCONT)
