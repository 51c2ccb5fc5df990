"""Where a node's CPU goes, by component, slot by slot.

Issue 13 asks for a CPU budget per node per slot, split by what spends it. The pieces:

* :class:`Component`: the one list of components (the metrics issue exports it as a
  label);
* :func:`cpu_span`: ``with cpu_span(Component.DHT): ...`` charges the CPU time of the
  block to that component. Spans nest, and the innermost one is charged (exclusive
  time): the BLS check inside a DHT message's decoding is the DHT's, the VDF check
  inside block validation is ``VDF_CHECK``, not ``BLOCK_OTHER``;
* :class:`CpuMeter`: the accumulator the spans charge, read with ``thread_time_ns``
  on the loop thread. Installed once by the real node (``install_meter``); without one
  every span is a no-op costing one global read, which is what the simulator and the
  tests run, so protocol code can carry spans and stay free of clocks: a span never
  returns a value the caller could act on;
* :class:`SlotCpuLog`: per-slot samples (each component's share of one slot, the
  process's whole CPU, whether the node was on duty), bounded, and their median and
  p99 for ``/status`` and the testnet summary.

The loop thread starts the meter (``CpuMeter.start``) with ``OTHER`` as its base, so
its time outside every named span (the event loop itself, the interpreter) is
``OTHER``. Work on another thread is added with :meth:`CpuMeter.add` from that
thread's own reading: the VDF proof, and every call the app manager and the transfers
hand a worker thread (:func:`charge_thread_cpu`, through ``runtime/threads.py``).
What no span saw (library threads) is the process's CPU minus the components:
``unaccounted``, which the summary shows beside them, so
"the components add up to the process" is a measurement, not a definition.
"""

from __future__ import annotations

import enum
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Component(enum.Enum):
    """What a node spends CPU on (one label value each)."""

    VDF_CHECK = "vdf_check"
    """Checking a block's VDF proof (every validator, every block)."""
    ATTESTATION_CHECK = "attestation_check"
    """Checking a block's committee aggregate signature (every validator, every block)."""
    SIGNATURE_CHECKS = "signature_checks"
    """The other signatures a block carries: reports, commands, inclusions, exits."""
    BLOCK_OTHER = "block_other"
    """The rest of taking a block: decoding, recomputing the state and the plan, fork
    choice, the events it causes."""
    VDF_PROVING = "vdf_proving"
    """Evaluating a VDF as the producer (its own thread)."""
    VOTES = "votes"
    """Candidates, votes and skip votes: the committee's duty and its checks."""
    CONSENSUS = "consensus"
    """The engine's other work: timers, producing, commands, inclusions, sync."""
    REPORTS = "reports"
    """Making, signing, checking and relaying resource reports."""
    DHT = "dht"
    """The Kademlia DHT: its messages, their authentication and the lookups."""
    GOSSIP = "gossip"
    """Gossip: relaying, IHave/IWant, duplicate suppression, payload decoding."""
    STORE = "store"
    """SQLite writes and reads of the block store."""
    APPS = "apps"
    """The app manager: reconciling, usage sampling, leases, and the work it and the
    migrations hand to worker threads (starting apps, snapshots, transfers)."""
    OTHER = "other"
    """The loop thread outside every named span: the event loop, the interpreter, the
    HTTP API (its handlers are coroutines, which a thread-time span cannot follow)."""


class CpuMeter:
    """Exclusive CPU time per component, charged by nested spans on the loop thread.

    Spans count only on the thread that called :meth:`start` (the node's event loop):
    no lock and no thread-local on the hot path. Another thread's work is charged with
    :meth:`add` from its own reading (the VDF proof); what no span saw shows as the
    process's unaccounted CPU.
    """

    def __init__(self) -> None:
        self._totals_ns = [0] * len(_INDEX)
        self._added_ns = [0] * len(_INDEX)
        self._lock = threading.Lock()
        self._stack: list[int] = []
        self._mark = 0
        self.owner: int | None = None

    def start(self, base: Component = Component.OTHER) -> None:
        """Spans count on this thread from now on; ``base`` gets its time outside them."""
        self.owner = threading.get_ident()
        self._stack = [_INDEX[base]]
        self._mark = time.thread_time_ns()

    def enter(self, component: Component) -> None:
        now = time.thread_time_ns()
        stack = self._stack
        if stack:
            self._totals_ns[stack[-1]] += now - self._mark
        self._mark = now
        stack.append(_INDEX[component])

    def exit(self) -> None:
        now = time.thread_time_ns()
        self._totals_ns[self._stack.pop()] += now - self._mark
        self._mark = now

    def add(self, component: Component, ns: int) -> None:
        """Charge ``ns`` measured elsewhere (another thread's own reading)."""
        with self._lock:
            self._added_ns[_INDEX[component]] += ns

    def get_totals_ns(self) -> dict[Component, int]:
        """Every component's total so far; call on the loop thread (its open span is
        counted up to now)."""
        if self._stack and threading.get_ident() == self.owner:
            now = time.thread_time_ns()
            self._totals_ns[self._stack[-1]] += now - self._mark
            self._mark = now
        with self._lock:
            added = list(self._added_ns)
        return {c: self._totals_ns[i] + added[i] for c, i in _INDEX.items()}


