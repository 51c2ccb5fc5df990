"""Canonical encoding of blocks, skip blocks and the genesis, the format's version and the
hashes on them (``tests/vectors/README.md``); the objects inside have their own modules."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from edgechain.chain.command_encoding import MIN_COMMAND_SIZE, read_command, write_command
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import Reader, Writer, decode_with, encode_with
from edgechain.chain.model import AnyBlock, Block, ChainParams, Genesis, SkipBlock
from edgechain.chain.plan_encoding import MIN_PLAN_ENTRY_SIZE, read_plan_entry, write_plan_entry
from edgechain.chain.recent_encodings import RecentEncodings
from edgechain.chain.report_encoding import MIN_REPORT_SIZE, read_report, write_report
from edgechain.chain.validator_encoding import (
    EXIT_SIZE,
    MIN_ADDRESS_RECORD_SIZE,
    MIN_INCLUSION_SIZE,
    read_address_record,
    read_exit,
    read_inclusion,
    write_address_record,
    write_exit,
    write_inclusion,
)
from edgechain.errors import DecodeError, RejectReason
from edgechain.types import (
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    BlockHash,
    NodeId,
    Signature,
    Slot,
)

FORMAT_VERSION = 21
"""Version of the block format; it names the block hash's domain tag. 2: signed
commands replace bare app specs, app ids no longer hash the spec, params carry
``open_admission``. 3: plan actions RECOVER and REPLICA, specs carry
``replica_interval_slots``, params carry ``down_after_slots``, commands DRAIN_NODE and
UNDRAIN_NODE. 4: reports carry ``pressure_bp``, app usages ``state_bytes``. 5: specs
end with ``cpu_limit_millicores``, ``memory_limit_bytes``, ``state_limit_bytes`` and
``run_as_root``. 6: a report's signature is a 64-byte Ed25519 signature, an inclusion
request carries the 32-byte ``report_key`` after its proof of possession. 7: a report
ends with its optional finality vote (``chain/finality.py``); ``epoch_length`` defaults
to 8 slots. 8: a block carries ``state_root`` (32 bytes after the VDF proof), the
root of its parent's state (``consensus/state_codec.py``). 9: a block ends its header
with ``addresses``, validators' signed new addresses (``AddressRecord``). 10: an
inclusion request's ``ticket`` may hold a 136-byte enrollment token
(``chain/enrollment.py``); command kind REVOKE_ENROLLMENT, whose ``key`` is 32 bytes.
11: a report carries the node's network ``coordinate`` (two i32, after ``pressure_bp``),
which the chain state keeps per validator (``cluster/vivaldi.py``). 12: same bytes, new
VDF: the discriminant comes from the epoch's group hash and the evaluation starts from
a form hashed from the parent hash (``crypto/vdf.py``), not from the generator. 13:
params end with ``vdf_group_epochs``: the VDF group changes every that many finality
epochs (4 by default, 32 slots), not every epoch. 14: same bytes; the producer signs
the block's vote message (``compute_vote_message``), the message its committee signs,
so a validator checks both signatures with two pairings and one hash to the curve
(``bls.batch_verify``), not three and two. 15: same bytes; an inclusion request's
``nonce`` is checked: at most 64 slots before the block's slot, not after it, and no
earlier than its node's last departure, which the state keeps (state format 6,
``chain/departures.py``), so an old request cannot readmit a node that left. 16: same
bytes; slots in which the chain got no block at all (a stall) count as no node's
silence: a node not down when the chain stalled counts as seen at the first block after
it, which the state keeps (state format 7, ``orchestrator/liveness.get_silence_start``),
so the plans after a fleet-wide outage recover nothing that comes back in time. 17: a
report carries ``state_room_bytes`` (a u64 after its coordinate): the app state its
node can take in, which the planner respects (state format 8, whose reports carry it).
18: an app policy ends with ``wait_for_state`` (a bool after ``min_interval_slots``): a
stateful app whose node is down is recovered only onto the replica node the chain
confirmed to hold its state, or where an operator's MOVE sends it
(``orchestrator/placement.py``; state format 9, whose app records carry it, their
``state_node`` and ``replica_slot``). 19: same bytes; every replicated app's replica
node is confirmed as its ``state_node``, an app record keeps whether its last move
landed and the slot its state node was confirmed in (state format 10, ``move_landed``
and ``state_slot``), and a down node's app is recovered first where its current state
is known to be: the origin of a move that never landed, then its state node if
confirmed since that move (``placement.get_state_holder``), not a replica node named
after its host fell silent. 20: same bytes; an admin's EXCLUDE_NODE also takes its node
out of the finality voter set and off the sets pending checkpoints would hand on, and
may name a voter that is no longer a validator, so that finality resumes once the admin
excludes the devices that are gone for good (``chain/finality.py``). 21: same bytes; a
down node's app waits, rather than restart from nothing elsewhere, while the node known
to hold its state is quiet or out of the validator set but not down (a skip block's
exclusion it may come back from), at most K slots
(``placement.is_waiting_for_state_holder``)."""

TAG_BLOCK = 1
TAG_SKIP_BLOCK = 2
TAG_GENESIS = 3

VDF_FORM_SIZE = 100
"""chiavdf's compressed class-group form for a 1024-bit discriminant."""


