"""Suite-wide fixtures.

Tests marked ``xdist_group(NAME)`` (a live testnet of real nodes, the podman service)
must not run at the same time as another of their group: two testnets on two cores
starve each other's slot deadlines. ``--dist loadgroup`` is meant to keep a group on one
worker, but with the pytest and pytest-xdist installed here the group suffix is lost
(pytest's ``nodeid`` no longer reads the ``_nodeid`` xdist sets), so a module's tests
were spread over both workers and a module's shared testnet was started twice (the
hostile one: 150 s). ``make test`` runs ``--dist loadscope`` (a module stays on one
worker) and the group is enforced here: a module-scoped autouse fixture holds an
exclusive file lock per group for as long as the module's tests run on a worker
(module fixtures, such as a shared testnet, are set up after it and torn down before
it lets go).

``xdist_group("testnet-light")`` marks the small testnets (3-5 nodes at 1 s slots,
driven through the CLI, none asserting a run without skip blocks): they take the
``testnet`` group's lock *shared*, so two of them may run at once (one per worker) but
never beside a ``testnet`` module, which takes it exclusive. Run one at a time, those
modules were about 400 s of the suite's critical path while the other worker idled; two
of them together use well under the two cores.

Scheduling (``GroupScheduling`` below). The lock alone kept the groups apart but not the
workers busy: ``loadscope`` handed out modules by size, so the one- and two-test live
modules came last, and a worker that drew one while the other held the lock waited
(CI at 531bbb5: 912 s; a fresh clone here spent about 540 worker-seconds of its 947 s
run blocked in this fixture). Now every ``testnet`` module is one work unit (one
worker runs them back to back) and so is every ``podman`` module, and the queue is
ordered: the ``testnet-light`` modules first (both workers run them in pairs), then the
``testnet`` unit, then ``podman``, then the rest, which the other worker runs beside
the big testnets.

CI at e77b571 took 893 s of its 900: the ``testnet`` unit (about 600 s) is the longest
lane while the other worker's share of the rest is about 450 s, so a module moved from
the unit into the light pairs saves half its time. The demo, the paper's live form and
the live balance run (4-5 nodes, none asserting a run without skip blocks; each passed 5
of 5 runs beside another light module) moved so: about 40 s.

A third worker (session 57; CI at 70b1bd1 took 971 s). The light pairs leave the CPU
idle much of the time: a 4-node testnet at 1 s slots uses about a third of a core, and
the whole suite averaged 1.3 of its 2 cores. ``make test`` now runs three workers, and
the last is the rest lane (``GroupScheduling.choose_scope``): from the start it takes
the modules of no group while the other two run the light pairs; once the ``testnet``
unit is handed out, only two workers go on, as before: the one that runs it and the
rest lane (the other light worker shuts down when its light modules end). One fresh
clone each: two workers 826 s of pytest, three 749 s of tests, four (light modules in
threes) 740 s.

A second rest lane (session 65; CI at 0765e60 took 1036 s). On a host half as fast, a
timeline of a fresh clone's run (948 s) showed the rest lane alone as the critical
path: 894 s of modules of no group on the last worker, while the light worker that
finished first shut down at 270 s, once the ``testnet`` unit was out. That worker now
goes on with modules of no group, at niceness 10 (``_nice_a_second_rest_lane``): it
takes only the CPU the unit's testnets and the first rest lane leave idle.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_GROUPS = {"testnet-light": ("testnet", fcntl.LOCK_SH)}
"""Groups that hold another group's lock in shared mode: (that group, lock mode)."""

QUEUE_ORDER = ("testnet-light", "testnet", "podman")
"""Groups in the order their modules are handed out; modules of no group come after."""

ONE_UNIT_GROUPS = frozenset({"testnet", "podman"})
"""Groups whose modules form one work unit: one worker runs them back to back instead
of two workers taking turns at the lock, one of them idle."""

_GROUP_MARK = re.compile(r"""pytest\.mark\.xdist_group\(\s*["']([\w-]+)["']""")