_INDEX = {component: i for i, component in enumerate(Component)}
_meter: CpuMeter | None = None


def install_meter(meter: CpuMeter | None) -> None:
    """The process's meter (the real node's), or None to measure nothing."""
    global _meter
    _meter = meter


def get_meter() -> CpuMeter | None:
    return _meter


def charge_thread_cpu(component: Component, fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, which charges its own thread's CPU to ``component`` when it runs off the
    meter's thread (a worker thread of ``asyncio.to_thread``): spans cannot follow a
    call into another thread, so that CPU was ``unaccounted`` (on a 5-node testnet
    whose app was recovered twice, 7 ms in the slot of each start, enough to put a
    node's measured share at 0.80). On the meter's own thread the spans already count
    it, so nothing is added."""

    @functools.wraps(fn)
    def charged(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            meter = _meter
            if meter is not None and meter.owner != threading.get_ident():
                meter.add(component, time.thread_time_ns() - started)

    return charged


class cpu_span:  # noqa: N801 -- used like a function: ``with cpu_span(...)``
    """``with cpu_span(component):`` charges the block's CPU to ``component`` (module
    doc); a no-op without a meter, or off the meter's thread."""

    __slots__ = ("_component", "_meter")

    def __init__(self, component: Component) -> None:
        self._component = component
        self._meter: CpuMeter | None = None

    def __enter__(self) -> None:
        meter = _meter
        if meter is not None and meter.owner == threading.get_ident():
            meter.enter(self._component)
            self._meter = meter

    def __exit__(self, *_exc: object) -> None:
        if self._meter is not None:
            self._meter.exit()
            self._meter = None


@dataclass(frozen=True)
class SlotCpu:
    """One slot's CPU, in microseconds: each measured component and the process."""

    slot: int
    on_duty: bool
    components_us: Mapping[Component, int]
    process_us: int

    @property
    def unaccounted_us(self) -> int:
        """The process's CPU no span saw (negative: the readings' rounding)."""
        return self.process_us - sum(self.components_us.values())

    @property
    def without_checks_us(self) -> int:
        """The process's CPU but the checks every validator makes of every block
        (:data:`EVERY_BLOCK_CHECKS`): what issue 13's off-duty goal measures."""
        return self.process_us - sum(self.components_us[c] for c in EVERY_BLOCK_CHECKS)


EVERY_BLOCK_CHECKS = (Component.VDF_CHECK, Component.ATTESTATION_CHECK)
"""The VDF proof and the committee's signatures: every validator checks them for every
block, whatever the fleet's size, so the off-duty goal leaves them out (issue 13)."""

WITHOUT_CHECKS = "process_without_checks"
"""The table's row of :attr:`SlotCpu.without_checks_us`, figured slot by slot (the
difference of the rows' medians is not the median of the differences)."""

MAX_SLOT_SAMPLES = 256
"""Slots whose CPU ``/status`` summarizes (median and p99): enough for a p99, and full
within minutes, so the log is not a term of a node's RSS growth."""


def compute_percentile(values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of integers (0 for none)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


class SlotCpuLog:
    """The last :data:`MAX_SLOT_SAMPLES` slots' CPU, from cumulative readings.

    ``record(slot, on_duty, totals_ns, process_ns)`` at each slot boundary closes the
    slot that just ended; the first call only sets the baseline.
    """

    def __init__(self, limit: int = MAX_SLOT_SAMPLES) -> None:
        self.samples: deque[SlotCpu] = deque(maxlen=limit)
        self._last: tuple[dict[Component, int], int] | None = None

    def record(
        self, slot: int, on_duty: bool, totals_ns: dict[Component, int], process_ns: int
    ) -> SlotCpu | None:
        """The sample of the slot that ended (None: this call set the baseline)."""
        last = self._last
        self._last = (totals_ns, process_ns)
        if last is None:
            return None
        before, process_before = last
        sample = SlotCpu(
            slot=slot,
            on_duty=on_duty,
            components_us={c: (totals_ns[c] - before[c]) // 1000 for c in Component},
            process_us=(process_ns - process_before) // 1000,
        )
        self.samples.append(sample)
        return sample

    def summarize(self, since_slot: int | None = None) -> dict[str, object]:
        """Median and p99 per component (ms per slot), on and off duty, the process's
        own, and ``measured_share``: the components' sum over the process's CPU.

        ``since_slot``: only the slots after it. A testnet's joins are a phase of their
        own (every node verifies each joiner's request, syncs answer catching-up
        nodes, the DHT looks up the newcomers); at 100 nodes they last most of a
        150-slot run, so the whole run's median is mostly the join's, and the
        launcher asks for the slots after the join as well (``lab/testnet_collect.py``).
        """
        kept = [s for s in self.samples if since_slot is None or s.slot > since_slot]
        out: dict[str, object] = {}
        for name, duty in (("on_duty", True), ("off_duty", False)):
            samples = [s for s in kept if s.on_duty is duty]
            table: dict[str, dict[str, float]] = {}
            for component in Component:
                table[component.value] = _get_figures([s.components_us[component] for s in samples])
            table["unaccounted"] = _get_figures([s.unaccounted_us for s in samples])
            process = [s.process_us for s in samples]
            table["process"] = _get_figures(process)
            table[WITHOUT_CHECKS] = _get_figures([s.without_checks_us for s in samples])
            measured = sum(sum(s.components_us.values()) for s in samples)
            total = sum(process)
            out[name] = {
                "slots": len(samples),
                "components_ms": table,
                "measured_share": round(measured / total, 3) if total else None,
            }
        return out


def _get_figures(values_us: list[int]) -> dict[str, float]:
    return {
        "median": compute_percentile(values_us, 0.5) / 1000,
        "p99": compute_percentile(values_us, 0.99) / 1000,
    }


def merge_node_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Many nodes' :meth:`SlotCpuLog.summarize` as one table: per component and duty,
    the median over nodes of each node's median, and of each node's p99 (ms per slot);
    ``measured_share`` over nodes, lowest and median."""
    out: dict[str, Any] = {}
    for duty in ("on_duty", "off_duty"):
        parts = [s[duty] for s in summaries if s.get(duty, {}).get("slots")]
        if not parts:
            out[duty] = None
            continue
        table: dict[str, dict[str, float]] = {}
        for name in parts[0]["components_ms"]:
            medians = [p["components_ms"][name]["median"] for p in parts]
            p99s = [p["components_ms"][name]["p99"] for p in parts]
            table[name] = {
                "median": _median_float(medians),
                "p99": _median_float(p99s),
                "max_p99": max(p99s),
            }
        shares = [p["measured_share"] for p in parts if p["measured_share"] is not None]
        out[duty] = {
            "nodes": len(parts),
            "slots": sum(p["slots"] for p in parts),
            "components_ms": table,
            "measured_share": {
                "min": min(shares) if shares else None,
                "median": _median_float(shares) if shares else None,
            },
        }
    return out


def _median_float(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round((ordered[middle - 1] + ordered[middle]) / 2, 3)


def count_merged_slots(merged: Mapping[str, Any]) -> int:
    """Node-slots a merged table covers, on and off duty together."""
    return sum(part["slots"] for part in (merged.get("on_duty"), merged.get("off_duty")) if part)


def format_cpu_table(merged: Mapping[str, Any], title: str = "cpu ms/slot") -> list[str]:
    """The merged table as text lines (ms per slot, median / p99 over nodes)."""
    lines = []
    duties = [d for d in ("off_duty", "on_duty") if merged.get(d)]
    if not duties:
        return [f"  {title:<18}(no slot measured)"]
    width = max(18, *(len(name) + 1 for name in merged[duties[0]]["components_ms"]))
    header = f"  {title:<{width}}" + "".join(f"{d.replace('_', ' '):>22}" for d in duties)
    lines.append(header)
    lines.append("  " + " " * width + "".join(f"{'median':>11}{'p99':>11}" for _ in duties))
    for name in merged[duties[0]]["components_ms"]:
        row = f"  {name:<{width}}"
        for duty in duties:
            figures = merged[duty]["components_ms"][name]
            row += f"{figures['median']:>11.2f}{figures['p99']:>11.2f}"
        lines.append(row)
    shares = "  ".join(
        f"{d.replace('_', ' ')} {merged[d]['measured_share']['median']}" for d in duties
    )
    lines.append(f"  {'measured share':<{width}}{shares} (components / process CPU, median node)")
    return lines
