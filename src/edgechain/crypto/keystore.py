"""The node's key file: one BLS secret key, stored so that damage is detected.

Format ``edgechain-key/1``: a UTF-8 JSON object with exactly these members::

    {
      "format":   "edgechain-key/1",
      "sk":       64 hex digits: the secret scalar, 32 bytes big-endian, 0 < sk < r,
      "pk":       96 hex digits: the 48-byte compressed G1 public key of sk,
      "checksum": 64 hex digits: SHA-256(b"edgechain-key/1" || sk (32 bytes) || pk (48))
    }

Hex digits are lower case; the file is at most ``MAX_FILE_SIZE`` bytes. Loading checks,
in order: the file exists and is a regular file, its permissions grant nothing to group
or others, its size, JSON syntax, the member set and format tag, hex and lengths, the
checksum, the scalar range, and that ``pk`` is the public key of ``sk``. Any failure
raises :class:`~edgechain.errors.KeystoreError` with a message naming the file and the
problem (never the secret).

Permissions: a key file readable by group or others is *refused*, like ssh refuses a
private key that is: the node's identity may already be compromised, and the operator
should know. Fix with ``chmod 600`` (for a Kubernetes secret volume, ``defaultMode:
0400``).

Writes are atomic: a temporary file created with mode 0600 in the same directory is
written, fsynced and renamed over the target, then the directory is fsynced; a crash
leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

from edgechain.crypto import bls
from edgechain.crypto.hashing import sha256
from edgechain.errors import KeystoreError, LocalError
from edgechain.types import PUBLIC_KEY_SIZE, SecretKey

FORMAT = "edgechain-key/1"
MAX_FILE_SIZE = 4096
SECRET_KEY_SIZE = 32
FILE_MODE = 0o600
_IKM_SIZE = 32
_MEMBERS = frozenset({"format", "sk", "pk", "checksum"})

PathLike = str | os.PathLike[str]


def _checksum(sk_bytes: bytes, pk: bytes) -> bytes:
    return sha256(FORMAT.encode(), sk_bytes, pk)


def encode_keystore(sk: SecretKey) -> bytes:
    """The file contents for ``sk`` in format ``edgechain-key/1``."""
    try:
        pk = bls.sk_to_pk(sk)
    except LocalError as exc:
        raise KeystoreError(f"cannot store an invalid secret key: {exc}") from None
    sk_bytes = int(sk).to_bytes(SECRET_KEY_SIZE, "big")
    document = {
        "format": FORMAT,
        "sk": sk_bytes.hex(),
        "pk": bytes(pk).hex(),
        "checksum": _checksum(sk_bytes, pk).hex(),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _hex_field(document: dict[str, object], name: str, size: int, where: str) -> bytes:
    value = document[name]
    if not isinstance(value, str) or len(value) != 2 * size:
        raise KeystoreError(f"{where}: member {name!r} must be {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeystoreError(f"{where}: member {name!r} is not hexadecimal") from None


def _parse_document(data: bytes, where: str) -> dict[str, object]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"{where}: not an edgechain keystore (not JSON)") from None
    if not isinstance(document, dict):
        raise KeystoreError(f"{where}: not an edgechain keystore (not a JSON object)")
    if document.get("format") != FORMAT:
        raise KeystoreError(
            f"{where}: not an edgechain keystore or unsupported format "
            f"{document.get('format')!r} (expected {FORMAT!r})"
        )
    if set(document) != _MEMBERS:
        raise KeystoreError(f"{where}: members must be exactly {sorted(_MEMBERS)}")
    return document


def decode_keystore(data: bytes, where: str = "keystore") -> SecretKey:
    """Parse and check file contents; ``where`` names the source in error messages."""
    document = _parse_document(data, where)
    sk_bytes = _hex_field(document, "sk", SECRET_KEY_SIZE, where)
    pk = _hex_field(document, "pk", PUBLIC_KEY_SIZE, where)
    checksum = _hex_field(document, "checksum", 32, where)
    if not secrets.compare_digest(checksum, _checksum(sk_bytes, pk)):
        raise KeystoreError(f"{where}: checksum mismatch, the file is corrupt")
    sk = int.from_bytes(sk_bytes, "big")
    if not 0 < sk < bls.CURVE_ORDER:
        raise KeystoreError(f"{where}: secret key out of range")
    if bls.sk_to_pk(SecretKey(sk)) != pk:
        raise KeystoreError(f"{where}: public key does not match the secret key")
    return SecretKey(sk)


def check_private_file(
    fd: int, path: Path, what: str, error: type[LocalError] = KeystoreError
) -> os.stat_result:
    """The ``fstat`` of the open ``fd``, if it is a regular file that grants nothing to
    group or others; ``error`` naming ``path`` and ``what`` otherwise.

    Checked on the open file, so the checks apply to what is actually read. Shared by
    every file holding a secret (key files here, the API token in ``api/auth.py``).
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {what} is not a regular file")
    if info.st_mode & 0o077:
        raise error(
            f"{path}: {what} permissions {stat.S_IMODE(info.st_mode):04o} give access "
            "to group or others; refusing to use a possibly exposed secret "
            "(run: chmod 600 on the file)"
        )
    return info


