"""Run a testnet node under cProfile (thread CPU time), for the nodes named in
``PROFILE_NODE_NAMES`` (not an ``EDGECHAIN_`` variable: the launcher keeps those from
its nodes); every other node runs as usual.

    PROFILE_NODE_NAMES=node-005,node-075 .venv/bin/edgechain testnet --nodes 100 \\
        --committee 16 --slot-duration 2 --slots 120 --stop-grace 120 \\
        --node-command "$PWD/.venv/bin/python $PWD/benchmarks/profile_node.py node"

Each profiled node writes ``prof.out`` into its data directory when it stops (read it
with ``pstats``). Give ``--stop-grace`` time for the dump: a node killed while writing
leaves a truncated file. The timer is the loop thread's CPU (``time.thread_time``), so
a node starved by its neighbours shows what it computed, not what it waited for. How
session 27 found the repeated block decodes and encodings (ARCHITECTURE.md).
"""

from __future__ import annotations

import cProfile
import os
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    data_dir = Path(args[args.index("--data-dir") + 1])
    sys.argv = ["edgechain", *args]
    wanted = {name for name in os.environ.get("PROFILE_NODE_NAMES", "").split(",") if name}
    if data_dir.name not in wanted:
        runpy.run_module("edgechain.cli", run_name="__main__")
        return
    from edgechain.cli import main as run_cli

    profile = cProfile.Profile(time.thread_time)
    code = 1
    try:
        # Called with its arguments, ``main`` returns after the node stops rather than
        # leaving through ``exit_without_teardown``, which would skip the dump.
        code = profile.runcall(run_cli, args)
    finally:
        profile.dump_stats(str(data_dir / "prof.out"))
    sys.exit(code)


if __name__ == "__main__":
    main()
