"""The block store: blocks, genesis and head in one SQLite file that survives kill -9.

:class:`BlockStore` opens the file and owns its connection; its tables are its parts,
one module each: ``blocks.py`` (genesis, blocks, head), ``app_history.py``,
``canonical.py`` (the canonical chain, the state snapshot), plus the small ``meta``
key/value table here. ``schema.py`` holds the on-disk format and its migrations,
``connection.py`` the transactions and the disk-full errors. ``load_fork_choice``
rebuilds the fork-choice tree from a store.

The store is the only storage of ``chain/``; it does SQLite I/O and nothing else (no
clock, no randomness), and nothing else in ``chain/`` imports it.

Durability. The database runs in WAL mode with ``synchronous=FULL``: every put is one
transaction, and when it returns its WAL frames are fsynced, so a committed block or
head survives a process kill *and* a power cut. ``NORMAL`` would only guarantee the
former; the cost of FULL is one fsync per commit, which is nothing at one block per
slot (seconds). A kill at any moment leaves the database at some committed state:
SQLite rolls back the torn WAL tail on the next open.
"""

from __future__ import annotations

import os
from types import TracebackType

from edgechain.chain.forkchoice import GENESIS_SLOT, ForkChoice
from edgechain.chain.store.app_history import AppHistoryTable
from edgechain.chain.store.blocks import BlockTables
from edgechain.chain.store.canonical import CanonicalTables
from edgechain.chain.store.connection import StoreConnection
from edgechain.chain.store.schema import open_store_file
from edgechain.errors import StoreError


class BlockStore(BlockTables, AppHistoryTable, CanonicalTables):
    """Blocks, genesis, head, app history, the canonical chain, a state snapshot and a
    small key/value table in one SQLite file.

    Not thread-safe; one process should own a store file at a time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = StoreConnection(path)
        try:
            open_store_file(self._db)
        except BaseException:
            self._db.close()
            raise

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
        self._db.close()

    @property
    def path(self) -> str:
        return self._db.path

    # -- small key/value table -----------------------------------------------------

    def put_meta(self, key: str, value: bytes) -> None:
        """Durable even against a power loss: the node's last finality vote lives here."""
        with self._db.translate_errors("put_meta"), self._db.write_transaction(durable=True):
            self._db.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )

    def get_meta(self, key: str) -> bytes | None:
        with self._db.translate_errors("get_meta"):
            row = self._db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- maintenance ---------------------------------------------------------------

    def check_integrity(self) -> None:
        """Run SQLite's full ``integrity_check``; raise StoreError on any problem.

        O(size of the database), so it is not run on every open.
        """
        with self._db.translate_errors("check_integrity"):
            rows = self._db.conn.execute("PRAGMA integrity_check").fetchall()
        messages = [str(row[0]) for row in rows]
        if messages != ["ok"]:
            raise StoreError(
                f"block store {self._db.path} failed integrity check: {'; '.join(messages[:5])}"
            )


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
