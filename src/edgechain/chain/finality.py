"""Finality: Casper FFG over the validators' votes carried in their signed reports.

The paper has no finality: any block can in principle be reorganised away, so nothing
can be forgotten. DESIGN.md ("Finality and sync") asks for "a block buried under
enough attested weight". Committee attestations cannot give that safely: a committee
is a sample of 16 out of hundreds, so a partition's minority side keeps building its
own branch, and honest nodes that later reorganise have signed on both sides. We use
Casper FFG (Buterin and Griffith, 2017) instead, with every validator's vote riding in
the report it already signs every ``report_interval_slots`` (paper §3.2).

**Checkpoints.** Epoch ``e`` of a chain is the latest block at or before slot
``e * epoch_length`` (skip blocks included); genesis is epoch 0's checkpoint.

**Votes.** A report carries ``source -> target``: the voter's justified checkpoint and
the checkpoint of its head's epoch (``consensus/finality_votes.py``).

**Counting (this module, a pure function of the chain).** A block's state counts a
vote when its voter is in the *voter set* (below), its source is the state's justified
checkpoint, and its target is a checkpoint of this chain with a later epoch. When
more than 2/3 of the voter set voted for one target, the target is *justified*; when
that target is the very next epoch after the source, the source is *finalized*.

**The voter set** is the validator set of the last finalized checkpoint's block, fixed
until the next finalization. This is what keeps a partition's minority from finalizing
on its own: its skip blocks exclude the producers on the other side, so its *live*
validator set shrinks to itself, but the voter set does not.

**Safety (accountable, as in FFG).** Let F be the latest checkpoint finalized on two
branches that both finalize something conflicting after it. On each branch every link
counted between F and that branch's first later finalization is counted against the
same voter set V(F), a function of F's block alone. Within that segment the Casper FFG
argument applies unchanged: two conflicting finalized checkpoints need more than a
third of V(F) to have signed two votes with the same target epoch, or one vote whose
span strictly surrounds another's. Honest nodes never do either (their last vote is
persisted, ``consensus/finality_votes.py``), and the votes are signed reports on the
two chains: evidence of who broke the rule.

**Liveness.** Finality needs more than 2/3 of V(F) live and reporting; while more than a
third is down, blocks still come but nothing new finalizes, and memory grows with
every block until finality resumes. There is no inactivity leak: a partition's
minority must not finalize on its own. What resumes finality is the admin's word that
a device is gone for good (block format 20): an ``EXCLUDE_NODE`` command also takes its
node out of the voter set, from the block that carries it on (and off every pending
checkpoint's set, so that a later finalization does not hand the node back). It may
name a voter that skip blocks already took out of the validator set, the usual state
of a dead device.

**Safety with admin exclusions.** Within one branch, the votes of a segment are counted
against V(F) less the admin's exclusions on that branch so far, and the FFG argument
holds against that set when both branches carry the same exclusions. Two branches can
only finalize conflicting checkpoints otherwise if the admin excluded different voters
on each: its own signatures on both branches are then the evidence. The admin is the
chain's trust root (it admits every node), and skip blocks, which anyone's silence
produces, still shrink no voter set.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from edgechain.chain.model import Checkpoint, FinalityVote
from edgechain.chain.validator_set import ValidatorSet
from edgechain.types import BlockHash, NodeId

MAX_PENDING_EPOCHS = 64
"""Checkpoints a state keeps above its justified one. A vote for an older target is
not counted (a chain that has not justified anything for 64 epochs has lost finality's
liveness anyway: more than a third of its voters are gone)."""


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint of this chain and the validators of its block (the voter set it
    hands on if it is finalized)."""

    checkpoint: Checkpoint
    validators: ValidatorSet


@dataclass(frozen=True)
class FinalityState:
    """Justification and finality as seen by one chain, after one of its blocks."""

    justified: Checkpoint
    finalized: Checkpoint
    voters: ValidatorSet
    """Whose votes count: the validators of the finalized checkpoint's block."""
    checkpoints: tuple[CheckpointRecord, ...]
    """This chain's checkpoints from the justified one's epoch on, oldest first; the
    last is the checkpoint of the block's own epoch."""
    tallies: Mapping[Checkpoint, frozenset[NodeId]] = field(default_factory=dict)
    """Votes counted for each target, all with source ``justified``."""

    def get_record(self, epoch: int) -> CheckpointRecord | None:
        return _find(self.checkpoints, epoch)

    def get_latest_checkpoint(self) -> Checkpoint:
        return self.checkpoints[-1].checkpoint


def compute_genesis_finality(genesis: BlockHash, validators: ValidatorSet) -> FinalityState:
    """Genesis is justified and finalized by definition (FFG's root checkpoint)."""
    root = Checkpoint(0, genesis)
    return FinalityState(
        justified=root,
        finalized=root,
        voters=validators,
        checkpoints=(CheckpointRecord(root, validators),),
    )


def is_supermajority(count: int, total: int) -> bool:
    """More than two thirds, in integers (Rule 2)."""
    return 3 * count > 2 * total


