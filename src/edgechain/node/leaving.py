"""Leaving the network on purpose: drain, hand every app over, exit, stop (issue 16).

``edgechain node leave`` (``POST /node/leave``) or, with ``--leave-on-sigterm``, a
SIGTERM starts it. The steps, each one on chain so that every node agrees:

1. **drain**: the node signs ``DRAIN_NODE`` naming itself with its own key
   (``chain/authority.is_own_drain``); once a block carries it, the planner places
   nothing new on it and moves its apps away (``orchestrator/planner.py``), each with
   its state, as for an admin's drain;
2. **exit**: once the head places no running app on the node and the node's runtime
   holds none (every handover finished: the chain names the destination as soon as
   the MIGRATE is in a block, while the state still streams from here), it signs its
   ``ExitRequest`` (paper §4 step 11) and gossips it;
3. **stop**: once a block removed it from the validator set, the node stops and the
   process exits 0.

A drain that cannot finish (an app pinned here, or no other node allowed) exits anyway
after ``drain_timeout_ms``; the apps still here are then in the chain's hands like a
dead node's (``orchestrator/liveness.py``) and the log names them. A lost command or
exit is sent again every ``RESEND_MS``. Pure: the node calls :meth:`Leaving.get_step`
every loop pass and carries out the step it returns.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.authority import is_draining
from edgechain.consensus.state import BlockState
from edgechain.orchestrator.registry import AppState
from edgechain.runtime.durable_files import write_json_atomically
from edgechain.types import AppId, NodeId

LEFT_FILE = "left.json"
"""In the data directory once the node left: when, and the apps it left behind. The node
stops right after, often before ``edgechain node leave`` polls again: this is how the
command tells a finished leave from a node that died."""
RESEND_MS = 10_000
"""A drain command or exit request not yet in a block is sent again this often."""
DEFAULT_DRAIN_TIMEOUT_MS = 600_000
"""How long apps get to move away before the node exits anyway (``--leave-timeout``)."""


class LeavePhase(enum.Enum):
    STAYING = "staying"  # no leave asked
    DRAINING = "draining"  # waiting for the drain to be on chain and the apps to move
    EXITING = "exiting"  # exit request sent, waiting for the block that removes us
    LEFT = "left"  # out of the validator set: the node stops


class LeaveStep(enum.Enum):
    WAIT = "wait"
    SUBMIT_DRAIN = "submit_drain"  # sign and submit DRAIN_NODE naming ourselves
    REQUEST_EXIT = "request_exit"  # sign and gossip our exit request
    STOP = "stop"


@dataclass
class Leaving:
    """This node's leave, from the request to the stop."""

    node_id: NodeId
    drain_timeout_ms: int = DEFAULT_DRAIN_TIMEOUT_MS
    phase: LeavePhase = LeavePhase.STAYING
    started_ms: int | None = None
    last_drain_sent_ms: int | None = None
    last_exit_sent_ms: int | None = None
    apps_left_behind: tuple[AppId, ...] = ()
    """Apps still on this node when a timed-out drain exited anyway."""

    def start(self, now: int) -> bool:
        """Begin leaving; False if a leave is already under way (nothing changes)."""
        if self.phase is not LeavePhase.STAYING:
            return False
        self.phase = LeavePhase.DRAINING
        self.started_ms = now
        return True

    def get_step(self, state: BlockState | None, now: int, busy: Sequence[str] = ()) -> LeaveStep:
        """What to do now, given the head state (None before genesis) and the apps the
        node's runtime still runs or hands over (``AppManager.get_busy_apps``)."""
        if self.phase is LeavePhase.STAYING:
            return LeaveStep.WAIT
        if self.phase is LeavePhase.LEFT:
            return LeaveStep.STOP
        if state is None or self.node_id not in state.validators:
            # Out of the set: our exit landed, or we never were in it (nothing to hand
            # over), or the chain dropped us meanwhile (our apps are its to restore).
            self.phase = LeavePhase.LEFT
            return LeaveStep.STOP
        if self.phase is LeavePhase.DRAINING:
            return self._drain_step(state, now, busy)
        return self._resend_exit(now)

    def _drain_step(self, state: BlockState, now: int, busy: Sequence[str]) -> LeaveStep:
        if not is_draining(state.authority, self.node_id):
            if self.last_drain_sent_ms is None or now - self.last_drain_sent_ms >= RESEND_MS:
                self.last_drain_sent_ms = now
                return LeaveStep.SUBMIT_DRAIN
            return LeaveStep.WAIT
        here = get_apps_on(state, self.node_id)
        assert self.started_ms is not None
        if (here or busy) and now - self.started_ms < self.drain_timeout_ms:
            return LeaveStep.WAIT
        self.apps_left_behind = tuple(sorted({*here, *(AppId(bytes.fromhex(a)) for a in busy)}))
        self.phase = LeavePhase.EXITING
        self.last_exit_sent_ms = now
        return LeaveStep.REQUEST_EXIT

    def _resend_exit(self, now: int) -> LeaveStep:
        assert self.last_exit_sent_ms is not None
        if now - self.last_exit_sent_ms >= RESEND_MS:
            self.last_exit_sent_ms = now
            return LeaveStep.REQUEST_EXIT
        return LeaveStep.WAIT

    def to_json(self, state: BlockState | None, busy: Sequence[str] = ()) -> dict[str, object]:
        """What ``/status`` says under ``leave`` (``busy``: as for :meth:`get_step`)."""
        here = get_apps_on(state, self.node_id) if state is not None else ()
        return {
            "phase": self.phase.value,
            "started_ms": self.started_ms,
            "draining_on_chain": state is not None and is_draining(state.authority, self.node_id),
            "apps_here": [a.hex() for a in here],
            "apps_running_here": list(busy),
            "apps_left_behind": [a.hex() for a in self.apps_left_behind],
        }


def get_apps_on(state: BlockState, node: NodeId) -> tuple[AppId, ...]:
    """Running apps the head registry places on ``node`` (moving away or not), in id
    order. A stopped app is not moved by a drain (the planner moves running apps only)
    and does not hold a leave up: it stays stopped, recorded on the departed node."""
    return tuple(
        r.app for r in state.registry.records if r.node == node and r.state is AppState.RUNNING
    )


def write_left_file(data_dir: Path, now: int, apps_left_behind: list[str]) -> None:
    """Record the finished leave (best effort: the chain has the exit either way)."""
    with contextlib.suppress(OSError):
        write_json_atomically(
            data_dir / LEFT_FILE, {"left_ms": now, "apps_left_behind": apps_left_behind}
        )


def has_left_since(data_dir: Path, since_s: float) -> bool:
    """Did the node of ``data_dir`` leave the network at ``since_s`` (epoch seconds) or
    later? The file's own time is used, not the node's clock, which a lab may offset."""
    try:
        return (data_dir / LEFT_FILE).stat().st_mtime >= since_s
    except OSError:
        return False
