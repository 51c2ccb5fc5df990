"""The latency-aware report overlay against hash positions, in the simulator (issue 15,
item 2; ``sim/coordinates.py``, ``cluster/vivaldi.py``).

Runs ``edgechain simulate`` with a geography (``--geo-regions``) and prints, over the
slots clustered on network coordinates, the one-way delay from each cluster member to
its representative with our overlay and with the reference's hash positions (same
validators, same seeds), the last slots' means, and the report figures; draws the
per-slot figure.

    .venv/bin/python benchmarks/overlay.py --nodes 1000 --committee 256 --slots 60 \\
        --slot-duration 16 --geo-regions 8 --json runs/overlay.json --plot runs/overlay.png
    .venv/bin/python benchmarks/overlay.py --from-json runs/overlay.json --plot o.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgechain.sim.runner import SimConfig, Simulation

LAST_SLOTS = 10


def format_result(summary: dict[str, Any]) -> str:
    latency = summary["cluster_latency"]
    last = latency["by_slot"][-LAST_SLOTS:]
    ours = sum(row[1] for row in last) / len(last)
    hashed = sum(row[2] for row in last) / len(last)
    prod = summary["report_to_producer_ms"]
    return "\n".join(
        [
            f"overlay: {summary['nodes']} nodes, {summary['slots_run']} slots of "
            f"{summary['slot_duration_ms'] / 1000:g} s, seed {summary['seed']}",
            f"  coordinate mode from slot  {latency['coordinate_mode_from_slot']}",
            "  member to representative, one way, over the coordinate slots:",
            f"    coordinates     {latency['overlay']}",
            f"    hash positions  {latency['hash_positions']}",
            f"  last {len(last)} slots' mean     coordinates {ours:.2f} ms, hash positions "
            f"{hashed:.2f} ms (ratio {hashed / ours:.1f})",
            f"  reports                    {summary['report_inclusion']} included, to "
            f"representative {summary['report_to_representative_ms']}, to producer "
            f"p50 {prod['p50']} p99 {prod['p99']} ms",
            f"  blocks / skip blocks       {summary['blocks']} / {summary['skip_blocks']}; "
            f"violations {len(summary['violations'])}; wall {summary['wall_seconds']} s",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--committee", type=int, default=32)
    parser.add_argument("--slots", type=int, default=60)
    parser.add_argument("--slot-duration", type=float, default=16.0, metavar="SEC")
    parser.add_argument("--geo-regions", type=int, default=8,
                        help="regions (default 8; --from-json: if the JSON has none)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-wall", type=float, default=None, metavar="SEC")
    parser.add_argument("--json", type=Path, help="write the simulation's summary here")
    parser.add_argument("--plot", type=Path, help="write the figure (PNG) here")
    parser.add_argument("--from-json", type=Path, metavar="FILE",
                        help="no run: report and plot this summary")  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        summary = data.get("summary", data)  # this script's JSON, or edgechain simulate's
    else:
        if args.geo_regions < 1:
            parser.error("need --geo-regions >= 1")
        config = SimConfig(
            nodes=args.nodes,
            committee=args.committee,
            slots=args.slots,
            slot_duration_ms=round(args.slot_duration * 1000),
            latency_ms=(0, 2),
            seed=args.seed,
            preset_genesis=True,
            trace=False,
            geo_regions=args.geo_regions,
        )
        result = Simulation(config).run(max_wall_seconds=args.max_wall)
        summary = result.summary
    print(format_result(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"json: {args.json}")
    if args.plot:
        from edgechain.lab.paper.figures import plot_cluster_latency

        plot_config = {
            "nodes": summary["nodes"],
            "committee": summary["committee"],
            "slot_duration_s": summary["slot_duration_ms"] / 1000,
            "seed": summary["seed"],
            "geo_regions": summary["cluster_latency"].get("regions", args.geo_regions),
        }
        plot_cluster_latency({"summary": summary}, plot_config, args.plot)
        print(f"plot: {args.plot}")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
