"""Error types.

Following h11's split between local and remote protocol errors: a :class:`PeerError`
means *another node* sent us something invalid. It is counted, logged at debug and
never crashes the node. A :class:`LocalError` (or any other exception) is our own bug
or misconfiguration and should surface loudly.
"""

from __future__ import annotations


class EdgechainError(Exception):
    """Base of every error edgechain raises on purpose."""


class PeerError(EdgechainError):
    """Invalid input from a peer: bad encoding, signature, proof, vote or size.

    ``reason`` is a short stable code (for metrics labels and tests), ``detail`` is
    free text for logs.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(PeerError):
    """Bytes that do not decode to a well-formed message or block."""


class ValidationError(PeerError):
    """A well-formed object that breaks a protocol rule."""


class LocalError(EdgechainError):
    """Our own misuse or misconfiguration (not a peer's fault)."""


class KeystoreError(LocalError):
    """A keystore file that is missing, corrupt, truncated or not ours."""


class StoreError(LocalError):
    """The local block store is unusable."""


class StoreFullError(StoreError):
    """The file system holding the block store is full (SQLite ``SQLITE_FULL``): the
    write was rolled back, nothing of it is stored. Local, not a peer's fault; the node
    stops and comes back once space is freed (ARCHITECTURE.md, "Real node", full disk)."""
