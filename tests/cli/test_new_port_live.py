"""A node restarted on another port is reachable again (issue 16, item 2).

On a 4-node ``edgechain testnet`` one node is killed and started again by hand with its
data directory but a new port (``--listen 127.0.0.1:0``), as after a move or a DHCP
lease. It signs an address record; a block carries it, so ``edgechain nodes`` shows the
new address on every node; and it produces a block after that, which needs the
committee's votes to reach it at the new address.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from .live_testnet import replace_flag, stop_process
from .test_refusals_live import SETUP_TIMEOUT_S, RefusalsTestnet, http

REACH_TIMEOUT_S = 120

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_a_node_restarted_on_a_new_port_is_reachable_again(run_dir: Path) -> None:
    net = RefusalsTestnet(run_dir)
    net.start()
    restarted: subprocess.Popen[bytes] | None = None
    try:
        net.wait_for_client()
        ready = net.ready()
        manifest = json.loads((run_dir / "testnet.json").read_text())
        node_id = manifest["nodes"][3]["node_id"]
        old = f"127.0.0.1:{ready[3]['udp_port']}"
        assert _address_of(net, node_id) == old

        victim = psutil.Process(ready[3]["pid"])
        argv = victim.cmdline()
        victim.kill()
        victim.wait(timeout=30)
        # Same data directory and key, another port: "a new IP from DHCP".
        ready_file = run_dir.parent / "restarted.json"
        argv = replace_flag(argv, "--listen", "127.0.0.1:0")
        argv = replace_flag(argv, "--ready-file", str(ready_file))
        data_dir = Path(argv[argv.index("--data-dir") + 1])
        restarted = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL,
            stderr=(data_dir / "restarted.log").open("wb"), start_new_session=True,
        )  # fmt: skip
        net.wait_for(ready_file.exists, "the node to start again", SETUP_TIMEOUT_S)
        new = f"127.0.0.1:{json.loads(ready_file.read_text())['udp_port']}"
        assert new != old
        start_slot = _head_slot(ready[0])

        def moved_everywhere() -> bool:
            assert restarted is not None and restarted.poll() is None, _tail(data_dir)
            return all(
                {n["node_id"]: n["address"] for n in http(_url(r, "/nodes"))[1]}.get(node_id) == new
                for r in ready[:3]
            )

        net.wait_for(moved_everywhere, "every node to see the new address", REACH_TIMEOUT_S)
        moved_slot = _head_slot(ready[0])

        def produced_since() -> bool:
            blocks = http(_url(ready[0], f"/blocks?since={moved_slot}"))[1]
            return any(
                b.get("producer") == node_id and not b["skip"] and b["slot"] > moved_slot
                for b in blocks
            )

        net.wait_for(produced_since, "a block it produced at its new address", REACH_TIMEOUT_S)
        print(
            json.dumps(
                {"address_moved_after_slots": moved_slot - start_slot, "old": old, "new": new}
            )
        )
    finally:
        stop_process(restarted)
        net.stop()


def _url(ready: dict[str, Any], path: str) -> str:
    return f"http://127.0.0.1:{ready['http_port']}{path}"


def _head_slot(ready: dict[str, Any]) -> int:
    return int(http(_url(ready, "/status"))[1]["head_slot"] or 0)


def _address_of(net: RefusalsTestnet, node_id: str) -> str:
    return str({n["node_id"]: n["address"] for n in net.cli("nodes")}[node_id])


def _tail(data_dir: Path) -> str:
    return (data_dir / "restarted.log").read_text(errors="replace")[-3000:]
