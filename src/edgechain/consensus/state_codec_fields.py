"""The state encoding's fields below ``consensus/state_codec.py``.

The decoders' bounds (:class:`StateLimits`), the helpers every part of the encoding
shares (optional values, node ids, slots, optional keys, canonical order) and the
codecs of the authority, ``last_seen``, the coordinates and the finality tallies, in
the layout ``consensus/state_codec.py`` describes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import TypeVar

from edgechain.chain.authority import Authority
from edgechain.chain.encoding_primitives import Reader, Writer
from edgechain.chain.finality import MAX_PENDING_EPOCHS
from edgechain.chain.model import Checkpoint, Coordinate
from edgechain.chain.report_encoding import read_checkpoint, write_checkpoint
from edgechain.errors import DecodeError, RejectReason
from edgechain.orchestrator.liveness import NO_STALL, STALL_MIN_SLOTS, Stall
from edgechain.types import HASH_SIZE, PUBLIC_KEY_SIZE, NodeId, Slot

T = TypeVar("T")


class StateLimits:
    """Upper bounds on a state's counts; each is a DecodeError beyond it."""

    MAX_CHECKPOINTS = MAX_PENDING_EPOCHS + 1
    """``chain/finality._trim``: the justified record and at most 64 after it."""
    MAX_VALIDATOR_SETS = MAX_CHECKPOINTS + 2
    MAX_VALIDATORS = 100_000
    MAX_APPS = 1_000_000
    MAX_KEYS = 100_000
    """Operators, revoked keys, signers' sequence numbers, banned and draining nodes."""
    MAX_LAST_SEEN = 2 * MAX_VALIDATORS
    """Validators and the nodes that left but are not down yet; also the bound of
    ``departures`` (the nodes that left in the last 64 slots)."""
    MAX_TALLIES = MAX_CHECKPOINTS


# Lower bounds of each item's encoding (Reader.items refuses counts that cannot fit).
CHECKPOINT_SIZE = 8 + HASH_SIZE
_MIN_TALLY_SIZE = CHECKPOINT_SIZE + 4


# --- shared helpers --------------------------------------------------------------------


def get_malformed_error(detail: str) -> DecodeError:
    return DecodeError(RejectReason.MALFORMED, detail)


def write_optional(w: Writer, value: T | None, write: Callable[[Writer, T], None]) -> None:
    w.boolean(value is not None)
    if value is not None:
        write(w, value)


def read_optional(r: Reader, read: Callable[[Reader], T]) -> T | None:
    return read(r) if r.boolean() else None


def write_node(w: Writer, node: bytes) -> None:
    w.fixed(node, HASH_SIZE)


def read_node(r: Reader) -> NodeId:
    return NodeId(r.fixed(HASH_SIZE))


def read_slot(r: Reader) -> Slot:
    return Slot(r.u64())


def _read_key(r: Reader) -> bytes:
    return r.fixed(PUBLIC_KEY_SIZE)


def write_optional_key(w: Writer, value: bytes, size: int) -> None:
    """Empty, or exactly ``size`` bytes (the encoder never writes what decoding refuses)."""
    if value and len(value) != size:
        raise ValueError(f"expected 0 or {size} bytes, got {len(value)}")
    w.var_bytes(value)


def read_optional_key(r: Reader, size: int, what: str) -> bytes:
    """Empty, or exactly ``size`` bytes."""
    value = r.var_bytes(size)
    if value and len(value) != size:
        raise DecodeError(RejectReason.BAD_LENGTH, what)
    return value


def _check_increasing(keys: Sequence[bytes], what: str) -> None:
    """Canonical order: each key strictly after the previous one (sorted, unique)."""
    if any(before >= after for before, after in pairwise(keys)):
        raise get_malformed_error(f"{what}: keys not strictly increasing")


def _checkpoint_key(c: Checkpoint) -> bytes:
    """Orders as ``(epoch, block)``: a big-endian epoch, then the 32-byte hash."""
    return struct.pack(">Q", c.epoch) + bytes(c.block)


# --- authority -------------------------------------------------------------------------


def _write_key(w: Writer, key: bytes) -> None:
    w.fixed(key, PUBLIC_KEY_SIZE)


