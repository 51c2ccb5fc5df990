"""The run of ``edgechain experiment paper --sim``: the simulation, the worst case, the
migration table if given, then the run directory: ``result.json`` (every number the
figures are drawn from), the PNG figures and ``report.md``.

One seed gives one ``result.json``, apart from its ``timing`` section (wall-clock
figures: the run's and the planners'). The paper's figures it stands for: §4.1 Figs.
7-8, §4.2 Figs. 9-11 and Table 3, §4.3 Fig. 12.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from edgechain.lab.paper.migration_table import read_migration_files
from edgechain.lab.paper.report import write_report
from edgechain.lab.paper.sim_data import get_sim_data
from edgechain.lab.paper.worst_case import WorstCaseConfig, make_config, run_worst_case
from edgechain.sim.app_load import LOAD_MIXED, TRANSFER_MODELLED
from edgechain.sim.apps import AppModelConfig
from edgechain.sim.runner import SimConfig, Simulation

Progress = Callable[[int, int], None]
Log = Callable[[str], None]

FIGURE_FILES = {
    "fig7": "fig7_roles.png",
    "fig8": "fig8_votes_block_times.png",
    "fig9": "fig9_cpu_load.png",
    "fig11_sim": "fig11_apps_per_node.png",
    "worst_case": "worst_case_balance.png",
    "fig11_worst_case": "fig11_worst_case_apps_per_node.png",
    "fig12": "fig12_report_propagation.png",
    "fig10": "fig10_migration.png",
    "overlay": "overlay_cluster_latency.png",
}


@dataclass(frozen=True)
class PaperConfig:
    out: Path
    nodes: int = 100
    apps: int = 200
    slots: int = 60
    slot_duration_s: float = 2.0
    committee: int = 32
    seed: int = 1
    runtime: str = "process"
    latency_ms: tuple[int, int] = (0, 5)
    """The paper's artificial delay: 0-5 ms on every UDP packet (§4)."""
    preset_genesis: bool = False
    geo_regions: int = 0
    """Nodes in this many regions, delay by distance (``SimConfig.geo_regions``)."""
    worst_nodes: int | None = None
    """Worst-case fleet size; default ``nodes``."""
    worst_apps: int | None = None
    """Default: two per worst-case node (``worst_case.get_default_apps``)."""
    worst_slots: int | None = None
    worst_sim_nodes: int = 100
    """Nodes of that run (two apps each)."""
    worst_sim_slots: int = 40
    """Slots of the worst case run again on the simulated network with our planner
    (``sim/app_worst_case.py``; 0: not run)."""
    migration_json: tuple[Path, ...] = ()
    max_wall_s: float | None = None
    command: str = ""
    """The command line, for the report."""


def get_config_record(config: PaperConfig, slots_run: int) -> dict[str, Any]:
    record = asdict(config)
    record["out"] = str(config.out)
    record["migration_json"] = [str(p) for p in config.migration_json]
    record["latency_ms"] = list(config.latency_ms)
    record["slots_run"] = slots_run
    return record


