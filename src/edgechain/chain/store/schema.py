"""The block store's on-disk format: its SQL schema, how a file is recognised as ours,
and the migrations from older schema versions, all applied when a store is opened.

Identity. A file is accepted only if it carries our SQLite ``application_id``, a
schema version (``user_version``) this build reads and our magic row; an empty or
missing file is initialised. Anything else (a corrupt, truncated or foreign file, or a
newer schema) raises :class:`~edgechain.errors.StoreError` without being modified. An
older schema is migrated at open, in the open's transaction (``_MIGRATIONS``).

The tables themselves are read and written by ``blocks.py`` (genesis, head, blocks),
``app_history.py``, ``canonical.py`` (canonical, state_snapshot) and ``block_store.py``
(meta).
"""

from __future__ import annotations

import os
import sqlite3

from edgechain.chain.store.connection import DEFAULT_SYNCHRONOUS, StoreConnection
from edgechain.errors import StoreError, make_corrupt_store_error

APPLICATION_ID = 0x45444743
"""``PRAGMA application_id`` of an edgechain block store: ASCII "EDGC"."""

SCHEMA_VERSION = 3
"""``PRAGMA user_version``; bump with a migration (``_MIGRATIONS``) when the schema
changes. 2: ``app_history``. 3: ``canonical`` (backfilled from the head's ancestors at
migration) and ``state_snapshot``."""

OLDEST_SCHEMA_VERSION = 1
"""The oldest schema version this build migrates from."""

MAGIC = "edgechain-blockstore"

_APP_HISTORY_SCHEMA = (
    "CREATE TABLE app_history (block BLOB NOT NULL, seq INTEGER NOT NULL,"
    " app BLOB NOT NULL, slot INTEGER NOT NULL, kind TEXT NOT NULL, node BLOB,"
    " origin BLOB, signer BLOB, version INTEGER, PRIMARY KEY (block, seq))",
    "CREATE INDEX app_history_by_app ON app_history (app, slot, seq)",
)

# IF NOT EXISTS: a schema-2 file never has these tables, but one made by dropping only
# the later tables of a newer file (as tests make "old" files) must still migrate.
_CHECKPOINT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS canonical (slot INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state_snapshot (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " hash BLOB NOT NULL, slot INTEGER NOT NULL, encoded BLOB NOT NULL)",
)

_BACKFILL_CANONICAL = (
    "WITH RECURSIVE chain (hash, parent, slot) AS ("
    " SELECT blocks.hash, blocks.parent, blocks.slot"
    " FROM blocks JOIN head ON head.id = 0 AND blocks.hash = head.hash"
    " UNION ALL"
    " SELECT blocks.hash, blocks.parent, blocks.slot"
    " FROM blocks JOIN chain ON blocks.hash = chain.parent)"
    " INSERT OR REPLACE INTO canonical (slot, hash) SELECT slot, hash FROM chain"
)
"""The head and its ancestors down to (not including) the genesis, by parent links:
the chain the node had applied when it last ran schema 2. Recursion is a queue in
SQLite, not a stack, and each step is a primary-key lookup, so a long chain is fine."""

_SCHEMA = (
    "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE genesis (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " hash BLOB NOT NULL, encoded BLOB NOT NULL)",
    "CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 0), hash BLOB NOT NULL)",
    "CREATE TABLE blocks (hash BLOB PRIMARY KEY, parent BLOB NOT NULL,"
    " slot INTEGER NOT NULL, weight INTEGER NOT NULL, encoded BLOB NOT NULL)",
    "CREATE INDEX blocks_by_slot ON blocks (slot, hash)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    *_APP_HISTORY_SCHEMA,
    *_CHECKPOINT_SCHEMA,
)

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _APP_HISTORY_SCHEMA,
    2: (*_CHECKPOINT_SCHEMA, _BACKFILL_CANONICAL),
}
"""Statements that take a store from schema version ``key`` to ``key + 1``."""

_TABLES = ("genesis", "head", "blocks", "meta", "app_history", "canonical", "state_snapshot")


