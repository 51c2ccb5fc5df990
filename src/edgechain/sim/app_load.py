"""What simulated apps weigh: their CPU load over time, and what moving one costs
(issue 15, item 4: the paper's Figs. 9 and 11 from the simulator at 1000 nodes).

**Load** (``AppModelConfig.load``). ``request``: every copy reports its spec's CPU
request, the planner's hint, constant (the default, and all the app layer did before).
``mixed``: each app has a steady demand drawn from its index (110-790 bp, 1.1-7.9 % of
a node, like ``lab/planner_model.py``'s fleet and the paper's apps) and a spec whose
request is that demand rounded to a whole percent. ``varying``: the same demands, each
app following one of three profiles picked by its id:

* *steady*: the demand, always;
* *diurnal*: a triangle wave between a quarter and twice the demand, 40 slots long, at
  a phase of its own;
* *bursty*: four times the demand in one slot of four (which ones, hashed from the
  app and the slot), half of it otherwise.

A node whose copies demand more than its CPU (``NODE_CAPACITY_BP``) reports what a
real node would measure: the CPU full, each app's share of it in proportion to its
demand, and the CPU pressure that starvation shows (``runtime/pressure.py``:
capacity minus capacity squared over demand). Everything is integer arithmetic on
SHA-256 of bytes: one seed, one run, on any machine.

**Migration cost** (``AppModelConfig.transfer``). ``fixed``: ``transfer_ms`` for every
handover, the app frozen throughout. ``modelled``: from the app's state size (stateful
apps alternate the paper's two sizes, 15.2 and 142.2 MB, §4.2; a stateless app keeps
1 MB), with linear fits to the process runtime's medians in
``docs/results/migration.md``: pre-copy rounds while the app runs (states of 8 MiB and
more, ``runtime/precopy.py``), then the frozen save, transmit and resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgechain.chain.model import BASIS_POINTS, AppSpec, AppUsage, RuntimeKind
from edgechain.consensus.context import LocalUsage
from edgechain.orchestrator.load import get_cpu_request_bp
from edgechain.sim.report_metrics import get_percentiles
from edgechain.types import AppId

LOAD_REQUEST = "request"
LOAD_MIXED = "mixed"
LOAD_VARYING = "varying"
LOADS = (LOAD_REQUEST, LOAD_MIXED, LOAD_VARYING)
TRANSFER_FIXED = "fixed"
TRANSFER_MODELLED = "modelled"
TRANSFERS = (TRANSFER_FIXED, TRANSFER_MODELLED)

NODE_CAPACITY_BP = BASIS_POINTS
"""A simulated node's CPU: the whole of it (``cpu_bp`` is a share of the node)."""
DIURNAL_SLOTS = 40
PROFILES = ("steady", "diurnal", "bursty")
_DOMAIN = b"edgechain/sim-load/v1"

PAPER_STATE_BYTES = (15_200_000, 142_200_000)
"""The paper's median CRIU state and median standard export (§4.2)."""
STATELESS_BYTES = 1_000_000
PRECOPY_MIN_BYTES = 8 * 1024 * 1024
"""``runtime/precopy.MIN_STATE_BYTES``: smaller states go the plain way."""


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha256(_DOMAIN + b"".join(parts)).digest()[:8], "big")


def get_mixed_demand_bp(index: int) -> int:
    """The ``index``-th app's demand: 110-790 bp, spread by a hash of the index."""
    return 110 + _hash_int(b"demand", index.to_bytes(8, "big")) % 681


