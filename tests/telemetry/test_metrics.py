"""The node's Prometheus metrics render, parse back with prometheus-client's own parser,
and take their labels from enums only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edgechain.errors import RejectReason
from edgechain.telemetry.cpu import Component, SlotCpu
from edgechain.telemetry.metrics import MetricsReading, MigrationPhase, NodeMetrics


def _reading(**changes: object) -> MetricsReading:
    fields: dict[str, object] = {
        "slot": 12,
        "head_slot": 11,
        "validators": 5,
        "is_validator": True,
        "peers": 4,
        "rtt_us": 1500,
        "apps_running": 2,
        "blocks": 9,
        "skip_blocks": 2,
        "reorgs": 1,
        "checkpoints_installed": 1,
        "finality_voters": 6,
        "silent_voters": 2,
        "peer_errors": {RejectReason.BAD_VDF: 3, RejectReason.DOUBLE_VOTE: 1},
        "decode_errors": {RejectReason.TRUNCATED: 7},
        "cpu_ns": {Component.VDF_CHECK: 2_500_000_000, Component.DHT: 1_000_000},
        "migrations": {"completed": 2, "refused": 1},
        "app_starts_without_state": 1,
    }
    fields.update(changes)
    return MetricsReading(**fields)  # type: ignore[arg-type]


def _samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_reading_and_observations_parse_back() -> None:
    metrics = NodeMetrics()
    metrics.read = _reading
    metrics.observe_block(votes=3, propagation_s=0.4, report_latencies_s=[1.5, 0.2])
    metrics.observe_validation(0.03)
    metrics.observe_slot_cpu(SlotCpu(7, False, {c: 1000 for c in Component}, 20_000))
    metrics.observe_migration(
        {MigrationPhase.SAVE: 120.0, MigrationPhase.TRANSMIT: 40.0, MigrationPhase.RESUME: 80.0}
    )
    samples = _samples(metrics)
    assert samples[("edgechain_slot", ())] == 12
    assert samples[("edgechain_head_slot", ())] == 11
    assert samples[("edgechain_rtt_seconds", ())] == 0.0015
    assert samples[("edgechain_finality_voters", ())] == 6
    assert samples[("edgechain_silent_voters", ())] == 2
    assert samples[("edgechain_blocks_accepted_total", (("kind", "skip"),))] == 2
    assert samples[("edgechain_checkpoints_installed_total", ())] == 1
    assert samples[("edgechain_peer_errors_total", (("reason", "bad_vdf"),))] == 3
    assert samples[("edgechain_decode_errors_total", (("reason", "truncated"),))] == 7
    assert samples[("edgechain_cpu_seconds_total", (("component", "vdf_check"),))] == 2.5
    assert samples[("edgechain_cpu_seconds_total", (("component", "gossip"),))] == 0
    assert samples[("edgechain_migrations_total", (("outcome", "completed"),))] == 2
    assert samples[("edgechain_app_starts_without_state_total", ())] == 1
    assert samples[("edgechain_block_votes_count", ())] == 1
    assert samples[("edgechain_block_propagation_seconds_sum", ())] == pytest.approx(0.4)
    assert samples[("edgechain_report_latency_seconds_count", ())] == 2
    assert samples[("edgechain_block_validation_seconds_bucket", (("le", "0.05"),))] == 1
    assert samples[("edgechain_slot_cpu_seconds_sum", (("component", "dht"),))] == 0.001
    assert samples[("edgechain_migration_seconds_sum", (("phase", "save"),))] == 0.12
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_before_the_node_runs_only_the_histograms_and_the_process_show() -> None:
    samples = _samples(NodeMetrics())
    assert ("edgechain_slot", ()) not in samples
    assert ("edgechain_block_votes_count", ()) in samples


def test_a_reason_outside_the_enum_cannot_become_a_label() -> None:
    metrics = NodeMetrics(process=False)
    metrics.read = lambda: _reading(peer_errors={"bad_vfd": 1})
    with pytest.raises(ValueError, match="bad_vfd"):
        metrics.render()


def test_each_node_has_its_own_registry() -> None:
    one, two = NodeMetrics(process=False), NodeMetrics(process=False)
    one.observe_validation(1.0)
    assert _samples(one)[("edgechain_block_validation_seconds_count", ())] == 1
    assert _samples(two)[("edgechain_block_validation_seconds_count", ())] == 0


def test_the_documented_scrape_config_reads_the_metrics_route() -> None:
    config = yaml.safe_load((Path(__file__).parents[2] / "docs" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert all(":" in target for target in job["static_configs"][0]["targets"])
