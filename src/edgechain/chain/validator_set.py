"""The validator set and its state transition (paper §3.4).

"To build the validator set, a node builds the chain to the current tip and, upon
verifying each block, executes the validator state transition function." Membership
changes only through blocks: inclusions (signed requests carrying a verified proof of
possession and an admission ticket), exits (signed by the leaving validator) and the
exclusion of a silent producer by a skip block. The set is kept sorted by public key,
the order role election shuffles (DESIGN.md, "Seed and roles").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar, cast

from edgechain.chain.model import AnyBlock, Block, CommandKind, Genesis, InclusionRequest
from edgechain.crypto.hashing import compute_node_id
from edgechain.types import NodeId, PublicKey

__all__ = ["ValidatorInfo", "ValidatorSet", "compute_node_id"]

T = TypeVar("T")


@dataclass(frozen=True)
class ValidatorInfo:
    node: NodeId
    public_key: PublicKey
    address: str
    labels: tuple[str, ...]
    report_key: bytes = b""
    """The Ed25519 key its resource reports are signed with (its inclusion request's)."""
    address_slot: int = 0
    """When ``address`` was set: the slot of the block that included the node, or of
    the address record that moved it (a record must be newer to apply)."""


@dataclass(frozen=True)
class ValidatorSet:
    """Immutable validator set, members sorted by public key bytes."""

    members: tuple[ValidatorInfo, ...]
    _by_node: Mapping[NodeId, ValidatorInfo] = field(init=False, repr=False, compare=False)
    _derived: dict[str, object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {m.node: m for m in self.members}
        object.__setattr__(self, "_by_node", MappingProxyType(index))
        object.__setattr__(self, "_derived", {})

    def get_derived(self, name: str, compute: Callable[[ValidatorSet], T]) -> T:
        """``compute(self)``, computed once per set object and ``name`` (each name must
        always go with one function). Most blocks change nobody, so a chain's states
        share one set, and every block would otherwise redo the same work over all the
        validators (issue 13): the state root's encoding of the set (about half of a
        100-node state's root), the planner's node list. The set is immutable, so the
        value stays right."""
        if name in self._derived:
            return cast(T, self._derived[name])
        value = self._derived[name] = compute(self)
        return value

    @staticmethod
    def from_members(members: Iterable[ValidatorInfo]) -> ValidatorSet:
        unique = {m.node: m for m in members}
        return ValidatorSet(tuple(sorted(unique.values(), key=lambda m: m.public_key)))

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, node: object) -> bool:
        return node in self._by_node

    def get(self, node: NodeId) -> ValidatorInfo | None:
        return self._by_node.get(node)

    def get_public_keys(self) -> tuple[PublicKey, ...]:
        return tuple(m.public_key for m in self.members)

    def get_node_ids(self) -> tuple[NodeId, ...]:
        return tuple(m.node for m in self.members)


NO_EXCLUSION = NodeId(bytes(32))
"""A skip block's ``excluded`` when the validator set is at its floor."""


def compute_skip_exclusion(
    validators: ValidatorSet, producer: NodeId, committee_size: int
) -> NodeId:
    """Whom the skip block of a silent ``producer`` excludes (paper §3.4).

    The producer, unless that would leave fewer than ``committee_size + 1`` validators:
    at that floor the skip block excludes nobody. Without the floor, a network whose
    producers are briefly too slow (an overloaded host) excludes itself down to an
    empty committee and can never attest a block again.
    """
    if len(validators) > committee_size + 1:
        return producer
    return NO_EXCLUSION


def get_validator_info(req: InclusionRequest) -> ValidatorInfo:
    return ValidatorInfo(
        compute_node_id(req.public_key), req.public_key, req.address, req.labels, req.report_key
    )


def compute_genesis_validator_set(genesis: Genesis) -> ValidatorSet:
    return ValidatorSet.from_members(get_validator_info(r) for r in genesis.inclusions)


def get_admin_exclusions(block: Block) -> tuple[NodeId, ...]:
    """The nodes the admin excluded in ``block`` (its EXCLUDE_NODE commands): out of the
    validator set and, from block format 20, out of the finality voter set."""
    return tuple(NodeId(c.node) for c in block.commands if c.kind is CommandKind.EXCLUDE_NODE)


def get_removed_nodes(block: AnyBlock) -> tuple[NodeId, ...]:
    """Nodes a block takes out of the set: its exits and the nodes the admin excluded
    (EXCLUDE_NODE commands), or a skip block's silent producer."""
    if isinstance(block, Block):
        return tuple(e.node for e in block.exits) + get_admin_exclusions(block)
    return (block.excluded,)


def apply_block_to_validator_set(vs: ValidatorSet, block: AnyBlock) -> ValidatorSet:
    """The validator-set state transition of one (already validated) block.

    Removals apply before inclusions so that a node may exit and rejoin with a new
    address in one block; inclusions of current members are ignored (validation
    rejects them, this keeps the transition total). Address records apply last, each
    only if newer than the address it replaces (validation refuses the others).
    """
    removed = set(get_removed_nodes(block))
    if not any(node in vs for node in removed) and not (
        isinstance(block, Block) and (block.inclusions or block.addresses)
    ):
        return vs  # most blocks change nobody: the child's state shares the parent's set
    kept = [m for m in vs.members if m.node not in removed]
    if isinstance(block, Block):
        present = {m.node for m in kept}
        kept.extend(
            dataclasses.replace(info, address_slot=block.slot)
            for info in map(get_validator_info, block.inclusions)
            if info.node not in present
        )
        moved = {a.node: a for a in block.addresses}
        kept = [
            dataclasses.replace(m, address=moved[m.node].address, address_slot=moved[m.node].slot)
            if m.node in moved and moved[m.node].slot > m.address_slot
            else m
            for m in kept
        ]
    return ValidatorSet.from_members(kept)
