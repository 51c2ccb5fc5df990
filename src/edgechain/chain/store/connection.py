"""The block store's SQLite connection: explicit write transactions and the translation
of every ``sqlite3`` error into :class:`~edgechain.errors.StoreError`, or
:class:`~edgechain.errors.StoreFullError` when the disk is full.

Every table of the store (``blocks.py``, ``app_history.py``, ``canonical.py``) and the
open (``schema.py``) go through one :class:`StoreConnection`, so the rules below hold for
all of them.

Transactions. The connection is in autocommit mode; each write is one explicit
``BEGIN IMMEDIATE`` transaction (``write_transaction``), which takes the write lock up
front so the checks made inside it still hold at ``COMMIT``.

Full disk. A write the file system refuses (SQLite ``SQLITE_FULL``, or an I/O error
while the file system has no room left) raises :class:`~edgechain.errors.StoreFullError`
and leaves the store as it was before the write: the transaction is rolled back, so a
block is either stored whole or not at all. Reads keep working. Whoever wrote must not
count the block as stored (the node stops: ``node.py``).

Damage. SQLite's own report of a malformed file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``,
on any read or write, e.g. a page an SD card garbled) raises
:class:`~edgechain.errors.StoreCorruptError`, whose message says what the operator does
about it: nothing here can repair the file, and retrying the read fails the same way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from edgechain.errors import StoreError, StoreFullError, make_corrupt_store_error

DEFAULT_SYNCHRONOUS = "NORMAL"
"""SQLite's ``synchronous`` for the store's writes. In WAL mode ``NORMAL`` makes a commit
survive a killed process but not a power loss, and does not fsync on the node's loop:
with ``FULL`` a 100-node host's nodes waited on each other's fsyncs five times a slot.
A block lost to a power cut is synced again from the peers that hold it; what must not
be lost (the last finality vote: signing another for the same epoch would be a
slashable double vote) is written with ``write_transaction(durable=True)``."""

FULL_MARGIN_BYTES = 64 * 1024
"""An I/O error with less than this free on the store's file system counts as full."""


class StoreConnection:
    """One SQLite connection to a block store file, closed once.

    Not thread-safe; one process should own a store file at a time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            # Autocommit mode: transactions are explicit (see write_transaction).
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open block store {self.path}: {exc}") from exc
        self.closed = False

    def close(self) -> None:
        """Close the connection (idempotent). Committed data is already durable."""
        if not self.closed:
            self.closed = True
            self.conn.close()

    @contextlib.contextmanager
    def write_transaction(self, *, durable: bool = False) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction, committed when the block exits and rolled
        back when it raises (or when the ``COMMIT`` itself fails).

        Every commit survives the process being killed. ``durable``: it also survives
        a power loss (fsynced, with every commit before it: the WAL is one file)."""
        if durable:
            self.conn.execute("PRAGMA synchronous = FULL")
            try:
                with self._transaction():
                    yield
            finally:
                self.conn.execute(f"PRAGMA synchronous = {DEFAULT_SYNCHRONOUS}")
        else:
            with self._transaction():
                yield

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front so the checks made inside the
        # transaction still hold at COMMIT.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._roll_back()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            # A COMMIT that fails (disk full while writing the WAL) may leave the
            # transaction open; rolled back here, it cannot be committed by a later one.
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        # SQLite may already have rolled back by itself (disk full, I/O error).
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def translate_errors(self, operation: str) -> Iterator[None]:
        """Raise StoreError for a closed store, and turn a ``sqlite3.Error`` raised
        inside the block into StoreFullError (disk full), StoreCorruptError (a damaged
        file) or StoreError (anything else), naming ``operation``."""
        if self.closed:
            raise StoreError(f"block store {self.path} is closed ({operation})")
        try:
            yield
        except sqlite3.Error as exc:
            if self._is_disk_full(exc):
                raise StoreFullError(
                    f"block store {self.path}: disk full ({operation}): {exc}"
                ) from exc
            if is_corrupt_error(exc):
                raise make_corrupt_store_error(
                    self.path, f"is damaged ({operation}): {exc}"
                ) from exc
            raise StoreError(f"block store {self.path} is unusable ({operation}): {exc}") from exc

    def _is_disk_full(self, exc: sqlite3.Error) -> bool:
        # SQLITE_FULL is what SQLite reports for ENOSPC on its files; growing the WAL
        # index (-shm) on a full file system may surface as an I/O error instead.
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return False
        if code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        if code & 0xFF != sqlite3.SQLITE_IOERR:
            return False
        try:
            stat = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < FULL_MARGIN_BYTES


_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def is_corrupt_error(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (primary result code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT_CODES