def _read_key_file(path: Path) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the node.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeystoreError(f"{path}: keystore not found") from None
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot open keystore: {exc.strerror}") from None
    try:
        info = check_private_file(fd, path, "keystore")
        if info.st_size > MAX_FILE_SIZE:
            raise KeystoreError(f"{path}: not an edgechain keystore ({info.st_size} bytes)")
        with os.fdopen(os.dup(fd), "rb") as stream:
            data = stream.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read keystore: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise KeystoreError(f"{path}: not an edgechain keystore (too large)")
    return data


def load_keystore(path: PathLike) -> SecretKey:
    """The secret key in ``path``; :class:`KeystoreError` if anything is wrong with it."""
    file = Path(path)
    return decode_keystore(_read_key_file(file), str(file))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(directory: Path, name: str, data: bytes) -> Path:
    """A fully written, fsynced, mode-0600 temporary file next to the target."""
    temporary = directory / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may only have removed bits; be explicit
        with os.fdopen(os.dup(fd), "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temporary


def _install(temporary: Path, target: Path, *, replace: bool) -> None:
    if replace:
        os.replace(temporary, target)
        return
    # No-clobber: link(2) fails if the target exists, unlike rename(2).
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise KeystoreError(f"{target}: keystore already exists, not overwriting") from None
    except OSError:
        # A filesystem without hard links: fall back to check-then-rename.
        if target.exists():
            raise KeystoreError(f"{target}: keystore already exists, not overwriting") from None
        os.replace(temporary, target)
        return
    temporary.unlink()


def _write_atomically(path: Path, data: bytes, *, replace: bool) -> None:
    directory = path.parent
    try:
        temporary = _write_temporary(directory, path.name, data)
        try:
            _install(temporary, path, replace=replace)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(directory)
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot write keystore: {exc.strerror or exc}") from None


def save_keystore(path: PathLike, sk: SecretKey) -> None:
    """Write ``sk`` to ``path`` atomically with mode 0600, replacing any existing file."""
    _write_atomically(Path(path), encode_keystore(sk), replace=True)


def create_keystore(path: PathLike) -> SecretKey:
    """A fresh key (32 bytes of ``secrets`` entropy through BLS KeyGen), saved at ``path``.

    Never overwrites: raises :class:`KeystoreError` if ``path`` already exists, since
    losing a node's key loses its identity and validator-set membership.
    """
    sk = bls.keygen(secrets.token_bytes(_IKM_SIZE))
    _write_atomically(Path(path), encode_keystore(sk), replace=False)
    return sk


def load_or_create_keystore(path: PathLike) -> SecretKey:
    """Load the key at ``path``, or create one if there is no file there yet.

    A file that exists but is damaged raises :class:`KeystoreError`; it is never
    silently replaced by a new key.
    """
    file = Path(path)
    if not os.path.lexists(file):
        try:
            return create_keystore(file)
        except KeystoreError:
            if not os.path.lexists(file):
                raise
            # Another process created it between our check and our write: use theirs.
    return load_keystore(file)
