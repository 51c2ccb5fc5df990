"""Canonical encoding of a block's migration plan entries (``tests/vectors/README.md``),
strict about which actions carry an origin."""

from __future__ import annotations

from edgechain.chain.encoding_primitives import (
    Reader,
    Writer,
    check_enum_value,
    decode_with,
    encode_with,
)
from edgechain.chain.model import PlanAction, PlanEntry
from edgechain.errors import DecodeError, RejectReason
from edgechain.types import HASH_SIZE, AppId, NodeId

MIN_PLAN_ENTRY_SIZE = 1 + HASH_SIZE + 4 + HASH_SIZE


def write_plan_entry(w: Writer, e: PlanEntry) -> None:
    w.u8(int(e.action))
    w.fixed(e.app, HASH_SIZE)
    w.var_bytes(e.origin)
    w.fixed(e.destination, HASH_SIZE)


def read_plan_entry(r: Reader) -> PlanEntry:
    action = PlanAction(check_enum_value(r.u8(), PlanAction))
    app = AppId(r.fixed(HASH_SIZE))
    origin = r.var_bytes(HASH_SIZE)
    if action is PlanAction.PLACE and origin:
        raise DecodeError(RejectReason.BAD_PLAN_ENTRY, "PLACE with an origin")
    if action is not PlanAction.PLACE and len(origin) != HASH_SIZE:
        raise DecodeError(RejectReason.BAD_PLAN_ENTRY, f"{action.name} without a 32-byte origin")
    return PlanEntry(action, app, origin, NodeId(r.fixed(HASH_SIZE)))


def encode_plan_entry(e: PlanEntry) -> bytes:
    return encode_with(e, write_plan_entry)


def decode_plan_entry(data: bytes) -> PlanEntry:
    return decode_with(data, read_plan_entry)
