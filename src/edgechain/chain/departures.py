"""Which requests to join belong to a node's next stay, not to an earlier one.

An :class:`~edgechain.chain.model.InclusionRequest` is signed with a ``nonce``: the slot
of its signer's head when it signed (``consensus/joining.py``). Before block format 15
consensus did not read it, so a request stayed valid for ever: once its node had left
the set (an exit, or a skip block's exclusion), anyone who kept a copy could have it
included again, and gossip's pull repair hands old copies around by itself (the same
way an old exit came back in CI at stop 47, ``validation.is_exit_of_current_stay``).
The node, readmitted while away, was then elected to produce and a skip block excluded
it again: a slot lost per replay, for free.

Two rules close it, both on the parent state alone (so every node decides alike):

* **Fresh**: a block at slot ``s`` carries only requests with
  ``s - INCLUSION_MAX_AGE_SLOTS <= nonce <= s``. A joining node signs anew once its
  request is half that old (``Joining.regossip_inclusion``), so an honest request is
  always fresh when it is sent.
* **After the departure**: the state keeps, for ``INCLUSION_MAX_AGE_SLOTS`` slots, the
  slot at which each node left the set (``BlockState.departures``), and a request of
  such a node must have ``nonce >=`` that slot. Its requests of the earlier stay were
  signed before the block that included it, so before it left; its request to come
  back is signed on a head that holds its departure. Once the entry is gone, any
  request signed before the departure is older than the window and fails the first
  rule, which is what keeps the map small: only the nodes that left in the last
  ``INCLUSION_MAX_AGE_SLOTS`` slots.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgechain.chain.model import InclusionRequest
from edgechain.chain.validator_set import ValidatorSet, compute_node_id
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import NodeId, Slot

INCLUSION_MAX_AGE_SLOTS = 64
"""The oldest request a block may carry, in slots before the block's. Long enough for a
request to wait through a loaded join (a 100-node testnet carried some 70 slots after
the first joiners' requests, but those were re-signed every few sends), short enough
that the departures a state keeps stay few."""


def compute_departures(
    parent: Mapping[NodeId, Slot],
    parent_validators: ValidatorSet,
    validators: ValidatorSet,
    slot: Slot,
) -> Mapping[NodeId, Slot]:
    """``departures`` after a block of ``slot`` that turned ``parent_validators`` into
    ``validators``: the nodes it removed at ``slot``, and the parent's entries not
    older than :data:`INCLUSION_MAX_AGE_SLOTS`. Returns ``parent`` itself when nothing
    changes (most blocks), so a child state shares it."""
    removed = (
        ()
        if validators is parent_validators
        else [n for n in parent_validators.get_node_ids() if n not in validators]
    )
    kept = {n: at for n, at in parent.items() if slot - at <= INCLUSION_MAX_AGE_SLOTS}
    if not removed and len(kept) == len(parent):
        return parent
    kept.update(dict.fromkeys(removed, slot))
    return {n: kept[n] for n in sorted(kept, key=bytes)}


def is_after_departure(req: InclusionRequest, departures: Mapping[NodeId, Slot]) -> bool:
    """Whether ``req`` was signed no earlier than its node's last departure still on
    record (always, for a node that did not leave lately)."""
    left = departures.get(compute_node_id(req.public_key))
    return left is None or req.nonce >= left


def is_too_old(req: InclusionRequest, slot: int) -> bool:
    """Whether a block at ``slot`` or later can no longer carry ``req``."""
    return slot - req.nonce > INCLUSION_MAX_AGE_SLOTS


def check_inclusion_slot(
    req: InclusionRequest, slot: Slot, departures: Mapping[NodeId, Slot]
) -> None:
    """Both rules of the module, for a block at ``slot`` on a parent state with
    ``departures``; a ValidationError names the one that fails."""
    if req.nonce > slot:
        raise ValidationError(RejectReason.BAD_INCLUSION, f"signed at slot {req.nonce}, ahead")
    check_not_stale(req, slot, departures)


def check_not_stale(req: InclusionRequest, slot: int, departures: Mapping[NodeId, Slot]) -> None:
    """The module's rules that only a later slot cannot undo: ``req`` is not too old for
    a block at ``slot`` and was signed no earlier than its node's departure. A pool
    refuses on these alone (a nonce ahead of its head may be a peer's newer head)."""
    if is_too_old(req, slot):
        raise ValidationError(
            RejectReason.BAD_INCLUSION,
            f"signed at slot {req.nonce}, more than {INCLUSION_MAX_AGE_SLOTS} slots ago",
        )
    if not is_after_departure(req, departures):
        raise ValidationError(RejectReason.BAD_INCLUSION, "signed before the node left")