def open_store_file(db: StoreConnection) -> None:
    """Make ``db``'s file a usable store of ``SCHEMA_VERSION``: initialise an empty
    file, or check that it is ours and migrate an older schema; then switch to WAL with
    ``synchronous=NORMAL`` (``connection.DEFAULT_SYNCHRONOUS``). StoreError, with the
    file left as it was, for a foreign, damaged or newer file."""
    with db.translate_errors("open"):
        db.conn.execute(f"PRAGMA synchronous = {DEFAULT_SYNCHRONOUS}")
        # Before anything else: a file cut to a few bytes would otherwise read as
        # an empty database and be initialised over.
        _check_file_size(db.conn, db.path)
        with db.write_transaction():
            if _is_empty_database(db.conn):
                _create_schema(db.conn)
            else:
                _check_identity(db.conn, db.path)
                _check_pages(db.conn, db.path)
        # Only after the file is known to be ours: switching to WAL rewrites the
        # header, and a foreign file must be left untouched. Persistent, so a
        # kill between schema creation and here is repaired on the next open.
        mode = db.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"block store {db.path}: cannot enable WAL (got {mode})")


def _check_pages(conn: sqlite3.Connection, path: str) -> None:
    """SQLite's ``quick_check``: every page of every table and index readable and well
    formed. A page damaged in the middle of the file (an SD card, a bad sector) passes
    the identity checks and would fail only the read that reaches it, maybe hours
    later, in the middle of moving an app (session 46 saw a node run on with its app
    manager failing every pass). O(size of the file), but cheap: 0.06 s for 235 MB
    in the page cache here; the full ``integrity_check`` (indexes against tables too)
    stays an explicit ``BlockStore.check_integrity``. A page SQLite cannot parse raises
    StoreCorruptError from the query itself (``connection.translate_errors``)."""
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise make_corrupt_store_error(path, f"is damaged (quick_check: {'; '.join(problems[:3])})")


def _is_empty_database(conn: sqlite3.Connection) -> bool:
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    return int(tables) == 0 and int(app_id) == 0


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO store_info (key, value) VALUES (?, ?)",
        [("magic", MAGIC), ("schema_version", str(SCHEMA_VERSION))],
    )
    # Both pragmas write the header inside the current transaction.
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_identity(conn: sqlite3.Connection, path: str) -> None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    if int(app_id) != APPLICATION_ID:
        raise StoreError(
            f"{path} is not an edgechain block store "
            f"(SQLite application_id {int(app_id):#x}, expected {APPLICATION_ID:#x})"
        )
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    version = int(version)
    if not OLDEST_SCHEMA_VERSION <= version <= SCHEMA_VERSION:
        raise StoreError(
            f"block store {path} has schema version {version}, "
            f"this build reads versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}"
        )
    try:
        row = conn.execute("SELECT value FROM store_info WHERE key = 'magic'").fetchone()
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{path} is not an edgechain block store: {exc}") from exc
    if row is None or row[0] != MAGIC:
        raise StoreError(f"{path} is not an edgechain block store (bad magic row)")
    if version < SCHEMA_VERSION:
        _migrate(conn, version)
    # Touch every table once so a damaged schema or a truncated file fails here,
    # at open, rather than at the first block read.
    for table in _TABLES:
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
    conn.execute("SELECT max(slot) FROM blocks").fetchone()


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store of an older schema to ``SCHEMA_VERSION``, inside the open's write
    transaction: a kill midway leaves it at the old version, migrated again at the next
    open. Migrations only add tables (and fill them from what is stored), so every
    stored block is kept."""
    for old in range(version, SCHEMA_VERSION):
        for statement in _MIGRATIONS[old]:
            conn.execute(statement)
    conn.execute(
        "UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_file_size(conn: sqlite3.Connection, path: str) -> None:
    # SQLite reads and writes the main file in whole pages (WAL checkpoints too),
    # and rounds a partial last page up, reading it back as zeros. So a size that
    # is not a page multiple means the file was cut short. A cut on a page
    # boundary is caught by SQLite itself (header page count > file size).
    if not os.path.isfile(path):
        return
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    size = os.path.getsize(path)
    if size % int(page_size) != 0:
        raise StoreError(
            f"block store {path} is truncated or damaged: {size} bytes is not "
            f"a multiple of the {page_size}-byte page size"
        )
