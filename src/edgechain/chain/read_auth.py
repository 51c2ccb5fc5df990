"""What an operator signs to read an app's output from a node (``GET /apps/{app}/log``).

An app's output may hold what its owner would not publish, and a node's API may listen
beyond localhost (``--http``): reading it needs the key that may run the app. The
client (``edgechain apps logs``) signs, with its operator key, the chain, the app and
the time of the request (:func:`compute_log_read_message`); a node answers when the
key is an operator's (or the admin's) on its head chain, not revoked, the signature
verifies, and the time is within :data:`READ_WINDOW_MS` of its own clock
(:func:`is_read_fresh`). Reads change nothing, so a replay inside the window only
shows the same output again, which whoever captured the request already saw (the API
is plain HTTP). Signing the app, not the node, lets one signature ask every node of
the client's config at once.
"""

from __future__ import annotations

import hashlib

from edgechain.types import AppId

LOG_READ_DOMAIN = b"edgechain/read-log/v1"
KEY_HEADER = "X-Edgechain-Key"
"""The HTTP headers of a signed read: the operator's BLS public key (hex), the time it
signed (epoch ms) and its signature (hex). One spelling for the client, the node and the
API document."""
TIME_HEADER = "X-Edgechain-Time"
SIGNATURE_HEADER = "X-Edgechain-Signature"
READ_WINDOW_MS = 60_000
"""How far a signed read's time may be from the node's clock, either way."""
DEFAULT_TAIL_LINES = 100
"""Lines of an app's output one read returns unless asked for more or fewer."""
MAX_TAIL_LINES = 10_000
"""The most lines one read of an app's output returns (``edgechain apps logs --lines``)."""


def compute_log_read_message(chain_id: str, app: AppId, time_ms: int) -> bytes:
    """The 32 bytes an operator signs to read ``app``'s output at ``time_ms``."""
    if not 0 <= time_ms < 1 << 64:
        raise ValueError(f"time {time_ms} is not a u64")
    chain = chain_id.encode()
    return hashlib.sha256(
        LOG_READ_DOMAIN
        + len(chain).to_bytes(2, "big")
        + chain
        + bytes(app)
        + time_ms.to_bytes(8, "big")
    ).digest()


def is_read_fresh(time_ms: int, now_ms: int) -> bool:
    return abs(now_ms - time_ms) <= READ_WINDOW_MS
