"""``benchmarks/crypto.py``'s DHT envelope benchmark runs and measures what it names
(times are printed, never asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))

import crypto


def test_the_dht_envelope_benchmark_reports_both_forms() -> None:
    result = crypto.bench_dht_envelope(repeat=2)
    assert set(result) == {"signed_ms", "maced_ms", "ratio", "key_derivation_ms", "repeat"}
    assert all(float(result[k]) > 0 for k in ("signed_ms", "maced_ms", "key_derivation_ms"))
    assert "dht_envelope" in crypto.BENCHMARKS


def test_the_block_signatures_benchmark_checks_both_ways() -> None:
    """The three forms run their checks (each asserts its signatures verify)."""
    result = crypto.bench_block_signatures(repeat=2, committee=4)
    assert set(result) == {
        "committee",
        "separate_ms",
        "batched_ms",
        "one_message_ms",
        "ratio",
        "repeat",
    }
    assert all(float(result[k]) > 0 for k in ("separate_ms", "batched_ms", "one_message_ms"))
    assert "block_signatures" in crypto.BENCHMARKS
