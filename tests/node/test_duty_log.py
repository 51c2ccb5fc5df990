"""What a node logs of its catch-up (node/events.log_duty): the asks and answers that
explain a slow join."""

from __future__ import annotations

import logging

import pytest

from edgechain.consensus.messages import (
    HEAD_WANT,
    Outgoing,
    Route,
    SyncRequestMsg,
    SyncResponseMsg,
)
from edgechain.node.events import log_duty
from edgechain.telemetry.logs import get_fields
from edgechain.types import BlockHash, NodeId

PEER = NodeId(bytes(range(32)))
ME = NodeId(bytes(32))


def _logged(
    caplog: pytest.LogCaptureFixture, outgoing: Outgoing
) -> list[tuple[str, dict[str, object]]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgechain"):
        log_duty(outgoing, ME)
    return [(r.getMessage(), dict(get_fields(r))) for r in caplog.records]


def test_sync_asks_and_answers_are_logged_with_their_peer_and_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ask = Outgoing(SyncRequestMsg(BlockHash(b"\x01" * 32), 51), Route.DIRECT, (PEER,))
    assert _logged(caplog, ask) == [("sync asked", {"to": [PEER.hex()[:16]], "limit": 51})]
    answer = Outgoing(SyncResponseMsg(()), Route.DIRECT, (PEER,))
    assert _logged(caplog, answer) == [("sync sent", {"to": [PEER.hex()[:16]], "blocks": 0})]
    chain_ask = Outgoing(SyncRequestMsg(HEAD_WANT, 1), Route.DIRECT, (PEER,))
    assert [m for m, _ in _logged(caplog, chain_ask)] == ["chain asked"]