# --- genesis ---------------------------------------------------------------------------


def write_params(w: Writer, p: ChainParams) -> None:
    w.string(p.chain_id)
    w.u64(p.genesis_time_ms)
    w.u32(p.slot_duration_ms)
    w.u32(p.committee_size)
    w.u32(p.epoch_length)
    w.u64(p.initial_difficulty)
    w.u32(p.vdf_target_bp)
    w.var_bytes(p.admin_key)
    w.u32(p.nodes_per_cluster)
    w.u32(p.max_migrations_per_slot)
    w.boolean(p.open_admission)
    w.u32(p.down_after_slots)
    w.u32(p.vdf_group_epochs)


def read_params(r: Reader) -> ChainParams:
    chain_id = r.string(Limits.MAX_SHORT_STR)
    genesis_time, slot_ms, committee, epoch = r.u64(), r.u32(), r.u32(), r.u32()
    difficulty, target = r.u64(), r.u32()
    admin = r.var_bytes(PUBLIC_KEY_SIZE)
    if admin and len(admin) != PUBLIC_KEY_SIZE:
        raise DecodeError(RejectReason.BAD_ADMIN_KEY)
    return ChainParams(
        chain_id, genesis_time, slot_ms, committee, epoch, difficulty, target, admin,
        r.u32(), r.u32(), r.boolean(), r.u32(), r.u32(),
    )  # fmt: skip


def write_genesis(w: Writer, g: Genesis) -> None:
    w.u8(TAG_GENESIS)
    write_params(w, g.params)
    w.items(g.inclusions, write_inclusion)
    w.u64(g.timestamp_ms)


def read_genesis(r: Reader) -> Genesis:
    if r.u8() != TAG_GENESIS:
        raise DecodeError(RejectReason.BAD_TAG, "not a genesis block")
    params = read_params(r)
    inclusions = tuple(r.items(Limits.MAX_INCLUSIONS, MIN_INCLUSION_SIZE, read_inclusion))
    return Genesis(params, inclusions, r.u64())


def encode_genesis(g: Genesis) -> bytes:
    return encode_with(g, write_genesis)


def decode_genesis(data: bytes) -> Genesis:
    return decode_with(data, read_genesis)


def compute_genesis_hash(g: Genesis) -> BlockHash:
    return BlockHash(
        hashlib.sha256(f"edgechain/genesis/v{FORMAT_VERSION}".encode() + encode_genesis(g)).digest()
    )


# --- blocks ----------------------------------------------------------------------------

BLOCK_HASH_DOMAIN = f"edgechain/block/v{FORMAT_VERSION}".encode()
"""A block's hash is SHA-256 of this tag and its header (its encoding up to the
signatures), so the signatures that attest to a block are not part of its identity."""


def _write_block_header(w: Writer, b: Block) -> None:
    w.u8(TAG_BLOCK)
    w.fixed(b.parent, HASH_SIZE)
    w.u64(b.slot)
    w.u64(b.epoch)
    w.fixed(b.producer, HASH_SIZE)
    w.u64(b.timestamp_ms)
    w.u64(b.difficulty)
    w.fixed(b.vdf_output, VDF_FORM_SIZE)
    w.fixed(b.vdf_proof, VDF_FORM_SIZE)
    w.fixed(b.state_root, HASH_SIZE)
    w.items(b.reports, write_report)
    w.items(b.plan, write_plan_entry)
    w.items(b.inclusions, write_inclusion)
    w.items(b.exits, write_exit)
    w.items(b.commands, write_command)
    w.items(b.addresses, write_address_record)


def _write_skip_header(w: Writer, b: SkipBlock) -> None:
    w.u8(TAG_SKIP_BLOCK)
    w.fixed(b.parent, HASH_SIZE)
    w.u64(b.slot)
    w.fixed(b.excluded, HASH_SIZE)


def _write_attestation(w: Writer, signers: bytes, aggregate: bytes) -> None:
    w.var_bytes(signers)
    w.fixed(aggregate, SIGNATURE_SIZE)


def encode_block_with_header_size(b: AnyBlock) -> tuple[bytes, int]:
    """The full encoding and the length of its header prefix (what the hash covers)."""
    w = Writer()
    if isinstance(b, Block):
        _write_block_header(w, b)
        header_size = len(w.buf)
        w.fixed(b.producer_signature, SIGNATURE_SIZE)
    else:
        _write_skip_header(w, b)
        header_size = len(w.buf)
    _write_attestation(w, b.signers, b.aggregate_signature)
    return bytes(w.buf), header_size


RECENT_BLOCKS = RecentEncodings[AnyBlock](32)
"""Blocks whose bytes :func:`encode_block` remembers (decoded or encoded lately): a node
re-encoded every block it stored, and every block it served twice per sync answer (to
fit the frame, then to send), 850 encodings per node in 120 slots at 100 nodes."""


