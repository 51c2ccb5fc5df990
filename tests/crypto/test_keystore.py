"""Key file: round trip, atomic 0600 writes, and a KeystoreError for every kind of damage."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from edgechain.crypto import bls, keystore
from edgechain.crypto.hashing import sha256
from edgechain.crypto.keystore import (
    FORMAT,
    MAX_FILE_SIZE,
    create_keystore,
    decode_keystore,
    encode_keystore,
    load_keystore,
    load_or_create_keystore,
    save_keystore,
)
from edgechain.errors import KeystoreError
from edgechain.types import SecretKey

SK = bls.keygen(b"keystore test key material......!")
OTHER_SK = bls.keygen(b"another keystore test key.......!")


def write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def document(sk: SecretKey = SK) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(encode_keystore(sk))
    return loaded


def with_checksum(doc: dict[str, str]) -> bytes:
    """Re-sign the checksum so that only the deeper checks can catch the damage."""
    doc = dict(doc)
    doc["checksum"] = sha256(
        FORMAT.encode(), bytes.fromhex(doc["sk"]), bytes.fromhex(doc["pk"])
    ).hex()
    return json.dumps(doc).encode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    assert load_keystore(path) == SK
    assert mode_of(path) == 0o600


def test_format(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    doc = json.loads(path.read_text())
    assert set(doc) == {"format", "sk", "pk", "checksum"}
    assert doc["format"] == "edgechain-key/1"
    assert int(doc["sk"], 16) == SK and len(doc["sk"]) == 64
    assert bytes.fromhex(doc["pk"]) == bls.sk_to_pk(SK)
    assert bytes.fromhex(doc["checksum"]) == sha256(
        b"edgechain-key/1", SK.to_bytes(32, "big"), bls.sk_to_pk(SK)
    )


def test_create_and_load(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    sk = create_keystore(path)
    assert 0 < sk < bls.CURVE_ORDER
    assert load_keystore(path) == sk
    assert mode_of(path) == 0o600
    assert create_keystore(tmp_path / "other.key") != sk


def test_create_does_not_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path)
    assert load_keystore(path) == SK


def test_save_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    save_keystore(path, OTHER_SK)
    create_keystore(tmp_path / "fresh.key")
    assert load_keystore(path) == OTHER_SK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.key", "node.key"]


def test_mode_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        save_keystore(tmp_path / "a.key", SK)
        create_keystore(tmp_path / "b.key")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "a.key") == 0o600
    assert mode_of(tmp_path / "b.key") == 0o600


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    sk = load_or_create_keystore(path)
    assert load_or_create_keystore(path) == sk
    assert load_keystore(str(path)) == sk


def test_load_or_create_loses_a_creation_race_gracefully(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.key"

    def other_process_wins(target: object) -> SecretKey:
        save_keystore(path, OTHER_SK)  # the other process's key lands first
        raise KeystoreError(f"{path}: keystore already exists, not overwriting")

    monkeypatch.setattr(keystore, "create_keystore", other_process_wins)
    assert load_or_create_keystore(path) == OTHER_SK


def test_load_or_create_never_replaces_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write(path, b"garbage")
    with pytest.raises(KeystoreError):
        load_or_create_keystore(path)
    assert path.read_bytes() == b"garbage"


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="not found"):
        load_keystore(tmp_path / "absent.key")


def test_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot write"):
        save_keystore(tmp_path / "no-such-dir" / "node.key", SK)
    with pytest.raises(KeystoreError):
        create_keystore(tmp_path / "no-such-dir" / "node.key")


def test_invalid_secret_refused_on_save(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError):
        save_keystore(tmp_path / "node.key", SecretKey(0))
    with pytest.raises(KeystoreError):
        save_keystore(tmp_path / "node.key", SecretKey(bls.CURVE_ORDER))


def _flip_hex_digit(doc: dict[str, str], member: str) -> bytes:
    doc = dict(doc)
    value = doc[member]
    doc[member] = ("1" if value[0] == "0" else "0") + value[1:]
    return json.dumps(doc).encode()


def _replace(doc: dict[str, str], **changes: object) -> bytes:
    return json.dumps({**doc, **changes}).encode()


def _without(doc: dict[str, str], member: str) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if k != member}).encode()


DAMAGE: dict[str, tuple[Callable[[dict[str, str]], bytes], str]] = {
    "empty": (lambda d: b"", "not JSON"),
    "truncated": (lambda d: encode_keystore(SK)[: len(encode_keystore(SK)) // 2], "not JSON"),
    "truncated-by-one": (lambda d: encode_keystore(SK).rstrip()[:-1], "not JSON"),
    "binary": (lambda d: bytes(range(256)), "not JSON"),
    "not-utf8": (lambda d: b'{"format": "\xff"}', "not JSON"),
    "json-list": (lambda d: b"[1, 2, 3]", "not a JSON object"),
    "json-number": (lambda d: b"42", "not a JSON object"),
    "foreign-json": (lambda d: b'{"crypto": {"cipher": "aes-128-ctr"}, "version": 4}', "format"),
    "wrong-version": (lambda d: _replace(d, format="edgechain-key/2"), "format"),
    "format-not-string": (lambda d: _replace(d, format=1), "format"),
    "extra-member": (lambda d: _replace(d, note="hello"), "members"),
    "missing-pk": (lambda d: _without(d, "pk"), "members"),
    "missing-checksum": (lambda d: _without(d, "checksum"), "members"),
    "sk-flipped": (lambda d: _flip_hex_digit(d, "sk"), "checksum"),
    "pk-flipped": (lambda d: _flip_hex_digit(d, "pk"), "checksum"),
    "checksum-flipped": (lambda d: _flip_hex_digit(d, "checksum"), "checksum"),
    "sk-not-hex": (lambda d: _replace(d, sk="zz" * 32), "hexadecimal"),
    "sk-short": (lambda d: _replace(d, sk=d["sk"][:-2]), "hex digits"),
    "sk-long": (lambda d: _replace(d, sk=d["sk"] + "00"), "hex digits"),
    "sk-number": (lambda d: _replace(d, sk=12345), "hex digits"),
    "pk-short": (lambda d: _replace(d, pk=d["pk"][:-2]), "hex digits"),
    "checksum-null": (lambda d: _replace(d, checksum=None), "hex digits"),
    "pair-mismatch": (
        lambda d: with_checksum({**d, "pk": bls.sk_to_pk(OTHER_SK).hex()}),
        "does not match",
    ),
    "sk-zero": (lambda d: with_checksum({**d, "sk": "00" * 32}), "out of range"),
    "sk-order": (
        lambda d: with_checksum({**d, "sk": bls.CURVE_ORDER.to_bytes(32, "big").hex()}),
        "out of range",
    ),
    "sk-max": (lambda d: with_checksum({**d, "sk": "ff" * 32}), "out of range"),
    "oversized": (lambda d: b" " * (MAX_FILE_SIZE + 1), "not an edgechain keystore"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_gives_keystore_error(tmp_path: Path, case: str) -> None:
    make, message = DAMAGE[case]
    path = tmp_path / "node.key"
    write(path, make(document()))
    with pytest.raises(KeystoreError, match=message) as info:
        load_keystore(path)
    assert str(path) in str(info.value)
    assert SK.to_bytes(32, "big").hex() not in str(info.value)  # never leak the secret


@pytest.mark.parametrize("case", sorted(set(DAMAGE) - {"oversized"}))  # size: a file check
def test_decode_damage_without_a_file(case: str) -> None:
    make, message = DAMAGE[case]
    data = make(document())
    with pytest.raises(KeystoreError, match=message):
        decode_keystore(data)


def test_decode_roundtrip() -> None:
    assert decode_keystore(encode_keystore(SK)) == SK
    assert decode_keystore(json.dumps(document()).encode()) == SK  # layout-insensitive


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o700 | 0o007])
def test_exposed_permissions_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    path.chmod(mode)
    with pytest.raises(KeystoreError, match="permissions"):
        load_keystore(path)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_permissions_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_keystore(path, SK)
    path.chmod(mode)
    assert load_keystore(path) == SK


def test_directory_is_not_a_keystore(tmp_path: Path) -> None:
    directory = tmp_path / "node.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeystoreError, match="regular file"):
        load_keystore(directory)


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "node.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeystoreError, match="regular file"):
        load_keystore(fifo)


def test_symlink_to_valid_key_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.key"
    save_keystore(target, SK)
    link = tmp_path / "node.key"
    link.symlink_to(target)
    assert load_keystore(link) == SK
    assert load_or_create_keystore(link) == SK


def test_dangling_symlink_is_not_replaced(tmp_path: Path) -> None:
    link = tmp_path / "node.key"
    link.symlink_to(tmp_path / "gone.key")
    with pytest.raises(KeystoreError, match="not found"):
        load_or_create_keystore(link)
