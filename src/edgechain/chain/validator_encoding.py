"""Canonical encoding of validator-set changes: inclusion requests, exits and address
records, with what each one's signer signs (``tests/vectors/README.md``)."""

from __future__ import annotations

import hashlib

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.encoding_primitives import (
    Reader,
    Writer,
    compute_signing_root,
    decode_with,
    encode_with,
)
from edgechain.chain.model import AddressRecord, ExitRequest, InclusionRequest
from edgechain.types import (
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    REPORT_KEY_SIZE,
    SIGNATURE_SIZE,
    NodeId,
    PublicKey,
    Signature,
    Slot,
)

# --- inclusions ------------------------------------------------------------------------


def write_inclusion_body(w: Writer, req: InclusionRequest) -> None:
    w.fixed(req.public_key, PUBLIC_KEY_SIZE)
    w.fixed(req.pop, SIGNATURE_SIZE)
    w.fixed(req.report_key, REPORT_KEY_SIZE)
    w.string(req.address)
    w.items(req.labels, Writer.string)
    w.var_bytes(req.ticket)
    w.u64(req.nonce)


def write_inclusion(w: Writer, req: InclusionRequest) -> None:
    write_inclusion_body(w, req)
    w.fixed(req.signature, SIGNATURE_SIZE)


def read_inclusion(r: Reader) -> InclusionRequest:
    pk = PublicKey(r.fixed(PUBLIC_KEY_SIZE))
    pop = Signature(r.fixed(SIGNATURE_SIZE))
    report_key = r.fixed(REPORT_KEY_SIZE)
    address = r.string(Limits.MAX_SHORT_STR)
    labels = tuple(r.items(Limits.MAX_LABELS, 2, lambda x: x.string(Limits.MAX_SHORT_STR)))
    ticket = r.var_bytes(Limits.MAX_TICKET_BYTES)
    nonce = r.u64()
    signature = Signature(r.fixed(SIGNATURE_SIZE))
    return InclusionRequest(pk, pop, address, labels, ticket, signature, nonce, report_key)


MIN_INCLUSION_SIZE = PUBLIC_KEY_SIZE + 2 * SIGNATURE_SIZE + REPORT_KEY_SIZE + 2 + 4 + 4 + 8


def encode_inclusion(req: InclusionRequest) -> bytes:
    return encode_with(req, write_inclusion)


def decode_inclusion(data: bytes) -> InclusionRequest:
    return decode_with(data, read_inclusion)


def compute_inclusion_signing_root(req: InclusionRequest) -> bytes:
    return compute_signing_root(b"edgechain/inclusion/v2", req, write_inclusion_body)


def compute_ticket_message(chain_id: str, public_key: bytes) -> bytes:
    """What the network admin signs to admit ``public_key`` to chain ``chain_id``."""
    w = Writer()
    w.string(chain_id)
    w.fixed(public_key, PUBLIC_KEY_SIZE)
    return hashlib.sha256(b"edgechain/ticket/v1" + w.buf).digest()


# --- exits -----------------------------------------------------------------------------


def write_exit(w: Writer, e: ExitRequest) -> None:
    w.fixed(e.node, HASH_SIZE)
    w.u64(e.slot)
    w.fixed(e.signature, SIGNATURE_SIZE)


def read_exit(r: Reader) -> ExitRequest:
    node = NodeId(r.fixed(HASH_SIZE))
    slot = Slot(r.u64())
    return ExitRequest(node, slot, Signature(r.fixed(SIGNATURE_SIZE)))


EXIT_SIZE = HASH_SIZE + 8 + SIGNATURE_SIZE


def compute_exit_signing_root(e: ExitRequest) -> bytes:
    w = Writer()
    w.fixed(e.node, HASH_SIZE)
    w.u64(e.slot)
    return hashlib.sha256(b"edgechain/exit/v1" + w.buf).digest()


# --- address records -------------------------------------------------------------------


def write_address_record(w: Writer, a: AddressRecord) -> None:
    w.fixed(a.node, HASH_SIZE)
    w.string(a.address)
    w.u64(a.slot)
    w.fixed(a.signature, SIGNATURE_SIZE)


def read_address_record(r: Reader) -> AddressRecord:
    node = NodeId(r.fixed(HASH_SIZE))
    address = r.string(Limits.MAX_SHORT_STR)
    slot = Slot(r.u64())
    return AddressRecord(node, address, slot, Signature(r.fixed(SIGNATURE_SIZE)))


MIN_ADDRESS_RECORD_SIZE = HASH_SIZE + 2 + 8 + SIGNATURE_SIZE


def compute_address_signing_root(chain_id: str, a: AddressRecord) -> bytes:
    """What a validator signs to move its address (bound to the chain, like a ticket)."""
    w = Writer()
    w.string(chain_id)
    w.fixed(a.node, HASH_SIZE)
    w.string(a.address)
    w.u64(a.slot)
    return hashlib.sha256(b"edgechain/address/v1" + w.buf).digest()
