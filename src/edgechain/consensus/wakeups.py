"""Which slot deadlines need a pass of this node's engine (``ConsensusEngine.on_tick``).

A pass is the dearest thing an idle node does per event (issue 13's CPU budget: about
0.3 ms of loop-thread CPU each on a host of 20 nodes, whatever it finds to do). Until
session 31 every node woke at the start, the forward time and the candidate deadline of
every slot, three passes a slot, although most of them had no duty there:

* the **slot start** is the producer's (it starts its VDF on the head);
* the **forward time** bounds a representative's batches, and the report pool already
  asks for that time itself (``get_relay_deadline`` in ``Reports.get_wakeups``);
* the **candidate deadline** is the producer's (it aggregates the votes it has), the
  committee's (a skip vote when no candidate came) and every validator's while the
  slot's block is missing (its next report then goes out at once, to the next slot's
  producer).

So once the head holds the current slot's block, only a producer whose duty is still
open needs that slot's deadline, and only the next slot's producer needs the next slot's
start (and everyone the start of slot 1, where duties begin). The next slot's candidate
deadline is always kept: whether its block comes in time is not known yet (when it
does, the head change asks for a pass, which drops the deadline again). While the
current slot's block is missing, every deadline is kept, as before: the roles that the
head elects may not be the network's, and a skip block may be due.

A message that moves the head asks for a pass at once (``ConsensusEngine.on_message``):
a new head can make a duty due that no deadline announces (a late parent reaching the
next slot's producer). The node used to ask for a pass after every message it handed to
the engine, whatever it was.
"""

from __future__ import annotations

from edgechain.chain.model import ChainParams
from edgechain.consensus.roles import Role
from edgechain.consensus.state import get_candidate_deadline_ms, get_slot_start_ms


def get_slot_deadlines(
    params: ChainParams,
    slot: int,
    head_slot: int,
    next_role: Role,
    *,
    producer_open: bool,
) -> list[int]:
    """The deadlines of ``slot`` (the current one) and ``slot + 1`` that need a pass.

    ``head_slot``: our head's slot; ``next_role``: our role in ``slot + 1`` as our head
    elects it (meaningful once the head holds ``slot``'s block); ``producer_open``: we
    produce a block whose duty is not done yet (its votes may still be aggregated at
    the candidate deadline).
    """
    following = slot + 1
    if head_slot < slot:
        return [
            get_slot_start_ms(params, slot),
            get_candidate_deadline_ms(params, slot),
            get_slot_start_ms(params, following),
            get_candidate_deadline_ms(params, following),
        ]
    deadlines = [get_candidate_deadline_ms(params, following)]
    if producer_open:
        deadlines.append(get_candidate_deadline_ms(params, slot))
    if next_role is Role.PRODUCER or slot < 1:
        # Duties begin at slot 1: its start is everyone's (their reports for block 1).
        deadlines.append(get_slot_start_ms(params, following))
    return deadlines
