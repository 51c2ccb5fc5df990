"""Fork choice: an in-memory block tree and the heaviest-chain rule.

Paper §3.5 (Fig. 5): forks in a permissioned chain are accidental (late blocks, a
skip block racing a real block, partitions). A node that sees a block that does not
extend its tip "backtracks to recheck the attestations for each block down to the
forked block" and "rebuilds the chain ... following the chain with most cumulative
attestations". DESIGN.md ("Fork choice") pins the rule down:

* the weight of a chain is the sum, over its blocks, of the number of committee
  signers of each block;
* the head is the tip of the heaviest chain; equal weights are broken by the lowest
  block hash (plain ``bytes`` comparison), so every node picks the same head from the
  same tree whatever the order in which blocks arrived.

The tree knows nothing about block contents: a block is a hash, a parent hash, a slot
and a weight (its signer count), so it does not depend on the block encoding. It does
no I/O and keeps no clock (Rule 1). Validation is the caller's job: only blocks that
passed validation are added, and blocks whose parent is unknown are buffered by the
caller until their ancestors are synced.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.errors import LocalError
from edgechain.types import BlockHash, Slot

GENESIS_SLOT = Slot(0)
"""Slot of the genesis block, the default root slot of a new tree."""


class ForkChoiceError(LocalError):
    """The fork-choice tree was used wrongly (bad slot, weight or conflicting block)."""


class UnknownBlockError(ForkChoiceError):
    """A hash the tree does not hold (never added, or pruned)."""


class UnknownParentError(UnknownBlockError):
    """``add`` of a block whose parent is not in the tree; the caller buffers it."""


@dataclass(frozen=True)
class Reorg:
    """How to move the applied chain from one head to another.

    Undo ``revert`` (newest first) down to ``common_ancestor``, then apply ``apply``
    (oldest first). A plain extension of the chain has an empty ``revert``.
    """

    common_ancestor: BlockHash
    revert: tuple[BlockHash, ...]
    apply: tuple[BlockHash, ...]

    def is_extension(self) -> bool:
        """True when no block has to be undone."""
        return not self.revert


@dataclass(frozen=True)
class _BlockInfo:
    parent: BlockHash | None
    """``None`` only for the root (genesis, or the last finalized block after prune)."""
    slot: Slot
    weight: int
    cumulative: int
    """Sum of ``weight`` from genesis to this block, inclusive."""


class ForkChoice:
    """A block tree rooted at genesis that tracks the heaviest chain's tip.

    ``add`` is O(1) in the common case: since weights are non-negative, cumulative
    weight never decreases along a branch, so a new leaf can only become the head by
    beating the current head, and only the new leaf's parent stops being a leaf. The
    one exception is a zero-weight child of the current head that loses the hash tie
    break to another leaf; that rare case rescans the leaves.
    """

    def __init__(self, genesis: BlockHash, genesis_slot: Slot = GENESIS_SLOT) -> None:
        self._root = genesis
        self._blocks: dict[BlockHash, _BlockInfo] = {
            genesis: _BlockInfo(parent=None, slot=genesis_slot, weight=0, cumulative=0)
        }
        self._children: dict[BlockHash, list[BlockHash]] = {genesis: []}
        self._leaves: set[BlockHash] = {genesis}
        self._head = genesis

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block: object) -> bool:
        return block in self._blocks

    # -- building ------------------------------------------------------------------

    def add(self, block: BlockHash, parent: BlockHash, slot: Slot, weight: int) -> bool:
        """Add a validated block; return False when it was already known (no-op).

        ``weight`` is the block's number of committee signers. A block's identity (its
        hash) does not cover the attestation, so the same block may later arrive with
        more signers; the weight given first is kept (see the module docstring of
        ``store/blocks.py`` for the same first-write-wins rule on disk).
        """
        known = self._blocks.get(block)
        if known is not None:
            if known.parent is not None and (known.parent != parent or known.slot != slot):
                raise ForkChoiceError(
                    f"block {block.hex()} re-added with a different parent or slot"
                )
            return False
        parent_info = self._blocks.get(parent)
        if parent_info is None:
            raise UnknownParentError(f"parent {parent.hex()} of block {block.hex()} is unknown")
        if weight < 0:
            raise ForkChoiceError(f"block {block.hex()} has negative weight {weight}")
        if slot <= parent_info.slot:
            # Each block occupies a later slot than its parent (skip blocks included),
            # which is also what lets the tree walks below stop early by slot.
            raise ForkChoiceError(
                f"block {block.hex()} at slot {slot} does not follow parent slot {parent_info.slot}"
            )
        self._blocks[block] = _BlockInfo(
            parent=parent, slot=slot, weight=weight, cumulative=parent_info.cumulative + weight
        )
        self._children[block] = []
        self._children[parent].append(block)
        self._leaves.discard(parent)
        self._leaves.add(block)
        self._update_head(block, parent)
        return True

    def _update_head(self, block: BlockHash, parent: BlockHash) -> None:
        if self._is_better(block, self._head):
            self._head = block
        elif self._head == parent:
            # The head just stopped being a leaf and its child did not beat it: only
            # possible for a zero-weight child with a higher hash. Rare; rescan.
            self._head = self._compute_head()

    def _sort_key(self, block: BlockHash) -> tuple[int, BlockHash]:
        # Smallest key wins: most cumulative attestations, then lowest hash.
        return (-self._blocks[block].cumulative, block)

    def _is_better(self, a: BlockHash, b: BlockHash) -> bool:
        return self._sort_key(a) < self._sort_key(b)

    def _compute_head(self) -> BlockHash:
        return min(self._leaves, key=self._sort_key)

    def prune(self, finalized: BlockHash) -> frozenset[BlockHash]:
        """Keep only ``finalized`` and its descendants; return the dropped hashes.

        ``finalized`` becomes the root: ``get_parent`` of it returns None and
        ``get_ancestors`` stops there. Cumulative weights keep counting from genesis,
        so weights before and after a prune compare directly.
        """
        info = self._get_info(finalized)
        kept: dict[BlockHash, _BlockInfo] = {
            finalized: _BlockInfo(
                parent=None, slot=info.slot, weight=info.weight, cumulative=info.cumulative
            )
        }
        stack = [finalized]
        while stack:
            for child in self._children[stack.pop()]:
                kept[child] = self._blocks[child]
                stack.append(child)
        dropped = frozenset(self._blocks.keys() - kept.keys())
        self._blocks = kept
        self._children = {h: self._children[h] for h in kept}
        self._leaves = {h for h in self._leaves if h in kept}
        self._root = finalized
        if self._head not in kept:
            # The head was the best leaf overall; if it survives it is still the best
            # among the survivors, otherwise pick again.
            self._head = self._compute_head()
        return dropped

    # -- queries -------------------------------------------------------------------

    def get_root(self) -> BlockHash:
        """Genesis, or the block last passed to ``prune``."""
        return self._root

    def get_head(self) -> BlockHash:
        """Tip of the heaviest chain (lowest hash among equally heavy tips)."""
        return self._head

    def is_known(self, block: BlockHash) -> bool:
        return block in self._blocks

    def get_weight(self, block: BlockHash) -> int:
        """Cumulative attestations from genesis to ``block`` inclusive."""
        return self._get_info(block).cumulative

    def get_block_weight(self, block: BlockHash) -> int:
        """The block's own signer count, as passed to ``add``."""
        return self._get_info(block).weight

    def get_slot(self, block: BlockHash) -> Slot:
        return self._get_info(block).slot

    def get_parent(self, block: BlockHash) -> BlockHash | None:
        """The parent, or None for the root."""
        return self._get_info(block).parent

    def get_children(self, block: BlockHash) -> tuple[BlockHash, ...]:
        self._get_info(block)
        return tuple(self._children[block])

    def get_leaves(self) -> frozenset[BlockHash]:
        """Every tip (block without children)."""
        return frozenset(self._leaves)

    def get_ancestors(self, block: BlockHash) -> tuple[BlockHash, ...]:
        """Strict ancestors of ``block``, newest first, ending at the root."""
        ancestors: list[BlockHash] = []
        parent = self._get_info(block).parent
        while parent is not None:
            ancestors.append(parent)
            parent = self._blocks[parent].parent
        return tuple(ancestors)

    def is_ancestor(self, ancestor: BlockHash, block: BlockHash) -> bool:
        """True when ``ancestor`` is on the chain ending at ``block`` (itself included)."""
        target_slot = self._get_info(ancestor).slot
        current: BlockHash | None = block
        info = self._get_info(block)
        # Slots strictly increase along a chain, so stop once we are below its slot.
        while current is not None and info.slot >= target_slot:
            if current == ancestor:
                return True
            current = info.parent
            if current is not None:
                info = self._blocks[current]
        return False

    def get_common_ancestor(self, a: BlockHash, b: BlockHash) -> BlockHash:
        """The newest block on both chains (the fork point of Fig. 5)."""
        info_a = self._get_info(a)
        info_b = self._get_info(b)
        while a != b:
            # Step back whichever side is at the later slot; both reach the root.
            if info_a.slot >= info_b.slot:
                a = self._step_back(a, info_a)
                info_a = self._blocks[a]
            else:
                b = self._step_back(b, info_b)
                info_b = self._blocks[b]
        return a

    def _step_back(self, block: BlockHash, info: _BlockInfo) -> BlockHash:
        if info.parent is None:
            # Unreachable while the tree has a single root; guard against corruption.
            raise ForkChoiceError(f"walked past the root from {block.hex()}")
        return info.parent

    def compute_reorg(self, old_head: BlockHash, new_head: BlockHash) -> Reorg:
        """Blocks to revert and apply to move from ``old_head`` to ``new_head``.

        This is the paper's fork resolution: backtrack to the forked block, then
        rebuild along the heavier chain.
        """
        common = self.get_common_ancestor(old_head, new_head)
        return Reorg(
            common_ancestor=common,
            revert=self._get_path_down_to(old_head, common),
            apply=tuple(reversed(self._get_path_down_to(new_head, common))),
        )

    def _get_path_down_to(self, block: BlockHash, ancestor: BlockHash) -> tuple[BlockHash, ...]:
        """``block`` and its ancestors newest first, stopping before ``ancestor``."""
        path: list[BlockHash] = []
        current = block
        while current != ancestor:
            path.append(current)
            current = self._step_back(current, self._blocks[current])
        return tuple(path)

    def _get_info(self, block: BlockHash) -> _BlockInfo:
        info = self._blocks.get(block)
        if info is None:
            raise UnknownBlockError(f"block {block.hex()} is not in the fork-choice tree")
        return info