def _write_sequence(w: Writer, entry: tuple[bytes, int]) -> None:
    _write_key(w, entry[0])
    w.u64(entry[1])


def write_authority(w: Writer, auth: Authority) -> None:
    write_optional_key(w, auth.admin_key, PUBLIC_KEY_SIZE)
    w.items(auth.operators, _write_key)
    w.items(auth.revoked, _write_key)
    w.items(auth.sequences, _write_sequence)
    w.items(auth.banned, write_node)
    w.items(auth.draining, write_node)
    w.items(auth.revoked_enrollments, write_node)


def read_authority(r: Reader) -> Authority:
    admin_key = read_optional_key(r, PUBLIC_KEY_SIZE, "admin key")
    keys, size = StateLimits.MAX_KEYS, PUBLIC_KEY_SIZE
    operators = tuple(r.items(keys, size, _read_key))
    revoked = tuple(r.items(keys, size, _read_key))
    sequences = tuple(r.items(keys, size + 8, lambda x: (_read_key(x), x.u64())))
    banned = tuple(r.items(keys, HASH_SIZE, read_node))
    draining = tuple(r.items(keys, HASH_SIZE, read_node))
    tokens = tuple(bytes(t) for t in r.items(keys, HASH_SIZE, read_node))
    return Authority(admin_key, operators, revoked, sequences, banned, draining, tokens)


# --- mappings --------------------------------------------------------------------------


def write_node_slots(w: Writer, slots: Mapping[NodeId, Slot]) -> None:
    """A node-to-slot map (``last_seen``, ``departures``), sorted by node."""
    # Dict keys are unique, so sorting the items sorts by node alone.
    w.table(f"{HASH_SIZE}sQ", sorted(slots.items()))


def read_node_slots(r: Reader, what: str) -> dict[NodeId, Slot]:
    pairs = r.items(
        StateLimits.MAX_LAST_SEEN, HASH_SIZE + 8, lambda x: (read_node(x), read_slot(x))
    )
    _check_increasing([node for node, _ in pairs], what)
    return dict(pairs)


def write_stall(w: Writer, stall: Stall) -> None:
    w.u64(stall.before)
    w.u64(stall.resumed)


def read_stall(r: Reader) -> Stall:
    """A chain's latest stall: none (both 0), or a block more than ``STALL_MIN_SLOTS``
    slots after its parent (the caller checks it is no later than the state's own
    slot)."""
    stall = Stall(read_slot(r), read_slot(r))
    if stall != NO_STALL and not stall.before + STALL_MIN_SLOTS < stall.resumed:
        raise get_malformed_error(f"stall {stall.before}..{stall.resumed}")
    return stall


def write_coordinates(w: Writer, coordinates: Mapping[NodeId, Coordinate]) -> None:
    rows = [(node, c.x_us, c.y_us) for node, c in sorted(coordinates.items())]
    w.table(f"{HASH_SIZE}sii", rows)


def read_coordinates(r: Reader) -> dict[NodeId, Coordinate]:
    pairs = r.items(
        StateLimits.MAX_VALIDATORS,
        HASH_SIZE + 8,
        lambda x: (read_node(x), Coordinate(x.i32(), x.i32())),
    )
    _check_increasing([node for node, _ in pairs], "coordinates")
    return dict(pairs)


def write_tallies(w: Writer, tallies: Mapping[Checkpoint, frozenset[NodeId]]) -> None:
    w.u32(len(tallies))
    for target in sorted(tallies, key=_checkpoint_key):
        write_checkpoint(w, target)
        w.items(sorted(tallies[target], key=bytes), write_node)


def _read_voters(r: Reader) -> frozenset[NodeId]:
    nodes = r.items(StateLimits.MAX_VALIDATORS, HASH_SIZE, read_node)
    _check_increasing(nodes, "tally")
    return frozenset(nodes)


def read_tallies(r: Reader) -> dict[Checkpoint, frozenset[NodeId]]:
    pairs = r.items(
        StateLimits.MAX_TALLIES, _MIN_TALLY_SIZE, lambda x: (read_checkpoint(x), _read_voters(x))
    )
    _check_increasing([_checkpoint_key(target) for target, _ in pairs], "tallies")
    return dict(pairs)
