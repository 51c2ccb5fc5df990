"""Following the chain without executing it: the light transition of checkpoint sync.

A node far behind (a new node, one restarted after a long outage) does not replay
every block to learn the current state (issue 13). It follows the chain forward from
a state it trusts (genesis, or its own finalized state) keeping only what is needed
to check who may sign the next block: the seed that elects roles (Algorithm 2), the
validator set (§3.4) and the finality votes (``chain/finality.py``). Each block is
checked as fully as that light state allows:

- the parent link and slot order;
- the elected producer, its signature, the reports' Ed25519 signatures (their finality
  votes are what the light state counts), inclusions' proofs of possession, exits and
  commands' signatures (``chain/validation.validate_block``);
- the committee's aggregate signature over the block (a majority of the committee the
  light state elects), for skip blocks too, with the skip block's exclusion rule.

What it does not check is what needs the full state: the VDF proof (the committee
attested the output it seeds from), the recomputed plan, the difficulty rule, whether
commands apply. Once the light state has finalized a checkpoint, the node fetches the
full state at or below it from a peer, checks it against the ``state_root`` an attested
block carries (``consensus/state_codec.py``) and validates fully from there. The
trust assumption is the one every node already makes: a committee majority signs only
blocks it validated.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.chain.finality import FinalityState
from edgechain.chain.model import AnyBlock, Block, ChainParams
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import BlockContext, validate_block, validate_skip_block
from edgechain.chain.validator_set import ValidatorSet, apply_block_to_validator_set
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.roles import compute_roles
from edgechain.consensus.state import compute_finality
from edgechain.crypto.seed import compute_block_seed, compute_skip_seed
from edgechain.errors import RejectReason, ValidationError
from edgechain.types import BlockHash, Slot


@dataclass(frozen=True)
class LightState:
    """What the light transition keeps after a block."""

    block_hash: BlockHash
    slot: Slot
    seed: bytes
    validators: ValidatorSet
    finality: FinalityState


def get_light_state(state: BlockState) -> LightState:
    """The light part of a full state (the state a node trusts to start following)."""
    if state.finality is None:
        raise ValueError("a state without finality cannot be followed from")
    return LightState(state.block_hash, state.slot, state.seed, state.validators, state.finality)


def process_light_block(
    light: LightState,
    block: AnyBlock,
    block_hash: BlockHash,
    params: ChainParams,
    cache: SignatureCache | None = None,
) -> LightState:
    """Check ``block`` against ``light`` and return the light state after it; raises
    ValidationError (the peer's) when it does not check."""
    if block.parent != light.block_hash:
        raise ValidationError(RejectReason.BAD_PARENT, "not the next block of the followed chain")
    roles = compute_roles(
        light.validators.get_public_keys(), light.seed, block.slot, params.committee_size
    )
    ctx = BlockContext(
        params=params,
        parent_hash=light.block_hash,
        parent_slot=light.slot,
        vdf_iterations=1,  # unused: the VDF is not checked here
        vdf_group=light.block_hash,  # unused, likewise
        validators=light.validators,
        producer_key=roles.producer,
        committee=roles.committee,
    )
    if isinstance(block, Block):
        validate_block(block, block_hash, ctx, check_vdf=False, cache=cache)
        seed = compute_block_seed(block.vdf_output)
    else:
        validate_skip_block(block, block_hash, ctx)
        seed = compute_skip_seed(light.seed, block.slot)
    validators = apply_block_to_validator_set(light.validators, block)
    # The full transition's own count (``consensus/state.apply_block``).
    finality = compute_finality(light, block, block_hash, validators, params)
    assert finality is not None  # a light state always has finality
    return LightState(block_hash, block.slot, seed, validators, finality)
