"""SHA-256 helpers and node identifiers.

Every hash edgechain commits to is SHA-256 over an explicit concatenation of byte
strings; callers spell out the layout (fixed-width fields, big- or little-endian as the
caller's docstring says) so that no length ambiguity can arise.
"""

from __future__ import annotations

import hashlib

from edgechain.types import PUBLIC_KEY_SIZE, NodeId, PublicKey


def sha256(*parts: bytes) -> bytes:
    """SHA-256 of ``parts`` concatenated in order (no separators, no length prefixes)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def compute_node_id(public_key: PublicKey) -> NodeId:
    """``NodeId`` = SHA-256 of the 48-byte compressed BLS public key (see ``types.NodeId``).

    Raises ``ValueError`` on a key of the wrong length: a node id is only ever computed
    from a key that has already been decoded, so a bad length is a local bug.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return NodeId(sha256(public_key))