def _record_checkpoints(
    parent: FinalityState,
    parent_slot: int,
    parent_hash: BlockHash,
    parent_validators: ValidatorSet,
    slot: int,
    block_hash: BlockHash,
    validators: ValidatorSet,
    epoch_length: int,
) -> tuple[CheckpointRecord, ...]:
    """The parent's checkpoints plus the epoch boundaries in ``(parent_slot, slot]``."""
    first = parent_slot // epoch_length + 1
    last = slot // epoch_length
    if first > last:
        return parent.checkpoints
    # A chain that stalled for many epochs: only the latest few boundaries can matter.
    first = max(first, last - MAX_PENDING_EPOCHS + 1)
    added = []
    for epoch in range(first, last + 1):
        if epoch * epoch_length == slot:
            added.append(CheckpointRecord(Checkpoint(epoch, block_hash), validators))
        else:
            added.append(CheckpointRecord(Checkpoint(epoch, parent_hash), parent_validators))
    records = (*parent.checkpoints, *added)
    return _trim(records, parent.justified.epoch)


def _trim(
    records: tuple[CheckpointRecord, ...], justified_epoch: int
) -> tuple[CheckpointRecord, ...]:
    """Keep the justified record and at most ``MAX_PENDING_EPOCHS`` after it."""
    kept = [r for r in records if r.checkpoint.epoch >= justified_epoch]
    if len(kept) > MAX_PENDING_EPOCHS + 1:
        kept = [kept[0], *kept[-MAX_PENDING_EPOCHS:]]
    return tuple(kept)


def process_finality(
    parent: FinalityState,
    parent_slot: int,
    parent_hash: BlockHash,
    parent_validators: ValidatorSet,
    slot: int,
    block_hash: BlockHash,
    validators: ValidatorSet,
    votes: Iterable[tuple[NodeId, FinalityVote]],
    epoch_length: int,
    excluded: Collection[NodeId] = (),
) -> FinalityState:
    """The finality state after a block at ``slot`` whose reports carry ``votes``.

    ``parent_validators``/``validators``: the validator sets after the parent and after
    the block (a checkpoint record keeps its block's set). Skip blocks pass no votes but
    still record the epoch boundaries they cross. ``excluded``: the nodes the block's
    admin commands exclude, which leave the voter set before its votes are counted.
    """
    if excluded:
        parent = _drop_voters(parent, frozenset(excluded))
    records = _record_checkpoints(
        parent,
        parent_slot,
        parent_hash,
        parent_validators,
        slot,
        block_hash,
        validators,
        epoch_length,
    )
    justified = parent.justified
    fresh: dict[Checkpoint, set[NodeId]] = {}
    for node, vote in votes:
        if node not in parent.voters or vote.source != justified:
            continue
        target = vote.target
        if target.epoch <= justified.epoch:
            continue
        record = _find(records, target.epoch)
        if record is None or record.checkpoint != target:
            continue  # not this chain's checkpoint for that epoch
        if node in parent.tallies.get(target, frozenset()):
            continue
        fresh.setdefault(target, set()).add(node)
    if not fresh and records is parent.checkpoints and not excluded:
        return parent
    tallies = dict(parent.tallies)
    for target, nodes in fresh.items():
        tallies[target] = tallies.get(target, frozenset()) | nodes
    total = len(parent.voters)
    justified_now = [t for t, nodes in tallies.items() if is_supermajority(len(nodes), total)]
    if not justified_now:
        return FinalityState(justified, parent.finalized, parent.voters, records, tallies)
    # FFG: a supermajority link s -> t justifies t; when t is s's next epoch it also
    # finalizes s. Links from s to several targets may complete in one block.
    finalized, voters = parent.finalized, parent.voters
    if any(t.epoch == justified.epoch + 1 for t in justified_now):
        source_record = _find(records, justified.epoch)
        if source_record is not None:
            finalized, voters = justified, source_record.validators
    new_justified = max(justified_now, key=lambda t: t.epoch)
    return FinalityState(
        justified=new_justified,
        finalized=finalized,
        voters=voters,
        checkpoints=_trim(records, new_justified.epoch),
        tallies={},
    )


def _drop_voters(state: FinalityState, excluded: frozenset[NodeId]) -> FinalityState:
    """``state`` without ``excluded`` among its voters, its tallies and the sets its
    pending checkpoints would hand on (a fewer voters' supermajority is then counted
    against the smaller set, in the same block)."""

    smaller: dict[int, ValidatorSet] = {}

    def without(vs: ValidatorSet) -> ValidatorSet:
        if not any(node in vs for node in excluded):
            return vs
        # Records share set objects: one smaller set for each, shared the same way.
        if id(vs) not in smaller:
            smaller[id(vs)] = ValidatorSet(tuple(m for m in vs.members if m.node not in excluded))
        return smaller[id(vs)]

    return FinalityState(
        justified=state.justified,
        finalized=state.finalized,
        voters=without(state.voters),
        checkpoints=tuple(
            CheckpointRecord(r.checkpoint, without(r.validators)) for r in state.checkpoints
        ),
        tallies={target: nodes - excluded for target, nodes in state.tallies.items()},
    )


def _find(records: tuple[CheckpointRecord, ...], epoch: int) -> CheckpointRecord | None:
    for record in reversed(records):
        if record.checkpoint.epoch == epoch:
            return record
        if record.checkpoint.epoch < epoch:
            return None
    return None