def encode_block(b: AnyBlock) -> bytes:
    data = RECENT_BLOCKS.get(b)
    if data is None:
        data = encode_block_with_header_size(b)[0]
        RECENT_BLOCKS.put(b, data)
    return data


def _hash_header(header: bytes) -> BlockHash:
    return BlockHash(hashlib.sha256(BLOCK_HASH_DOMAIN + header).digest())


def compute_block_hash(b: AnyBlock) -> BlockHash:
    w = Writer()
    if isinstance(b, Block):
        _write_block_header(w, b)
    else:
        _write_skip_header(w, b)
    return _hash_header(bytes(w.buf))


def _read_block_body(r: Reader) -> Block:
    parent = BlockHash(r.fixed(HASH_SIZE))
    slot, epoch = Slot(r.u64()), r.u64()
    producer = NodeId(r.fixed(HASH_SIZE))
    ts, difficulty = r.u64(), r.u64()
    vdf_output, vdf_proof = r.fixed(VDF_FORM_SIZE), r.fixed(VDF_FORM_SIZE)
    state_root = r.fixed(HASH_SIZE)
    reports = tuple(r.items(Limits.MAX_REPORTS, MIN_REPORT_SIZE, read_report))
    plan = tuple(r.items(Limits.MAX_PLAN_ENTRIES, MIN_PLAN_ENTRY_SIZE, read_plan_entry))
    inclusions = tuple(r.items(Limits.MAX_INCLUSIONS, MIN_INCLUSION_SIZE, read_inclusion))
    exits = tuple(r.items(Limits.MAX_EXITS, EXIT_SIZE, read_exit))
    commands = tuple(r.items(Limits.MAX_COMMANDS, MIN_COMMAND_SIZE, read_command))
    addresses = tuple(r.items(Limits.MAX_ADDRESSES, MIN_ADDRESS_RECORD_SIZE, read_address_record))
    producer_sig = Signature(r.fixed(SIGNATURE_SIZE))
    signers = r.var_bytes(Limits.MAX_SIGNER_BYTES)
    aggregate = Signature(r.fixed(SIGNATURE_SIZE))
    return Block(
        parent, slot, epoch, producer, ts, difficulty, vdf_output, vdf_proof, state_root,
        reports, plan, inclusions, exits, commands, producer_sig, signers, aggregate,
        addresses,
    )  # fmt: skip


def _read_skip_body(r: Reader) -> SkipBlock:
    parent = BlockHash(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    excluded = NodeId(r.fixed(HASH_SIZE))
    signers = r.var_bytes(Limits.MAX_SIGNER_BYTES)
    return SkipBlock(parent, slot, excluded, signers, Signature(r.fixed(SIGNATURE_SIZE)))


RECENT_DECODES = 16
"""Blocks whose decoding :func:`decode_block_with_hash` remembers, by their bytes.

One block reaches a node several times: the gossip copy of each origin that published
it (a skip block comes from every committee member that assembled it), the direct copy
for the next slot's duties, sync answers. At 100 nodes a node decoded each block about
ten times (1,070 decodes for ~110 blocks, profiled; issue 13), each a parse of up to a
hundred reports. Blocks are immutable, so the same bytes give the same objects; a
handful of recent ones is all that repeats, and bounds the memory (~100 KB a block)."""


def decode_block_with_hash(data: bytes) -> tuple[AnyBlock, BlockHash]:
    """Decode a block and compute its hash from the received bytes (no re-encoding)."""
    if len(data) > Limits.MAX_BLOCK_BYTES:
        raise DecodeError(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    return _decode_block_bytes(bytes(data))


@lru_cache(maxsize=RECENT_DECODES)
def _decode_block_bytes(data: bytes) -> tuple[AnyBlock, BlockHash]:
    r = Reader(data)
    tag = r.u8()
    block: AnyBlock
    if tag == TAG_BLOCK:
        block = _read_block_body(r)
        header_end = r.pos - SIGNATURE_SIZE - 4 - len(block.signers) - SIGNATURE_SIZE
    elif tag == TAG_SKIP_BLOCK:
        block = _read_skip_body(r)
        header_end = r.pos - 4 - len(block.signers) - SIGNATURE_SIZE
    else:
        raise DecodeError(RejectReason.BAD_TAG, f"block tag {tag}")
    r.finish()
    RECENT_BLOCKS.put(block, data)
    return block, _hash_header(r.data[:header_end])


def decode_block(data: bytes) -> AnyBlock:
    return decode_block_with_hash(data)[0]


def compute_vote_message(block_hash: BlockHash) -> bytes:
    """What a committee member signs for a block or skip block, and since format 14 what
    the block's producer signs too (domain-separated from every other signed message).

    One message for both is safe: a vote counts only through its signer's bit in the
    block's committee bitfield, and a slot's producer is never in its committee
    (``consensus/roles.py``: position 0 of the shuffle against 1..k), so the producer's
    signature cannot pass for a vote, nor a vote for the producer's signature (the
    producer's key is the slot's, fixed by the parent). The gain is the check every
    validator makes on every block: one hash to the curve and two pairings for both.
    """
    return b"edgechain/vote/v1" + block_hash