@cache
def get_module_group(path: str) -> str | None:
    """The ``xdist_group`` a test file marks (module-level or on a test), read from its
    source: the xdist controller schedules by node id and never imports the tests."""
    try:
        found = _GROUP_MARK.search(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return None
    return found.group(1) if found else None


def get_queue_rank(group: str | None) -> int:
    return QUEUE_ORDER.index(group) if group in QUEUE_ORDER else len(QUEUE_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the collection by ``QUEUE_ORDER`` (stable within a rank): ``loadscope``
    queues its work units in collection order (``GroupScheduling`` turns off its
    reordering by size)."""
    items.sort(key=lambda item: get_queue_rank(get_module_group(str(item.path))))


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    """``loadscope`` with each ``ONE_UNIT_GROUPS`` group as one unit, in queue order;
    with three workers or more, the last one a rest lane (:meth:`choose_scope`)."""

    def _split_scope(self, nodeid: str) -> str:
        group = self._get_group(nodeid)
        if group in ONE_UNIT_GROUPS:
            return f"group:{group}"
        return str(super()._split_scope(nodeid))

    def _get_group(self, nodeid: str) -> str | None:
        path = nodeid.split("::", 1)[0]
        return get_module_group(str(Path(self.config.rootpath) / path))

    def _get_unit_group(self, scope: str) -> str | None:
        return self._get_group(next(iter(self.workqueue[scope])))

    def schedule(self) -> None:
        self.config.option.loadscopereorder = False
        super().schedule()

    def choose_scope(self, node: Any) -> str | None:
        """The work unit ``node`` runs next, or None: it is to shut down.

        With two workers, the head of the queue (``loadscope``). With more, the last
        worker is the rest lane: it takes the modules of no group, from the start,
        while the others run the ``testnet-light`` modules, several at once (each a few
        nodes at 1 s slots, which leave the CPU mostly idle). Once the ``testnet`` unit
        is handed out, only two workers go on: the one that runs it and one more (the
        rest lane), as with two workers, since those modules need the other core; the
        others shut down when their light modules end.
        """
        scopes: list[str] = list(self.workqueue)
        if not scopes:
            return None
        if self.numnodes < 3:
            return scopes[0]
        if node.gateway.id == f"gw{self.numnodes - 1}":
            return next((s for s in scopes if self._get_unit_group(s) is None), scopes[0])
        testnet_out = "group:testnet" not in self.workqueue
        holds_testnet = "group:testnet" in self.assigned_work.get(node, {})
        active = [n for n in self.nodes if not n.shutting_down]
        if testnet_out and not holds_testnet and len(active) > 2:
            # A second rest lane, niced (``_nice_a_second_rest_lane``), or done.
            return next((s for s in scopes if self._get_unit_group(s) is None), None)
        return scopes[0]

    def _assign_work_unit(self, node: Any) -> None:
        """``loadscope``'s own assignment of the queue's head, with the chosen unit put
        at the head first."""
        scope = self.choose_scope(node)
        if scope is None:
            node.shutdown()
            return
        self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)  # a run with -p no:xdist has no such hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    if config.getoption("dist") != "loadscope":
        return None  # xdist's own scheduler for the other modes
    return GroupScheduling(config, log)


REST_LANE_NICENESS = 10


@pytest.fixture(scope="module", autouse=True)
def _nice_a_second_rest_lane(request: pytest.FixtureRequest) -> None:
    """A light worker that runs modules of no group (only once the ``testnet`` unit is
    out, ``GroupScheduling.choose_scope``) does so at niceness 10: it takes the CPU the
    unit's testnets and the first rest lane leave idle, never theirs. Raised for good
    (the worker runs no group module after), and inherited by what its tests start."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if count < 3 or worker in ("", f"gw{count - 1}"):
        return
    if get_module_group(str(request.path)) is not None:  # marked on a test too
        return
    if os.getpriority(os.PRIO_PROCESS, 0) < REST_LANE_NICENESS:
        os.setpriority(os.PRIO_PROCESS, 0, REST_LANE_NICENESS)


@pytest.fixture(scope="module", autouse=True)
def _one_group_member_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    marks = getattr(request.module, "pytestmark", [])
    groups = [
        str(m.args[0])
        for m in (marks if isinstance(marks, list) else [marks])
        if getattr(m, "name", "") == "xdist_group" and m.args
    ]
    if not groups:
        yield
        return
    group, mode = SHARED_GROUPS.get(groups[0], (groups[0], fcntl.LOCK_EX))
    lock_path = Path(tempfile.gettempdir()) / f"edgechain-tests-{group}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
