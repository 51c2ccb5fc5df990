"""A destination node as a separate process, for the fault tests that kill it.

Runs a real ``TransferServer`` over a real ``ProcessRuntime``; it accepts every
migration addressed to ``--node-id`` (the plan check is not under test here). With
``--hang-in-restore MARKER`` its runtime unpacks the state, touches MARKER and then
blocks before starting the app, so a test can kill the node mid-restore.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.runtime.archive import extract_state_archive
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.transfer import TransferServer
from edgechain.types import AppId, BlockHash, NodeId


class HangingRuntime(ProcessRuntime):
    """Unpacks like the real runtime, then hangs where it would start the app."""

    def __init__(self, root: Path, marker: Path) -> None:
        super().__init__(root)
        self.marker = marker

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        extract_state_archive(archive, self.get_state_dir(app))
        self.marker.touch()
        while True:
            time.sleep(3600)


async def serve(args: argparse.Namespace) -> None:
    runtime: ProcessRuntime
    if args.hang_in_restore:
        runtime = HangingRuntime(args.root / "runtime", Path(args.hang_in_restore))
    else:
        runtime = ProcessRuntime(args.root / "runtime")

    def is_planned(block_hash: BlockHash, entry: PlanEntry) -> bool:
        del block_hash, entry
        return True

    server = TransferServer(runtime, NodeId(bytes.fromhex(args.node_id)), is_planned, args.root)
    _, port = await server.start()
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.rename(args.port_file)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--hang-in-restore", default="")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
