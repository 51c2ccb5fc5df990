"""A six-validator genesis and the block context of slot 1 on it, shared by the block
validation tests."""

from __future__ import annotations

from edgechain.chain.encoding import compute_genesis_hash
from edgechain.chain.model import Block, Genesis
from edgechain.chain.validation import BlockContext
from edgechain.chain.validator_set import ValidatorSet, compute_genesis_validator_set
from edgechain.testing import Identity, build_block, make_genesis
from edgechain.types import Slot

ITERATIONS = 200

World = tuple[Genesis, list[Identity], ValidatorSet]


def make_world() -> World:
    genesis, idents = make_genesis(6, committee_size=4, difficulty=ITERATIONS)
    return genesis, idents, compute_genesis_validator_set(genesis)


def get_slot_1_context(world: World) -> BlockContext:
    """Validator 0 produces slot 1 on the genesis; validators 1-4 are the committee."""
    genesis, idents, vs = world
    return BlockContext(
        params=genesis.params,
        parent_hash=compute_genesis_hash(genesis),
        parent_slot=Slot(0),
        vdf_iterations=ITERATIONS,
        vdf_group=compute_genesis_hash(genesis),
        validators=vs,
        producer_key=idents[0].pk,
        committee=tuple(i.pk for i in idents[1:5]),
    )


def build_slot_1_block(world: World, **kw: object) -> Block:
    genesis, idents, _ = world
    args: dict[str, object] = dict(
        parent=compute_genesis_hash(genesis),
        slot=Slot(1),
        params=genesis.params,
        vdf_iterations=ITERATIONS,
        producer=idents[0],
        committee=idents[1:5],
    )
    args.update(kw)
    return build_block(**args)  # type: ignore[arg-type]
