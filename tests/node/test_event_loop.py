"""The daemon's event loop choice (node/event_loop.py)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from edgechain.node.event_loop import (
    EVENT_LOOP_ENV,
    EventLoopChoiceError,
    get_loop_factory,
    run_with_loop,
)


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default() -> None:
    loop_type = run_with_loop(_loop_type(), get_loop_factory({}))
    assert loop_type is uvloop.Loop


def test_the_standard_loop_on_request() -> None:
    loop_type = run_with_loop(_loop_type(), get_loop_factory({EVENT_LOOP_ENV: "asyncio"}))
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(EventLoopChoiceError, match="EDGECHAIN_EVENT_LOOP='trio'"):
        get_loop_factory({EVENT_LOOP_ENV: "trio"})
