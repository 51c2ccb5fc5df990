"""What a chaos run measures after each fault (``lab/chaos.py``), from outside the nodes:

* **heads** — every node's ``/status`` polled in parallel; the honest nodes have
  converged when every running, unpaused node answers with one head. Measured from the
  end of the fault, limit :data:`HEAD_LIMIT_SLOTS` slots (issue 12).
* **apps** — every live app runs exactly once (one unfrozen process group on this
  host) on the node the chain places it on, within K + 3 slots of the fault's end
  (K = ``down_after_slots``, "Every app runs exactly once"). A second unfrozen copy of
  an app at any moment of the run, confirmed by a second look, is a violation whenever
  it happens (:class:`~edgechain.lab.exactly_once_watch.Observer`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from edgechain.lab.exactly_once_watch import Observer, get_fleet
from edgechain.lab.faults_live import POLL_S, LiveError, LiveTestnet, http_get

HEAD_LIMIT_SLOTS = 5
"""Honest heads converge within this many slots after a fault ends (issue 12)."""
APPS_EXTRA_SLOTS = 3
"""Every live app runs exactly once within K + this many slots after a fault ends."""
STATUS_TIMEOUT_S = 2.0
MAX_LAG_SLOTS = 2
"""A node whose head is on the leading node's chain this many slots behind it at most
counts as converged (the block is on its way)."""


@dataclass(frozen=True)
class HeadView:
    """One poll of every reachable node: node name -> (head hex, head slot)."""

    heads: Mapping[str, tuple[str | None, int | None]]
    peer_errors: Mapping[str, Mapping[str, int]]

    def is_converged(self, expected: Collection[str], chain: Collection[str] = ()) -> bool:
        """Every expected node answered, and all are on one chain: the same head, or
        (given ``chain``, the hashes of the chain of the node ahead) a head on that
        chain at most :data:`MAX_LAG_SLOTS` behind. One poll of many nodes is not one
        instant: a node that has not yet heard of the newest block follows the same
        chain; a node on another branch does not."""
        if not expected or any(name not in self.heads for name in expected):
            return False
        if len({self.heads[name][0] for name in expected}) == 1:
            return True
        leader = self.get_leader(expected)
        top = self.heads[leader][1] or 0
        return all(
            (head := self.heads[name])[0] in chain and (head[1] or 0) >= top - MAX_LAG_SLOTS
            for name in expected
        )

    def get_leader(self, expected: Collection[str]) -> str:
        """The node with the highest head (ties: the lowest name)."""
        return min(expected, key=lambda name: (-(self.heads[name][1] or 0), name))


class HeadWatch:
    """Polls every node's ``/status`` in parallel."""

    def __init__(self, urls: Callable[[], Mapping[str, str]], workers: int) -> None:
        self.urls = urls
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="status")
        self.last: HeadView | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def get_chain(self, view: HeadView, expected: Collection[str]) -> set[str]:
        """The hashes of the leading node's chain; empty when every head is the same
        or every expected node did not answer (no need to ask)."""
        if any(name not in view.heads for name in expected):
            return set()
        if len({view.heads[name][0] for name in expected}) <= 1:
            return set()
        url = self.urls().get(view.get_leader(expected))
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            if url is not None:
                answer = http_get(url, "/chain", STATUS_TIMEOUT_S)
                return {str(entry["hash"]) for entry in answer}
        return set()

    def poll(self, names: Collection[str]) -> HeadView:
        urls = self.urls()
        wanted = [(name, urls[name]) for name in sorted(names) if name in urls]
        answers = list(self._pool.map(lambda item: _get_status(item[1]), wanted))
        heads: dict[str, tuple[str | None, int | None]] = {}
        errors: dict[str, Mapping[str, int]] = {}
        for (name, _), status in zip(wanted, answers, strict=True):
            if status is None:
                continue
            heads[name] = (status.get("head"), status.get("head_slot"))
            found = status.get("peer_errors")
            errors[name] = found if isinstance(found, dict) else {}
        self.last = HeadView(heads, errors)
        return self.last


def _get_status(url: str) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        answer = http_get(url, "/status", STATUS_TIMEOUT_S)
        if isinstance(answer, dict):
            return answer
    return None


@dataclass(frozen=True)
class Recovery:
    """How long after a fault's end an invariant held again (None: not within limit)."""

    seconds: float | None
    last_seen: str
    """What the last look saw when it did not hold (for the violation's detail)."""


def wait_heads(
    watch: HeadWatch,
    names: Callable[[], Collection[str]],
    t_end: float,
    limit_s: float,
    tick: Callable[[], None],
) -> Recovery:
    """Poll until the heads of ``names()`` agree or ``limit_s`` after ``t_end`` passed."""
    seen = "no poll"
    while True:
        expected = names()
        view = watch.poll(expected)
        t = time.time()
        if view.is_converged(expected, watch.get_chain(view, expected)):
            return Recovery(max(0.0, t - t_end), "")
        seen = _describe_heads(view, expected)
        if t - t_end > limit_s:
            return Recovery(None, seen)
        tick()
        time.sleep(POLL_S)


def _describe_heads(view: HeadView, expected: Collection[str]) -> str:
    groups: dict[str, list[str]] = {}
    for name in sorted(expected):
        head, slot = view.heads.get(name, (None, None))
        key = f"{head[:12]}@{slot}" if head else "no answer"
        groups.setdefault(key, []).append(name)
    return "; ".join(f"{key}: {', '.join(nodes)}" for key, nodes in sorted(groups.items()))


def check_apps_once(
    net: LiveTestnet, obs: Observer, avoid: Collection[str] = ()
) -> tuple[bool, str]:
    """Every app runs exactly once, where the chain places it (one look)."""
    _, instances = obs.scan()
    once = obs.get_running_once(instances)
    try:
        fleet = get_fleet(net, tuple(avoid))
    except LiveError as exc:
        return False, str(exc)
    wrong = []
    for app, counter in sorted(obs.apps.items(), key=lambda item: item[1].name):
        instance = once.get(app)
        view = fleet.get(app)
        placed = view["node_name"] if view is not None else None
        if instance is None or instance.node != placed:
            copies = [
                (i.node, "frozen" if i.frozen else "running") for i in instances if i.app == app
            ]
            wrong.append(f"{counter.name}: chain places it on {placed}, copies {copies}")
    return not wrong, "; ".join(wrong[:5]) + (f" (+{len(wrong) - 5})" if len(wrong) > 5 else "")


def wait_apps_once(
    net: LiveTestnet,
    obs: Observer,
    t_end: float,
    limit_s: float,
    tick: Callable[[], None],
    avoid: Callable[[], Collection[str]],
) -> Recovery:
    """Poll until :func:`check_apps_once` holds or ``limit_s`` after ``t_end`` passed."""
    while True:
        held, seen = check_apps_once(net, obs, avoid())
        t = time.time()
        if held:
            return Recovery(max(0.0, t - t_end), "")
        if t - t_end > limit_s:
            return Recovery(None, seen)
        tick()
        time.sleep(POLL_S)
