"""Who may read an app's output from this node (``GET /apps/{app}/log``).

Either a local caller holding the node's API token (``Authorization: Bearer``), or an
operator of the chain: ``X-Edgechain-Key`` (its BLS public key, hex),
``X-Edgechain-Time`` (epoch ms) and ``X-Edgechain-Signature`` (hex) over
``chain/read_auth.compute_log_read_message`` (why, and what a replay can do: there).
Every refusal names its header: 401 for a missing, malformed, stale or bad signature,
403 for a key that may not run apps on this chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgechain.api.auth import is_authorized
from edgechain.api.schema import SchemaError, get_hex
from edgechain.api.server import HttpError
from edgechain.chain import read_auth
from edgechain.chain.authority import is_operator, is_revoked
from edgechain.chain.read_auth import READ_WINDOW_MS, compute_log_read_message, is_read_fresh
from edgechain.consensus.state import BlockState
from edgechain.crypto import bls
from edgechain.types import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, AppId

# The server gives header names in lower case (api/server.py).
KEY_HEADER = read_auth.KEY_HEADER.lower()
TIME_HEADER = read_auth.TIME_HEADER.lower()
SIGNATURE_HEADER = read_auth.SIGNATURE_HEADER.lower()


def _refuse(status: int, message: str, header: str) -> HttpError:
    return HttpError(
        status, message, header, (("WWW-Authenticate", 'Edgechain-Operator realm="edgechain"'),)
    )


def check_log_read(
    headers: Mapping[str, str],
    token: str,
    state: BlockState,
    chain_id: str,
    app: AppId,
    now_ms: int,
) -> None:
    """Return when the request may read ``app``'s output; ``HttpError`` otherwise."""
    if is_authorized(headers, token):
        return
    if KEY_HEADER not in headers:
        raise _refuse(
            401,
            "reading an app's output needs an operator's signature (X-Edgechain-Key, "
            "X-Edgechain-Time, X-Edgechain-Signature: edgechain apps logs) or "
            "Authorization: Bearer <the node's api.token>",
            KEY_HEADER,
        )
    try:
        key = get_hex(headers.get(KEY_HEADER, ""), KEY_HEADER, sizes=(PUBLIC_KEY_SIZE,))
        signature = get_hex(
            headers.get(SIGNATURE_HEADER, ""), SIGNATURE_HEADER, sizes=(SIGNATURE_SIZE,)
        )
    except SchemaError as exc:
        raise _refuse(401, exc.message, exc.field) from None
    text = headers.get(TIME_HEADER, "")
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise _refuse(401, f"expected epoch milliseconds, got {text[:32]!r}", TIME_HEADER)
    time_ms = int(text)
    if not is_read_fresh(time_ms, now_ms):
        raise _refuse(
            401,
            f"signed at {time_ms}, more than {READ_WINDOW_MS // 1000} s from this node's "
            f"clock ({now_ms}): check the clocks",
            TIME_HEADER,
        )
    auth = state.authority
    if not is_operator(auth, key) or is_revoked(auth, key):
        raise _refuse(403, "this key may not run apps on this chain", KEY_HEADER)
    if not bls.verify(key, compute_log_read_message(chain_id, app, time_ms), signature):
        raise _refuse(401, "the signature does not verify", SIGNATURE_HEADER)
