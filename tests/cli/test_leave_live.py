"""A node leaves on purpose (issue 16, item 3), through what an operator touches.

On a 4-node ``edgechain testnet`` a stateful counter app runs on some node; ``edgechain
node leave --data-dir`` that node's directory. The command follows the leave to its end
and exits 0; the app then runs on another node, counting on from its state, with one
copy at a time throughout; the node is out of the validator set (its exit is in a
block); its process exited 0 on its own, which the launcher's summary records under
``left``, not as a crash. Then the same node, started again on its data directory (what
an upgrade does: docs/deploy.md), joins the validator set again with its old key.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from .live_testnet import EDGECHAIN, stop_process
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, _placed, new_counter_net

LEAVE_TIMEOUT_S = 240

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_a_node_leaves_and_its_app_runs_on_elsewhere_with_its_state(run_dir: Path) -> None:
    net, spec = new_counter_net(run_dir, "leave-live")
    rejoined: subprocess.Popen[bytes] | None = None
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = net.app = net.cli("apps", "submit", str(spec))["app_id"]
        net.wait_for(lambda: _placed(net, app), "placement", STEP_TIMEOUT_S)
        node = net.cli("apps", "show", app)["node"]
        name = net.names()[node]
        count_before = net.read_count(name, app)
        assert count_before > 0
        ready = json.loads((run_dir / name / "ready.json").read_text())
        argv = psutil.Process(ready["pid"]).cmdline()  # to start it again after it left

        leave = subprocess.Popen(
            [EDGECHAIN, "node", "leave", "--data-dir", str(run_dir / name),
             "--leave-timeout", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Never two running copies while the app moves away.
        deadline = time.monotonic() + LEAVE_TIMEOUT_S
        while leave.poll() is None and time.monotonic() < deadline:
            net.instances()
            time.sleep(0.3)
        if leave.poll() is None:
            leave.kill()
        out, err = leave.communicate(timeout=30)
        assert leave.returncode == 0, (out, err, net.describe())
        assert "leaving: draining" in out and out.rstrip().endswith(
            "left: the exit is in a block and the node stopped"
        ), out
        # Committee 2 on 4 nodes: the 3 left behind are at the floor, with no member to
        # spare (README, "How many nodes may fail"); the command says so first.
        assert "validators remain after this node, at or below the chain's floor" in err, err

        # The app runs elsewhere, from its state; the node is out of the set.
        net.wait_for(
            lambda: _placed(net, app) and net.cli("apps", "show", app)["node"] != node,
            "the app on another node",
            STEP_TIMEOUT_S,
        )
        where = net.names()[net.cli("apps", "show", app)["node"]]
        assert where != name
        assert net.read_count(where, app) >= count_before
        assert net.max_copies == 1, net.describe_copies()
        assert node not in {n["node_id"] for n in net.cli("nodes")}
        history = [e["kind"] for e in net.cli("apps", "history", app)["events"]]
        assert "migrate" in history or "move" in history, history

        # Started again on the same data directory: admitted again, with the same key.
        ready_file = run_dir.parent / "rejoined.json"
        argv[argv.index("--ready-file") + 1] = str(ready_file)
        rejoined = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=(run_dir.parent / "rejoined.log").open("wb"),
            start_new_session=True,
        )  # fmt: skip

        def is_validator_again() -> bool:
            assert rejoined is not None and rejoined.poll() is None, _tail(run_dir)
            return node in {n["node_id"] for n in net.cli("nodes")}

        net.wait_for(is_validator_again, "the node a validator again", LEAVE_TIMEOUT_S)
        # And it stays one (an exit of its earlier stay is not applied again).
        slot = net.cli("status")["status"]["head_slot"]
        net.wait_for(
            lambda: net.cli("status")["status"]["head_slot"] >= slot + 6, "6 more slots", 120
        )
        assert node in {n["node_id"] for n in net.cli("nodes")}, _tail(run_dir)
    finally:
        stop_process(rejoined)
        code, output = net.stop()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [entry["name"] for entry in summary["left"]] == [name], output[-3000:]
    assert summary["crashes"] == [], summary["crashes"]
    assert code == 0, output[-3000:]


def _tail(run_dir: Path) -> str:
    return (run_dir.parent / "rejoined.log").read_text(errors="replace")[-3000:]
