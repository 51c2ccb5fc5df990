"""The block store's block tree: the ``genesis``, ``blocks`` and ``head`` tables
(:class:`BlockTables`, a part of ``BlockStore``) and the records they are read as.

Blocks are opaque encoded bytes plus the metadata fork choice needs (parent, slot,
weight), so the store does not depend on the block encoding.

Consistency. ``put_block`` requires the parent (a stored block or the genesis) and a
later slot, and ``set_head`` requires a stored block, both checked inside the write
transaction, so the stored blocks always form one tree rooted at genesis and the head
always names a stored block. ``load_fork_choice`` (``block_store.py``) relies on both.

A block's hash does not cover its attestation, so the same block can arrive with
different signer sets (and bytes). The first write wins: ``put_block`` of a known hash
is a no-op, as is ``ForkChoice.add``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from edgechain.chain.forkchoice import GENESIS_SLOT
from edgechain.chain.store.connection import StoreConnection
from edgechain.errors import StoreError
from edgechain.types import HASH_SIZE, BlockHash, Slot

_ITER_BATCH = 512
"""Rows per query in ``iter_blocks`` so no read transaction stays open across yields."""


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


class BlockTables:
    """Genesis, blocks and head of a ``BlockStore``."""

    # Set by BlockStore.__init__.
    _db: StoreConnection

    # -- genesis -------------------------------------------------------------------

    def put_genesis(self, genesis: BlockHash, encoded: bytes) -> None:
        """Record the chain's genesis once; the same hash again is a no-op."""
        check_hash(genesis, "genesis")
        with self._db.translate_errors("put_genesis"), self._db.write_transaction():
            row = self._db.conn.execute("SELECT hash FROM genesis WHERE id = 0").fetchone()
            if row is not None:
                if bytes(row[0]) != genesis:
                    raise StoreError(
                        f"block store {self._db.path} belongs to genesis "
                        f"{bytes(row[0]).hex()}, not {genesis.hex()}"
                    )
                return
            self._db.conn.execute(
                "INSERT INTO genesis (id, hash, encoded) VALUES (0, ?, ?)", (genesis, encoded)
            )

    def get_genesis(self) -> GenesisRecord | None:
        with self._db.translate_errors("get_genesis"):
            row = self._db.conn.execute("SELECT hash, encoded FROM genesis WHERE id = 0").fetchone()
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
            check_hash(block, "block")
            check_hash(parent, "parent")
            if weight < 0:
                raise StoreError(f"block {block.hex()} has negative weight {weight}")
        added = 0
        with self._db.translate_errors("put_block"), self._db.write_transaction():
            for block, parent, slot, weight, encoded in rows:
                added += self._insert_block(block, parent, slot, weight, encoded)
        return added

    def _insert_block(
        self, block: BlockHash, parent: BlockHash, slot: Slot, weight: int, encoded: bytes
    ) -> int:
        existing = self._db.conn.execute(
            "SELECT parent, slot FROM blocks WHERE hash = ?", (block,)
        ).fetchone()
        if existing is not None:
            if bytes(existing[0]) != parent or int(existing[1]) != slot:
                raise StoreError(f"block {block.hex()} is stored with a different parent or slot")
            return 0
        parent_slot = get_stored_slot(self._db.conn, parent)
        if parent_slot is None:
            raise StoreError(f"parent {parent.hex()} of block {block.hex()} is not stored")
        if slot <= parent_slot:
            raise StoreError(
                f"block {block.hex()} at slot {slot} does not follow parent slot {parent_slot}"
            )
        self._db.conn.execute(
            "INSERT INTO blocks (hash, parent, slot, weight, encoded) VALUES (?, ?, ?, ?, ?)",
            (block, parent, slot, weight, encoded),
        )
        return 1

    def get_block(self, block: BlockHash) -> bytes | None:
        """The encoded bytes of a stored (non-genesis) block, or None."""
        with self._db.translate_errors("get_block"):
            row = self._db.conn.execute(
                "SELECT encoded FROM blocks WHERE hash = ?", (block,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def get_record(self, block: BlockHash) -> BlockRecord | None:
        """A stored block's metadata, or None."""
        with self._db.translate_errors("get_record"):
            row = self._db.conn.execute(
                "SELECT hash, parent, slot, weight FROM blocks WHERE hash = ?", (block,)
            ).fetchone()
        return None if row is None else _to_record(row)

    def has_block(self, block: BlockHash) -> bool:
        """True for a stored non-genesis block (see ``get_genesis`` for genesis)."""
        with self._db.translate_errors("has_block"):
            row = self._db.conn.execute("SELECT 1 FROM blocks WHERE hash = ?", (block,)).fetchone()
        return row is not None

    def count_blocks(self) -> int:
        with self._db.translate_errors("count_blocks"):
            (count,) = self._db.conn.execute("SELECT count(*) FROM blocks").fetchone()
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
            with self._db.translate_errors("iter_blocks"):
                rows = self._db.conn.execute(
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
        with self._db.translate_errors("set_head"), self._db.write_transaction():
            if get_stored_slot(self._db.conn, head) is None:
                raise StoreError(f"head {head.hex()} is not a stored block")
            self._db.conn.execute("INSERT OR REPLACE INTO head (id, hash) VALUES (0, ?)", (head,))

    def get_head(self) -> BlockHash | None:
        with self._db.translate_errors("get_head"):
            row = self._db.conn.execute("SELECT hash FROM head WHERE id = 0").fetchone()
        return None if row is None else BlockHash(bytes(row[0]))


def get_stored_slot(conn: sqlite3.Connection, block: BlockHash) -> Slot | None:
    """The slot of ``block`` if it is stored (``GENESIS_SLOT`` for the genesis); None if
    it is neither. Runs on ``conn`` as it is, inside the caller's transaction."""
    row = conn.execute("SELECT slot FROM blocks WHERE hash = ?", (block,)).fetchone()
    if row is not None:
        return Slot(int(row[0]))
    row = conn.execute("SELECT 1 FROM genesis WHERE hash = ?", (block,)).fetchone()
    return GENESIS_SLOT if row is not None else None


def check_hash(value: bytes, what: str) -> None:
    """StoreError unless ``value`` has the size of a hash (block hashes, app ids)."""
    if len(value) != HASH_SIZE:
        raise StoreError(f"{what} hash must be {HASH_SIZE} bytes, got {len(value)}")


def _to_record(row: tuple[bytes, bytes, int, int]) -> BlockRecord:
    return BlockRecord(
        hash=BlockHash(bytes(row[0])),
        parent=BlockHash(bytes(row[1])),
        slot=Slot(int(row[2])),
        weight=int(row[3]),
    )
