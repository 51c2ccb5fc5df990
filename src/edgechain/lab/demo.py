"""``make demo``: a local testnet, and a few sample apps managed through the CLI.

1. ``edgechain testnet --forever`` starts N node processes in a run directory and,
   once the chain is up, grants an operator key and writes ``RUN/client.toml``;
2. the sample apps (``apps/``: two stateful counters and a CPU load) are written as
   YAML specs and submitted with ``edgechain apps submit``; the planner places them;
3. ``edgechain apps list`` / ``nodes`` show the fleet; one counter is moved to another
   node with ``edgechain apps move`` and its history shown (``apps history``);
4. the testnet is stopped (SIGINT, as Ctrl-C would) and prints its summary, which
   lists where each app ran and how it moved, from the chain.

Every step prints the exact ``edgechain`` command it runs, so it can be replayed by
hand against the run's ``client.toml`` while a testnet runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppPolicy, AppSpec, RuntimeKind
from edgechain.lab.operator import CLIENT_FILE, get_grant_timeout
from edgechain.lab.testnet_config import default_run_dir
from edgechain.runtime.samples import get_counter_spec, get_cpu_load_spec

CLI = (sys.executable, "-m", "edgechain.cli")
MIN_POLL_S = 0.5
"""The demo checks its conditions (apps running, the move done) once a slot, at most
twice a second. Each check is an ``edgechain apps list`` over every node (``/apps`` and
``/runtime/apps``, about 0.7 ms of a node's CPU together, measured on a 4-node
testnet); checked every 0.5 s at 2 s slots, that was about 3 ms of every node's slot,
which the summary's CPU table showed in ``other``: once a slot, one demo each, the
off-duty median of ``other`` went from 4.82 to 3.00 ms and ``process_without_checks``
from 14.36 to 11.77 ms (the rest of ``other`` is the demo's CLI commands and a run
short enough that start-up weighs)."""


class DemoError(Exception):
    """The demo could not go on (the testnet failed, a command failed, a timeout)."""


def spec_to_yaml(spec: dict[str, Any]) -> str:
    """A spec as YAML: one ``key: value`` line each, values in JSON (flow) syntax, which
    YAML reads as is; no YAML writer needed."""
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in spec.items())


def get_sample_specs() -> dict[str, AppSpec]:
    """The demo's apps by file name (names are unique, so the CLI can use them)."""
    from dataclasses import replace

    counter = get_counter_spec(RuntimeKind.PROCESS, interval_s=0.5, tag="demo")
    load = get_cpu_load_spec(RuntimeKind.PROCESS, share_percent=10, period_ms=200)
    return {
        "counter": counter,
        "counter-b": replace(counter, name="counter-b"),
        # On one shared host every node reports the same high CPU use; a policy
        # interval keeps the planner from moving the load app every report.
        "cpu-load": replace(load, policy=AppPolicy(min_interval_slots=10)),
    }


