"""The VDF thread's raise (node/priority.py), on real threads of this process."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from edgechain.node.priority import (
    PRODUCER_NICE,
    get_thread_policy,
    raise_thread_priority,
    set_thread_realtime,
)


def _run_in_thread(work: Callable[[], dict[str, object]]) -> dict[str, object]:
    """Run ``work`` in a new thread; what it returned."""
    result: dict[str, object] = {}

    def target() -> None:
        result.update(work())

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return result


def test_the_vdf_thread_is_real_time_where_allowed_and_only_that_thread() -> None:
    def raise_and_read() -> dict[str, object]:
        allowed = set_thread_realtime(1)
        policy = get_thread_policy()
        # Back to normal so the test's thread leaves nothing raised behind.
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return {"allowed": allowed, "policy": policy}

    before = get_thread_policy()
    seen = _run_in_thread(raise_and_read)
    assert seen["policy"] == ("rr" if seen["allowed"] else before)
    assert get_thread_policy() == before  # per thread: the caller's class is untouched


def test_raise_thread_priority_sets_nice_and_class_together() -> None:
    def raise_and_read() -> dict[str, object]:
        raise_thread_priority()
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return {"policy": get_thread_policy(), "nice": nice}

    allowed = _run_in_thread(lambda: {"allowed": set_thread_realtime(1)})["allowed"]
    seen = _run_in_thread(raise_and_read)
    if allowed:  # root or CAP_SYS_NICE, as in CI
        assert seen == {"policy": "rr", "nice": PRODUCER_NICE}
    else:
        assert seen["policy"] == "normal"
