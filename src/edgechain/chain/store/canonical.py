"""The block store's ``canonical`` and ``state_snapshot`` tables (schema 3;
:class:`CanonicalTables`, a part of ``BlockStore``) and the snapshot record.

``canonical`` maps each slot of the finalized chain that has a block (skip blocks
included; the genesis is not a row) to that block, which a joining node downloads
forward from (``get_canonical_after``). The node writes it as finality advances, one
stretch of chain at a time (``put_canonical``). ``state_snapshot`` holds one chain state
(opaque bytes) at a stored block, the latest the node saved, so a restart starts there
instead of replaying every block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.chain.store.blocks import check_hash, get_stored_slot
from edgechain.chain.store.connection import StoreConnection
from edgechain.errors import StoreError
from edgechain.types import BlockHash, Slot


@dataclass(frozen=True)
class StateSnapshot:
    """The stored chain state after block ``hash`` (at ``slot``), encoded by its owner
    (the store does not read it)."""

    hash: BlockHash
    slot: Slot
    encoded: bytes


class CanonicalTables:
    """The canonical chain and the state snapshot of a ``BlockStore``."""

    # Set by BlockStore.__init__.
    _db: StoreConnection

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
        with self._db.translate_errors("put_canonical"), self._db.write_transaction():
            after = self._check_stretch(rows)
            self._db.conn.execute(
                "DELETE FROM canonical WHERE slot > ? AND slot <= ?", (after, rows[-1][0])
            )
            self._db.conn.executemany("INSERT INTO canonical (slot, hash) VALUES (?, ?)", rows)

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
        parent_slot = get_stored_slot(self._db.conn, BlockHash(parents[0]))
        return rows[0][0] - 1 if parent_slot is None else parent_slot

    def _get_canonical_parent(self, slot: int, block: bytes) -> bytes:
        row = self._db.conn.execute(
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
        with self._db.translate_errors("get_canonical_after"):
            rows = self._db.conn.execute(
                "SELECT canonical.hash, blocks.encoded FROM canonical"
                " JOIN blocks ON blocks.hash = canonical.hash"
                " WHERE canonical.slot > ? ORDER BY canonical.slot LIMIT ?",
                (slot, limit),
            ).fetchall()
        return [(BlockHash(bytes(row[0])), bytes(row[1])) for row in rows]

    def get_canonical_hash(self, slot: int) -> BlockHash | None:
        """The canonical block at ``slot``; None for a skip slot or one not recorded."""
        with self._db.translate_errors("get_canonical_hash"):
            row = self._db.conn.execute(
                "SELECT hash FROM canonical WHERE slot = ?", (slot,)
            ).fetchone()
        return None if row is None else BlockHash(bytes(row[0]))

    def get_latest_canonical(self) -> tuple[Slot, BlockHash] | None:
        """The canonical block with the highest slot, as (slot, hash), or None."""
        with self._db.translate_errors("get_latest_canonical"):
            row = self._db.conn.execute(
                "SELECT slot, hash FROM canonical ORDER BY slot DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _to_canonical(row)

    def put_state_snapshot(self, block: BlockHash, slot: Slot, encoded: bytes) -> None:
        """Replace the snapshot with the state after ``block``, which must be stored (or
        the genesis) at ``slot``. One small transaction, like ``put_canonical``, so the
        node can write both at each finality advance."""
        check_hash(block, "snapshot block")
        with self._db.translate_errors("put_state_snapshot"), self._db.write_transaction():
            stored_slot = get_stored_slot(self._db.conn, block)
            if stored_slot is None:
                raise StoreError(f"snapshot block {block.hex()} is not a stored block")
            if stored_slot != slot:
                raise StoreError(
                    f"snapshot block {block.hex()} is stored at slot {stored_slot}, not {slot}"
                )
            self._db.conn.execute(
                "INSERT OR REPLACE INTO state_snapshot (id, hash, slot, encoded)"
                " VALUES (0, ?, ?, ?)",
                (block, slot, encoded),
            )

    def get_state_snapshot(self) -> StateSnapshot | None:
        with self._db.translate_errors("get_state_snapshot"):
            row = self._db.conn.execute(
                "SELECT hash, slot, encoded FROM state_snapshot WHERE id = 0"
            ).fetchone()
        return None if row is None else _to_snapshot(row)


def _canonical_rows(entries: Iterable[tuple[Slot, BlockHash]]) -> list[tuple[int, bytes]]:
    rows = [(int(slot), bytes(block)) for slot, block in entries]
    for _, block in rows:
        check_hash(block, "canonical block")
    return rows


def _to_canonical(row: tuple[int, bytes]) -> tuple[Slot, BlockHash]:
    return Slot(int(row[0])), BlockHash(bytes(row[1]))


def _to_snapshot(row: tuple[bytes, int, bytes]) -> StateSnapshot:
    return StateSnapshot(
        hash=BlockHash(bytes(row[0])), slot=Slot(int(row[1])), encoded=bytes(row[2])
    )
