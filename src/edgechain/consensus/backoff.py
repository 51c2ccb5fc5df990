"""Doubling retry waits, shared by the engine's parts that ask peers again: joining
(inclusion requests, ``joining.MAX_RETRY_BACKOFF``) and sync (missing blocks,
``sync.MAX_SYNC_BACKOFF``). Pure: attempts in, milliseconds out."""

from __future__ import annotations


def get_backoff_ms(base_ms: int, attempts: int, max_factor: int) -> int:
    """The wait after ``attempts`` requests: the base until one was sent, then doubling
    with each up to ``max_factor`` times the base."""
    return base_ms * min(max_factor, 1 << max(0, attempts - 1))
