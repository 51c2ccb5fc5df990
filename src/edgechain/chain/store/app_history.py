"""The block store's ``app_history`` table (:class:`AppHistoryTable`, a part of
``BlockStore``, schema 2 on) and the record its rows are read as.

``app_history`` holds what the chain did to each app in its finalized blocks
(``orchestrator/fleet.py``, ``HistoryEvent``), which the node writes as blocks
finalize, since memory forgets them (``consensus/pruning.py``). Rows are keyed by
(block, seq), the event's position among its block's events, so writing the same
block's events again (a replay after a restart) is a no-op. Plain columns, no pickles:
the store still does not depend on the types the rows come from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.chain.store.blocks import check_hash
from edgechain.chain.store.connection import StoreConnection
from edgechain.errors import StoreError
from edgechain.types import AppId, BlockHash, Slot


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


class AppHistoryTable:
    """The finalized app history of a ``BlockStore``."""

    # Set by BlockStore.__init__.
    _db: StoreConnection

    def put_app_events(self, events: Iterable[AppEventRecord]) -> int:
        """Store app history events in one transaction; return how many were new.

        An event already stored under the same (block, seq) is kept as it is (the same
        block's events computed again, by a replay): writing a batch twice is a no-op.
        """
        rows = [_app_event_row(event) for event in events]
        with self._db.translate_errors("put_app_events"), self._db.write_transaction():
            before = self._db.conn.total_changes
            self._db.conn.executemany(
                "INSERT OR IGNORE INTO app_history"
                " (block, seq, app, slot, kind, node, origin, signer, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._db.conn.total_changes - before

    def get_app_events(self, app: AppId) -> list[AppEventRecord]:
        """The stored events of ``app`` in chain order (slot, then place in the block)."""
        with self._db.translate_errors("get_app_events"):
            rows = self._db.conn.execute(
                "SELECT block, seq, app, slot, kind, node, origin, signer, version"
                " FROM app_history WHERE app = ? ORDER BY slot, seq",
                (app,),
            ).fetchall()
        return [_to_app_event(row) for row in rows]


_AppEventRow = tuple[
    bytes, int, bytes, int, str, bytes | None, bytes | None, bytes | None, int | None
]
"""An ``app_history`` row: block, seq, app, slot, kind, node, origin, signer, version."""


def _app_event_row(event: AppEventRecord) -> _AppEventRow:
    check_hash(event.block, "block")
    check_hash(event.app, "app")
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
