"""CPU pressure from Linux PSI: parsing sample file contents, and a missing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgechain.runtime.pressure import CPU_PRESSURE_PATH, parse_pressure_bp, read_cpu_pressure_bp

TYPICAL = (
    "some avg10=12.34 avg60=5.06 avg300=7.81 total=4407024493\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TYPICAL, 1_234),
        ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", 0),
        ("some avg10=100.00 avg60=99.00 avg300=98.00 total=1\n", 10_000),
        ("some avg10=0.004 avg60=0 avg300=0 total=0", 0),  # rounds to 0 bp
        ("some avg10=0.006 avg60=0 avg300=0 total=0", 1),
        # Older kernels list only "some" for CPU; the field order is not relied on.
        ("some total=9 avg300=1.00 avg60=2.00 avg10=3.50", 350),
        # "full" is not what the report carries.
        ("full avg10=50.00 avg60=0 avg300=0 total=0\nsome avg10=1.00", 100),
        # Out of range or malformed: clamped, or no evidence of pressure.
        ("some avg10=250.00 avg60=0 avg300=0 total=0", 10_000),
        ("some avg10=-3.00", 0),
        ("some avg10=nan avg60=0", 0),
        ("some avg10=inf", 0),
        ("some avg10=abc avg60=1.00", 0),
        ("some avg60=1.00 total=3", 0),
        ("", 0),
        ("garbage\n\n", 0),
    ],
)
def test_parse_pressure_bp(text: str, expected: int) -> None:
    assert parse_pressure_bp(text) == expected


def test_a_missing_or_unreadable_file_reads_as_no_pressure(tmp_path: Path) -> None:
    assert read_cpu_pressure_bp(tmp_path / "no-such-file") == 0
    assert read_cpu_pressure_bp(tmp_path) == 0  # a directory: read fails
    sample = tmp_path / "cpu"
    sample.write_text(TYPICAL)
    assert read_cpu_pressure_bp(sample) == 1_234


@pytest.mark.skipif(not CPU_PRESSURE_PATH.exists(), reason="this kernel has no PSI")
def test_this_hosts_pressure_is_a_share() -> None:
    assert 0 <= read_cpu_pressure_bp() <= 10_000
