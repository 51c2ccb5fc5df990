"""The block store: blocks, genesis and head in one SQLite file that survives kill -9.

This is the only storage module of ``chain/``; it does SQLite I/O and nothing else
(no clock, no randomness). Blocks are opaque encoded bytes plus the metadata fork
choice needs (parent, slot, weight), so the store does not depend on the block
encoding.

Durability. The database runs in WAL mode with ``synchronous=FULL``: every put is one
transaction, and when it returns its WAL frames are fsynced, so a committed block or
head survives a process kill *and* a power cut. ``NORMAL`` would only guarantee the
former; the cost of FULL is one fsync per commit, which is nothing at one block per
slot (seconds). A kill at any moment leaves the database at some committed state:
SQLite rolls back the torn WAL tail on the next open.

Consistency. ``put_block`` requires the parent (a stored block or the genesis) and a
later slot, and ``set_head`` requires a stored block, both checked inside the write
transaction, so the stored blocks always form one tree rooted at genesis and the head
always names a stored block. ``load_fork_choice`` relies on both.

A block's hash does not cover its attestation, so the same block can arrive with
different signer sets (and bytes). The first write wins: ``put_block`` of a known hash
is a no-op, as is ``ForkChoice.add``.

Full disk. A write the file system refuses (SQLite ``SQLITE_FULL``, or an I/O error
while the file system has no room left) raises :class:`~edgechain.errors.StoreFullError`
and leaves the store as it was before the write: the transaction is rolled back, so a
block is either stored whole or not at all. Reads keep working. Whoever wrote must not
count the block as stored (the node stops: ``node.py``).

Identity. A file is accepted only if it carries our SQLite ``application_id``, a
schema version (``user_version``) this build reads and our magic row; an empty or
missing file is initialised. Anything else (a corrupt, truncated or foreign file, or a
newer schema) raises :class:`~edgechain.errors.StoreError` without being modified. An
older schema is migrated at open, in the open's transaction (``_MIGRATIONS``).

App history. ``app_history`` holds what the chain did to each app in its finalized
blocks (``orchestrator/fleet.py``, ``HistoryEvent``), which the node writes as blocks
finalize, since memory forgets them (``consensus/pruning.py``). Rows are keyed by
(block, seq), the event's position among its block's events, so writing the same
block's events again (a replay after a restart) is a no-op. Plain columns, no pickles:
the store still does not depend on the types the rows come from.

Canonical chain and snapshot. ``canonical`` maps each slot of the finalized chain that
has a block (skip blocks included; the genesis is not a row) to that block, which a
joining node downloads forward from (``get_canonical_after``). The node writes it as
finality advances, one stretch of chain at a time (``put_canonical``). ``state_snapshot``
holds one chain state (opaque bytes) at a stored block, the latest the node saved, so a
restart starts there instead of replaying every block.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

from edgechain.chain.forkchoice import GENESIS_SLOT, ForkChoice
from edgechain.errors import StoreError, StoreFullError
from edgechain.types import HASH_SIZE, AppId, BlockHash, Slot

APPLICATION_ID = 0x45444743
"""``PRAGMA application_id`` of an edgechain block store: ASCII "EDGC"."""

SCHEMA_VERSION = 3
"""``PRAGMA user_version``; bump with a migration (``_MIGRATIONS``) when the schema
changes. 2: ``app_history``. 3: ``canonical`` (backfilled from the head's ancestors at
migration) and ``state_snapshot``."""

OLDEST_SCHEMA_VERSION = 1
"""The oldest schema version this build migrates from."""

MAGIC = "edgechain-blockstore"

FULL_MARGIN_BYTES = 64 * 1024
"""An I/O error with less than this free on the store's file system counts as full."""

_ITER_BATCH = 512
"""Rows per query in ``iter_blocks`` so no read transaction stays open across yields."""

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


@dataclass(frozen=True)
class BlockRecord:
    """A stored block's metadata (its bytes come from ``get_block``)."""

    hash: BlockHash
    parent: BlockHash
    slot: Slot
    weight: int


@dataclass(frozen=True)
class GenesisRecord:
    hash: BlockHash
    encoded: bytes


