"""The node's API token: local callers prove they may act with the node's operator key.

``<data_dir>/api.token`` holds 64 hex characters, is created with mode 0600 on the
first start and kept afterwards; a script on the device reads it and sends
``Authorization: Bearer <token>``. A token file readable by group or others is refused
(like a keystore): anyone who can read it can run apps on the fleet.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from edgechain.crypto.keystore import check_private_file
from edgechain.errors import LocalError

TOKEN_FILE = "api.token"
API_FILE = "api.json"
"""In the data directory beside the token: the URL of the node's API, written once it
runs (``node_daemon.py``), so local tools holding the token find it."""
TOKEN_BYTES = 32


class TokenError(LocalError):
    """The token file exists but cannot be used."""


def read_token(path: Path) -> str:
    """The token in ``path`` (owner-only, 64 hex digits); TokenError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise TokenError(f"{path}: cannot open the API token: {exc.strerror}") from None
    try:
        check_private_file(fd, path, "API token", TokenError)
        data = os.read(fd, 4 * TOKEN_BYTES)
    finally:
        os.close(fd)
    token = data.decode("ascii", errors="replace").strip()
    if len(token) != 2 * TOKEN_BYTES or any(c not in "0123456789abcdef" for c in token):
        raise TokenError(f"{path}: not an API token (expected {2 * TOKEN_BYTES} hex digits)")
    return token


def load_or_create_token(data_dir: Path) -> str:
    """The token in ``data_dir/api.token``, created (0600) if there is none yet.

    Written to a temporary file and linked into place, so a crash never leaves an empty
    token file behind, and two processes starting at once end up with the same token.
    """
    path = data_dir / TOKEN_FILE
    if os.path.lexists(path):
        return read_token(path)
    token = secrets.token_hex(TOKEN_BYTES)
    temporary = data_dir / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return read_token(path)
    finally:
        temporary.unlink()
    return token


def is_authorized(headers: Mapping[str, str], token: str) -> bool:
    """Does ``Authorization: Bearer <token>`` carry ``token``? (constant-time compare)"""
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("latin-1"), token.encode("ascii"))
