"""A former replica node hands its replica on to the new one before it drops it.

On a 6-node ``edgechain testnet`` a stateful counter with replicas runs on some node O,
its replicas on another, R1. R1 is paused (SIGSTOP), and the transfer ports of the
other nodes are blocked (iptables REJECT), so O can send no replica anywhere. Once R1
is quiet (8 slots) or excluded by a skip block, the chain names a new replica node R2
(``orchestrator/replicas.py``). R1 is drained if it is still a validator (else the
app would go back to R1, its state node). Then O is killed (SIGKILL), R1 continued and
the ports opened. O never sent R2 a replica; once O is down (12 slots) the chain
recovers the app onto R2 (or a replica node named after R2), and it must start from the
state R1 held: R1, no longer the replica node, keeps its replica and hands it on to the
current one under O's signature
(``runtime/replication.Replicator.is_passing_on``). Before, R1 deleted its replica as
soon as its head named R2, and R2 started the counter from 0 (chaos, session 50: 0
after 189 counts).

The counter prints the count it starts from (``apps/counter/counter.sh``), and
``edgechain apps logs`` shows R2's output. Root only: ports are blocked with iptables,
and R1's replica store is read to see the replica land (as
``test_move_origin_dies_live``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest

from .conftest import get_reject_rule
from .live_testnet import PausedNodes
from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, LiveNet, _placed, new_counter_net
from .test_move_origin_dies_live import _starts_at, submit_with_replica_node, wait_fresh_replica
from .test_move_target_dies_live import RECOVERY_TIMEOUT_S

pytestmark = pytest.mark.xdist_group("testnet-light")

NODES = 6


def _get_pid(net: LiveNet, name: str) -> int:
    return int(json.loads((net.run_dir / name / "ready.json").read_text())["pid"])


def _use_the_founder_alone(net: LiveNet) -> Path:
    """Point the CLI at node-000 alone (the first node of ``client.toml``), and return
    the full config: a command that asks every node (``apps show``, ``status``) waits
    out its HTTP timeout on a paused one, and the test would act seconds late."""
    full = net.client
    config = tomllib.loads(full.read_text())
    alone = full.with_name("client-founder.toml")
    admin = f'admin_key = "{config["admin_key"]}"\n' if "admin_key" in config else ""
    alone.write_text(f'nodes = ["{config["nodes"][0]}"]\nkey = "{config["key"]}"\n{admin}')
    net.client = alone
    return full


def _off_the_founder(net: LiveNet, app: str, founder: str) -> tuple[str, str]:
    """Move the app until neither its node nor its replica node is node-000 (which the
    CLI asks first, and which must not be paused); (node, replica node)."""
    for _ in range(3):
        view = net.cli("apps", "show", app)
        node, replica = view["node"], view["replica_node"]
        if replica is not None and founder not in (node, replica):
            return node, replica
        names = sorted(n for n in net.names() if n not in (founder, node, replica))
        _move(net, app, founder if replica == founder else names[0])
    raise AssertionError(f"app still on or replicated on node-000: {view}")


def _move(net: LiveNet, app: str, target: str) -> None:
    """``apps move`` the app to ``target``; wait until it runs there with a replica node."""
    assert net.cli("apps", "move", app, target)["applied"]
    net.wait_for(lambda: _placed(net, app, target), "the move", STEP_TIMEOUT_S)
    net.wait_for(
        lambda: net.cli("apps", "show", app)["replica_node"] not in (None, target),
        "a replica node",
        STEP_TIMEOUT_S,
    )


def _drain_unless_excluded(net: LiveNet, node: str) -> bool:
    """Drains NODE if it is still a validator; False when a skip block excluded it first.
    The exclusion can land between the ``nodes`` look-up and the drain command's block
    (seen in CI: ``DRAIN_NODE: not a validator``), so the refusal is read, not raced."""
    if node not in {n["node_id"] for n in net.cli("nodes")}:
        return False
    done = net.run_cli(("admin", "drain", node))
    # Refused by the chain, or by the CLI itself when the exclusion reached its node's
    # head before the command was made (seen with four light testnets at once).
    refusals = ("DRAIN_NODE: not a validator", "no validator's node id starts with")
    if done.returncode != 0 and any(r in done.stderr for r in refusals):
        return False
    assert done.returncode == 0, f"edgechain admin drain {node}: {done.stderr}"
    assert json.loads(done.stdout)["applied"]
    return True


def test_a_former_replica_node_hands_its_replica_to_the_new_one(
    run_dir: Path, block_port: list[int]
) -> None:
    net, spec = new_counter_net(run_dir, "replica-moves")
    net.nodes = NODES
    spec.write_text(spec.read_text() + "replica_interval_slots: 2\n")
    paused = PausedNodes()
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = submit_with_replica_node(net, spec)
        names = net.names()
        founder = next(n for n, name in names.items() if name == "node-000")
        origin, replica = _off_the_founder(net, app, founder)
        count_before = wait_fresh_replica(net, app, names[origin], names[replica])

        # R1 paused; O runs on but reaches no other transfer port, so whichever node
        # the chain names next gets no replica from O.
        replica_pid = _get_pid(net, names[replica])
        full_client = _use_the_founder_alone(net)
        paused.pause(replica_pid)
        for node, name in names.items():
            if node not in (origin, replica):
                port = json.loads((run_dir / name / "ready.json").read_text())["transfer_port"]
                subprocess.run(["iptables", *get_reject_rule("-I", port)], check=True)
                block_port.append(port)
        net.wait_for(
            lambda: net.cli("apps", "show", app)["replica_node"] not in (None, replica),
            "a new replica node",
            RECOVERY_TIMEOUT_S,
        )
        new_replica = net.cli("apps", "show", app)["replica_node"]
        # R1 holds O's replicas and is the app's state node, confirmed after its last
        # move, so the chain would recover the app onto R1 itself, from its own replica
        # (``placement.get_state_holder``, block format 19). Drained, R1 takes no app
        # and still passes its replica on: the app goes to R2, which has only that. A
        # skip block may have excluded R1 instead (no validator to drain): readmitted
        # in time, it may then take the app itself, which resumes from R1's state too.
        drained = _drain_unless_excluded(net, replica)
        os.kill(_get_pid(net, names[origin]), signal.SIGKILL)
        paused.resume(replica_pid)
        for port in list(block_port):
            subprocess.run(["iptables", *get_reject_rule("-D", port)], check=True)
            block_port.remove(port)
        net.client = full_client  # `apps logs` asks the node the app runs on

        def is_running_elsewhere() -> bool:
            net.instances()  # counts copies on every poll
            view = net.cli("apps", "show", app)
            return view["node"] not in (origin, None) and _placed(net, app, view["node"])

        net.wait_for(is_running_elsewhere, "the app recovered", RECOVERY_TIMEOUT_S)
        where = net.cli("apps", "show", app)["node"]
        starts = _starts_at(net, app, where)
        history = net.cli("apps", "history", app)["events"]
        # R2, or a replica node the chain named after it (R2 excluded in turn by a skip
        # block on a loaded host, as in CI): R1 hands its replica on to whichever its
        # head names. R1 itself only when it was not drained.
        named = [e["node"] for e in history if e["kind"] == "replica"]
        since = named[len(named) - 1 - named[::-1].index(new_replica) :]
        assert where in since or (not drained and where == replica), json.dumps(
            {"where": where, "new_replica": new_replica, "origin": origin, "history": history}
        )
        assert starts and starts[-1] >= count_before, (starts, count_before, history)
        assert net.max_copies == 1, net.describe_copies()
    finally:
        paused.release()
        net.stop()