def make_mixed_spec(index: int, stateful: bool, replica_interval_slots: int) -> AppSpec:
    """The ``index``-th app of a ``mixed`` load: its request is its demand rounded to
    a whole percent (at least 1 %), as an operator would declare it."""
    demand = get_mixed_demand_bp(index)
    return AppSpec(
        name=f"sim-app-{index}",
        runtime=RuntimeKind.PROCESS,
        command=("sleep", "infinity"),
        cpu_bp=max(100, (demand + 50) // 100 * 100),
        ram_bp=100,
        stateful=stateful,
        replica_interval_slots=replica_interval_slots if stateful else 0,
    )


def get_profile(app: AppId) -> str:
    return PROFILES[_hash_int(b"profile", bytes(app)) % len(PROFILES)]


def get_demand_bp(
    app: AppId, spec: AppSpec, index: int | None, now_ms: int, slot_ms: int, load: str
) -> int:
    """What ``app`` uses of a node's CPU at ``now_ms`` (basis points), under ``load``.
    ``index``: the app's submission index (None: not one of the layer's apps)."""
    if load == LOAD_REQUEST or index is None:
        return get_cpu_request_bp(spec)
    demand = get_mixed_demand_bp(index)
    profile = get_profile(app) if load == LOAD_VARYING else "steady"
    if profile == "diurnal":
        period = DIURNAL_SLOTS * slot_ms
        t = (now_ms + _hash_int(b"phase", bytes(app)) % period) % period
        wave = 2 * min(t, period - t)  # 0 .. period
        low, high = demand // 4, demand * 2
        return low + (high - low) * wave // period
    if profile == "bursty":
        slot = now_ms // slot_ms
        burst = _hash_int(b"burst", bytes(app), slot.to_bytes(8, "big")) % 4 == 0
        return demand * 4 if burst else max(1, demand // 2)
    return demand


def compute_node_usage(
    demands: Sequence[tuple[AppId, int, int]],
    now_ms: int,
    capacity_bp: int | None = NODE_CAPACITY_BP,
) -> LocalUsage:
    """A node's usage from its copies' (app, CPU demand, RAM): saturated, the CPU is
    shared in proportion to demand and the starvation shows as pressure. Without a
    ``capacity_bp`` (the ``request`` load) every demand is reported as it is, summed."""
    total = sum(cpu for _, cpu, _ in demands)
    ram = sum(r for _, _, r in demands)
    if capacity_bp is None or total <= capacity_bp:
        usages = tuple(AppUsage(app, cpu, r, 0, 0, now_ms) for app, cpu, r in demands)
        return LocalUsage(
            cpu_bp=total, ram_bp=ram if capacity_bp is None else min(BASIS_POINTS, ram),
            apps=usages,
        )  # fmt: skip
    shared = tuple(
        AppUsage(app, cpu * capacity_bp // total, r, 0, 0, now_ms) for app, cpu, r in demands
    )
    return LocalUsage(
        cpu_bp=capacity_bp,
        ram_bp=min(BASIS_POINTS, ram),
        apps=shared,
        pressure_bp=capacity_bp - capacity_bp * capacity_bp // total,
    )


@dataclass(frozen=True)
class TransferCost:
    """One modelled migration, in ms (Table 3's segments, and the pre-copy before)."""

    state_bytes: int
    precopy_ms: int
    """Rounds sent while the app runs on (0: a plain migration)."""
    save_ms: int
    transmit_ms: int
    resume_ms: int

    @property
    def downtime_ms(self) -> int:
        return self.save_ms + self.transmit_ms + self.resume_ms


def get_state_bytes(index: int | None, spec: AppSpec) -> int:
    """A stateful app's state: the paper's two sizes in turn; a stateless one 1 MB."""
    if not spec.stateful or index is None:
        return STATELESS_BYTES
    return PAPER_STATE_BYTES[index % len(PAPER_STATE_BYTES)]


def compute_transfer_cost(state_bytes: int) -> TransferCost:
    """Linear fits (ms per MB and a constant) to the process runtime's medians at 15.2
    and 142.2 MB (``docs/results/migration.md``, 10 runs each, a counter rewriting
    4 MiB/s of its state): with pre-copy from 8 MiB on, plain below."""

    # Integer arithmetic (rule: portable): coefficients in ms per 100 MB.
    def per(ms_per_100_mb: int) -> int:
        return ms_per_100_mb * state_bytes // 100_000_000

    if state_bytes >= PRECOPY_MIN_BYTES:
        return TransferCost(
            state_bytes,
            precopy_ms=25 + per(740),
            save_ms=7 + per(41),
            transmit_ms=10,
            resume_ms=8 + per(4),
        )
    return TransferCost(
        state_bytes,
        precopy_ms=0,
        save_ms=8 + per(63),
        transmit_ms=22 + per(400),
        resume_ms=13 + per(41),
    )


def summarize_costs(costs: Sequence[TransferCost]) -> dict[str, Any]:
    """Per segment, p50 / p99 / max over the modelled migrations (Fig. 10's figures)."""
    out: dict[str, Any] = {"count": len(costs)}
    for name in ("precopy_ms", "save_ms", "transmit_ms", "resume_ms", "downtime_ms"):
        values = sorted(int(getattr(c, name)) for c in costs)
        out[name] = {**get_percentiles(values), "max": values[-1] if values else None}
    return out
