"""A move whose destination dies before the app lands there loses no state.

On a 4-node ``edgechain testnet`` a stateful counter runs on some node. The destination
of ``edgechain apps move`` has its transfer port blocked (iptables REJECT: a firewall,
or a transfer server that cannot take it), so the handover can never land, and once
the move is on chain that node process is killed (SIGKILL). The chain places the app on
the dead node until it is down (K slots), then RECOVERs it: back onto the origin, which
kept its state dir (``orchestrator/placement.get_unlanded_origin``; the origin no longer
discards a copy before the move has landed, ``runtime/reconcile.py``). The counter goes
on from where it was, with one copy at a time throughout. Before, the RECOVER went to
the least-loaded node, which started the counter from nothing while the origin still
held its count (seen live: 34 at the kill; 24 on the new node seconds later).

Root only: the port is blocked with iptables. Killing the destination as soon as the
move is accepted is no substitute: a node killed before the MIGRATE is planned is
excluded at its next producer slot, and the move then waits for it, as it should.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import get_reject_rule
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, _placed, new_counter_net

RECOVERY_TIMEOUT_S = 180
"""K = 12 slots of 1 s before the dead node is down, then a slot or two: generous."""

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_a_move_to_a_node_that_dies_is_recovered_on_its_origin_with_its_state(
    run_dir: Path, block_port: list[int]
) -> None:
    net, spec = new_counter_net(run_dir, "target-dies")
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = net.app = net.cli("apps", "submit", str(spec))["app_id"]
        net.wait_for(lambda: _placed(net, app), "placement", STEP_TIMEOUT_S)
        names = net.names()
        origin = net.cli("apps", "show", app)["node"]
        # The CLI's config names every node; node-000 founded the chain: spare it.
        target = next(n for n, name in sorted(names.items()) if n != origin and name != "node-000")
        net.wait_for(lambda: net.read_count(names[origin], app) >= 20, "20 counts", STEP_TIMEOUT_S)

        ready = json.loads((run_dir / names[target] / "ready.json").read_text())
        subprocess.run(["iptables", *get_reject_rule("-I", ready["transfer_port"])], check=True)
        block_port.append(ready["transfer_port"])
        moved = net.cli("apps", "move", app, target)
        assert moved["applied"], moved
        net.wait_for(
            lambda: net.cli("apps", "show", app)["node"] == target,
            "the MIGRATE on chain",
            STEP_TIMEOUT_S,
        )
        os.kill(ready["pid"], signal.SIGKILL)
        count_at_kill = net.read_count(names[origin], app)

        def is_recovered() -> bool:
            net.instances()  # counts copies on every poll
            view = net.cli("apps", "show", app)
            return view["node"] not in (None, target) and _placed(net, app)

        net.wait_for(is_recovered, "the app recovered off the dead node", RECOVERY_TIMEOUT_S)
        where = net.cli("apps", "show", app)["node"]
        count = net.read_count(names[where], app)
        history = net.cli("apps", "history", app)["events"]
        assert where == origin, (names[where], history)
        assert count >= count_at_kill, (count, count_at_kill, history)
        assert net.max_copies == 1, net.describe_copies()
        on_node = net.cli("apps", "show", app).get("on_node") or {}
        assert on_node.get("state_lost") is None, on_node  # its origin kept its state
        kinds = [event["kind"] for event in history]
        assert "migrate" in kinds and "recover" in kinds, kinds
        # It counts on there.
        net.wait_for(
            lambda: net.read_count(names[where], app) > count, "a count more", STEP_TIMEOUT_S
        )
    finally:
        net.stop()
