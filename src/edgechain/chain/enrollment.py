"""Enrollment tokens: one admin-signed credential that admits any number of new nodes
(issue 16, item 4).

A ticket (``compute_ticket_message``) admits one public key, so the admin must see each
node's key before it can join: fine for a hand-built fleet, not for identical replicas
that make their keys on first start (a Swarm service, a Kubernetes DaemonSet). An
enrollment token admits whoever presents it, until it expires or the admin revokes it:

* ``token_id`` (32 random bytes) names it; ``REVOKE_ENROLLMENT`` puts the id in the
  authority's ``revoked_enrollments``, and no block includes a node with it after that;
* ``expires_slot``: no block after that slot includes a node with it (slots, not clock
  time, so every validator decides alike);
* ``signature``: the admin's BLS signature over
  ``SHA-256("edgechain/enrollment/v1" || str(chain_id) || token_id || u64 expires_slot)``.

It travels in an inclusion request's ``ticket`` field (136 bytes: id, expiry, signature;
a key ticket is a bare 96-byte signature), and as 272 hex digits in a secret. A copied
token admits nodes the admin did not pick: that is what it is for, so it is scoped in
time and revocable, and each node it admitted is on chain for the admin to exclude.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from edgechain.crypto import bls
from edgechain.types import HASH_SIZE, SIGNATURE_SIZE, SecretKey, Signature

TOKEN_ID_SIZE = HASH_SIZE
TOKEN_SIZE = TOKEN_ID_SIZE + 8 + SIGNATURE_SIZE
"""136 bytes: what an inclusion request's ``ticket`` holds for a token."""


@dataclass(frozen=True)
class EnrollmentToken:
    token_id: bytes
    expires_slot: int
    signature: Signature

    def encode(self) -> bytes:
        return self.token_id + struct.pack(">Q", self.expires_slot) + self.signature


def compute_enrollment_message(chain_id: str, token_id: bytes, expires_slot: int) -> bytes:
    name = chain_id.encode()
    body = struct.pack(">H", len(name)) + name + token_id + struct.pack(">Q", expires_slot)
    return hashlib.sha256(b"edgechain/enrollment/v1" + body).digest()


def make_enrollment_token(
    admin_sk: SecretKey, chain_id: str, token_id: bytes, expires_slot: int
) -> EnrollmentToken:
    if len(token_id) != TOKEN_ID_SIZE:
        raise ValueError(f"a token id has {TOKEN_ID_SIZE} bytes")
    message = compute_enrollment_message(chain_id, token_id, expires_slot)
    return EnrollmentToken(token_id, expires_slot, bls.sign(admin_sk, message))


def decode_enrollment_token(data: bytes) -> EnrollmentToken:
    """The token in ``data`` (exactly ``TOKEN_SIZE`` bytes); ValueError otherwise."""
    if len(data) != TOKEN_SIZE:
        raise ValueError(f"an enrollment token has {TOKEN_SIZE} bytes, not {len(data)}")
    expires = struct.unpack(">Q", data[TOKEN_ID_SIZE : TOKEN_ID_SIZE + 8])[0]
    return EnrollmentToken(data[:TOKEN_ID_SIZE], expires, Signature(data[TOKEN_ID_SIZE + 8 :]))


def is_enrollment_token(ticket: bytes) -> bool:
    """Does an inclusion request's ``ticket`` hold a token (not a key ticket)?"""
    return len(ticket) == TOKEN_SIZE
