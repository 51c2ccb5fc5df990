"""Deterministic factories for tests, vectors, benchmarks and the simulator.

Everything here is real: real BLS keys (derived from an index so runs repeat), real
VDF proofs, real signatures. Nothing is mocked; only the choice of inputs is fixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from edgechain.chain.assembly import (
    EMPTY_SIGNATURE,
    attach_attestation,
    make_inclusion_request,
    make_ticket,
    sign_as_producer,
    sign_vote,
)
from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import (
    AddressRecord,
    Block,
    ChainParams,
    ExitRequest,
    Genesis,
    InclusionRequest,
    PlanEntry,
    ResourceReport,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.validator_set import compute_node_id
from edgechain.crypto import bls, vdf
from edgechain.types import BlockHash, NodeId, PublicKey, SecretKey, Slot

B = TypeVar("B", Block, SkipBlock)


@dataclass(frozen=True)
class Identity:
    """A node's key pair and id."""

    sk: SecretKey
    pk: PublicKey
    node: NodeId


def make_identity(index: int, namespace: bytes = b"edgechain-test") -> Identity:
    sk = bls.keygen(hashlib.sha256(namespace + index.to_bytes(8, "big")).digest())
    pk = bls.sk_to_pk(sk)
    return Identity(sk, pk, compute_node_id(pk))


ADMIN = make_identity(0, b"edgechain-test-admin")


def make_params(
    committee_size: int = 4, *, admin: bool = True, difficulty: int = 200, **overrides: object
) -> ChainParams:
    params = ChainParams(
        chain_id="testnet",
        genesis_time_ms=1_700_000_000_000,
        slot_duration_ms=2_000,
        committee_size=committee_size,
        initial_difficulty=difficulty,
        admin_key=ADMIN.pk if admin else b"",
    )
    return dataclasses.replace(params, **overrides)  # type: ignore[arg-type]


def make_joining_request(ident: Identity, params: ChainParams, index: int = 0) -> InclusionRequest:
    ticket = make_ticket(ADMIN.sk, params.chain_id, ident.pk) if params.admin_key else b""
    return make_inclusion_request(ident.sk, f"127.0.0.1:{20000 + index}", ("lab",), ticket)


def make_genesis(
    nodes: int, committee_size: int = 4, **params_overrides: object
) -> tuple[Genesis, list[Identity]]:
    params = make_params(committee_size, **params_overrides)  # type: ignore[arg-type]
    idents = [make_identity(i) for i in range(1, nodes + 1)]
    requests = tuple(make_joining_request(ident, params, i) for i, ident in enumerate(idents))
    return Genesis(params, requests, params.genesis_time_ms), idents


def build_block(
    *,
    parent: BlockHash,
    slot: Slot,
    params: ChainParams,
    vdf_iterations: int,
    producer: Identity,
    committee: Sequence[Identity],
    signer_indices: Sequence[int] | None = None,
    reports: tuple[ResourceReport, ...] = (),
    plan: tuple[PlanEntry, ...] = (),
    inclusions: tuple[InclusionRequest, ...] = (),
    exits: tuple[ExitRequest, ...] = (),
    commands: tuple[SignedCommand, ...] = (),
    addresses: tuple[AddressRecord, ...] = (),
    difficulty: int | None = None,
    vdf_result: vdf.VdfResult | None = None,
    state_root: bytes = bytes(32),
    vdf_group: BlockHash | None = None,
) -> Block:
    """A fully signed and attested block (all committee members sign by default).
    ``state_root``: the parent state's root when the block is to pass full validation
    (``consensus/state_codec.compute_state_root``). ``vdf_group``: the VDF's group hash
    (``consensus/state.compute_vdf_group``); by default the parent's hash, which is right
    for a block on the genesis or one that opens an epoch."""
    proof = vdf_result or vdf.prove(vdf_group or parent, parent, vdf_iterations)
    candidate = Block(
        parent=parent,
        slot=slot,
        epoch=slot // params.epoch_length,
        producer=producer.node,
        timestamp_ms=params.genesis_time_ms + slot * params.slot_duration_ms,
        difficulty=difficulty if difficulty is not None else vdf_iterations,
        vdf_output=proof.output,
        vdf_proof=proof.proof,
        state_root=state_root,
        reports=tuple(sorted(reports, key=lambda r: r.node)),
        plan=plan,
        inclusions=inclusions,
        exits=exits,
        commands=commands,
        addresses=addresses,
        producer_signature=EMPTY_SIGNATURE,
        signers=b"",
        aggregate_signature=EMPTY_SIGNATURE,
    )
    signed = sign_as_producer(candidate, producer.sk)
    return attest(signed, committee, signer_indices)


def attest(
    block: B, committee: Sequence[Identity], signer_indices: Sequence[int] | None = None
) -> B:
    block_hash = compute_block_hash(block)
    indices = range(len(committee)) if signer_indices is None else signer_indices
    votes = {i: sign_vote(block_hash, committee[i].sk) for i in indices}
    return attach_attestation(block, len(committee), votes)


def build_skip_block(
    *,
    parent: BlockHash,
    slot: Slot,
    excluded: NodeId,
    committee: Sequence[Identity],
    signer_indices: Sequence[int] | None = None,
) -> SkipBlock:
    unsigned = SkipBlock(parent, slot, excluded, b"", EMPTY_SIGNATURE)
    return attest(unsigned, committee, signer_indices)
