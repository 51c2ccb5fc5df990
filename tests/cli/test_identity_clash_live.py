"""One node identity on two devices: the copy is caught and the app runs once again.

On a 4-node ``edgechain testnet`` a counter runs on some node. Its data directory is
copied while it runs (as when one device's image is flashed onto another) and the copy
started beside it with other ports: two processes with one key, each running the
counter the chain places on that node. Within a few slots a block carries a report of
that node one of them did not sign; that one (or both) writes ``identity-clash.json``,
stops its apps and exits 78 (``node/identity_clash.py``). From then on one copy of the
counter runs, and a restart of a stopped one refuses to run, saying why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from edgechain.node.identity_clash import CLASH_FILE, EXIT_IDENTITY_CLASH

from .live_testnet import replace_flag, stop_process
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, _placed, new_counter_net

CLASH_TIMEOUT_S = 90.0
"""A report interval (4 slots of 1 s) and a block or two, on a loaded host: generous."""
RECOVERY_TIMEOUT_S = 180.0
"""Should both copies stop: K = 12 slots before the node is down, then a recovery."""

pytestmark = pytest.mark.xdist_group("testnet-light")


def _copy_unless_gone(src: str, dst: str) -> None:
    """``shutil.copy2``, skipping a file that went between the listing and the copy: the
    directory is live (the counter renames its ``count.tmp`` ten times a second; a
    fresh-clone suite once failed the copy on it)."""
    try:
        shutil.copy2(src, dst)
    except FileNotFoundError:
        if Path(src).exists():
            raise


def test_a_copied_data_directory_is_caught_and_the_app_runs_once(run_dir: Path) -> None:
    net, spec = new_counter_net(run_dir, "clash")
    net.start()
    clone: subprocess.Popen[bytes] | None = None
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = net.app = net.cli("apps", "submit", str(spec))["app_id"]
        net.wait_for(lambda: _placed(net, app), "placement", STEP_TIMEOUT_S)
        node_id = net.cli("apps", "show", app)["node"]
        name = net.names()[node_id]
        net.wait_for(lambda: net.read_count(name, app) >= 5, "5 counts", STEP_TIMEOUT_S)

        original_dir = run_dir / name
        original = psutil.Process(json.loads((original_dir / "ready.json").read_text())["pid"])
        original_argv = original.cmdline()
        clone_dir = run_dir / "node-clone"
        shutil.copytree(
            original_dir, clone_dir, symlinks=True,
            ignore=shutil.ignore_patterns("ready.json", "transfer.port"),
            copy_function=_copy_unless_gone,
        )  # fmt: skip
        argv = replace_flag(original_argv, "--data-dir", str(clone_dir))
        argv = replace_flag(argv, "--listen", "127.0.0.1:0")
        argv = replace_flag(argv, "--http", "127.0.0.1:0")
        argv = replace_flag(argv, "--ready-file", str(run_dir / "clone-ready.json"))
        started = time.monotonic()
        clone = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=(run_dir / "clone.log").open("wb"),
            start_new_session=True,
        )  # fmt: skip

        def caught() -> bool:
            net.instances()
            return (clone_dir / CLASH_FILE).exists() or (original_dir / CLASH_FILE).exists()

        net.wait_for(caught, "one of the two to see the other's report", CLASH_TIMEOUT_S)
        stopped = [d for d in (original_dir, clone_dir) if (d / CLASH_FILE).exists()]
        caught_s = time.monotonic() - started
        if clone_dir in stopped:
            assert clone.wait(timeout=60) == EXIT_IDENTITY_CLASH, _tail(run_dir / "clone.log")
        if original_dir in stopped:
            original.wait(timeout=60)  # the launcher's child: its status is the launcher's

        def runs_once() -> bool:
            copies = [i for i in net.instances() if not i.frozen and not i.dying]
            return len(copies) == 1 and copies[0].node not in {d.name for d in stopped}

        net.wait_for(runs_once, "one copy, on a node still running", RECOVERY_TIMEOUT_S)
        net.max_copies = 1  # two ran until the catch, by the nature of the fault; never again
        [survivor] = [i.node for i in net.instances() if not i.frozen and not i.dying]
        count = net.read_count(survivor, app)
        net.wait_for(lambda: net.read_count(survivor, app) > count, "it counts on", 60)
        assert net.max_copies == 1, net.describe_copies()

        # A restart of a stopped copy (say, by its service manager) refuses to run.
        again = replace_flag(
            argv if stopped[0] == clone_dir else original_argv,
            "--ready-file",
            str(run_dir / "again-ready.json"),
        )
        done = subprocess.run(again, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1, done.stderr
        assert "another process signs as this node" in done.stderr
        assert f"delete {stopped[0] / CLASH_FILE}" in done.stderr
        assert net.max_copies == 1, net.describe_copies()
        print(json.dumps({"stopped": [d.name for d in stopped], "caught_after_s": caught_s}))
    finally:
        stop_process(clone)
        net.stop()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""
