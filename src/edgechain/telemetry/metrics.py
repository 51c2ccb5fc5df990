"""A node's Prometheus metrics (``GET /metrics``), with prometheus-client.

Two kinds of figure, kept apart so the hot paths stay cheap:

* what the node already counts (blocks, skip blocks, reorgs, peer and decode errors by
  reason, CPU by component, slot, head, peers, apps): read at scrape time from a
  :class:`MetricsReading` the node builds on demand (:class:`NodeMetrics.read` is set
  by the node), so nothing is counted twice and an idle node pays nothing;
* what happens once and is timed (a block's votes, propagation and validation time,
  report latency, a migration's save/transmit/resume, a slot's CPU per component):
  histograms the node observes as it goes (``observe_*``).

Label values come from enums only (``RejectReason``, ``Component``, the migration
phases), so a typo cannot make a new label. One registry per node (not the library's
global one): tests run several nodes in one process. The process's own figures (RSS,
CPU seconds, open files) come from prometheus-client's ``ProcessCollector``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from edgechain.errors import RejectReason
from edgechain.telemetry.cpu import Component, SlotCpu

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The exposition format's content type (text, version 0.0.4)."""

PREFIX = "edgechain"


class MigrationPhase(enum.Enum):
    """The timed phases of a migration (paper §4.4, Fig. 12)."""

    SAVE = "save"
    TRANSMIT = "transmit"
    RESUME = "resume"


@dataclass(frozen=True)
class MetricsReading:
    """What the node counts itself, read at scrape time."""

    slot: int
    head_slot: int | None
    validators: int
    is_validator: bool
    peers: int
    rtt_us: int
    """The smoothed RTT to random validators that this node reports (0: none yet)."""
    apps_running: int
    blocks: int
    skip_blocks: int
    reorgs: int
    finalized_slot: int = 0
    """Slot of the head chain's finalized block (``chain/finality.py``)."""
    blocks_in_memory: int = 0
    """Blocks held in memory; finality prunes the rest to the store."""
    checkpoints_installed: int = 0
    """Finalized states fetched from peers and installed (checkpoint sync)."""
    finality_voters: int = 0
    """The head chain's finality voter set (the finalized block's validators)."""
    silent_voters: int = 0
    """Voters that no longer validate or are down (``consensus/finality_health.py``)."""
    peer_errors: Mapping[RejectReason, int] = field(default_factory=dict)
    decode_errors: Mapping[RejectReason, int] = field(default_factory=dict)
    cpu_ns: Mapping[Component, int] = field(default_factory=dict)
    migrations: Mapping[str, int] = field(default_factory=dict)
    """Migration attempts by outcome (the runtime's ``MigrationOutcome`` values)."""
    app_starts_without_state: int = 0
    """Apps this node started from nothing although they had run elsewhere with state
    (``runtime/app_starter.StateLoss``)."""


SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
CPU_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VOTE_BUCKETS = (0, 1, 2, 3, 4, 8, 16, 32, 64, 128, 256)
MIGRATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _ReadingCollector(Collector):
    """Turns the node's :class:`MetricsReading` into metric families at scrape time."""

    def __init__(self, read: Callable[[], MetricsReading | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        reading = self.read()
        if reading is None:  # the node is starting
            return
        yield _gauge("slot", "The current slot by the node's clock.", reading.slot)
        if reading.head_slot is not None:
            yield _gauge("head_slot", "The slot of the node's head block.", reading.head_slot)
        yield _gauge(
            "finalized_slot",
            "The slot of the head chain's finalized block.",
            reading.finalized_slot,
        )
        yield _gauge(
            "blocks_in_memory",
            "Blocks held in memory (finality prunes the rest to the store).",
            reading.blocks_in_memory,
        )
        yield _gauge(
            "finality_voters",
            "Finality voters on the head chain (the finalized block's validators).",
            reading.finality_voters,
        )
        yield _gauge(
            "silent_voters",
            "Finality voters that no longer validate or are down: more than a third of "
            "the voters hold finality back (edgechain admin exclude takes one out).",
            reading.silent_voters,
        )
        yield _gauge("validators", "Validators in the head state.", reading.validators)
        yield _gauge("is_validator", "1 if this node is a validator.", int(reading.is_validator))
        yield _gauge("peers", "Peers in the DHT routing table.", reading.peers)
        yield _gauge(
            "rtt_seconds", "Smoothed RTT to random validators (reported).", reading.rtt_us / 1e6
        )
        yield _gauge("apps_running", "Apps this node's runtime runs.", reading.apps_running)
        blocks = CounterMetricFamily(
            f"{PREFIX}_blocks_accepted", "Blocks accepted (any branch).", labels=["kind"]
        )
        blocks.add_metric(["block"], reading.blocks)
        blocks.add_metric(["skip"], reading.skip_blocks)
        yield blocks
        yield CounterMetricFamily(f"{PREFIX}_reorgs", "Head changes that reverted blocks.",
                                  value=reading.reorgs)  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_checkpoints_installed",
            "Finalized states fetched from peers, checked against their root and installed.",
            value=reading.checkpoints_installed,
        )
        yield _by_reason("peer_errors", "Peer input refused, by reason.", reading.peer_errors)
        yield _by_reason("decode_errors", "Undecodable input, by reason.", reading.decode_errors)
        cpu = CounterMetricFamily(
            f"{PREFIX}_cpu_seconds", "CPU time by component (telemetry/cpu.py).",
            labels=["component"],
        )  # fmt: skip
        for component in Component:
            cpu.add_metric([component.value], reading.cpu_ns.get(component, 0) / 1e9)
        yield cpu
        migrations = CounterMetricFamily(
            f"{PREFIX}_migrations", "Outbound migration attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(reading.migrations.items()):
            migrations.add_metric([outcome], count)
        yield migrations
        yield CounterMetricFamily(
            f"{PREFIX}_app_starts_without_state",
            "Apps started here from nothing although they had run elsewhere with state "
            "(no replica reached this node in time, or the app keeps none).",
            value=reading.app_starts_without_state,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _by_reason(name: str, documentation: str, counts: Mapping[RejectReason, int]) -> Metric:
    family = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([RejectReason(reason).value], count)
    return family


class NodeMetrics:
    """One node's registry, its histograms, and the scrape-time reading."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.read: Callable[[], MetricsReading | None] = lambda: None
        """Set by the node: builds the reading (None until it runs)."""
        if process:
            ProcessCollector(registry=self.registry)
        # Late-bound: the node sets ``read`` after building its metrics.
        self.registry.register(_ReadingCollector(lambda: self.read()))  # noqa: PLW0108

        def histogram(
            name: str, documentation: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(
                f"{PREFIX}_{name}", documentation, labels, registry=self.registry, buckets=buckets
            )

        self.block_votes = histogram(
            "block_votes", "Committee signatures on each accepted block.", VOTE_BUCKETS
        )
        self.block_propagation = histogram(
            "block_propagation_seconds",
            "From the start of a block's slot to this node accepting it.",
            SECONDS_BUCKETS,
        )
        self.block_validation = histogram(
            "block_validation_seconds",
            "Wall time this node took to take a received block (validation included).",
            SECONDS_BUCKETS,
        )
        self.report_latency = histogram(
            "report_latency_seconds",
            "From a resource report's timestamp to this node accepting the block with it.",
            SECONDS_BUCKETS,
        )
        self.slot_cpu = histogram(
            "slot_cpu_seconds", "CPU time per slot by component.", CPU_BUCKETS, ("component",)
        )
        self.migration = histogram(
            "migration_seconds",
            "Outbound migration phases (save, transmit, resume) of successful migrations.",
            MIGRATION_BUCKETS,
            ("phase",),
        )

    def observe_block(
        self, *, votes: int, propagation_s: float | None, report_latencies_s: list[float]
    ) -> None:
        """A block (not a skip block) this node accepted as it arrived (not replayed)."""
        self.block_votes.observe(votes)
        if propagation_s is not None:
            self.block_propagation.observe(max(propagation_s, 0.0))
        for latency in report_latencies_s:
            self.report_latency.observe(max(latency, 0.0))

    def observe_validation(self, seconds: float) -> None:
        self.block_validation.observe(seconds)

    def observe_slot_cpu(self, sample: SlotCpu) -> None:
        for component, micros in sample.components_us.items():
            self.slot_cpu.labels(component.value).observe(micros / 1e6)

    def observe_migration(self, phases_ms: Mapping[MigrationPhase, float]) -> None:
        for phase, millis in phases_ms.items():
            self.migration.labels(phase.value).observe(millis / 1000)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)