@dataclass(frozen=True)
class AppEventRecord:
    """A stored app history event (``orchestrator.fleet.HistoryEvent`` plus its app and
    its place in its block)."""

    app: AppId
    block: BlockHash
    seq: int
    """Its position among all the events of ``block`` (every app's), from 0."""
    slot: Slot
    kind: str
    node: bytes | None = None
    origin: bytes | None = None
    signer: bytes | None = None
    version: int | None = None


@dataclass(frozen=True)
class StateSnapshot:
    """The stored chain state after block ``hash`` (at ``slot``), encoded by its owner
    (the store does not read it)."""

    hash: BlockHash
    slot: Slot
    encoded: bytes


class BlockStore:
    """Blocks, genesis, head, app history, the canonical chain, a state snapshot and a
    small key/value table in one SQLite file.

    Not thread-safe; one process should own a store file at a time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        try:
            # Autocommit mode: transactions are explicit (see _write_transaction).
            self._conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open block store {self._path}: {exc}") from exc
        self._closed = False
        try:
            self._open()
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    def _open(self) -> None:
        with self._translate_errors("open"):
            self._conn.execute("PRAGMA synchronous = FULL")
            # Before anything else: a file cut to a few bytes would otherwise read as
            # an empty database and be initialised over.
            self._check_file_size()
            with self._write_transaction():
                if self._is_empty_database():
                    self._create_schema()
                else:
                    self._check_identity()
            # Only after the file is known to be ours: switching to WAL rewrites the
            # header, and a foreign file must be left untouched. Persistent, so a
            # kill between schema creation and here is repaired on the next open.
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"block store {self._path}: cannot enable WAL (got {mode})")

    def _is_empty_database(self) -> bool:
        (tables,) = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        (app_id,) = self._conn.execute("PRAGMA application_id").fetchone()
        return int(tables) == 0 and int(app_id) == 0

    def _create_schema(self) -> None:
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._conn.executemany(
            "INSERT INTO store_info (key, value) VALUES (?, ?)",
            [("magic", MAGIC), ("schema_version", str(SCHEMA_VERSION))],
        )
        # Both pragmas write the header inside the current transaction.
        self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_identity(self) -> None:
        (app_id,) = self._conn.execute("PRAGMA application_id").fetchone()
        if int(app_id) != APPLICATION_ID:
            raise StoreError(
                f"{self._path} is not an edgechain block store "
                f"(SQLite application_id {int(app_id):#x}, expected {APPLICATION_ID:#x})"
            )
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        version = int(version)
        if not OLDEST_SCHEMA_VERSION <= version <= SCHEMA_VERSION:
            raise StoreError(
                f"block store {self._path} has schema version {version}, "
                f"this build reads versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}"
            )
        try:
            row = self._conn.execute("SELECT value FROM store_info WHERE key = 'magic'").fetchone()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self._path} is not an edgechain block store: {exc}") from exc
        if row is None or row[0] != MAGIC:
            raise StoreError(f"{self._path} is not an edgechain block store (bad magic row)")
        if version < SCHEMA_VERSION:
            self._migrate(version)
        # Touch every table once so a damaged schema or a truncated file fails here,
        # at open, rather than at the first block read.
        for table in _TABLES:
            self._conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        self._conn.execute("SELECT max(slot) FROM blocks").fetchone()

    def _migrate(self, version: int) -> None:
        """Bring a store of an older schema to ``SCHEMA_VERSION``, inside the open's
        write transaction: a kill midway leaves it at the old version, migrated again at
        the next open. Migrations only add tables (and fill them from what is stored),
        so every stored block is kept."""
        for old in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[old]:
                self._conn.execute(statement)
        self._conn.execute(
            "UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_file_size(self) -> None:
        # SQLite reads and writes the main file in whole pages (WAL checkpoints too),
        # and rounds a partial last page up, reading it back as zeros. So a size that
        # is not a page multiple means the file was cut short. A cut on a page
        # boundary is caught by SQLite itself (header page count > file size).
        if not os.path.isfile(self._path):
            return
        (page_size,) = self._conn.execute("PRAGMA page_size").fetchone()
        size = os.path.getsize(self._path)
        if size % int(page_size) != 0:
            raise StoreError(
                f"block store {self._path} is truncated or damaged: {size} bytes is not "
                f"a multiple of the {page_size}-byte page size"
            )

    # -- context manager / lifetime ------------------------------------------------

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent). Committed data is already durable."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    @property
    def path(self) -> str:
        return self._path

    # -- genesis -------------------------------------------------------------------

    def put_genesis(self, genesis: BlockHash, encoded: bytes) -> None:
        """Record the chain's genesis once; the same hash again is a no-op."""
        _check_hash(genesis, "genesis")
        with self._translate_errors("put_genesis"), self._write_transaction():
            row = self._conn.execute("SELECT hash FROM genesis WHERE id = 0").fetchone()
            if row is not None:
                if bytes(row[0]) != genesis:
                    raise StoreError(
                        f"block store {self._path} belongs to genesis {bytes(row[0]).hex()}, "
                        f"not {genesis.hex()}"
                    )
                return
            self._conn.execute(
                "INSERT INTO genesis (id, hash, encoded) VALUES (0, ?, ?)", (genesis, encoded)
            )

    def get_genesis(self) -> GenesisRecord | None:
        with self._translate_errors("get_genesis"):
            row = self._conn.execute("SELECT hash, encoded FROM genesis WHERE id = 0").fetchone()
        if row is None:
            return None
        return GenesisRecord(hash=BlockHash(bytes(row[0])), encoded=bytes(row[1]))

    # -- blocks --------------------------------------------------------------------

    def put_block(
        self, block: BlockHash, parent: BlockHash, slot: Slot, weight: int, encoded: bytes
    ) -> bool:
        """Store a block in one transaction; return False if the hash was already stored.

        The parent must be the genesis or a stored block with an earlier slot.
        """
        return self.put_blocks([(block, parent, slot, weight, encoded)]) == 1

    def put_blocks(self, blocks: Iterable[tuple[BlockHash, BlockHash, Slot, int, bytes]]) -> int:
        """Store ``(hash, parent, slot, weight, encoded)`` blocks, parents first, in one
        transaction (a node that follows the chain to a checkpoint stores hundreds at
        once); return how many were new. Each parent must be the genesis or stored
        (earlier in ``blocks`` counts) with an earlier slot."""
        rows = list(blocks)
        for block, parent, _, weight, _ in rows:
            _check_hash(block, "block")
            _check_hash(parent, "parent")
            if weight < 0:
                raise StoreError(f"block {block.hex()} has negative weight {weight}")
        added = 0
        with self._translate_errors("put_block"), self._write_transaction():
            for block, parent, slot, weight, encoded in rows:
                added += self._insert_block(block, parent, slot, weight, encoded)
        return added

    def _insert_block(
        self, block: BlockHash, parent: BlockHash, slot: Slot, weight: int, encoded: bytes
    ) -> int:
        existing = self._conn.execute(
            "SELECT parent, slot FROM blocks WHERE hash = ?", (block,)
        ).fetchone()
        if existing is not None:
            if bytes(existing[0]) != parent or int(existing[1]) != slot:
                raise StoreError(f"block {block.hex()} is stored with a different parent or slot")
            return 0
        parent_slot = self._get_parent_slot(parent)
        if parent_slot is None:
            raise StoreError(f"parent {parent.hex()} of block {block.hex()} is not stored")
        if slot <= parent_slot:
            raise StoreError(
                f"block {block.hex()} at slot {slot} does not follow parent slot {parent_slot}"
            )
        self._conn.execute(
            "INSERT INTO blocks (hash, parent, slot, weight, encoded) VALUES (?, ?, ?, ?, ?)",
            (block, parent, slot, weight, encoded),
        )
        return 1

    def _get_parent_slot(self, parent: BlockHash) -> Slot | None:
        row = self._conn.execute("SELECT slot FROM blocks WHERE hash = ?", (parent,)).fetchone()
        if row is not None:
            return Slot(int(row[0]))
        row = self._conn.execute("SELECT 1 FROM genesis WHERE hash = ?", (parent,)).fetchone()
        return GENESIS_SLOT if row is not None else None

    def get_block(self, block: BlockHash) -> bytes | None:
        """The encoded bytes of a stored (non-genesis) block, or None."""
        with self._translate_errors("get_block"):
            row = self._conn.execute(
                "SELECT encoded FROM blocks WHERE hash = ?", (block,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def get_record(self, block: BlockHash) -> BlockRecord | None:
        """A stored block's metadata, or None."""
        with self._translate_errors("get_record"):
            row = self._conn.execute(
                "SELECT hash, parent, slot, weight FROM blocks WHERE hash = ?", (block,)
            ).fetchone()
        return None if row is None else _to_record(row)

    def has_block(self, block: BlockHash) -> bool:
        """True for a stored non-genesis block (see ``get_genesis`` for genesis)."""
        with self._translate_errors("has_block"):
            row = self._conn.execute("SELECT 1 FROM blocks WHERE hash = ?", (block,)).fetchone()
        return row is not None

    def count_blocks(self) -> int:
        with self._translate_errors("count_blocks"):
            (count,) = self._conn.execute("SELECT count(*) FROM blocks").fetchone()
        return int(count)

    def iter_blocks(self, after_slot: int = -1) -> Iterator[BlockRecord]:
        """Every stored block's metadata (those past ``after_slot``) ordered by (slot,
        hash): parents first.

        A child's slot is always above its parent's, so this order lets a caller
        rebuild a ``ForkChoice`` in one pass. Reads in batches (keyset pagination) so
        the caller may write to the store while iterating.
        """
        last: tuple[int, bytes] = (after_slot, b"\xff" * HASH_SIZE)
        while True:
            with self._translate_errors("iter_blocks"):
                rows = self._conn.execute(
                    "SELECT hash, parent, slot, weight FROM blocks"
                    " WHERE (slot, hash) > (?, ?) ORDER BY slot, hash LIMIT ?",
                    (*last, _ITER_BATCH),
                ).fetchall()
            for row in rows:
                yield _to_record(row)
            if len(rows) < _ITER_BATCH:
                return
            last = (int(rows[-1][2]), bytes(rows[-1][0]))

    # -- head ----------------------------------------------------------------------

    def set_head(self, head: BlockHash) -> None:
        """Record the head the node has applied; it must be stored (or the genesis)."""
        with self._translate_errors("set_head"), self._write_transaction():
            if self._get_parent_slot(head) is None:
                raise StoreError(f"head {head.hex()} is not a stored block")
            self._conn.execute("INSERT OR REPLACE INTO head (id, hash) VALUES (0, ?)", (head,))

    def get_head(self) -> BlockHash | None:
        with self._translate_errors("get_head"):
            row = self._conn.execute("SELECT hash FROM head WHERE id = 0").fetchone()
        return None if row is None else BlockHash(bytes(row[0]))

    # -- small key/value table -----------------------------------------------------

    def put_meta(self, key: str, value: bytes) -> None:
        with self._translate_errors("put_meta"), self._write_transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    def get_meta(self, key: str) -> bytes | None:
        with self._translate_errors("get_meta"):
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- app history ---------------------------------------------------------------

    def put_app_events(self, events: Iterable[AppEventRecord]) -> int:
        """Store app history events in one transaction; return how many were new.

        An event already stored under the same (block, seq) is kept as it is (the same
        block's events computed again, by a replay): writing a batch twice is a no-op.
        """
        rows = [_app_event_row(event) for event in events]
        with self._translate_errors("put_app_events"), self._write_transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO app_history"
                " (block, seq, app, slot, kind, node, origin, signer, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._conn.total_changes - before

    def get_app_events(self, app: AppId) -> list[AppEventRecord]:
        """The stored events of ``app`` in chain order (slot, then place in the block)."""
        with self._translate_errors("get_app_events"):
            rows = self._conn.execute(
                "SELECT block, seq, app, slot, kind, node, origin, signer, version"
                " FROM app_history WHERE app = ? ORDER BY slot, seq",
                (app,),
            ).fetchall()
        return [_to_app_event(row) for row in rows]

    # -- canonical chain and state snapshot ----------------------------------------

    def put_canonical(self, entries: Iterable[tuple[Slot, BlockHash]]) -> None:
        """Record a stretch of the finalized chain, (slot, block) oldest first, in one
        transaction.

        Each block must be stored at that slot and be the child of the entry before it.
        The stretch replaces the rows from its first block's parent's slot (exclusive) to
        its last slot: a slot of that range without an entry is a skip slot of the chain,
        so a row there (backfilled by the migration from a head later reorganised away)
        is dropped. Writing the same stretch again (a replay) changes nothing.
        """
        rows = _canonical_rows(entries)
        if not rows:
            return
        with self._translate_errors("put_canonical"), self._write_transaction():
            after = self._check_stretch(rows)
            self._conn.execute(
                "DELETE FROM canonical WHERE slot > ? AND slot <= ?", (after, rows[-1][0])
            )
            self._conn.executemany("INSERT INTO canonical (slot, hash) VALUES (?, ?)", rows)

    def _check_stretch(self, rows: list[tuple[int, bytes]]) -> int:
        """The slot of the first block's parent; StoreError unless each block is stored
        at its slot and is the child of the one before it."""
        parents = [self._get_canonical_parent(slot, block) for slot, block in rows]
        for (_, previous), (_, block), parent in zip(rows[:-1], rows[1:], parents[1:], strict=True):
            if parent != previous:
                raise StoreError(
                    f"canonical block {block.hex()} is not the child of {previous.hex()}"
                )
        # A stored block's parent is always stored (put_block), the genesis included.
        parent_slot = self._get_parent_slot(BlockHash(parents[0]))
        return rows[0][0] - 1 if parent_slot is None else parent_slot

    def _get_canonical_parent(self, slot: int, block: bytes) -> bytes:
        row = self._conn.execute(
            "SELECT parent, slot FROM blocks WHERE hash = ?", (block,)
        ).fetchone()
        if row is None:
            raise StoreError(f"canonical block {block.hex()} is not a stored block")
        if int(row[1]) != slot:
            raise StoreError(
                f"canonical block {block.hex()} is stored at slot {row[1]}, not {slot}"
            )
        return bytes(row[0])

    def get_canonical_after(self, slot: int, limit: int) -> list[tuple[BlockHash, bytes]]:
        """Up to ``limit`` canonical blocks after ``slot``, by slot: (hash, encoded)."""
        if limit < 0:
            raise StoreError(f"get_canonical_after: negative limit {limit}")
        with self._translate_errors("get_canonical_after"):
            rows = self._conn.execute(
                "SELECT canonical.hash, blocks.encoded FROM canonical"
                " JOIN blocks ON blocks.hash = canonical.hash"
                " WHERE canonical.slot > ? ORDER BY canonical.slot LIMIT ?",
                (slot, limit),
            ).fetchall()
        return [(BlockHash(bytes(row[0])), bytes(row[1])) for row in rows]

    def get_canonical_hash(self, slot: int) -> BlockHash | None:
        """The canonical block at ``slot``; None for a skip slot or one not recorded."""
        with self._translate_errors("get_canonical_hash"):
            row = self._conn.execute(
                "SELECT hash FROM canonical WHERE slot = ?", (slot,)
            ).fetchone()
        return None if row is None else BlockHash(bytes(row[0]))

    def get_latest_canonical(self) -> tuple[Slot, BlockHash] | None:
        """The canonical block with the highest slot, as (slot, hash), or None."""
        with self._translate_errors("get_latest_canonical"):
            row = self._conn.execute(
                "SELECT slot, hash FROM canonical ORDER BY slot DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _to_canonical(row)

    def put_state_snapshot(self, block: BlockHash, slot: Slot, encoded: bytes) -> None:
        """Replace the snapshot with the state after ``block``, which must be stored (or
        the genesis) at ``slot``. One small transaction, like ``put_canonical``, so the
        node can write both at each finality advance."""
        _check_hash(block, "snapshot block")
        with self._translate_errors("put_state_snapshot"), self._write_transaction():
            stored_slot = self._get_parent_slot(block)
            if stored_slot is None:
                raise StoreError(f"snapshot block {block.hex()} is not a stored block")
            if stored_slot != slot:
                raise StoreError(
                    f"snapshot block {block.hex()} is stored at slot {stored_slot}, not {slot}"
                )
            self._conn.execute(
                "INSERT OR REPLACE INTO state_snapshot (id, hash, slot, encoded)"
                " VALUES (0, ?, ?, ?)",
                (block, slot, encoded),
            )

    def get_state_snapshot(self) -> StateSnapshot | None:
        with self._translate_errors("get_state_snapshot"):
            row = self._conn.execute(
                "SELECT hash, slot, encoded FROM state_snapshot WHERE id = 0"
            ).fetchone()
        return None if row is None else _to_snapshot(row)

    # -- maintenance ---------------------------------------------------------------

    def check_integrity(self) -> None:
        """Run SQLite's full ``integrity_check``; raise StoreError on any problem.

        O(size of the database), so it is not run on every open.
        """
        with self._translate_errors("check_integrity"):
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        messages = [str(row[0]) for row in rows]
        if messages != ["ok"]:
            raise StoreError(
                f"block store {self._path} failed integrity check: {'; '.join(messages[:5])}"
            )

    # -- plumbing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front so the checks made inside the
        # transaction still hold at COMMIT.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._roll_back()
            raise
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            # A COMMIT that fails (disk full while writing the WAL) may leave the
            # transaction open; rolled back here, it cannot be committed by a later one.
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        # SQLite may already have rolled back by itself (disk full, I/O error).
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def _translate_errors(self, operation: str) -> Iterator[None]:
        if self._closed:
            raise StoreError(f"block store {self._path} is closed ({operation})")
        try:
            yield
        except sqlite3.Error as exc:
            if self._is_disk_full(exc):
                raise StoreFullError(
                    f"block store {self._path}: disk full ({operation}): {exc}"
                ) from exc
            raise StoreError(f"block store {self._path} is unusable ({operation}): {exc}") from exc

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
            stat = os.statvfs(os.path.dirname(os.path.abspath(self._path)))
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < FULL_MARGIN_BYTES


def load_fork_choice(store: BlockStore) -> ForkChoice:
    """Rebuild the fork-choice tree from every stored block.

    Raises StoreError when the store has no genesis yet.
    """
    genesis = store.get_genesis()
    if genesis is None:
        raise StoreError(f"block store {store.path} has no genesis")
    fork_choice = ForkChoice(genesis.hash, GENESIS_SLOT)
    for record in store.iter_blocks():
        fork_choice.add(record.hash, record.parent, record.slot, record.weight)
    return fork_choice


def _to_record(row: tuple[bytes, bytes, int, int]) -> BlockRecord:
    return BlockRecord(
        hash=BlockHash(bytes(row[0])),
        parent=BlockHash(bytes(row[1])),
        slot=Slot(int(row[2])),
        weight=int(row[3]),
    )


_AppEventRow = tuple[
    bytes, int, bytes, int, str, bytes | None, bytes | None, bytes | None, int | None
]
"""An ``app_history`` row: block, seq, app, slot, kind, node, origin, signer, version."""


def _app_event_row(event: AppEventRecord) -> _AppEventRow:
    _check_hash(event.block, "block")
    _check_hash(event.app, "app")
    if event.seq < 0 or event.slot < 0:
        raise StoreError(
            f"app event of block {event.block.hex()} has seq {event.seq}, slot {event.slot}"
        )
    return (
        event.block,
        event.seq,
        event.app,
        event.slot,
        event.kind,
        event.node,
        event.origin,
        event.signer,
        event.version,
    )


def _to_app_event(row: _AppEventRow) -> AppEventRecord:
    return AppEventRecord(
        block=BlockHash(bytes(row[0])),
        seq=int(row[1]),
        app=AppId(bytes(row[2])),
        slot=Slot(int(row[3])),
        kind=str(row[4]),
        node=None if row[5] is None else bytes(row[5]),
        origin=None if row[6] is None else bytes(row[6]),
        signer=None if row[7] is None else bytes(row[7]),
        version=None if row[8] is None else int(row[8]),
    )


def _canonical_rows(entries: Iterable[tuple[Slot, BlockHash]]) -> list[tuple[int, bytes]]:
    rows = [(int(slot), bytes(block)) for slot, block in entries]
    for _, block in rows:
        _check_hash(block, "canonical block")
    return rows


def _to_canonical(row: tuple[int, bytes]) -> tuple[Slot, BlockHash]:
    return Slot(int(row[0])), BlockHash(bytes(row[1]))


def _to_snapshot(row: tuple[bytes, int, bytes]) -> StateSnapshot:
    return StateSnapshot(
        hash=BlockHash(bytes(row[0])), slot=Slot(int(row[1])), encoded=bytes(row[2])
    )


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise StoreError(f"{what} hash must be {HASH_SIZE} bytes, got {len(value)}")
