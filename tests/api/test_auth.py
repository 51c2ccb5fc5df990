"""The API token file: created once with mode 0600, reused, refused when exposed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgechain.api.auth import TOKEN_FILE, TokenError, is_authorized, load_or_create_token


def test_created_0600_and_reused(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) == 64 and int(token, 16) >= 0
    assert load_or_create_token(tmp_path) == token
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE]  # no temporary left


def test_an_exposed_token_is_refused(tmp_path: Path) -> None:
    load_or_create_token(tmp_path)
    os.chmod(tmp_path / TOKEN_FILE, 0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        load_or_create_token(tmp_path)


@pytest.mark.parametrize("content", [b"", b"short\n", b"zz" * 32])
def test_a_damaged_token_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(TokenError):
        load_or_create_token(tmp_path)


def test_a_symlinked_token_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("ab" * 32)
    target.chmod(0o600)
    (tmp_path / TOKEN_FILE).symlink_to(target)
    with pytest.raises(TokenError):
        load_or_create_token(tmp_path)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer " + "ab" * 32, True),
        ("bearer   " + "ab" * 32 + " ", True),
        ("Bearer " + "ab" * 31, False),
        ("Basic " + "ab" * 32, False),
        ("ab" * 32, False),
        ("Bearer \u00e9", False),
        ("", False),
    ],
)
def test_bearer_header(header: str, ok: bool) -> None:
    assert is_authorized({"authorization": header}, "ab" * 32) is ok
