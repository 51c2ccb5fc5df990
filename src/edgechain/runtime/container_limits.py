"""What the container engine enforces for an app spec: CPU, memory, processes, user.

``get_container_limits`` turns a spec's limits (block format 5) into keyword arguments
of the docker SDK's ``containers.run``, so that the ENGINE enforces them through the
container's cgroup, not this node watching and reacting:

* ``cpu_limit_millicores`` -> ``nano_cpus`` (the CFS quota: the container gets at most
  that many cores' worth of time per period, however many threads it runs);
* ``memory_limit_bytes`` -> ``mem_limit`` and ``memswap_limit`` set to the same value,
  so memory plus swap is capped at the limit (no swapping past it): beyond it the
  kernel's OOM killer ends a process of the container;
* always a ``pids_limit`` (``DEFAULT_PIDS_LIMIT``): a fork bomb in one app must not
  exhaust the node's process table;
* always a bounded log (``log_config``: the engine keeps at most
  ``app_log.MAX_LOG_BYTES`` of the container's output, as the node does for a process
  app): an app that prints without end must not fill the node's disk. ``json-file`` is
  Docker's driver and Podman's name for its own file driver; both take ``max-size``
  (measured on Podman 4.3: 60 000 lines, 4.2 MB of log without it, 190 kB with 1m);
* ``user``: the node's unprivileged ``"uid:gid"``, or ``"0:0"`` when the spec opts in
  with ``run_as_root`` (whether this node may run it at all is the planner's and the
  node's decision, not this function's). A non-root app also gets
  ``no-new-privileges``, so a setuid binary in its image cannot make it root again.

The state directory's size (``state_limit_bytes``) is not here: a bind-mounted host
directory is outside everything the engine can cap (see ``runtime/state_quota.py``).
Nothing enforces CPU or memory limits on the process runtime.

Pure: no engine calls, no clock; the caller passes the host's CPU count when the
engine refuses a CPU limit above it (Docker does).
"""

from __future__ import annotations

import re
from typing import Any

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.app_log import MAX_LOG_BYTES

NANO_CPUS_PER_MILLICORE = 1_000_000
DEFAULT_PIDS_LIMIT = 1024
"""Processes and threads per container: far more than an edge app needs, far fewer
than the kernel's default ``pid_max`` of 32768 that one runaway app could otherwise use
up for the whole node."""
LOG_DRIVER = "json-file"
LOG_MAX_SIZE = f"{MAX_LOG_BYTES // (1024 * 1024)}m"


def get_log_config() -> dict[str, Any]:
    """The container's log driver and its size cap (``containers.run``'s ``log_config``),
    a new dict each time: the SDK may keep what it is given."""
    return {"type": LOG_DRIVER, "config": {"max-size": LOG_MAX_SIZE}}


ROOT_USER = "0:0"
NO_NEW_PRIVILEGES = "no-new-privileges"

_USER = re.compile(r"([0-9]{1,10}):([0-9]{1,10})")


class ContainerLimitsError(ValueError):
    """The spec or the node's user cannot be turned into engine limits (a local bug or
    misconfiguration: valid chain specs always can)."""


def get_nano_cpus(millicores: int, host_cpus: int | None = None) -> int:
    """The CFS quota for ``millicores``, at most ``host_cpus`` cores when given (a cap
    above the host's cores limits nothing, and Docker refuses it)."""
    nano = millicores * NANO_CPUS_PER_MILLICORE
    if host_cpus is not None and host_cpus > 0:
        nano = min(nano, host_cpus * 1000 * NANO_CPUS_PER_MILLICORE)
    return nano


def is_root_user(user: str) -> bool:
    match = _USER.fullmatch(user)
    return match is not None and int(match.group(1)) == 0


def get_container_limits(
    spec: AppSpec, *, user: str, host_cpus: int | None = None
) -> dict[str, Any]:
    """``containers.run`` keyword arguments enforcing ``spec``'s limits and user.

    ``user`` is the node's non-root ``"uid:gid"`` for its apps; it is used unless the
    spec sets ``run_as_root`` (then ``"0:0"``). A limit of 0 adds no argument (the
    engine's default: unlimited). Raises :class:`ContainerLimitsError` for a process
    spec or a ``user`` that is not a numeric non-root ``uid:gid``.
    """
    if spec.runtime is not RuntimeKind.CONTAINER:
        raise ContainerLimitsError(f"app {spec.name!r} is not a container app")
    if _USER.fullmatch(user) is None:
        raise ContainerLimitsError(f"user {user!r}: expected a numeric uid:gid")
    if is_root_user(user):
        # The node's default user must never be root: root is the spec's explicit opt-in.
        raise ContainerLimitsError(f"user {user!r}: the node's app user must not be root")
    kwargs: dict[str, Any] = {"pids_limit": DEFAULT_PIDS_LIMIT, "log_config": get_log_config()}
    if spec.run_as_root:
        kwargs["user"] = ROOT_USER
    else:
        kwargs["user"] = user
        kwargs["security_opt"] = [NO_NEW_PRIVILEGES]
    if spec.cpu_limit_millicores > 0:
        kwargs["nano_cpus"] = get_nano_cpus(spec.cpu_limit_millicores, host_cpus)
    if spec.memory_limit_bytes > 0:
        kwargs["mem_limit"] = spec.memory_limit_bytes
        # Equal to mem_limit: memory + swap capped at the limit, i.e. no swap beyond it.
        kwargs["memswap_limit"] = spec.memory_limit_bytes
    return kwargs
