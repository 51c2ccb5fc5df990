"""The leave fault (``lab/chaos.py``): a node leaves on purpose and comes back.

The node is asked to leave the way an operator asks, ``edgechain node leave --data-dir``
(drain, exit, stop: ``node/leaving.py``). When the command is done, the node must have
stopped on its own with exit status 0; it is started again on its data directory after
the fault's length (2-5 slots), as an upgrade does (``docs/deploy.md``). Two things
are judged beyond the invariants every fault is judged by (heads, apps exactly once):

* ``leave_unclean``: the command failed, or the node did not stop with status 0;
* ``left_node_rejoins``: the node is not a validator again within
  ``REJOIN_LIMIT_SLOTS``, or it is no longer one ``STAY_SLOTS`` later. A node started a
  few seconds after its leave used to be removed again by its own old exit, which its
  peers' gossip announced back to it (CI at stop 47;
  ``chain/validation.is_exit_of_current_stay``).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

from edgechain.lab.chaos_faults import LEAVE
from edgechain.lab.chaos_testnet import ChaosTestnet
from edgechain.lab.cluster import Incarnation, get_node_name
from edgechain.lab.faults_live import CLI, LiveError

DRAIN_TIMEOUT_S = 60
"""``--leave-timeout`` of the command: how long the node's apps get to move away."""
COMMAND_LIMIT_S = DRAIN_TIMEOUT_S + 90.0
"""How long the command may take in all (the drain, the exit's block, the stop)."""
EXIT_LIMIT_S = 30.0
"""How long after the command the node process may take to be seen ended."""
REJOIN_LIMIT_SLOTS = 30
"""Slots after its restart within which the node must be a validator again."""
STAY_SLOTS = 6
"""Slots it must then stay one (an old exit would land in the next few blocks)."""
POLL_S = 0.2


class LeaveFault:
    """One node's leave: started by :meth:`start`, waited for and judged by
    :meth:`finish`, which leaves the node stopped, ready for its restart."""

    def __init__(self, net: ChaosTestnet, index: int) -> None:
        self.net = net
        self.index = index
        self.command: subprocess.Popen[str] | None = None
        self.incarnation: Incarnation | None = None
        """The node process asked to leave (the restart is another)."""
        self.restarted_at: float | None = None

    def start(self) -> None:
        node = self.net.cluster.nodes[self.index]
        self.incarnation = node.current
        # Marked, so that neither the launcher nor the run takes its exit for a crash.
        self.net.expect_exit(self.index, LEAVE)
        self.command = subprocess.Popen(
            [*CLI, "node", "leave", "--data-dir", str(node.spec.data_dir),
             "--leave-timeout", str(DRAIN_TIMEOUT_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def finish(self, tick: Callable[[], None]) -> dict[str, Any] | None:
        """Wait for the command and the node's exit, calling ``tick`` meanwhile (the
        run keeps sampling the process table); what went wrong, or None."""
        command = self.command
        assert command is not None, "finish before start"
        if not _poll_until(lambda: command.poll() is not None, COMMAND_LIMIT_S, tick):
            command.kill()
        out, err = command.communicate(timeout=30)
        exit_code = self._wait_exit(tick)
        problem: dict[str, Any] = {}
        if command.returncode != 0:
            problem["command_status"] = command.returncode
            problem["command_output"] = (out + err)[-2000:]
        if exit_code != 0:
            problem["node_exit_status"] = exit_code
        if exit_code is None:
            self.net.cluster.kill(self.index)  # still running: stopped for the restart
        return problem or None

    def restart(self) -> None:
        """Start the node again on its data directory."""
        self.net.restart(self.index)
        self.restarted_at = time.time()

    def _wait_exit(self, tick: Callable[[], None]) -> int | None:
        """The exit status of the node process asked to leave (None: still running)."""
        incarnation = self.incarnation
        if incarnation is None:
            return None
        _poll_until(lambda: incarnation.popen.poll() is not None, EXIT_LIMIT_S, tick)
        return incarnation.popen.poll()


def is_validator(net: ChaosTestnet, node_id: str) -> bool:
    """Whether the first node that answers counts ``node_id`` among its head's
    validators (False when none answers)."""
    with contextlib.suppress(LiveError):
        return any(entry.get("node_id") == node_id for entry in net.get("/nodes"))
    return False


def judge_rejoin(
    leave: LeaveFault, slot_s: float, tick: Callable[[], None]
) -> tuple[float | None, dict[str, Any] | None]:
    """(Slots from the restart of the node that left until it was a validator again;
    what went wrong, or None)."""
    net, since = leave.net, leave.restarted_at
    assert since is not None, "judged before the restart"
    node = net.get_nodes().get(get_node_name(leave.index))
    node_id = node.node_id if node is not None else ""
    seconds, stayed = wait_rejoined(net, node_id, since, slot_s, tick)
    slots = None if seconds is None else round(seconds / slot_s, 2)
    if seconds is None or not stayed:
        return slots, {"rejoined_slots": slots, "stayed": stayed}
    return slots, None


def wait_rejoined(
    net: ChaosTestnet, node_id: str, since: float, slot_s: float, tick: Callable[[], None]
) -> tuple[float | None, bool]:
    """(Seconds from ``since`` until ``node_id`` was seen a validator again, or None
    past ``REJOIN_LIMIT_SLOTS``; whether it still was ``STAY_SLOTS`` later)."""
    limit_s = since + REJOIN_LIMIT_SLOTS * slot_s - time.time()
    if not _poll_until(lambda: is_validator(net, node_id), limit_s, tick):
        return None, False
    seconds = time.time() - since
    _poll_until(lambda: False, STAY_SLOTS * slot_s, tick)  # sampling meanwhile
    return seconds, is_validator(net, node_id)


def _poll_until(predicate: Callable[[], bool], limit_s: float, tick: Callable[[], None]) -> bool:
    """Call ``tick`` every ``POLL_S`` until ``predicate`` holds (True) or ``limit_s``
    passed (False). ``tick`` may raise: the run's own checks (a dead testnet) end it."""
    deadline = time.time() + limit_s
    while not predicate():
        if time.time() >= deadline:
            return False
        tick()
        time.sleep(POLL_S)
    return True
