"""The store's ``app_history`` table: round trip, idempotent writes, atomic batches, and
the migration of a schema-1 store (blocks kept, the table added)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from edgechain.chain.store.app_history import AppEventRecord
from edgechain.chain.store.block_store import BlockStore
from edgechain.chain.store.schema import SCHEMA_VERSION
from edgechain.errors import StoreError
from edgechain.types import AppId, BlockHash, Slot


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


WEB, DB = AppId(h("web")), AppId(h("db"))
NODE, OTHER, SIGNER = h("node"), h("other"), b"\x05" * 48


def event(app: AppId, block: str, seq: int, slot: int, kind: str, **kw: object) -> AppEventRecord:
    return AppEventRecord(app, BlockHash(h(block)), seq, Slot(slot), kind, **kw)  # type: ignore[arg-type]


EVENTS = [
    event(WEB, "b1", 0, 1, "submit", signer=SIGNER, version=1),
    event(DB, "b1", 1, 1, "submit", signer=SIGNER, version=1),
    event(DB, "b2", 0, 2, "place", node=OTHER),
    event(WEB, "b2", 1, 2, "place", node=NODE),
    event(WEB, "b7", 0, 7, "migrate", node=OTHER, origin=NODE),
    event(WEB, "b9", 0, 9, "update", signer=SIGNER, version=2),
    event(WEB, "b9", 1, 9, "stop", signer=SIGNER),
]


def test_events_round_trip_per_app_in_chain_order(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        assert store.get_app_events(WEB) == []
        # Written out of order and in two batches: read back by (slot, seq).
        assert store.put_app_events(EVENTS[4:]) == 3
        assert store.put_app_events(EVENTS[:4]) == 4
        assert store.get_app_events(WEB) == [EVENTS[i] for i in (0, 3, 4, 5, 6)]
    with BlockStore(path) as store:  # durable, and the fields typed as written
        web = store.get_app_events(WEB)
        assert web == [EVENTS[i] for i in (0, 3, 4, 5, 6)]
        assert store.get_app_events(DB) == EVENTS[1:3]
        assert store.get_app_events(AppId(h("nothing"))) == []
        assert all(type(e.node) is bytes for e in web if e.node is not None)
        assert web[0].node is None and web[0].version == 1 and web[2].origin == NODE


def test_writing_the_same_events_again_adds_nothing(tmp_path: Path) -> None:
    """A replay after a restart computes the same blocks' events again."""
    with BlockStore(tmp_path / "chain.db") as store:
        assert store.put_app_events(EVENTS) == len(EVENTS)
        assert store.put_app_events(EVENTS) == 0
        assert store.put_app_events([*EVENTS[2:5], event(WEB, "b10", 0, 10, "start")]) == 1
        assert [e.kind for e in store.get_app_events(WEB)] == [
            "submit", "place", "migrate", "update", "stop", "start"
        ]  # fmt: skip
        assert store.put_app_events([]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        AppEventRecord(AppId(b"\x01" * 31), BlockHash(h("b3")), 0, Slot(3), "place"),
        AppEventRecord(WEB, BlockHash(b"\x02" * 33), 0, Slot(3), "place"),
        AppEventRecord(WEB, BlockHash(h("b3")), -1, Slot(3), "place"),
    ],
    ids=["short-app", "long-block", "negative-seq"],
)
def test_a_bad_event_refuses_its_whole_batch(tmp_path: Path, bad: AppEventRecord) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        with pytest.raises(StoreError):
            store.put_app_events([*EVENTS, bad])
        assert store.get_app_events(WEB) == []


def _make_schema_1_store(path: Path) -> None:
    """A store as schema 1 wrote it: blocks, no ``app_history``."""
    with BlockStore(path) as store:
        store.put_genesis(BlockHash(h("genesis")), b"genesis-bytes")
        store.put_block(BlockHash(h("b1")), BlockHash(h("genesis")), Slot(1), 2, b"one")
        store.set_head(BlockHash(h("b1")))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE app_history")
        conn.execute("UPDATE store_info SET value = '1' WHERE key = 'schema_version'")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_a_schema_1_store_is_migrated_and_keeps_its_blocks(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    _make_schema_1_store(path)
    with BlockStore(path) as store:
        assert store.get_head() == h("b1") and store.get_block(BlockHash(h("b1"))) == b"one"
        assert store.get_app_events(WEB) == []
        assert store.put_app_events(EVENTS) == len(EVENTS)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        row = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'")
        assert row.fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
    with BlockStore(path) as store:  # opened again: nothing to migrate, nothing lost
        assert len(store.get_app_events(WEB)) == 5


def test_a_schema_0_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    _make_schema_1_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    with pytest.raises(StoreError, match="schema version 0"):
        BlockStore(path)