def run_simulation(
    config: PaperConfig, progress: Progress | None, log: Log
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The simulated network; returns (figures' data with the summary, timing)."""
    sim_config = SimConfig(
        nodes=config.nodes,
        committee=config.committee,
        slots=config.slots,
        slot_duration_ms=round(config.slot_duration_s * 1000),
        latency_ms=config.latency_ms,
        seed=config.seed,
        apps=config.apps,
        preset_genesis=config.preset_genesis,
        geo_regions=config.geo_regions,
    )
    log(f"simulating {config.nodes} nodes, {config.slots} slots, {config.apps} apps")
    sim = Simulation(sim_config, progress=progress)
    result = sim.run(max_wall_seconds=config.max_wall_s)
    timing = {"simulation_s": result.summary.pop("wall_seconds")}
    log(f"simulation done in {timing['simulation_s']} s; reading the chain")
    data = get_sim_data(sim, result)
    data["summary"] = result.summary
    data["trace_digest"] = result.trace_digest
    return data, timing


def run_simulated_worst_case(worst: WorstCaseConfig, slots: int) -> dict[str, Any]:
    """The worst case on the simulated network (every node a real engine, the chain's
    planner, drains and undrains by the admin, mixed loads, modelled migrations)."""
    sim_config = SimConfig(
        nodes=worst.nodes,
        committee=max(3, min(32, worst.nodes // 3)),
        slots=slots,
        slot_duration_ms=2_000,
        seed=worst.seed,
        apps=worst.apps,
        preset_genesis=True,
        trace=False,
        app_model=AppModelConfig(load=LOAD_MIXED, transfer=TRANSFER_MODELLED, worst_case=True),
    )
    summary = Simulation(sim_config).run().summary
    apps = summary["apps"]
    return {
        "nodes": worst.nodes,
        "apps": worst.apps,
        "slots": slots,
        "committee": sim_config.committee,
        **apps["worst_case"],
        "migration_costs_ms": apps.get("migration_costs_ms"),
        "max_copies_seen": apps["max_copies_seen"],
        "violations": summary["violations"],
    }


def write_figures(result: dict[str, Any], out: Path, log: Log) -> dict[str, str]:
    """Every figure the result has data for, simulated or live (``result["live"]``,
    the same keys); returns figure key → file name."""
    from edgechain.lab.paper import figures, figures_apps

    data = result["live"] if "live" in result else result["sim"]
    config, worst = result["config"], result["worst_case"]
    drawers: list[tuple[str, Callable[[Path], None]]] = [
        ("fig7", lambda p: figures.plot_roles(data, config, p)),
        ("fig8", lambda p: figures.plot_votes_and_block_times(data, config, p)),
        ("fig9", lambda p: figures.plot_cpu_load(data, config, p)),
        ("fig12", lambda p: figures.plot_reports(data, config, p)),
        ("worst_case", lambda p: figures_apps.plot_worst_case(worst, p)),
        ("fig11_worst_case", lambda p: figures_apps.plot_worst_case_stacks(worst, p)),
    ]
    if data["app_stacks"]["moments"]:  # a live run that never reached its first moment
        drawers.append(("fig11_sim", lambda p: figures_apps.plot_sim_stacks(data, config, p)))
    if "cluster_latency" in data["summary"]:
        drawers.append(("overlay", lambda p: figures.plot_cluster_latency(data, config, p)))
    if result.get("migration") is not None:
        migration = result["migration"]
        drawers.append(("fig10", lambda p: figures_apps.plot_migration(migration, p)))
    written: dict[str, str] = {}
    for key, draw in drawers:
        name = FIGURE_FILES[key]
        log(f"drawing {name}")
        draw(out / name)
        written[key] = name
    return written


class WorstCaseOptions(Protocol):
    """The worst-case options both forms share (``PaperConfig``, ``LiveConfig``)."""

    @property
    def nodes(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def worst_nodes(self) -> int | None: ...
    @property
    def worst_apps(self) -> int | None: ...
    @property
    def worst_slots(self) -> int | None: ...
    @property
    def worst_sim_nodes(self) -> int: ...
    @property
    def worst_sim_slots(self) -> int: ...


def run_worst_cases(config: WorstCaseOptions, timing: dict[str, Any], log: Log) -> dict[str, Any]:
    """§4.2's worst case on the planner model, and on the simulated network when
    ``worst_sim_slots`` > 0; their wall times go into ``timing``."""
    worst_config = make_config(
        config.worst_nodes or config.nodes, config.worst_apps, config.worst_slots, config.seed
    )
    log(f"worst case on the planner model: {worst_config.apps} apps on one of "
        f"{worst_config.nodes} nodes")  # fmt: skip
    started = time.perf_counter()
    worst, timing["worst_case_plans"] = run_worst_case(worst_config)
    timing["worst_case_s"] = round(time.perf_counter() - started, 2)
    if config.worst_sim_slots > 0:
        sim_case = make_config(config.worst_sim_nodes, None, None, config.seed)
        log(f"worst case in the simulator: {sim_case.apps} apps, {sim_case.nodes} nodes")
        started = time.perf_counter()
        worst["simulated"] = run_simulated_worst_case(sim_case, config.worst_sim_slots)
        timing["worst_case_sim_s"] = round(time.perf_counter() - started, 2)
    return worst


def run_paper(
    config: PaperConfig, progress: Progress | None = None, log: Log = lambda _: None
) -> dict[str, Any]:
    """The whole experiment into ``config.out``; returns what ``result.json`` holds."""
    started = time.perf_counter()
    # Read the migration files first: a bad file fails before an hour of simulation,
    # and before the run directory exists.
    migration = (
        read_migration_files(config.migration_json, config.runtime)
        if config.migration_json
        else None
    )
    if migration is not None:
        migration["files"] = [p.name for p in config.migration_json]
    config.out.mkdir(parents=True, exist_ok=True)
    sim, timing = run_simulation(config, progress, log)
    worst = run_worst_cases(config, timing, log)
    slots_run = int(sim["summary"].get("slots_run", config.slots))
    result: dict[str, Any] = {
        "config": get_config_record(config, slots_run),
        "sim": sim,
        "worst_case": worst,
        "migration": migration,
    }
    result["figures"] = write_figures(result, config.out, log)
    timing["total_s"] = round(time.perf_counter() - started, 2)
    result["timing"] = timing
    (config.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    (config.out / "report.md").write_text(write_report(result))
    log(f"wrote {config.out / 'report.md'}")
    return result
