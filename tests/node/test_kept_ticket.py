"""The ticket a node started with is kept in its store (``node/config.get_kept_ticket``):
a validator excluded while it was down, started again without ``--ticket``, could never
rejoin (session 59)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgechain.chain.store.block_store import BlockStore
from edgechain.node.config import get_kept_ticket


def test_a_node_started_without_its_ticket_presents_the_one_it_was_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        assert get_kept_ticket(store, b"") == b""  # never given one: nothing to present
        assert get_kept_ticket(store, b"\x01" * 96) == b"\x01" * 96
    # A later start, without the flag: the kept one, and the log says so.
    with BlockStore(tmp_path / "chain.db") as store, caplog.at_level(logging.INFO):
        assert get_kept_ticket(store, b"") == b"\x01" * 96
    assert "admission: the ticket kept from an earlier start" in caplog.text
    # A node given another (a new token) presents that one, and keeps it instead.
    with BlockStore(tmp_path / "chain.db") as store:
        assert get_kept_ticket(store, b"\x02" * 136) == b"\x02" * 136
        assert get_kept_ticket(store, b"") == b"\x02" * 136
