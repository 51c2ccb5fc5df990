"""What a node holds as the chain grows, in the simulator (issue 13: "A 10,000-slot
simulation shows the same flat memory").

Runs one simulation and, every ``--every`` slots, reads what each simulated node's
engine holds: blocks and states in memory, the fork-choice tree, orphans, pools, the
finalized slot; and what the run shares (the memo, the signature cache). With finality
and pruning (``consensus/pruning.py``) every per-node figure levels off after a few
epochs, whatever the chain's length.

The process's RSS is printed too, but it is the *harness's* as much as the nodes': the
simulator itself keeps every accepted block (the stand-in for the nodes' stores, which
serves pruned history to syncing peers) and the auditor's state for each, so it grows
with the chain by design. The per-node figures are the nodes' memory.

    .venv/bin/python benchmarks/sim_memory.py --nodes 10 --slots 10000 --json runs/simmem.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import psutil

from edgechain.sim.runner import SimConfig, Simulation


def measure(sim: Simulation, slot: int) -> dict[str, Any]:
    """Per-node holdings (max over nodes) and the shared caches, now."""
    engines = [n.engine for n in sim.nodes if n.up]

    def most(values: list[int]) -> int:
        return max(values, default=0)

    return {
        "slot": slot,
        "blocks_in_memory": most([len(e.blocks) for e in engines]),
        "states_in_memory": most([len(e.states) for e in engines]),
        "fork_tree": most([len(e.fork) if e.fork else 0 for e in engines]),
        "orphans": most([e.sync.orphan_count for e in engines]),
        "report_pools": most([len(e.reports.report_pool) for e in engines]),
        "finalized_slot": min(e.pruner.finalized_slot for e in engines),
        "memo_entries": len(sim.memo._entries),
        "signature_cache": len(sim.memo.signatures._seen),
        "harness_blocks": len(sim.blocks),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--committee", type=int, default=6)
    parser.add_argument("--slots", type=int, default=10_000)
    parser.add_argument("--slot-duration", type=float, default=2.0)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    samples: list[dict[str, Any]] = []
    sim: Simulation | None = None

    def on_progress(slot: int, end: int) -> None:
        if sim is not None and slot % args.every == 0 and slot > 0:
            samples.append(measure(sim, slot))
            s = samples[-1]
            print(
                f"slot {slot:6d}  blocks {s['blocks_in_memory']:4d}  states "
                f"{s['states_in_memory']:4d}  fork {s['fork_tree']:3d}  finalized "
                f"{s['finalized_slot']:6d}  memo {s['memo_entries']:6d}  sigs "
                f"{s['signature_cache']:6d}  rss {s['rss_mb']:6.1f} MB",
                flush=True,
            )

    config = SimConfig(
        nodes=args.nodes,
        committee=args.committee,
        slots=args.slots,
        slot_duration_ms=int(args.slot_duration * 1000),
        seed=args.seed,
        preset_genesis=True,
        trace=False,
    )
    started = time.perf_counter()
    sim = Simulation(config, progress=on_progress)
    result = sim.run()
    wall = time.perf_counter() - started
    summary = result.summary
    later = [s for s in samples if s["slot"] >= args.slots // 5]
    figures = (
        {
            key: {"min": min(s[key] for s in later), "max": max(s[key] for s in later)}
            for key in ("blocks_in_memory", "states_in_memory", "fork_tree", "memo_entries")
        }
        if later
        else {}
    )
    print(
        f"\n{args.nodes} nodes, {args.slots} slots: {summary['blocks']} blocks, "
        f"{summary['skip_blocks']} skip blocks, {summary['distinct_heads']} head(s), "
        f"violations {len(summary['violations'])}, wall {wall:.0f} s"
    )
    for key, span in figures.items():
        print(f"  {key:18s} from slot {args.slots // 5}: {span['min']} .. {span['max']}")
    if later:
        rss = [s["rss_mb"] for s in later]
        print(
            f"  process RSS (harness included): {min(rss)} .. {max(rss)} MB, "
            f"median {statistics.median(rss)}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "config": vars(args) | {"json": str(args.json)},
                    "wall_s": round(wall, 1),
                    "summary": summary,
                    "samples": samples,
                    "figures": figures,
                },
                indent=1,
                default=str,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
