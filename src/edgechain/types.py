"""Domain types shared by every layer.

These are plain ``NewType`` wrappers so that a slot is never confused with a height,
nor a node id with a block hash, while costing nothing at run time.
"""

from __future__ import annotations

from typing import NewType

Slot = NewType("Slot", int)
"""Slot number since genesis; slot ``s`` starts at ``genesis_time + s * slot_duration``."""

NodeId = NewType("NodeId", bytes)
"""32 bytes: SHA-256 of the node's 48-byte compressed BLS public key."""

BlockHash = NewType("BlockHash", bytes)
"""32 bytes: SHA-256 of a block's canonical header encoding (see chain/encoding.py)."""

AppId = NewType("AppId", bytes)
"""32 bytes: SHA-256 of the canonical encoding of an application spec."""

PublicKey = NewType("PublicKey", bytes)
"""48-byte compressed G1 point (BLS12-381, proof-of-possession ciphersuite)."""

Signature = NewType("Signature", bytes)
"""96-byte compressed G2 point."""

ReportSignature = NewType("ReportSignature", bytes)
"""64-byte Ed25519 signature of a resource report (crypto/report_key.py)."""

SecretKey = NewType("SecretKey", int)
"""BLS secret scalar, 0 < sk < r."""

HASH_SIZE = 32
PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96
REPORT_KEY_SIZE = 32
REPORT_SIGNATURE_SIZE = 64

ZERO_HASH = BlockHash(b"\x00" * HASH_SIZE)
