"""State replicas: the latest snapshot of a stateful app's state, kept on another node.

Why (DESIGN.md "Exactly once"): when a node goes down, the chain re-places its apps;
an app that opted in restarts from its latest state replica instead of from nothing.
The chain names a replica node per replicated app; the app's host sends it a snapshot
every few slots (``TransferClient.send_replica``: the app keeps running, frozen only
while its state dir is archived, ``ProcessRuntime.snapshot``), and the replica node's
``TransferServer`` checks the offer against the chain and keeps it here.

:class:`ReplicaStore`, one per node under ``<data_dir>/replicas/``::

    <root>/<app id hex>/replica.json     which archive, from whom, of which slot, hash
    <root>/<app id hex>/<slot>-<rand>.tar the archive (``save``'s format, uncompressed)
    <root>/.incoming/                    streams being received (same file system)
    <root>/.checkout/                    hard links held while a replica is restored

Replacing a replica is atomic: the new archive is written and synced beside the old
one, then the JSON is replaced (the commit point), then the old archive goes. A
replica of an older slot than the stored one is refused. Readers never trust the disk:
:meth:`ReplicaStore.checkout` re-hashes the archive (SHA-256, size) and refuses a
corrupt one (logged), so :func:`restore_from_replica` never unpacks a damaged state.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgechain.chain.model import AppSpec
from edgechain.runtime.appuser import AppUser, give_tree
from edgechain.runtime.archive import ArchiveError, extract_state_archive
from edgechain.runtime.base import AppRuntimeError, get_app_dirname
from edgechain.runtime.checkpoint import StateSnapshot
from edgechain.runtime.durable_files import write_durably
from edgechain.types import HASH_SIZE, AppId, NodeId

_log = logging.getLogger(__name__)

REPLICAS_DIR = "replicas"
"""Under a node's data dir: the root of its :class:`ReplicaStore`."""
META_FILE = "replica.json"
INCOMING_DIR = ".incoming"
CHECKOUT_DIR = ".checkout"
_FORMAT = 1
_HASH_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class ReplicaInfo:
    """One stored replica: the latest state of ``app`` this node holds."""

    app: AppId
    origin: NodeId
    """The node that hosted the app and sent (and signed) the replica."""
    slot: int
    """The slot the snapshot was taken in."""
    sha256: bytes
    """SHA-256 of the archive (checked again before any use)."""
    path: Path
    """The archive (from :meth:`ReplicaStore.checkout`: a link that stays valid until
    the checkout ends; from ``get``/``list``: replaced by the next ``put``)."""
    raw_bytes: int
    compressed_bytes: int
    """What it weighed on the wire (0 when it did not come over the network)."""
    received_ms: int
    """Wall-clock time it was stored (ms since the epoch)."""
    signature: bytes = b""
    """The origin's signature over the offer (``protocol.compute_replica_signing_root``),
    kept so this node can hand the replica on under the origin's name
    (``replication.get_handoffs``); empty for a replica stored before it was kept."""


@runtime_checkable
class SnapshotRuntime(Protocol):
    """A runtime that can copy an app's state while the app runs on."""

    def snapshot(self, app: AppId) -> StateSnapshot: ...


