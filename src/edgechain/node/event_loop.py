"""Which asyncio event loop the node daemon runs on.

uvloop (libuv under asyncio's API) by default: a node's loop handles tens of datagrams,
frames and timers a slot, and asyncio's pure-Python loop was a third of an off-duty
node's ``other`` CPU (issue 13). Measured on a 40-node testnet at 2 s slots, one run
each (ARCHITECTURE.md, "CPU budget"). ``EDGECHAIN_EVENT_LOOP=asyncio`` selects the
standard loop, e.g. to rule uvloop out when chasing a bug; the protocol code never sees
the difference (it does no I/O).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOP_ENV = "EDGECHAIN_EVENT_LOOP"
EVENT_LOOPS = ("uvloop", "asyncio")


class EventLoopChoiceError(ValueError):
    """An unknown ``EDGECHAIN_EVENT_LOOP``."""


def get_loop_factory(env: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory ``env`` asks for (uvloop when unset)."""
    choice = env.get(EVENT_LOOP_ENV, "uvloop") or "uvloop"
    if choice not in EVENT_LOOPS:
        raise EventLoopChoiceError(
            f"{EVENT_LOOP_ENV}={choice!r}: expected one of {', '.join(EVENT_LOOPS)}"
        )
    if choice == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_with_loop(
    main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop]
) -> T:
    """``asyncio.run(main)`` on a loop made by ``factory``."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
