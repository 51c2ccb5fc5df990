"""No single bootstrap (issue 16, item 1), through what an operator touches.

A 4-node ``edgechain testnet`` runs; its genesis node is killed. A fifth node started
with ``edgechain node --seeds DEAD,LIVE`` (the dead genesis node's address first) and an
admin ticket still finds the network through the live seed, gets the chain, and becomes
a validator; its ``/status`` names the seed that answered and the one that did not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgechain.crypto.keystore import create_keystore

from .live_testnet import EDGECHAIN, stop_process
from .test_refusals_live import SETUP_TIMEOUT_S, RefusalsTestnet, http

JOIN_TIMEOUT_S = 120

# Real testnets are CPU-bound on 2 cores: run them one after another on one worker.
pytestmark = pytest.mark.xdist_group("testnet")


def test_a_node_joins_through_another_seed_while_the_genesis_node_is_down(
    run_dir: Path,
) -> None:
    net = RefusalsTestnet(run_dir)
    net.start()
    joiner: subprocess.Popen[bytes] | None = None
    try:
        net.wait_for_client()
        ready = net.ready()
        manifest = json.loads((run_dir / "testnet.json").read_text())
        status = http(f"http://127.0.0.1:{ready[1]['http_port']}/status")[1]
        chain_id = status["chain_id"]

        # The genesis node goes away for good.
        genesis = psutil.Process(ready[0]["pid"])
        genesis.kill()
        genesis.wait(timeout=30)
        start = status["head_slot"]
        alive = ready[1:]

        def chain_goes_on() -> bool:
            return all(
                (http(f"http://127.0.0.1:{r['http_port']}/status")[1]["head_slot"] or 0)
                >= start + 3
                for r in alive
            )

        net.wait_for(chain_goes_on, "the chain to go on without the genesis node", 60)

        # A new node: its key made beforehand so the admin can ticket it.
        data_dir = run_dir.parent / "joiner"
        data_dir.mkdir()
        sk_file = data_dir / "node.key"
        create_keystore(sk_file)
        ticket = net.cli("admin", "ticket", str(sk_file))["ticket"]
        dead = f"127.0.0.1:{ready[0]['udp_port']}"
        live = f"127.0.0.1:{ready[2]['udp_port']}"
        ready_file = run_dir.parent / "joiner.json"
        joiner = subprocess.Popen(
            [EDGECHAIN, "node", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
             "--http", "127.0.0.1:0", "--seeds", f"{dead},{live}",
             "--genesis-key", manifest["nodes"][0]["public_key"], "--chain-id", chain_id,
             "--ticket", ticket, "--ready-file", str(ready_file)],
            stdout=subprocess.DEVNULL, stderr=(data_dir / "stderr.log").open("wb"),
            start_new_session=True,
        )  # fmt: skip
        net.wait_for(ready_file.exists, "the new node to start", SETUP_TIMEOUT_S)
        url = f"http://127.0.0.1:{json.loads(ready_file.read_text())['http_port']}"

        def joined() -> bool:
            assert joiner is not None and joiner.poll() is None, _tail(data_dir)
            mine: dict[str, Any] = http(f"{url}/status")[1]
            return bool(mine["genesis"] and mine["is_validator"])

        net.wait_for(joined, "the new node to join through the live seed", JOIN_TIMEOUT_S)
        mine = http(f"{url}/status")[1]
        seeds = {s["address"]: s for s in mine["seeds"]}
        assert seeds[dead]["node_id"] is None, seeds  # the dead one never answered
        assert seeds[live]["node_id"] == manifest["nodes"][2]["node_id"], seeds
        # Every live node has it in its validator set.
        ids = {n["node_id"] for n in net.cli("nodes")}
        assert mine["node_id"] in ids
    finally:
        stop_process(joiner)
        net.stop()


def _tail(data_dir: Path) -> str:
    return (data_dir / "stderr.log").read_text(errors="replace")[-3000:]
