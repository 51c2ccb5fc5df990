"""Per-peer session keys: authenticate a peer's datagrams with a MAC, not a pairing.

Issue 13: every DHT message was BLS-signed by its sender and verified by its receiver,
about 4 ms of CPU per message on each side on a small device (a hash to G2, two
pairings), and the bootstrap node answers every joining node: in a 100-node join it
spent most of its loop on envelope signatures and dropped datagrams, and nodes that
never heard back never got the genesis.

A pair of nodes shares a key without any exchange: static Diffie-Hellman on their BLS
keys in G1 (``bls.compute_shared_point``: ``sk_a * pk_b = sk_b * pk_a``), hashed with
both node ids into a 32-byte key. A message from ``a`` to ``b`` then carries
``HMAC-SHA256(key, domain || recipient id || signing root)`` truncated to 16 bytes in
place of the 96-byte signature, which only ``a`` and ``b`` can compute: the receiver
checks it in microseconds, and the scalar multiplication that derives the key is paid
once per peer (:class:`SessionKeys` keeps the keys). Why this is sound:

* Only holders of ``sk_a`` or ``sk_b`` can compute the point (computational
  Diffie-Hellman in G1 of BLS12-381); the key is a hash of it, so a MAC under it proves
  the message comes from the other end of the pair (we never MAC as ``a`` to ourselves).
* The peer's key is KeyValidated (on the curve, in the subgroup, not the identity)
  before the multiplication, so no invalid-curve or small-subgroup point can make the
  result reveal anything about ``sk``.
* The recipient's id is under the MAC, so a message cannot be reflected to a third
  node; a replay to the same recipient is what a replayed signed message already was
  (the DHT's endpoint proof, ``network/dht.py``, makes replays harmless).
* The BLS key also signs (in G2, under its own domain tags); a G1 scalar multiplication
  by a validated point exposes ``sk * P``, which a hash then hides.

A node MACs only to peers whose public key it knows (a verified earlier message, the
validator set, the configured bootstrap key); to anyone else it still signs, and every
receiver accepts both forms.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.types import NodeId, PublicKey, SecretKey

MAC_SIZE = 16
SESSION_DOMAIN = b"edgechain/session/v1"
MAC_DOMAIN = b"edgechain/session-mac/v1"
MAX_SESSIONS = 4096
"""Keys kept (least recently used dropped first): a derivation costs one scalar
multiplication (~0.3 ms), so even a node with thousands of peers re-derives rarely."""
MAX_PEER_KEYS = 16384


def compute_session_key(sk: SecretKey, own_id: NodeId, peer_pk: PublicKey) -> bytes:
    """The key ``own_id`` shares with ``peer_pk``'s node (the same at both ends)."""
    shared = bls.compute_shared_point(sk, peer_pk)
    ids = sorted((bytes(own_id), bytes(compute_node_id(peer_pk))))
    return hashlib.sha256(SESSION_DOMAIN + shared + ids[0] + ids[1]).digest()


def compute_mac(key: bytes, recipient: bytes, root: bytes) -> bytes:
    return hmac.new(key, MAC_DOMAIN + recipient + root, hashlib.sha256).digest()[:MAC_SIZE]


class SessionKeys:
    """One node's session keys by peer public key, and the public keys it has learned
    by node id (to MAC what it sends)."""

    def __init__(self, sk: SecretKey, own_pk: PublicKey) -> None:
        self._sk = sk
        self.own_pk = own_pk
        self.node_id = compute_node_id(own_pk)
        self._keys: OrderedDict[bytes, bytes] = OrderedDict()
        self._peer_keys: OrderedDict[bytes, PublicKey] = OrderedDict()
        self.derivations = 0
        self.macs_verified = 0

    def get_key(self, peer_pk: PublicKey) -> bytes:
        """Raises :class:`~edgechain.crypto.bls.BlsError` for an invalid key."""
        key = self._keys.get(bytes(peer_pk))
        if key is not None:
            self._keys.move_to_end(bytes(peer_pk))
            return key
        key = compute_session_key(self._sk, self.node_id, peer_pk)
        self.derivations += 1
        self._keys[bytes(peer_pk)] = key
        if len(self._keys) > MAX_SESSIONS:
            self._keys.popitem(last=False)
        return key

    def learn(self, peer_pk: bytes) -> None:
        """``peer_pk`` is a key we trust for its node id (it authenticated a message, or
        the configuration names it). An invalid key is not kept."""
        node_id = bytes(compute_node_id(PublicKey(bytes(peer_pk))))
        if node_id == self.node_id or not bls.is_public_key_valid(peer_pk):
            return
        self._peer_keys[node_id] = PublicKey(bytes(peer_pk))
        self._peer_keys.move_to_end(node_id)
        if len(self._peer_keys) > MAX_PEER_KEYS:
            self._peer_keys.popitem(last=False)

    def get_peer_key(self, node_id: bytes) -> PublicKey | None:
        return self._peer_keys.get(bytes(node_id))

    def is_known(self, node_id: bytes) -> bool:
        return bytes(node_id) in self._peer_keys
