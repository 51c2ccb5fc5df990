"""A move whose origin dies before the app lands goes on from the app's replica.

On a 4-node ``edgechain testnet`` a stateful counter with replicas runs on some node,
its replicas on another. An operator's ``edgechain apps move`` names a third node, so
the destination is not the replica node (balancing never does that, an operator may).
The destination's transfer port is blocked (iptables REJECT) until the move is on
chain and the origin process has been killed (SIGKILL), so the handover never happens.
Once the origin is down (K slots), the destination starts the app itself ("origin
down", ``runtime/lifecycle.py``), and it must start from the replica: the replica node
hands its replica on to the destination of a move that has not landed
(``runtime/replication.Replicator.get_handoffs``). Before, the destination started the
counter from nothing while its replica sat on the replica node.

The counter prints the count it starts from (``apps/counter/counter.sh``), and
``edgechain apps logs`` shows the destination's output: it must start from at least
the count the origin had before a replica stored after it. Root only: the port is
blocked with iptables, and the replica node's store is read to see the replica land.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import get_reject_rule
from .test_cli_live import (
    SETUP_TIMEOUT_S,
    STARTING,
    STEP_TIMEOUT_S,
    LiveNet,
    _placed,
    new_counter_net,
)
from .test_move_target_dies_live import RECOVERY_TIMEOUT_S

pytestmark = pytest.mark.xdist_group("testnet-light")


def _replica_stored_since(net: LiveNet, node: str, app: str, since_ms: int) -> bool:
    """The replica node ``node`` stores a replica of ``app`` received after ``since_ms``."""
    for meta in (net.run_dir / node / "replicas").glob("*/replica.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("app") == app and int(data.get("received_ms", 0)) > since_ms:
            return True
    return False


def submit_with_replica_node(net: LiveNet, spec: Path) -> str:
    """Submit the app of ``spec``; wait until it runs and has a replica node."""
    app = net.app = str(net.cli("apps", "submit", str(spec))["app_id"])
    net.wait_for(lambda: _placed(net, app), "placement", STEP_TIMEOUT_S)
    net.wait_for(
        lambda: net.cli("apps", "show", app)["replica_node"] is not None,
        "a replica node",
        STEP_TIMEOUT_S,
    )
    return app


def wait_fresh_replica(net: LiveNet, app: str, node: str, replica: str) -> int:
    """Wait until the app counted 20 on ``node`` and ``replica`` (node names) then
    stored a replica of it; return the count read before that replica."""
    net.wait_for(lambda: net.read_count(node, app) >= 20, "20 counts", STEP_TIMEOUT_S)
    count_before, since_ms = net.read_count(node, app), int(time.time() * 1000)
    net.wait_for(
        lambda: _replica_stored_since(net, replica, app, since_ms),
        "a replica taken after that count",
        STEP_TIMEOUT_S,
    )
    return count_before


def _starts_at(net: LiveNet, app: str, node: str) -> list[int]:
    """The counts the app's copies on ``node`` started from, per its output."""
    logs = net.cli("apps", "logs", app, "--node", node, "--lines", "500")["logs"]
    lines = [line for log in logs for line in log["lines"]]
    return [int(m.group(1)) for line in lines if (m := STARTING.search(line))]


def test_a_move_whose_origin_dies_goes_on_from_the_replica(
    run_dir: Path, block_port: list[int]
) -> None:
    net, spec = new_counter_net(run_dir, "origin-dies")
    spec.write_text(spec.read_text() + "replica_interval_slots: 2\n")
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = submit_with_replica_node(net, spec)
        names = net.names()
        founder = next(n for n, name in names.items() if name == "node-000")
        view = net.cli("apps", "show", app)
        origin, replica = view["node"], view["replica_node"]
        if origin == founder:
            # The origin gets killed: not the node that founded the chain.
            origin = next(n for n in sorted(names) if n not in (founder, replica))
            assert net.cli("apps", "move", app, origin)["applied"]
            net.wait_for(lambda: _placed(net, app, origin), "the move off node-000", STEP_TIMEOUT_S)
            replica = net.cli("apps", "show", app)["replica_node"]
        # Not node-000 either if it can be helped: the app may have started there.
        others = sorted((n == founder, n) for n in names if n not in (origin, replica))
        destination = others[0][1]
        count_before = wait_fresh_replica(net, app, names[origin], names[replica])

        ready = json.loads((run_dir / names[destination] / "ready.json").read_text())
        subprocess.run(["iptables", *get_reject_rule("-I", ready["transfer_port"])], check=True)
        block_port.append(ready["transfer_port"])
        assert net.cli("apps", "move", app, destination)["applied"]
        net.wait_for(
            lambda: net.cli("apps", "show", app)["node"] == destination,
            "the MIGRATE on chain",
            STEP_TIMEOUT_S,
        )
        origin_pid = json.loads((run_dir / names[origin] / "ready.json").read_text())["pid"]
        os.kill(origin_pid, signal.SIGKILL)
        subprocess.run(["iptables", *get_reject_rule("-D", ready["transfer_port"])], check=True)
        block_port.remove(ready["transfer_port"])

        def is_running_there() -> bool:
            net.instances()  # counts copies on every poll
            return _placed(net, app, destination)

        net.wait_for(is_running_there, "the app running on the destination", RECOVERY_TIMEOUT_S)
        starts = _starts_at(net, app, destination)
        history = net.cli("apps", "history", app)["events"]
        # The last start is the one on the destination (an earlier one: the app's
        # first placement, when the destination is node-000 it moved off).
        assert starts and starts[-1] >= count_before, (starts, count_before, history)
        assert net.max_copies == 1, net.describe_copies()
        # It started with its state: its node does not say otherwise.
        on_node = net.cli("apps", "show", app).get("on_node") or {}
        assert on_node.get("state_lost") is None, on_node
        count = net.read_count(names[destination], app)
        net.wait_for(
            lambda: net.read_count(names[destination], app) > count, "a count more", STEP_TIMEOUT_S
        )
    finally:
        net.stop()
