"""A node restarted long after its app was placed runs the app again (the chaos run's
lost app, found in CI).

A restarted node starts from its newest finalized state (``node/archive.py``), so its
memory no longer holds the block that placed an app some slots before. It must still
start the app: the chain places it there, and the app's state is on its disk. Before
the fix, the node found no reason to start it (``lifecycle.get_start_reason`` looked
for the placing block in memory only), and the app ran nowhere for good.

On a 4-node ``edgechain testnet``: a stateful counter submitted through the CLI; once
the host's finalized slot is past the app's placement, the host is stopped (SIGTERM:
it stops its apps, as after a full disk) and started again on its data directory. The
app must run again on the same node, once, from its saved count. Before the stop, a
second node process started on the host's data directory must be refused and change
nothing (``node/data_dir_lock.py``).
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from .live_testnet import stop_process
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, LiveNet, _placed, new_counter_net
from .test_refusals_live import http

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_a_restarted_node_runs_an_app_placed_before_its_snapshot(run_dir: Path) -> None:
    net, spec = new_counter_net(run_dir, "restart-live")
    # Pinned: the planner may move an unpinned app between the look at its node and the
    # stop (a 4-node testnet's loads swing on a shared host), and the app this test
    # follows must stay on the node it stops.
    spec.write_text(spec.read_text() + "policy:\n  pinned: true\n")
    net.start()
    restarted: subprocess.Popen[bytes] | None = None
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = net.app = net.cli("apps", "submit", str(spec))["app_id"]
        net.wait_for(lambda: _placed(net, app), "the app to run", STEP_TIMEOUT_S)
        view = net.cli("apps", "show", app)
        host, placed_at = net.names()[view["node"]], view["last_move_slot"]
        ready_file = run_dir / host / "ready.json"
        ready = json.loads(ready_file.read_text())

        def finalized_past_placement() -> bool:
            status = http(f"http://127.0.0.1:{ready['http_port']}/status")[1]
            return int(status["finality"]["finalized_slot"]) > int(placed_at)

        net.wait_for(finalized_past_placement, "finality past the placement", STEP_TIMEOUT_S)

        node = psutil.Process(ready["pid"])
        argv = node.cmdline()
        _assert_a_second_process_is_refused(net, argv, ready["pid"], run_dir / host)
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
        net.wait_for(lambda: net.instances() == [], "the stopped node's app to end", 30)
        saved = net.read_count(host, app)
        assert saved > 0
        ready_file.unlink()
        restarted = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL,
            stderr=(run_dir / host / "restarted.log").open("wb"), start_new_session=True,
        )  # fmt: skip
        net.wait_for(ready_file.exists, "the node to start again", SETUP_TIMEOUT_S)

        def running_again() -> bool:
            assert restarted is not None and restarted.poll() is None, "the node died"
            return _placed(net, app, view["node"]) and net.read_count(host, app) > saved

        net.wait_for(running_again, "the app to run again on its node", STEP_TIMEOUT_S)
        after = net.cli("apps", "show", app)
        # Started again where it was, not recovered elsewhere: no move since.
        assert after["last_move_slot"] == placed_at, after
        assert net.max_copies == 1
    finally:
        stop_process(restarted)
        net.stop()


def _assert_a_second_process_is_refused(
    net: LiveNet, argv: list[str], holder: int, data_dir: Path
) -> None:
    """A second ``edgechain node`` on the host's data directory (other ports, as a
    service manager's copy beside a hand-started one) exits at once naming the holder,
    and touches nothing: the app's process is the same, still one copy. Before the data
    directory's lock it SIGKILLed the app as an orphan of an earlier incarnation and
    then died on the transfer port with a traceback."""
    before = [(i.pid, i.node) for i in net.instances()]
    assert len(before) == 1
    second = list(argv)
    for flag in ("--listen", "--http"):
        second[second.index(flag) + 1] = "127.0.0.1:0"
    second[second.index("--ready-file") + 1] = str(data_dir.parent / "second.json")
    done = subprocess.run(
        second, check=False, capture_output=True, timeout=120, start_new_session=True
    )
    assert done.returncode == 1, done.stderr[-2000:]
    said = done.stderr.decode()
    assert f"is in use by another node process (pid {holder})" in said, said
    assert "Traceback" not in said
    assert [(i.pid, i.node) for i in net.instances()] == before
    assert not (data_dir.parent / "second.json").exists()
