"""The DHT's settings (``network/dht.py``): Kademlia's k, alpha and reply size, and the
timeouts, bounds and intervals of this implementation."""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.network.dht_table import (
    DEFAULT_ALPHA,
    DEFAULT_ATTEMPTS,
    DEFAULT_K,
    DEFAULT_REPLY_LIMIT,
)


@dataclass(frozen=True)
class DhtConfig:
    k: int = DEFAULT_K
    alpha: int = DEFAULT_ALPHA
    attempts: int = DEFAULT_ATTEMPTS
    reply_limit: int = DEFAULT_REPLY_LIMIT
    request_timeout_ms: int = 2_000
    """The shortest wait for an answer; it grows with the measured round trips
    (``dht_requests.RequestTimer``) up to ``max_request_timeout_ms``."""
    max_request_timeout_ms: int = 10_000
    refresh_interval_ms: int = 15 * 60_000
    """Kademlia refreshes hourly; edge networks churn more (devices sleep, move)."""
    max_pending: int = 1_024
    """Outstanding requests; beyond it, requests from unknown senders are not pinged back."""
    known_addresses: int = 4_096
    """Verified contacts remembered for ``get_address`` beyond the routing table."""
    rejoin_max_ms: int = 60_000
    """Longest wait before a join that no seed answered is tried again (see
    :meth:`DhtNode._on_joined`); the first wait is about ``request_timeout_ms``."""
