"""Table 3 and Fig. 10 (paper §4.2): save, transmit and resume times of migrations,
read from ``benchmarks/migration.py --json`` files; this module runs no migration.

The benchmark's JSON has, per runtime (``process``, ``container``) and for the
reference implementation's standard path (``reference_standard``), a summary of each
segment (``save_ms``, ``transmit_ms``, ``resume_ms``) and the ``state_bytes`` carried.
A segment is read as whichever of these it holds:

* a list of per-run times (ms): min, max, median, mean and SD computed here;
* an object with ``samples`` (such a list): the same;
* an object with ``min``, ``max``, ``median``, ``mean`` and, if the benchmark wrote
  it, ``sd`` (or ``stdev``/``std``): taken as is; without one the SD is unknown.

A file may hold one run, a list of runs or ``{"sizes": [...]}``; several files may be
given, one per state size (the paper's two: 15.2 MB and 142.2 MB).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgechain.lab.paper.paper_numbers import TABLE3, get_paper_state_mb

SEGMENTS = ("save", "transmit", "resume")
OURS = ("process", "container")
REFERENCE = "reference_standard"
SD_KEYS = ("sd", "stdev", "std")


class MigrationJsonError(ValueError):
    """A ``--migration-json`` file that is not the benchmark's JSON."""


@dataclass(frozen=True)
class SegmentStats:
    min_ms: float
    max_ms: float
    median_ms: float
    mean_ms: float
    sd_ms: float | None
    """Sample standard deviation; None when the file gives neither samples nor an SD."""
    runs: int | None


@dataclass(frozen=True)
class MigrationRow:
    source: str
    """The file it was read from (its name)."""
    label: str
    """``process``, ``container`` or ``reference_standard``."""
    state_mb: float | None
    segment: str
    stats: SegmentStats


def compute_stats(samples: Sequence[float]) -> SegmentStats:
    """min, max, median, mean and the sample SD (n - 1; 0 for a single run)."""
    if not samples:
        raise MigrationJsonError("a segment has no samples")
    values = [float(v) for v in samples]
    return SegmentStats(
        min_ms=round(min(values), 2),
        max_ms=round(max(values), 2),
        median_ms=round(statistics.median(values), 2),
        mean_ms=round(statistics.fmean(values), 2),
        sd_ms=round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        runs=len(values),
    )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_segment(value: Any, runs: int | None) -> SegmentStats | None:
    """One segment's figures (see the module docstring); None when not measured."""
    if isinstance(value, list):
        return compute_stats(value) if value else None
    if not isinstance(value, Mapping):
        return None
    samples = value.get("samples")
    if isinstance(samples, list) and samples:
        return compute_stats(samples)
    keys = ("min", "max", "median", "mean")
    if not all(is_number(value.get(k)) for k in keys):
        return None
    sd = next((value[k] for k in SD_KEYS if is_number(value.get(k))), None)
    return SegmentStats(
        min_ms=float(value["min"]),
        max_ms=float(value["max"]),
        median_ms=float(value["median"]),
        mean_ms=float(value["mean"]),
        sd_ms=None if sd is None else float(sd),
        runs=runs,
    )


def get_runs_list(data: Any) -> list[Mapping[str, Any]]:
    """The runs a file holds: one object, a list of them, or ``{"sizes": [...]}``."""
    if isinstance(data, Mapping) and isinstance(data.get("sizes"), list):
        data = data["sizes"]
    runs = data if isinstance(data, list) else [data]
    if not runs or not all(isinstance(r, Mapping) for r in runs):
        raise MigrationJsonError("expected the JSON object benchmarks/migration.py writes")
    return runs


def get_rows(run: Mapping[str, Any], runtime: str, source: str) -> list[MigrationRow]:
    """Rows of ``runtime`` (ours) and of the reference standard path, if measured."""
    state_bytes = run.get("state_bytes")
    state_mb = round(float(state_bytes) / 1e6, 1) if isinstance(state_bytes, int | float) else None
    rows: list[MigrationRow] = []
    for label in (runtime, REFERENCE):
        section = run.get(label)
        if not isinstance(section, Mapping) or section.get("skipped"):
            continue
        runs = section.get("runs")
        count = int(runs) if isinstance(runs, int) and not isinstance(runs, bool) else None
        for segment in SEGMENTS:
            stats = read_segment(section.get(f"{segment}_ms"), count)
            if stats is not None:
                rows.append(MigrationRow(source, label, state_mb, segment, stats))
    return rows


def read_migration_files(paths: Sequence[Path], runtime: str) -> dict[str, Any]:
    """Every file's rows, as ``result.json`` keeps them (``rows``: dicts of
    :class:`MigrationRow`), and what was skipped and why."""
    rows: list[MigrationRow] = []
    notes: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise MigrationJsonError(f"{path}: {exc}") from None
        for run in get_runs_list(data):
            found = get_rows(run, runtime, path.name)
            rows += found
            section = run.get(runtime)
            if isinstance(section, Mapping) and section.get("skipped"):
                notes.append(f"{path.name}: {runtime} skipped ({section['skipped']})")
            elif not any(r.label == runtime for r in found):
                notes.append(f"{path.name}: no {runtime} figures")
    if not rows:
        raise MigrationJsonError(
            "no save/transmit/resume figures in " + ", ".join(str(p) for p in paths)
        )
    return {"runtime": runtime, "rows": [asdict(r) for r in rows], "notes": notes}


def format_ms(value: float | None) -> str:
    """Whole ms as the paper's Table 3, one decimal below 10 ms (a loopback transmit)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 10 else f"{value:,.0f}"


def format_table3(migration: Mapping[str, Any]) -> str:
    """Table 3 as markdown: our rows from ``migration`` (``read_migration_files``), then
    the paper's, each with the state size it moved."""
    lines = [
        "| source | path | state (MB) | segment | min | max | median | mean | SD | runs |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in migration["rows"]:
        s = row["stats"]
        state = "-" if row["state_mb"] is None else f"{row['state_mb']:.1f}"
        label = (
            "ours: " + row["label"] if row["label"] != REFERENCE else "reference impl., standard"
        )
        lines.append(
            f"| this run ({row['source']}) | {label} | {state} | {row['segment']} "
            f"| {format_ms(s['min_ms'])} | {format_ms(s['max_ms'])} "
            f"| {format_ms(s['median_ms'])} | {format_ms(s['mean_ms'])} "
            f"| {format_ms(s['sd_ms'])} | {s['runs'] if s['runs'] is not None else '-'} |"
        )
    for paper in TABLE3:
        lines.append(
            f"| paper, Table 3 | {paper.kind} | {get_paper_state_mb(paper.kind):.1f} "
            f"| {paper.segment} | {format_ms(paper.min_ms)} | {format_ms(paper.max_ms)} "
            f"| {format_ms(paper.median_ms)} | {format_ms(paper.mean_ms)} "
            f"| {format_ms(paper.sd_ms)} | - |"
        )
    return "\n".join(lines)


def get_median(migration: Mapping[str, Any] | None, label: str, segment: str) -> float | None:
    """The median of ``label``'s ``segment`` in the first file that has it."""
    for row in (migration or {}).get("rows", []):
        if row["label"] == label and row["segment"] == segment:
            return float(row["stats"]["median_ms"])
    return None
