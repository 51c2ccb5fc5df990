"""``edgechain experiment paper --sim`` (``lab/paper/``) on a small simulation run
through the CLI: the run directory's files, report.md against result.json, the figures'
data against each other (roles, reports, loads), the worst case, one seed one result;
and Table 3 from a hand-made ``benchmarks/migration.py`` JSON."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from edgechain.cli import main
from edgechain.lab.paper.migration_table import (
    MigrationJsonError,
    format_table3,
    read_migration_files,
)
from edgechain.lab.paper.report import write_report
from edgechain.lab.paper.run import FIGURE_FILES, PaperConfig, run_simulation
from edgechain.lab.paper.worst_case import make_config, run_worst_case

NODES, COMMITTEE, APPS, SLOTS = 12, 4, 6, 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAVE_MS = [100.0, 200.0, 300.0, 400.0]
TRANSMIT_MS = [10.0, 30.0, 20.0]


def write_migration_json(path: Path) -> None:
    """As ``benchmarks/migration.py --json`` writes it, with per-run samples for the
    process runtime and only a summary (no SD) for the reference path."""
    report = {
        "runs": 4,
        "state_bytes": 15 * 1024 * 1024,
        "process": {
            "runs": 4,
            "failures": [],
            "save_ms": SAVE_MS,
            "transmit_ms": {"samples": TRANSMIT_MS},
            "resume_ms": [50.0, 50.0, 80.0, 20.0],
            "total_ms": {"median": 1.0, "min": 1.0, "max": 1.0, "mean": 1.0},
        },
        "container": {"skipped": "--no-podman"},
        "reference_standard": {
            "runs": 2,
            "save_ms": {"median": 900.0, "min": 800.0, "max": 1000.0, "mean": 900.0},
            "transmit_ms": {"median": 90.0, "min": 80.0, "max": 100.0, "mean": 90.0, "sd": 14.1},
            "resume_ms": {"median": None, "min": None, "max": None, "mean": None},
        },
    }
    path.write_text(json.dumps(report))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("paper")
    migration = base / "migration.json"
    write_migration_json(migration)
    out = base / "run"
    argv = ["experiment", "paper", "--sim", "--nodes", str(NODES), "--committee",
            str(COMMITTEE), "--apps", str(APPS), "--slots", str(SLOTS), "--seed", "3",
            "--migration-json", str(migration), "--out", str(out), "--quiet",
            "--worst-sim-nodes", "12", "--worst-sim-slots", "24", "--geo-regions", "3"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def result(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return data


def test_the_run_directory_has_the_report_the_json_and_every_figure(
    run_dir: Path, result: dict[str, Any]
) -> None:
    from matplotlib import image

    assert (run_dir / "report.md").stat().st_size > 0
    assert set(result["figures"]) == set(FIGURE_FILES)
    for name in FIGURE_FILES.values():
        path = run_dir / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        pixels = image.imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
        assert f"]({name})" in (run_dir / "report.md").read_text()


def get_table_row(report: str, first_cell: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in report.md")


def test_report_numbers_are_those_of_result_json(run_dir: Path, result: dict[str, Any]) -> None:
    report = (run_dir / "report.md").read_text()
    summary = result["sim"]["summary"]
    blocks = get_table_row(report, "blocks / skip blocks / empty slots")
    assert blocks[1] == f"{summary['blocks']} / {summary['skip_blocks']} / {summary['empty_slots']}"
    assert summary["blocks"] + summary["skip_blocks"] + summary["empty_slots"] == SLOTS
    producer = get_table_row(report, "report to producer (p50 / p99)")
    prod = summary["report_to_producer_ms"]
    assert producer[1].startswith(f"{prod['p50']} ms / {prod['p99']} ms")
    for name, run in result["worst_case"]["planners"].items():
        row = get_table_row(report, name)
        assert row[1:3] == [str(run["slots_to_balance"]), str(run["migrations"])]
    ours = result["worst_case"]["planners"]["edgechain"]
    assert f"our planner {ours['slots_to_balance']} slots" in report
    simulated = result["worst_case"]["simulated"]
    row = get_table_row(report, "edgechain, simulated network (12 nodes, 24 apps)")
    assert row[1:3] == [str(simulated["slots_to_balance"]), str(simulated["migrations"])]


def test_the_simulated_worst_case_starts_on_one_node_and_spreads(result: dict[str, Any]) -> None:
    """The worst case on the simulated network: every app on the first node when the
    admin undrains the others (max/mean = the node count), spread by the chain's planner
    to max/mean <= 1.25, one copy of each app throughout."""
    simulated = result["worst_case"]["simulated"]
    ratios = {int(k): v for k, v in simulated["max_over_mean_by_slot"].items()}
    assert ratios[simulated["undrain_at"]] == 12.0
    assert simulated["slots_to_balance"] is not None, ratios
    assert simulated["migrations"] >= 12 and simulated["max_copies_seen"] == 1
    assert simulated["violations"] == []


def test_the_figures_data_agree_with_the_simulation(result: dict[str, Any]) -> None:
    sim, summary = result["sim"], result["sim"]["summary"]
    counts = sim["roles"]["counts"]
    # Every slot elects one producer and a full committee (Fig. 7).
    assert sum(counts["producer"]) == SLOTS
    assert sum(counts["committee"]) == SLOTS * COMMITTEE
    assert sum(counts["representative"]) >= SLOTS
    assert sim["slots"]["slot"] == list(range(1, SLOTS + 1))
    # Fig. 12's samples are the summary's.
    reports = sim["reports"]
    assert len(reports["to_producer_ms"]) == prod_samples(summary)
    assert len(reports["sample_slot"]) == len(reports["to_representative_ms"])
    assert sum(reports["block_due"]) == summary["reports_due"]
    inclusion = sum(reports["block_included"]) / sum(reports["block_due"])
    assert round(inclusion, 4) == summary["report_inclusion"]
    # Fig. 9 and Fig. 11 read the same chain: at the end every node has reported since
    # the apps were placed, so the reported loads add up to the placed apps' requests.
    stacks = sim["app_stacks"]
    placed = sum(sum(loads) for loads in stacks["stacks"][str(stacks["moments"][-1])].values())
    last = sim["cpu_load"]["distribution_pct"][-1]
    nodes = sim["cpu_load"]["nodes_reporting"][-1]
    assert nodes == NODES
    assert placed > 0
    assert abs(last["mean"] * nodes - placed) < 0.001 * nodes
    assert (
        sum(len(loads) for loads in stacks["stacks"][str(stacks["moments"][-1])].values()) == APPS
    )


def prod_samples(summary: dict[str, Any]) -> int:
    return int(summary["report_to_producer_ms"]["samples"])


def test_the_worst_case_balances_sooner_with_our_planner(result: dict[str, Any]) -> None:
    worst = result["worst_case"]
    assert (worst["nodes"], worst["apps"]) == (NODES, 2 * NODES)
    ours, alg1 = worst["planners"]["edgechain"], worst["planners"]["algorithm1"]
    assert ours["slots_to_balance"] is not None
    assert alg1["slots_to_balance"] is None or ours["slots_to_balance"] <= alg1["slots_to_balance"]
    for run in (ours, alg1):
        assert sum(run["migrations_by_slot"]) == run["migrations"]
        assert run["max_load_pct_by_slot"][0] == pytest.approx(run["mean_load_pct"] * NODES, 0.01)
    # The paper's Algorithm 1 moves one app a slot (§3.3); ours may move several.
    assert max(alg1["migrations_by_slot"]) == 1
    moments = worst["moments"]
    assert moments[0] == 0 and ours["slots_to_balance"] in moments
    start = worst["stacks"]["edgechain"]["0"]
    assert list(start) == ["n0"] and len(start["n0"]) == worst["apps"]


def test_one_seed_gives_one_result(tmp_path: Path) -> None:
    config = PaperConfig(out=tmp_path, nodes=8, committee=3, apps=4, slots=6, seed=5)
    first, _ = run_simulation(config, None, lambda _: None)
    second, _ = run_simulation(config, None, lambda _: None)
    assert first == second
    worst = make_config(8, None, 20, 5)
    assert run_worst_case(worst)[0] == run_worst_case(worst)[0]


def test_the_live_form_refuses_what_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --sim: a testnet; what only a simulation or a container engine has is
    refused (exit 2) before anything starts. The live run: test_paper_live.py."""
    out = tmp_path / "x"
    for argv, message in (
        (["--runtime", "container"], "process runtime only"),
        (["--geo-regions", "3"], "--geo-regions is for the simulated form"),
        (["--preset-genesis"], "--preset-genesis is for the simulated form"),
        (["--slot-duration", "0.1"], "--slot-duration must be at least 0.5 s"),
        (["--nodes", "5", "--committee", "5"], "1 <= --committee < --nodes"),
        (["--sim", "--start-on-one-node"], "for the live form"),
    ):
        assert main(["experiment", "paper", *argv, "--out", str(out)]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not out.exists()


def test_table3_from_a_migration_json(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_migration_json(path)
    migration = read_migration_files([path], "process")
    rows = {(r["label"], r["segment"]): r for r in migration["rows"]}
    save = rows["process", "save"]["stats"]
    assert (save["min_ms"], save["max_ms"], save["median_ms"], save["mean_ms"]) == (
        100.0,
        400.0,
        250.0,
        250.0,
    )
    assert save["sd_ms"] == round(statistics.stdev(SAVE_MS), 2) == 129.1
    transmit = rows["process", "transmit"]["stats"]
    assert (transmit["median_ms"], transmit["sd_ms"], transmit["runs"]) == (20.0, 10.0, 3)
    reference = rows["reference_standard", "save"]["stats"]
    assert reference["sd_ms"] is None and reference["runs"] == 2
    assert rows["reference_standard", "transmit"]["stats"]["sd_ms"] == 14.1
    assert ("reference_standard", "resume") not in rows  # not measured: no row
    assert rows["process", "save"]["state_mb"] == 15.7
    table = format_table3(migration)
    assert (
        "| this run (m.json) | ours: process | 15.7 | save | 100 | 400 | 250 | 250 | 129 | 4 |"
        in (table)
    )
    assert "| reference impl., standard | 15.7 | save | 800 | 1,000 | 900 | 900 | - | 2 |" in table
    assert "| paper, Table 3 | CRIU | 15.2 | transmit | 46 | 833 | 79 | 88 | 61 | - |" in table
    # The container runtime was skipped in that file: said so, its rows absent.
    container = read_migration_files([path], "container")
    assert {r["label"] for r in container["rows"]} == {"reference_standard"}
    assert container["notes"] == ["m.json: container skipped (--no-podman)"]


def test_table3_from_a_file_of_several_state_sizes(tmp_path: Path) -> None:
    """The benchmark's layout with ``--sizes``: one entry per state size, summaries
    with an SD."""

    def size(state_bytes: int, median: float) -> dict[str, Any]:
        stats = {"median": median, "min": median - 1, "max": median + 1, "mean": median, "sd": 0.5}
        segments = {f"{s}_ms": stats for s in ("save", "transmit", "resume")}
        return {"state_bytes": state_bytes, "process": {"runs": 3, **segments}}

    path = tmp_path / "sizes.json"
    path.write_text(json.dumps({"sizes": [size(15_200_000, 10.0), size(142_200_000, 90.0)]}))
    migration = read_migration_files([path], "process")
    saves = [(r["state_mb"], r["stats"]["median_ms"], r["stats"]["sd_ms"])
             for r in migration["rows"] if r["segment"] == "save"]  # fmt: skip
    assert saves == [(15.2, 10.0, 0.5), (142.2, 90.0, 0.5)]
    assert (
        "| this run (sizes.json) | ours: process | 142.2 | resume | 89 | 91 | 90 | 90 | 0.5 | 3 |"
        in (format_table3(migration))
    )


def test_a_file_that_is_not_the_benchmarks_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(MigrationJsonError):
        read_migration_files([path], "process")
    assert main(["experiment", "paper", "--sim", "--nodes", "8", "--committee", "3",
                 "--migration-json", str(path), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2  # fmt: skip


def test_without_migration_json_the_report_gives_the_command(result: dict[str, Any]) -> None:
    report = write_report({**result, "migration": None, "figures": {}})
    assert "not measured in this run" in report
    assert "benchmarks/migration.py --json migration.json" in report
    migration_table = re.search(r"\| this run \(", report)
    assert migration_table is None


def test_the_overlay_section_gives_the_summary_s_latencies(
    run_dir: Path, result: dict[str, Any]
) -> None:
    """--geo-regions: report.md sets the coordinate overlay's member-to-representative
    delay beside hash positions, as result.json has them."""
    latency = result["sim"]["summary"]["cluster_latency"]
    report = (run_dir / "report.md").read_text()
    assert result["config"]["geo_regions"] == 3
    assert len(latency["by_slot"]) == SLOTS
    ours = get_table_row(report, "network coordinates")
    assert ours[1] == f"{latency['overlay']['mean_ms']} ms"
    hashed = get_table_row(report, "hash positions (reference), same validators and seeds")
    assert hashed[2] == f"{latency['hash_positions']['p50_ms']} ms"
