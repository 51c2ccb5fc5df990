"""Canonical byte encoding of the chain state after a block, and its root.

Why: a block carries the root of its parent's state, so a node joining late (or
restarting after pruning) can fetch a recent state from any peer instead of replaying
the chain from genesis, and check it against the root in a block it trusts. That only
works if every honest node derives the *same bytes* from the same state: the encoding
must be **canonical** (no dict or set order, no Python ``hash()``, no floats; mappings
sorted by key bytes, sets by bytes, finality tallies by ``(epoch, block)``) and
**total** (every state the system produces encodes, and decodes back to an equal
``BlockState``). Decoding is as strict as ``chain/encoding_primitives.py``'s: bounded
counts checked before allocating, strict booleans, enums and presence flags, sorted and
unique keys, no trailing bytes, at most :data:`MAX_STATE_BYTES`. Every accepted input
re-encodes to itself, so a state has exactly one encoding.

Layout (primitives as in ``chain/encoding_primitives.py``)::

    u8 STATE_FORMAT_VERSION
    list<list<validator>> validator sets   -- distinct, in first-appearance order of
                                              validators, voters, checkpoint records
    fixed(32) block_hash || u64 slot || fixed(32) seed || u32 validators (set index)
    u64 difficulty || registry || list<report> reports || u32 signers || bool is_skip
    fixed(32) vdf_group
    authority || list<(fixed(32) node, u64 slot)> last_seen (sorted by node)
    list<(fixed(32) node, i32 x, i32 y)> coordinates (sorted by node)
    list<(fixed(32) node, u64 slot)> departures (sorted by node)
    u64 stall.before || u64 stall.resumed  -- both 0: never stalled
    bool has_finality [|| finality]

A 1000-member validator set is about 140 KB, and a state names up to 67 (``validators``,
``voters``, one per checkpoint record), nearly always equal: the table keeps one copy.

The decoders' bounds (``StateLimits``), the helpers every part shares and the codecs of
the authority, ``last_seen`` and ``departures``, the coordinates and the finality tallies are in
``consensus/state_codec_fields.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib

from edgechain.chain.command_encoding import read_app_spec, write_app_spec
from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import Reader, Writer
from edgechain.chain.finality import CheckpointRecord, FinalityState
from edgechain.chain.report_encoding import (
    MIN_REPORT_SIZE,
    read_checkpoint,
    read_report,
    write_checkpoint,
    write_report,
)
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.memo import Memo
from edgechain.consensus.state_codec_fields import (
    CHECKPOINT_SIZE,
    StateLimits,
    get_malformed_error,
    read_authority,
    read_coordinates,
    read_node,
    read_node_slots,
    read_optional,
    read_optional_key,
    read_slot,
    read_stall,
    read_tallies,
    write_authority,
    write_coordinates,
    write_node,
    write_node_slots,
    write_optional,
    write_optional_key,
    write_stall,
    write_tallies,
)
from edgechain.errors import DecodeError, RejectReason
from edgechain.orchestrator.registry import AppRecord, AppState, Registry
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, REPORT_KEY_SIZE, AppId, BlockHash, PublicKey

STATE_FORMAT_VERSION = 10
"""The encoding's first byte; the root's domain tag names it too. 2: a validator ends
with the u64 ``address_slot`` of its address (block format 9's address records). 3: the
authority ends with the revoked enrollment token ids (block format 10). 4: the validators'
network coordinates follow ``last_seen`` (block format 11). 5: the VDF's group hash
follows ``is_skip`` (block format 12). 6: ``departures`` follow the coordinates (block
format 15, ``chain/departures.py``). 7: the latest stall follows the departures (block
format 16, ``orchestrator/liveness.get_silence_start``). 8: the validators' latest
reports carry ``state_room_bytes`` (block format 17). 9: an app record's policy ends with
``wait_for_state``, and the record with its optional ``state_node`` and ``replica_slot``
(block format 18). 10: an app record ends with ``move_landed`` and its optional
``state_slot`` (block format 19)."""

STATE_ROOT_DOMAIN = f"edgechain/state/v{STATE_FORMAT_VERSION}".encode()

MAX_STATE_BYTES = 32 * 1024 * 1024
"""The largest state encoding accepted (some 200 000 app records)."""


# Lower bounds of each item's encoding (Reader.items refuses counts that cannot fit).
_MIN_VALIDATOR_SIZE = HASH_SIZE + PUBLIC_KEY_SIZE + 2 + 4 + 4 + 8
_MIN_SPEC_SIZE = 2 + 1 + 2 + 4 + 4 + 4 + 1 + (1 + 4 + 4 + 2 + 4) + 4 + 4 + 8 + 8 + 1
_MIN_RECORD_SIZE = HASH_SIZE + _MIN_SPEC_SIZE + 3 + 8 + 4 + 8 + 8 * 1

_APP_STATES = (AppState.RUNNING, AppState.STOPPED)
"""AppState's byte is its index here (never the enum's string value or its order)."""


# --- validator sets --------------------------------------------------------------------


def _write_validator(w: Writer, v: ValidatorInfo) -> None:
    write_node(w, v.node)
    w.fixed(v.public_key, PUBLIC_KEY_SIZE)
    w.string(v.address)
    w.items(v.labels, Writer.string)
    write_optional_key(w, v.report_key, REPORT_KEY_SIZE)
    w.u64(v.address_slot)


def _read_validator(r: Reader) -> ValidatorInfo:
    node = read_node(r)
    public_key = PublicKey(r.fixed(PUBLIC_KEY_SIZE))
    address = r.string(Limits.MAX_SHORT_STR)
    labels = tuple(r.items(Limits.MAX_LABELS, 2, lambda x: x.string(Limits.MAX_SHORT_STR)))
    report_key = read_optional_key(r, REPORT_KEY_SIZE, "validator report key")
    return ValidatorInfo(node, public_key, address, labels, report_key, r.u64())


def _write_validator_set(w: Writer, vs: ValidatorSet) -> None:
    w.buf += vs.get_derived("state-encoding", _encode_validator_set)


def _encode_validator_set(vs: ValidatorSet) -> bytes:
    w = Writer()
    w.items(vs.members, _write_validator)
    return bytes(w.buf)


def _read_validator_set(r: Reader) -> ValidatorSet:
    members = r.items(StateLimits.MAX_VALIDATORS, _MIN_VALIDATOR_SIZE, _read_validator)
    return ValidatorSet(tuple(members))


def _get_referenced_sets(state: BlockState) -> list[ValidatorSet]:
    """Every validator set the state names, in the fixed traversal order."""
    sets = [state.validators]
    if state.finality is not None:
        sets.append(state.finality.voters)
        sets.extend(record.validators for record in state.finality.checkpoints)
    return sets


def _build_set_table(state: BlockState) -> list[ValidatorSet]:
    """Distinct sets in first-appearance order (by equality, which is quick: equal sets
    usually share their members tuple, and unequal ones differ in length or early)."""
    table: list[ValidatorSet] = []
    for vs in _get_referenced_sets(state):
        if vs not in table:
            table.append(vs)
    return table


class _SetRefs:
    """The decoder's side: checks that references name the table canonically (each new
    set is the next unused entry, and every entry ends up used)."""

    def __init__(self, sets: list[ValidatorSet]) -> None:
        self.sets = sets
        self.used = 0

    def read(self, r: Reader) -> ValidatorSet:
        index = r.u32()
        if index > self.used or index >= len(self.sets):
            raise get_malformed_error(f"validator set {index} out of order ({self.used} used)")
        if index == self.used:
            self.used += 1
        return self.sets[index]

    def finish(self) -> None:
        if self.used != len(self.sets):
            raise get_malformed_error(f"{len(self.sets) - self.used} unused validator sets")


def _read_set_table(r: Reader) -> list[ValidatorSet]:
    """The table of distinct sets. Two sets are equal exactly when their encodings are,
    so duplicates are found by comparing bytes (a memcmp, not member by member)."""
    spans: list[bytes] = []

    def read_one(x: Reader) -> ValidatorSet:
        start = x.pos
        vs = _read_validator_set(x)
        spans.append(x.data[start : x.pos])
        return vs

    sets = r.items(StateLimits.MAX_VALIDATOR_SETS, 4, read_one)
    for i, span in enumerate(spans):
        if span in spans[:i]:
            raise get_malformed_error(f"validator set {i} repeats an earlier one")
    return sets


# --- registry --------------------------------------------------------------------------


def _write_app_record(w: Writer, rec: AppRecord) -> None:
    w.fixed(rec.app, HASH_SIZE)
    write_app_spec(w, rec.spec)
    write_optional(w, rec.node, write_node)
    write_optional(w, rec.last_move_slot, Writer.u64)
    w.u8(_APP_STATES.index(rec.state))
    w.u64(rec.version)
    write_optional_key(w, rec.owner, PUBLIC_KEY_SIZE)
    w.u64(rec.created_slot)
    write_optional(w, rec.move_to, write_node)
    write_optional(w, rec.replica_node, write_node)
    write_optional(w, rec.previous_node, write_node)
    w.boolean(rec.moved_by_operator)
    write_optional(w, rec.state_node, write_node)
    write_optional(w, rec.replica_slot, Writer.u64)
    w.boolean(rec.move_landed)
    write_optional(w, rec.state_slot, Writer.u64)


def _read_app_state(r: Reader) -> AppState:
    code = r.u8()
    if code >= len(_APP_STATES):
        raise DecodeError(RejectReason.BAD_ENUM, f"AppState={code}")
    return _APP_STATES[code]


def _read_app_record(r: Reader) -> AppRecord:
    return AppRecord(
        app=AppId(r.fixed(HASH_SIZE)),
        spec=read_app_spec(r),
        node=read_optional(r, read_node),
        last_move_slot=read_optional(r, read_slot),
        state=_read_app_state(r),
        version=r.u64(),
        owner=read_optional_key(r, PUBLIC_KEY_SIZE, "app owner"),
        created_slot=read_slot(r),
        move_to=read_optional(r, read_node),
        replica_node=read_optional(r, read_node),
        previous_node=read_optional(r, read_node),
        moved_by_operator=r.boolean(),
        state_node=read_optional(r, read_node),
        replica_slot=read_optional(r, read_slot),
        move_landed=r.boolean(),
        state_slot=read_optional(r, read_slot),
    )


def _write_registry(w: Writer, reg: Registry) -> None:
    w.items(reg.records, _write_app_record)
    w.items(reg.queue, write_node)


def _read_registry(r: Reader) -> Registry:
    records = tuple(r.items(StateLimits.MAX_APPS, _MIN_RECORD_SIZE, _read_app_record))
    queue = tuple(r.items(StateLimits.MAX_APPS, HASH_SIZE, lambda x: AppId(x.fixed(HASH_SIZE))))
    return Registry(records=records, queue=queue)


# --- finality --------------------------------------------------------------------------


def _write_finality(w: Writer, fin: FinalityState, table: list[ValidatorSet]) -> None:
    write_checkpoint(w, fin.justified)
    write_checkpoint(w, fin.finalized)
    w.u32(table.index(fin.voters))
    w.u32(len(fin.checkpoints))
    for record in fin.checkpoints:
        write_checkpoint(w, record.checkpoint)
        w.u32(table.index(record.validators))
    write_tallies(w, fin.tallies)


def _read_finality(r: Reader, refs: _SetRefs) -> FinalityState:
    justified, finalized, voters = read_checkpoint(r), read_checkpoint(r), refs.read(r)
    checkpoints = r.items(
        StateLimits.MAX_CHECKPOINTS,
        CHECKPOINT_SIZE + 4,
        lambda x: CheckpointRecord(read_checkpoint(x), refs.read(x)),
    )
    return FinalityState(justified, finalized, voters, tuple(checkpoints), read_tallies(r))


# --- the state -------------------------------------------------------------------------


def encode_state(state: BlockState) -> bytes:
    """The canonical encoding of ``state``: equal states give equal bytes.

    Raises ValueError (a local bug, not a peer's) for a state outside the format: a
    field of the wrong size, or an encoding beyond :data:`MAX_STATE_BYTES`.
    """
    table = _build_set_table(state)
    w = Writer()
    w.u8(STATE_FORMAT_VERSION)
    w.items(table, _write_validator_set)
    w.fixed(state.block_hash, HASH_SIZE)
    w.u64(state.slot)
    w.fixed(state.seed, HASH_SIZE)
    w.u32(table.index(state.validators))
    w.u64(state.difficulty)
    _write_registry(w, state.registry)
    w.items(state.reports, write_report)
    w.u32(state.signers)
    w.boolean(state.is_skip)
    w.fixed(state.vdf_group, HASH_SIZE)
    write_authority(w, state.authority)
    write_node_slots(w, state.last_seen)
    write_coordinates(w, state.coordinates)
    write_node_slots(w, state.departures)
    write_stall(w, state.stall)
    write_optional(w, state.finality, lambda x, fin: _write_finality(x, fin, table))
    if len(w.buf) > MAX_STATE_BYTES:
        raise ValueError(f"state encoding of {len(w.buf)} bytes > {MAX_STATE_BYTES}")
    return bytes(w.buf)


def decode_state(data: bytes) -> BlockState:
    """The state ``data`` encodes; any malformed or non-canonical input is a DecodeError."""
    if len(data) > MAX_STATE_BYTES:
        raise DecodeError(RejectReason.TOO_LARGE, f"{len(data)} bytes")
    r = Reader(bytes(data))
    version = r.u8()
    if version != STATE_FORMAT_VERSION:
        raise DecodeError(RejectReason.BAD_VERSION, f"state format {version}")
    refs = _SetRefs(_read_set_table(r))
    state = BlockState(  # keyword arguments are evaluated in order: the field order
        block_hash=BlockHash(r.fixed(HASH_SIZE)),
        slot=read_slot(r),
        seed=r.fixed(HASH_SIZE),
        validators=refs.read(r),
        difficulty=r.u64(),
        registry=_read_registry(r),
        reports=tuple(r.items(StateLimits.MAX_VALIDATORS, MIN_REPORT_SIZE, read_report)),
        signers=r.u32(),
        is_skip=r.boolean(),
        vdf_group=BlockHash(r.fixed(HASH_SIZE)),
        authority=read_authority(r),
        last_seen=read_node_slots(r, "last_seen"),
        coordinates=read_coordinates(r),
        departures=read_node_slots(r, "departures"),
        stall=read_stall(r),
        finality=read_optional(r, lambda x: _read_finality(x, refs)),
    )
    r.finish()
    refs.finish()
    if state.stall.resumed > state.slot:
        raise get_malformed_error(f"stall resumed at {state.stall.resumed} > slot {state.slot}")
    return state


def compute_state_root(state: BlockState) -> bytes:
    """SHA-256 of the domain tag and the canonical encoding, with ``signers`` zeroed:
    32 bytes. The signer count is that of the attestation this node holds, which the
    block hash does not cover (nodes may hold one block with different signers); the
    rest of the state is a function of the chain's hashes alone."""
    canonical = dataclasses.replace(state, signers=0) if state.signers else state
    return hashlib.sha256(STATE_ROOT_DOMAIN + encode_state(canonical)).digest()


def get_state_root(memo: Memo, state: BlockState) -> bytes:
    """:func:`compute_state_root`, memoised by block hash (a state is a function of its
    block); a hand-built state that reuses a real block's hash is computed afresh."""
    held, root = memo.get(
        ("state-root", state.block_hash), lambda: (state, compute_state_root(state))
    )
    return root if held is state or held == state else compute_state_root(state)
