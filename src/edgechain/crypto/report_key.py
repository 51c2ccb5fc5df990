"""Ed25519 report keys: what a node signs its per-slot resource report with.

Every validator verifies every report a block carries, and most of them see the block
cold (a report reaches only its cluster's representative and the producer before it is
in a block). A BLS signature costs a hash to G2 and a pairing, about 2 ms here, so a
100-report block cost every node 200 ms and 100 nodes on one host 20 CPU-seconds per
block (issue 13). An Ed25519 verification (libsodium through PyNaCl) costs about
0.1 ms.

Binding. A node's report key is derived from its BLS secret key (so no second secret is
stored) and published inside its inclusion request, whose BLS signature covers it: the
chain learns the key together with the identity, and a key on chain is the one that
identity chose. Nothing aggregates report signatures, so Ed25519 needs no proof of
possession; a node that registers another node's report key gains nothing, because a
report's signed bytes name its node (``compute_report_signing_root``) and only the key's
owner can sign for that name. libsodium's verification is strict (canonical encodings,
no small-order keys, ``S < L``), so a valid signature cannot be malleated into a second
valid report under a different digest.
"""

from __future__ import annotations

import functools
import hashlib

from nacl import bindings
from nacl.exceptions import BadSignatureError

from edgechain.types import REPORT_KEY_SIZE, REPORT_SIGNATURE_SIZE, ReportSignature, SecretKey

_SEED_DOMAIN = b"edgechain/report-key/v1"


@functools.lru_cache(maxsize=4096)
def _get_keypair(sk: SecretKey) -> tuple[bytes, bytes]:
    """(public key, libsodium secret key) for the BLS secret ``sk``; cached because a
    node signs a report every slot (and the simulator signs for all its nodes)."""
    seed = hashlib.sha256(_SEED_DOMAIN + sk.to_bytes(32, "big")).digest()
    public, secret = bindings.crypto_sign_seed_keypair(seed)
    return public, secret


def get_report_public_key(sk: SecretKey) -> bytes:
    """The 32-byte Ed25519 report key of the node whose BLS secret key is ``sk``."""
    return _get_keypair(sk)[0]


def sign_report_message(sk: SecretKey, message: bytes) -> ReportSignature:
    """A 64-byte Ed25519 signature over ``message`` under ``sk``'s report key."""
    signed = bindings.crypto_sign(message, _get_keypair(sk)[1])
    return ReportSignature(bytes(signed[:REPORT_SIGNATURE_SIZE]))


def is_report_key_valid(public_key: bytes) -> bool:
    """A canonical point of the main subgroup, not of small order (libsodium's check)."""
    return len(public_key) == REPORT_KEY_SIZE and bool(
        bindings.crypto_core_ed25519_is_valid_point(public_key)
    )


def verify_report_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != REPORT_KEY_SIZE or len(signature) != REPORT_SIGNATURE_SIZE:
        return False
    try:
        bindings.crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True
