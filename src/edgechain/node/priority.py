"""Scheduling priority of a node's duties (ARCHITECTURE.md, "Real node": deadlines first).

Where the node may raise priority (root or CAP_SYS_NICE) the VDF thread, and the loop
thread and its scheduler autogroup while the node is on duty, run ahead of other work;
elsewhere every call here is a no-op that returns False.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("edgechain.node")


PRODUCER_NICE = -20
"""Nice value of the VDF thread, and of the node while it produces the current slot's
block, where the node may raise priority (root or CAP_SYS_NICE); elsewhere all keep
the default. The VDF is the slot's critical path: it gets a core whatever else runs."""

COMMITTEE_NICE = -10
"""Nice value of a committee member until the slot's block is in: its votes have a
deadline, but a whole committee raised as high as the producer would crowd it out.
-5 until session 30: with the VDF thread in the real-time class (which no nice value
reaches) the committee's checks were the slot's bottleneck on a loaded host (9 of 22
skip blocks of a 100-node run were "not_attested"); at -10 a member's group weighs
9548 against 1024 for a default one, and sixteen of them still leave the producer's
loop (-20, 88761) over a third of the CPU while they all run."""
CATCH_UP_NICE = -2
"""Nice value of a node that is behind the network (a later block waits for its
ancestors, or it follows the chain towards a checkpoint) and has no duty. On one host
where every node follows every block, the scheduler's fair share left a joiner no CPU
beyond what the others spent on the chain's tip, so it never caught up (100 nodes on 2
cores, issue 13). Below the committee's raise, so duties still come first."""


def set_thread_nice(nice: int) -> bool:
    """Set the calling thread's nice value (Linux: per thread); False if not allowed."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


AUTOGROUP_FILE = Path("/proc/self/autogroup")


def set_autogroup_nice(nice: int) -> bool:
    """Set the nice value of this process's scheduler autogroup (Linux); False if not.

    With autogroup scheduling (the default on desktop and many server kernels) the CPU
    is shared fairly between sessions first and thread nice values only weigh threads
    of one session against each other; a node started in its own session (as the
    testnet launcher does) is raised against the other nodes only through its group.
    """
    try:
        AUTOGROUP_FILE.write_text(f"{nice}\n")
    except OSError:
        return False
    return True


def get_autogroup_nice() -> int | None:
    try:
        # "/autogroup-123 nice 0"
        return int(AUTOGROUP_FILE.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


VDF_REALTIME_PRIORITY = 1
"""The VDF thread's round-robin real-time priority, where the node may set one: the
lowest, above every normal thread of the device."""


def set_thread_realtime(priority: int) -> bool:
    """Put the calling thread in the round-robin real-time class (Linux: per thread),
    not passed on to a child it forks; False if not allowed."""
    try:
        policy = os.SCHED_RR | os.SCHED_RESET_ON_FORK
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def get_thread_policy() -> str:
    """The calling thread's scheduling class: "rr", "fifo" or "normal"."""
    policy = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK
    return {os.SCHED_RR: "rr", os.SCHED_FIFO: "fifo"}.get(policy, "normal")


def raise_thread_priority() -> None:
    """The VDF thread's raise, for good: real time where allowed, else nice.

    A producer whose VDF is starved by the device's apps (or, in a one-host testnet,
    by the other nodes verifying the previous block) misses its slot: a skip block.
    Nice -20 was not enough on a loaded host: a process group at -20 gets 88761 / 1024
    times a default one's share, and 100 nodes on 2 cores left a producer's VDF 37 %
    of a core (618 ms for 228 ms of work, past the candidate deadline: 9 of 25 skip
    blocks in one run were such "vdf_starved" slots). The evaluation is bounded (a
    fraction of the slot, and the loop stops an unwanted one), and the thread only
    ever runs it. Raising priority needs privilege; without it the thread keeps the
    default."""
    if not set_thread_nice(PRODUCER_NICE):
        log.debug("vdf thread keeps default priority (no permission to raise it)")
    if not set_thread_realtime(VDF_REALTIME_PRIORITY):
        log.debug("vdf thread keeps the normal scheduling class (no permission)")