def write_specs(directory: Path) -> list[Path]:
    from edgechain.api.schema import app_spec_to_json

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in get_sample_specs().items():
        path = directory / f"{name}.yaml"
        path.write_text(spec_to_yaml(app_spec_to_json(spec)))
        paths.append(path)
    return paths


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir: Path = args.run_dir or default_run_dir()
        self.client = self.run_dir / CLIENT_FILE
        self.launcher: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        try:
            self._start_testnet()
            self._wait_for(self.client.exists, self._setup_timeout(), "client.toml")
            self._print_dashboard()
            self._manage_apps()
            self._wait_slots(self.args.linger_slots)
        except DemoError as exc:
            print(f"\ndemo failed: {exc}", file=sys.stderr)
            self._stop_testnet()
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        return self._stop_testnet()

    # -- steps --

    def _start_testnet(self) -> None:
        a = self.args
        argv = [
            *CLI,
            "testnet",
            "--forever",
            "--quiet",
            "--nodes",
            str(a.nodes),
            "--committee",
            str(a.committee),
            "--slot-duration",
            f"{a.slot_duration:g}",
            "--run-dir",
            str(self.run_dir),
        ]
        print(f"$ edgechain {shlex.join(argv[len(CLI) :])} &", flush=True)
        # Its own session: the terminal's Ctrl-C reaches only us, and we stop it. With
        # --quiet it prints only its summary (or why it failed), read at the end.
        self.launcher = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        print(f"  (log: {self.run_dir / 'launcher.log'}; waiting for genesis and the grant)")

    def _print_dashboard(self) -> None:
        """Where to watch the run: the first node's dashboard (ARCHITECTURE.md, "The
        HTTP API"), from the client config the testnet wrote."""
        nodes = tomllib.loads(self.client.read_text()).get("nodes") or []
        if nodes:
            print(f"  dashboard: {nodes[0]}/ (open it while the demo runs)", flush=True)

    def _manage_apps(self) -> None:
        specs = write_specs(self.run_dir / "specs")
        for path in specs:
            self._cli("apps", "submit", str(path))
        names = [p.stem for p in specs]
        self._wait_for(lambda: self._all_running(names), 30 * self.args.slot_duration, "placement")
        self._cli("apps", "list")
        self._cli("nodes")
        app = self._get_app("counter")
        target = self._pick_target(str(app["node"]))
        self._cli("apps", "move", "counter", target[:12])
        self._wait_for(
            lambda: self._runs_on("counter", target), 40 * self.args.slot_duration, "the move"
        )
        self._cli("apps", "list")
        self._cli("apps", "history", "counter")

    def _stop_testnet(self) -> int:
        launcher = self.launcher
        if launcher is None:
            return 1
        if launcher.poll() is None:
            print("\nstopping the testnet (SIGINT)", flush=True)
            launcher.send_signal(signal.SIGINT)
        try:
            output, _ = launcher.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            launcher.kill()
            output, _ = launcher.communicate()
        print(output.decode(errors="replace"), end="")
        return launcher.returncode

    # -- helpers --

    def _cli(self, *argv: str, show: bool = True) -> str:
        command = [*CLI, "--client", str(self.client), *argv]
        if show:
            print(f"\n$ edgechain --client {self.client} {shlex.join(argv)}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if show:
            print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            raise DemoError(f"edgechain {shlex.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def _apps(self) -> list[dict[str, Any]]:
        apps = json.loads(self._cli("apps", "list", "--json", show=False))
        return [a for a in apps if isinstance(a, dict)]

    def _get_app(self, name: str) -> dict[str, Any]:
        return next(a for a in self._apps() if a.get("name") == name)

    def _all_running(self, names: Sequence[str]) -> bool:
        apps = {a.get("name"): a for a in self._apps()}
        # Seen running where the chain placed it (a report may still show the node an
        # app just left: the planner moves a loaded app on, which is fine here).
        return all(
            n in apps and apps[n].get("node") in (apps[n].get("reported_on") or []) for n in names
        )

    def _runs_on(self, name: str, node: str) -> bool:
        app = self._get_app(name)
        return app.get("node") == node and app.get("reported_on") == [node]

    def _pick_target(self, current: str) -> str:
        nodes = json.loads(self._cli("nodes", "--json", show=False))
        ids = sorted(str(n["node_id"]) for n in nodes if n.get("node_id") != current)
        if not ids:
            raise DemoError("no other node to move to")
        return ids[0]

    def _wait_slots(self, slots: int) -> None:
        seconds = slots * self.args.slot_duration
        deadline = time.monotonic() + seconds
        self._wait_for(lambda: time.monotonic() >= deadline, seconds + 5, "")

    def _wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.launcher is not None and self.launcher.poll() is not None:
                raise DemoError("the testnet exited")
            if predicate():
                return
            time.sleep(max(MIN_POLL_S, float(self.args.slot_duration)))
        raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _setup_timeout(self) -> float:
        nodes, slot = int(self.args.nodes), float(self.args.slot_duration)
        return nodes * 1.0 + 60.0 + get_grant_timeout(slot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgechain.lab.demo", description=__doc__)
    parser.add_argument("--nodes", type=int, default=8, help="default 8")
    parser.add_argument("--committee", type=int, default=3, help="default 3")
    parser.add_argument("--slot-duration", type=float, default=2.0, metavar="SEC")
    parser.add_argument("--run-dir", type=Path, help="default runs/testnet-<timestamp>")
    parser.add_argument(
        "--linger-slots", type=int, default=3, help="slots to keep running after the move"
    )
    return Demo(parser.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