def hash_file(path: Path) -> bytes:
    """SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while data := file.read(_HASH_BUFFER_BYTES):
            digest.update(data)
    return digest.digest()


def take_snapshot(runtime: SnapshotRuntime, app: AppId) -> tuple[StateSnapshot, bytes]:
    """Blocking: snapshot ``app`` and hash the archive (after the app runs again)."""
    snapshot = runtime.snapshot(app)
    try:
        return snapshot, hash_file(snapshot.archive)
    except BaseException:
        snapshot.archive.unlink(missing_ok=True)
        raise


class ReplicaStore:
    """The replicas this node keeps for other nodes' apps (thread-safe; one per root)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # other apps' states: root's alone, never the app user's
        for name in (INCOMING_DIR, CHECKOUT_DIR):
            # Left by an earlier incarnation (a stream cut by a crash): never complete.
            shutil.rmtree(self.root / name, ignore_errors=True)
            (self.root / name).mkdir()
        self._lock = threading.Lock()

    def _get_app_dir(self, app: AppId) -> Path:
        return self.root / get_app_dirname(app)

    def get_incoming_path(self, app: AppId) -> Path:
        """A fresh file to receive a replica of ``app`` into (then ``put`` it)."""
        return self.root / INCOMING_DIR / f"{get_app_dirname(app)}-{secrets.token_hex(4)}"

    def get(self, app: AppId) -> ReplicaInfo | None:
        """The stored replica of ``app`` (not re-hashed: use :meth:`checkout` to use it)."""
        with self._lock:
            return self._read(app)

    def list(self) -> tuple[ReplicaInfo, ...]:
        """Every stored replica, in app id order."""
        with self._lock:
            found = (self._read_dir(d) for d in sorted(self.root.iterdir()))
            return tuple(info for info in found if info is not None)

    def list_apps(self) -> tuple[AppId, ...]:
        """The apps a replica is stored of, from the directory names alone (no file is
        read: the manager asks every round)."""
        apps: set[AppId] = set()
        with self._lock:
            for entry in os.scandir(self.root):
                if len(entry.name) == 2 * HASH_SIZE and (Path(entry.path) / META_FILE).exists():
                    with contextlib.suppress(ValueError):
                        apps.add(AppId(bytes.fromhex(entry.name)))
        return tuple(sorted(apps))

    def remove(self, app: AppId) -> None:
        """Forget the replica of ``app`` (the app was removed from the chain, or this
        node is no longer its replica node)."""
        with self._lock:
            shutil.rmtree(self._get_app_dir(app), ignore_errors=True)

    def put(
        self,
        app: AppId,
        origin: NodeId,
        slot: int,
        archive: Path,
        sha256: bytes,
        raw_bytes: int,
        *,
        compressed_bytes: int = 0,
        signature: bytes = b"",
    ) -> ReplicaInfo | None:
        """Keep ``archive`` (SHA-256 ``sha256``, ``raw_bytes`` long) as the replica of
        ``app`` taken in ``slot``, replacing the stored one atomically.

        The file is moved into the store. None (and the file left where it is) when the
        stored replica is of a later slot. ``ValueError`` when ``archive`` is not
        ``raw_bytes`` long or the hash is not a SHA-256.
        """
        size = archive.stat().st_size
        if size != raw_bytes or len(sha256) != HASH_SIZE or slot < 0:
            raise ValueError(f"replica of {size} bytes, {raw_bytes} announced, slot {slot}")
        with archive.open("rb") as file:
            os.fsync(file.fileno())  # on disk before the JSON points to it
        app_dir = self._get_app_dir(app)
        with self._lock:
            stored = self._read(app)
            if stored is not None and slot < stored.slot:
                _log.info(
                    "replica of %s for slot %d refused: slot %d is stored",
                    bytes(app).hex()[:16],
                    slot,
                    stored.slot,
                )
                return None
            app_dir.mkdir(exist_ok=True)
            name = f"{slot}-{secrets.token_hex(4)}.tar"
            _move(archive, app_dir / name)
            info = ReplicaInfo(
                app,
                origin,
                slot,
                sha256,
                app_dir / name,
                raw_bytes,
                compressed_bytes,
                int(time.time() * 1000),
                signature,
            )
            _write_json(app_dir / META_FILE, _to_json(info))
            for old in app_dir.glob("*.tar"):
                if old.name != name:
                    old.unlink(missing_ok=True)
            return info

    @contextlib.contextmanager
    def checkout(self, app: AppId) -> Iterator[ReplicaInfo | None]:
        """The stored replica of ``app``, verified, with a ``path`` that no ``put`` or
        ``remove`` can pull away until the block ends; None when there is none or it is
        corrupt (logged)."""
        holder = self.root / CHECKOUT_DIR / f"{get_app_dirname(app)}-{secrets.token_hex(4)}"
        try:
            info = self._hold(app, holder)
            if info is not None and not _is_intact(info.path, info):
                info = None
            yield info
        finally:
            shutil.rmtree(holder, ignore_errors=True)

    def _hold(self, app: AppId, holder: Path) -> ReplicaInfo | None:
        """Hard-link the stored archive of ``app`` into ``holder`` (same name)."""
        with self._lock:
            info = self._read(app)
            if info is None:
                return None
            try:
                holder.mkdir()
                os.link(info.path, holder / info.path.name)
            except OSError as exc:
                _log.error("cannot check out the replica of %s: %s", bytes(app).hex()[:16], exc)
                return None
            return replace(info, path=holder / info.path.name)

    def _read(self, app: AppId) -> ReplicaInfo | None:
        return self._read_dir(self._get_app_dir(app))

    def _read_dir(self, app_dir: Path) -> ReplicaInfo | None:
        meta = app_dir / META_FILE
        if app_dir.name.startswith(".") or not meta.exists():
            return None
        try:
            info = _from_json(json.loads(meta.read_text()), app_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.error("unreadable replica metadata %s: %s", meta, exc)
            return None
        if get_app_dirname(info.app) != app_dir.name or not info.path.is_file():
            _log.error("replica metadata %s does not match its directory", meta)
            return None
        return info


def _is_intact(path: Path, info: ReplicaInfo) -> bool:
    """The archive is the one the metadata describes (size and SHA-256)."""
    try:
        intact = path.stat().st_size == info.raw_bytes and hash_file(path) == info.sha256
    except OSError as exc:
        _log.error("cannot read replica of %s: %s", bytes(info.app).hex()[:16], exc)
        return False
    if not intact:
        _log.error(
            "corrupt replica of %s (slot %d): SHA-256 or size does not match; not used",
            bytes(info.app).hex()[:16],
            info.slot,
        )
    return intact


def _move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; copy (and sync) across file systems."""
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(source, partial)
    with partial.open("rb") as file:
        os.fsync(file.fileno())
    os.replace(partial, target)
    source.unlink()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_durably(path, json.dumps(data, sort_keys=True).encode())


def _to_json(info: ReplicaInfo) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "app": bytes(info.app).hex(),
        "origin": bytes(info.origin).hex(),
        "slot": info.slot,
        "sha256": info.sha256.hex(),
        "archive": info.path.name,
        "raw_bytes": info.raw_bytes,
        "compressed_bytes": info.compressed_bytes,
        "received_ms": info.received_ms,
        "signature": info.signature.hex(),
    }


def _from_json(data: dict[str, Any], app_dir: Path) -> ReplicaInfo:
    if data["format"] != _FORMAT:
        raise ValueError(f"format {data['format']}")
    archive = str(data["archive"])
    if "/" in archive or archive.startswith("."):
        raise ValueError(f"archive name {archive!r}")
    app, origin, digest = (bytes.fromhex(data[k]) for k in ("app", "origin", "sha256"))
    if not len(app) == len(origin) == len(digest) == HASH_SIZE:
        raise ValueError("bad id or hash length")
    return ReplicaInfo(
        AppId(app),
        NodeId(origin),
        int(data["slot"]),
        digest,
        app_dir / archive,
        int(data["raw_bytes"]),
        int(data["compressed_bytes"]),
        int(data["received_ms"]),
        bytes.fromhex(data.get("signature", "")),
    )


class StateDirRuntime(Protocol):
    """What restoring a replica needs of a runtime: where the app's state lives, whom
    it belongs to, and whether the app runs."""

    @property
    def app_user(self) -> AppUser | None: ...

    def get_app_dir(self, app: AppId) -> Path: ...

    def get_state_dir(self, app: AppId) -> Path: ...

    def is_running(self, app: AppId) -> bool: ...


def restore_from_replica(
    runtime: StateDirRuntime, store: ReplicaStore, app: AppId, spec: AppSpec
) -> ReplicaInfo | None:
    """Blocking: make the latest valid replica of ``app`` its state dir on ``runtime``,
    so that ``runtime.start(app, spec)`` continues from it.

    The state dir is replaced as a whole (unpacked beside it, then renamed) and given
    to the app user. Returns the replica used, or None when there is none or it is
    corrupt (logged): the caller then starts the app with the state it has (none on a
    fresh node). The app must not run here (``AppRuntimeError``): the caller holds its
    per-app lock from here to the start, so nothing starts it in between.
    """
    if runtime.is_running(app):
        raise AppRuntimeError(f"app {spec.name!r} runs here: its state dir is in use")
    name = bytes(app).hex()[:16]
    with store.checkout(app) as info:
        if info is None:
            _log.warning(
                "no valid replica of %s (%s): it starts from its own state", name, spec.name
            )
            return None
        state = runtime.get_state_dir(app)
        runtime.get_app_dir(app).mkdir(exist_ok=True)
        try:
            extract_state_archive(info.path, state)
        except ArchiveError as exc:
            # Intact as sent, but not a state archive: the origin's doing. Nothing changed.
            _log.error("replica of %s (slot %d) does not unpack: %s", name, info.slot, exc)
            return None
        if runtime.app_user is not None:
            # Unpacked by root into the root-owned app dir: no app could have touched it.
            give_tree(state, runtime.app_user, fresh=True)
        _log.info("state of %s restored from the replica of slot %d", name, info.slot)
        return replace(info, path=store.root / get_app_dirname(app) / info.path.name)
