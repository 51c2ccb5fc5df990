"""An app that waits for its state is never started from nothing (block format 18).

On a 6-node ``edgechain testnet`` a stateful counter with replicas and
``policy: {wait_for_state: true}`` runs on some node O, its replicas on another, R,
which the chain has confirmed to hold its state (``state_node``). Both are paused
(SIGSTOP) together, as a partition would cut them off, until the chain takes both for
down (K = 12 slots). By default the chain would recover the counter on one of the
other nodes, from an empty state: R is down, and a replica node named meanwhile (R is
often excluded by a skip block before O looks silent) never got a replica from the
paused O. With the policy it waits: the chain keeps it on O, no copy runs anywhere
(a control app without the policy, on O too, is recovered elsewhere),
and ``edgechain apps show`` says why. R is then continued: the chain
recovers the counter there, and it goes on from R's replica, not from 0. O, continued
last, stops its stale copy: one copy at most throughout.

About 100 s, so it runs with ``EDGECHAIN_LONG=1``; the planner's rules are tested in
``tests/orchestrator/test_liveness_plans.py`` in every run.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pytest

from .live_testnet import PausedNodes
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, LiveNet, _placed, new_counter_net
from .test_move_origin_dies_live import _starts_at, submit_with_replica_node, wait_fresh_replica
from .test_move_target_dies_live import RECOVERY_TIMEOUT_S
from .test_replica_node_changes_live import _get_pid, _off_the_founder, _use_the_founder_alone

pytestmark = [
    pytest.mark.xdist_group("testnet-light"),
    pytest.mark.skipif(
        os.environ.get("EDGECHAIN_LONG") != "1",
        reason="about 100 s of a 6-node testnet: EDGECHAIN_LONG=1",
    ),
]

NODES = 6
WAITED_SLOTS = 6
"""Slots after both nodes are down in which the app must not be recovered."""


def _write_control_spec(folder: Path) -> Path:
    path = folder / "control.yaml"
    path.write_text("name: control\nruntime: process\ncommand: [/bin/sleep, '600']\n")
    return path


def _is_on(net: LiveNet, app: str, node: str) -> bool:
    view = net.cli("apps", "show", app)
    return bool(view["node"] == node and view["reported_on"] == [node])


def _settle(net: LiveNet, app: str, other: str, founder: str) -> tuple[str, str]:
    """The counter off node-000 (the CLI's node, never paused), the control app on the
    counter's node, and both still there four slots later (balancing may move the
    counter to its replica node once the control app loads its node); (node, replica
    node)."""
    for _ in range(4):
        origin, replica = _off_the_founder(net, app, founder)
        net.wait_for(
            lambda: net.cli("apps", "show", other)["node"] is not None,
            "the control app placed",
            STEP_TIMEOUT_S,
        )
        if net.cli("apps", "show", other)["node"] != origin:
            assert net.cli("apps", "move", other, origin)["applied"]
        net.wait_for(partial(_is_on, net, other, origin), "the control app on O", STEP_TIMEOUT_S)
        net.wait_for(partial(_is_past, net, _head_slot(net) + 4), "four slots", STEP_TIMEOUT_S)
        view = net.cli("apps", "show", app)
        if (view["node"], view["replica_node"]) == (origin, replica) and _is_on(net, other, origin):
            return origin, replica
    raise AssertionError(f"the counter kept moving: {net.cli('apps', 'show', app)}")


def _is_past(net: LiveNet, slot: int) -> bool:
    return _head_slot(net) >= slot


def _head_slot(net: LiveNet) -> int:
    slot: int = net.cli("status")["status"]["head_slot"]
    return slot


def test_an_app_waiting_for_its_state_resumes_from_it(run_dir: Path) -> None:
    net, spec = new_counter_net(run_dir, "wait-for-state")
    net.nodes = NODES
    spec.write_text(
        spec.read_text() + "replica_interval_slots: 2\npolicy: {wait_for_state: true}\n"
    )
    paused = PausedNodes()
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        # A control app without the policy, to share the counter's node: its recovery
        # shows that the chain took O for down (a stall, with two of six nodes paused,
        # delays that by as many slots as the chain got no block).
        other = str(net.cli("apps", "submit", str(_write_control_spec(run_dir.parent)))["app_id"])
        app = submit_with_replica_node(net, spec)
        names = net.names()
        founder = next(n for n, name in names.items() if name == "node-000")
        origin, replica = _settle(net, app, other, founder)
        count_before = wait_fresh_replica(net, app, names[origin], names[replica])
        net.wait_for(
            lambda: net.cli("apps", "show", app)["state_node"] == replica,
            "the chain to confirm R holds the state",
            STEP_TIMEOUT_S,
        )
        view = net.cli("apps", "show", app)
        assert (view["node"], view["replica_node"]) == (origin, replica), view

        full_client = _use_the_founder_alone(net)
        for node in (origin, replica):
            paused.pause(_get_pid(net, names[node]))

        def is_waiting(anywhere: bool = True) -> bool:
            """The app on O, no copy running (``anywhere=False``: but O's own, which
            runs until its lease runs out and its watchdog freezes it)."""
            view = net.cli("apps", "show", app)
            running = [
                i for i in net.instances()
                if not i.frozen and not i.dying and (anywhere or i.node != names[origin])
            ]  # fmt: skip
            assert view["node"] == origin and not running, (view, running)
            return True

        def control_recovered() -> bool:
            is_waiting(anywhere=False)
            return net.cli("apps", "show", other)["node"] not in (origin, None)

        net.wait_for(control_recovered, "the control app recovered", RECOVERY_TIMEOUT_S)
        down_at = _head_slot(net)

        def has_waited() -> bool:
            assert is_waiting() and net.cli("apps", "show", app)["state_wait"]
            return _head_slot(net) >= down_at + WAITED_SLOTS

        net.wait_for(has_waited, f"{WAITED_SLOTS} more slots", STEP_TIMEOUT_S)

        paused.resume(_get_pid(net, names[replica]))
        net.client = full_client  # `apps logs` asks the node the app runs on
        net.wait_for(lambda: _placed(net, app, replica), "the app on R", RECOVERY_TIMEOUT_S)
        starts = _starts_at(net, app, replica)
        history = net.cli("apps", "history", app)["events"]
        assert starts and starts[-1] >= count_before, json.dumps(
            {"starts": starts, "count_before": count_before, "history": history}
        )
        paused.resume_all()
        net.wait_for(lambda: _placed(net, app, replica), "one copy, on R", STEP_TIMEOUT_S)
        assert net.max_copies == 1, net.describe_copies()
    finally:
        paused.release()
        net.stop()
