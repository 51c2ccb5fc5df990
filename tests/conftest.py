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

``xdist_group("testnet-light")`` marks the small testnets (3-4 nodes at 1 s slots,
driven through the CLI): they take the ``testnet`` group's lock *shared*, so two of them
may run at once (one per worker) but never beside a ``testnet`` module, which takes it
exclusive. Run one at a time, those modules were about 400 s of the suite's critical
path while the other worker idled; two of them together use well under the two cores.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_GROUPS = {"testnet-light": ("testnet", fcntl.LOCK_SH)}
"""Groups that hold another group's lock in shared mode: (that group, lock mode)."""


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
