"""Pure helpers that sign and assemble chain objects (producer, committee, joining node).

BLS and Ed25519 signing are deterministic, so these are pure functions of their inputs;
the secret key never leaves the caller's memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from edgechain.chain.attestation import compute_bitfield
from edgechain.chain.command_encoding import compute_command_signing_root
from edgechain.chain.encoding import (
    compute_block_hash,
    compute_vote_message,
)
from edgechain.chain.model import (
    NO_REPORT_SIGNATURE,
    NO_SIGNATURE,
    ORIGIN,
    UNMEASURED_STATE_ROOM,
    AddressRecord,
    AppSpec,
    AppUsage,
    Block,
    CommandKind,
    Coordinate,
    ExitRequest,
    FinalityVote,
    InclusionRequest,
    ResourceReport,
    SignedCommand,
    SkipBlock,
)
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.chain.validator_encoding import (
    compute_address_signing_root,
    compute_exit_signing_root,
    compute_inclusion_signing_root,
    compute_ticket_message,
)
from edgechain.chain.validator_set import compute_node_id
from edgechain.crypto import bls, report_key
from edgechain.types import BlockHash, NodeId, SecretKey, Signature, Slot

B = TypeVar("B", Block, SkipBlock)

EMPTY_SIGNATURE = NO_SIGNATURE
"""Placeholder in a candidate before the field is signed or aggregated."""


def make_ticket(admin_sk: SecretKey, chain_id: str, public_key: bytes) -> bytes:
    return bls.sign(admin_sk, compute_ticket_message(chain_id, public_key))


def make_inclusion_request(
    sk: SecretKey, address: str, labels: tuple[str, ...], ticket: bytes = b"", nonce: int = 0
) -> InclusionRequest:
    pk = bls.sk_to_pk(sk)
    unsigned = InclusionRequest(
        pk,
        bls.pop_prove(sk),
        address,
        labels,
        ticket,
        EMPTY_SIGNATURE,
        nonce,
        report_key.get_report_public_key(sk),
    )
    return dataclasses.replace(
        unsigned, signature=bls.sign(sk, compute_inclusion_signing_root(unsigned))
    )


def make_address_record(sk: SecretKey, chain_id: str, address: str, slot: Slot) -> AddressRecord:
    """``sk``'s validator is reached at ``address`` from ``slot`` on (block format 9)."""
    unsigned = AddressRecord(compute_node_id(bls.sk_to_pk(sk)), address, slot, EMPTY_SIGNATURE)
    signature = bls.sign(sk, compute_address_signing_root(chain_id, unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def make_command(
    sk: SecretKey,
    chain_id: str,
    seq: int,
    kind: CommandKind,
    *,
    app: bytes = b"",
    node: bytes = b"",
    key: bytes = b"",
    spec: AppSpec | None = None,
) -> SignedCommand:
    """A command signed by ``sk`` for chain ``chain_id`` (an operator's or the admin's)."""
    unsigned = SignedCommand(bls.sk_to_pk(sk), seq, kind, app, node, key, spec)
    signature = bls.sign(sk, compute_command_signing_root(chain_id, unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def make_exit_request(sk: SecretKey, slot: Slot) -> ExitRequest:
    unsigned = ExitRequest(compute_node_id(bls.sk_to_pk(sk)), slot, EMPTY_SIGNATURE)
    return dataclasses.replace(
        unsigned, signature=bls.sign(sk, compute_exit_signing_root(unsigned))
    )


def make_report(
    sk: SecretKey,
    slot: Slot,
    *,
    timestamp_ms: int,
    cpu_bp: int,
    ram_bp: int,
    disk_bp: int,
    rtt_us: int,
    apps: tuple[AppUsage, ...],
    pressure_bp: int = 0,
    vote: FinalityVote | None = None,
    coordinate: Coordinate = ORIGIN,
    state_room_bytes: int = UNMEASURED_STATE_ROOM,
) -> ResourceReport:
    node = compute_node_id(bls.sk_to_pk(sk))
    ordered = tuple(sorted(apps, key=lambda u: u.app))
    unsigned = ResourceReport(
        node,
        slot,
        timestamp_ms,
        cpu_bp,
        ram_bp,
        disk_bp,
        rtt_us,
        ordered,
        NO_REPORT_SIGNATURE,
        pressure_bp=pressure_bp,
        vote=vote,
        coordinate=coordinate,
        state_room_bytes=state_room_bytes,
    )
    signature = report_key.sign_report_message(sk, compute_report_signing_root(unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def sign_as_producer(block: Block, sk: SecretKey) -> Block:
    """The producer signs the message its committee signs (block format 14)."""
    message = compute_vote_message(compute_block_hash(block))
    return dataclasses.replace(block, producer_signature=bls.sign(sk, message))


def sign_vote(block_hash: BlockHash, sk: SecretKey) -> Signature:
    """A committee member's attestation of a block or skip block (paper Algorithm 3)."""
    return bls.sign(sk, compute_vote_message(block_hash))


def attach_attestation(block: B, committee_size: int, votes: Mapping[int, bytes]) -> B:
    """Aggregate the votes (by committee index) into the block's bitfield and signature."""
    indices = sorted(votes)
    aggregate = bls.aggregate([votes[i] for i in indices])
    return dataclasses.replace(
        block, signers=compute_bitfield(indices, committee_size), aggregate_signature=aggregate
    )


def get_producer_node(sk: SecretKey) -> NodeId:
    return compute_node_id(bls.sk_to_pk(sk))
