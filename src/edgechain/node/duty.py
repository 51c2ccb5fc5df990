"""Which scheduling priority a node's duties get now, and applying it.

ARCHITECTURE.md, "Real node": deadlines first. :func:`choose_duty_nice` is the policy
(the producer and committee of the current slot run raised, a node that is behind does
not); :class:`DutyPriority` applies the choice to the loop thread and this process's
autogroup, relative to their values when the loop started, and restores them.
``priority.py`` holds the OS calls both rest on.
"""

from __future__ import annotations

import os
import threading

from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.roles import Role
from edgechain.consensus.state import get_current_slot, get_roles
from edgechain.node.priority import (
    CATCH_UP_NICE,
    COMMITTEE_NICE,
    PRODUCER_NICE,
    get_autogroup_nice,
    set_autogroup_nice,
    set_thread_nice,
)
from edgechain.types import PublicKey, Slot


def get_current_role(engine: ConsensusEngine, pk: PublicKey, now: int) -> tuple[int, Role]:
    """The current slot, and ``pk``'s role in it while its block is still to come."""
    state = engine.get_head_state()
    params = engine.params
    if params is None or state is None:
        return 0, Role.NONE
    slot = get_current_slot(params, now)
    if state.slot >= slot or not len(state.validators):
        return slot, Role.NONE
    roles = get_roles(engine.memo, state, Slot(slot), params.committee_size)
    return slot, roles.get_role(pk)


def choose_duty_nice(
    engine: ConsensusEngine, pk: PublicKey, now: int, *, vdf_running: bool
) -> int | None:
    """On duty (producer or committee of the current slot, or of the next slot once
    the current slot's block is in): run ahead of other work (the loop thread and this
    process's autogroup, see :func:`set_autogroup_nice`). Behind the network with no
    duty: :data:`CATCH_UP_NICE`. None: no duty, back to the start values.

    A slot's deadlines are the producer's VDF and candidate and the committee's
    votes, all before 2/3 of the slot. On a busy device (or a one-host testnet, where
    every node verifies the last block at the same moment) they would queue behind
    work that has no deadline. The VDF thread is raised for good; the loop thread
    only while on duty, since the VDF result and the votes pass through it (a raised
    thread waiting for the GIL held by a preempted normal one gains nothing).
    """
    if vdf_running:
        # Only wanted evaluations are left (the loop drops the others first).
        return PRODUCER_NICE
    if engine.params is None and engine.config.genesis_template is None:
        # Waiting for a genesis another node made: as far behind as a node can be. At
        # nice 0 beside 100 nodes on two cores (duties raised, catching-up nodes at
        # CATCH_UP_NICE) a joiner's loop did not run for 78 s after the genesis came in.
        return CATCH_UP_NICE
    slot, role = get_current_role(engine, pk, now)
    head = engine.get_head_state()  # None: no role either (get_current_role)
    if (
        head is not None
        and head.slot < slot - 1
        and (engine.sync.has_orphan_after(head.slot) or engine.checkpoint.is_following())
    ):
        # A block of a later slot than our head waits for its ancestors (or we follow
        # towards a checkpoint): we are behind, and roles computed on our head are most
        # likely not the network's. Still try the duty, but never crowd out the real
        # producer: several lagging nodes that each believed they produce once starved
        # it at this priority. Catching up runs above following, below every duty.
        # A head older than the last slot with nothing newer in sight is the network's
        # (a slot got neither a block nor a skip block): that slot's duties are raised,
        # or a loaded host whose committee once missed the deadline keeps missing it
        # (100 nodes on 2 cores: after one empty slot no committee was raised again).
        return CATCH_UP_NICE
    if role is Role.NONE:
        # The next slot's producer starts its VDF at the slot's start: a loop left at
        # the default priority until then woke up to 0.3 s late on a loaded host, and
        # its VDF finished after the candidate deadline (100 nodes on 2 cores).
        role = engine.get_next_role(now)
    return {Role.PRODUCER: PRODUCER_NICE, Role.COMMITTEE: COMMITTEE_NICE}.get(role)


class DutyPriority:
    """The duty raise of the loop thread and this process's autogroup.

    Used on the loop thread only (thread nice values are per thread on Linux).
    """

    def __init__(self) -> None:
        self.nice: int | None = None
        """The duty nice value in force; None: not raised."""
        self._base: tuple[int, int | None] = (0, None)

    def capture_base(self) -> None:
        """Remember the thread's and the autogroup's values: what ``set(None)`` restores."""
        self._base = (
            os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
            get_autogroup_nice(),
        )

    def set(self, duty_nice: int | None) -> None:
        """Raise (or with None, restore) the loop thread and this process's autogroup.

        A no-op when nothing changes.
        """
        if duty_nice == self.nice:
            return
        self.nice = duty_nice
        base_thread, base_group = self._base
        set_thread_nice(base_thread if duty_nice is None else min(base_thread, duty_nice))
        if base_group is not None:
            set_autogroup_nice(base_group if duty_nice is None else min(base_group, duty_nice))
