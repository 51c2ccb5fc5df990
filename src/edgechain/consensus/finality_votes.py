"""This node's finality votes: which one its next report carries.

Casper FFG's two rules for an honest voter (``chain/finality.py`` argues why they make
finality safe): never two different votes with the same target epoch, never a vote
whose span surrounds another of one's own (or is surrounded by it). A node keeps its
latest vote and moves on only to a vote with a *later* target epoch and a source epoch
*no earlier* than the last one's, which excludes both. Otherwise it repeats its last
vote, which says nothing new and cannot break a rule. The last vote is persisted by the
node (``LastVoteChanged``) so that a restart cannot sign a second vote for an epoch.
"""

from __future__ import annotations

from edgechain.chain.finality import FinalityState
from edgechain.chain.model import FinalityVote


def is_vote_allowed(last: FinalityVote | None, vote: FinalityVote) -> bool:
    """Whether ``vote`` may follow ``last`` under the two FFG rules."""
    if vote.target.epoch <= vote.source.epoch:
        return False
    if last is None or vote == last:
        return True
    return vote.target.epoch > last.target.epoch and vote.source.epoch >= last.source.epoch


def choose_vote(last: FinalityVote | None, head: FinalityState) -> FinalityVote | None:
    """The vote for a report built on a head with finality state ``head``: from the
    head's justified checkpoint to the checkpoint of the head's epoch, when allowed;
    else the last vote again."""
    vote = FinalityVote(head.justified, head.get_latest_checkpoint())
    return vote if is_vote_allowed(last, vote) else last
