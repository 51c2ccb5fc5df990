"""Replicas joining a fleet (issue 16, items 1 and 4), through what an operator touches.

On a 4-node ``edgechain testnet`` with an admin key, ``edgechain admin enroll`` prints a
token, and the genesis node is killed for good. A replica started with nothing but
``--seeds DEAD,LIVE`` (the dead genesis node's address first), the genesis key and
``--enrollment-token-file`` (it makes its own key on first start) finds the network
through the live seed and becomes a validator; its ``/status`` names the seed that
answered and the one that did not. ``edgechain admin revoke-enrollment`` then revokes
the token: a second replica presenting it is never included, and the first stays.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from .live_testnet import EDGECHAIN, stop_process
from .test_refusals_live import SETUP_TIMEOUT_S, RefusalsTestnet, http

JOIN_TIMEOUT_S = 120

# Real testnets are CPU-bound on 2 cores: run them one after another on one worker.
pytestmark = pytest.mark.xdist_group("testnet-light")


def _start_replica(
    net: RefusalsTestnet, run_dir: Path, name: str, seeds: str, token_file: Path
) -> tuple[subprocess.Popen[bytes], str]:
    ready = net.ready()
    manifest = json.loads((run_dir / "testnet.json").read_text())
    chain_id = _status(f"http://127.0.0.1:{ready[1]['http_port']}")["chain_id"]
    data_dir = run_dir.parent / name
    data_dir.mkdir()
    ready_file = run_dir.parent / f"{name}.json"
    proc = subprocess.Popen(
        [EDGECHAIN, "node", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--seeds", seeds,
         "--genesis-key", manifest["nodes"][0]["public_key"], "--chain-id", chain_id,
         "--enrollment-token-file", str(token_file), "--ready-file", str(ready_file)],
        stdout=subprocess.DEVNULL, stderr=(data_dir / "stderr.log").open("wb"),
        start_new_session=True,
    )  # fmt: skip
    net.wait_for(ready_file.exists, f"{name} to start", SETUP_TIMEOUT_S)
    return proc, f"http://127.0.0.1:{json.loads(ready_file.read_text())['http_port']}"


def _status(url: str) -> dict[str, Any]:
    reply: dict[str, Any] = http(f"{url}/status")[1]
    return reply


def test_replicas_join_with_a_token_through_any_seed_until_it_is_revoked(
    run_dir: Path,
) -> None:
    net = RefusalsTestnet(run_dir)
    net.start()
    started: list[subprocess.Popen[bytes]] = []
    try:
        net.wait_for_client()
        enrolled = net.cli("admin", "enroll", "--valid-for", "1h")
        token_file = run_dir.parent / "token"
        token_file.write_text(enrolled["token"] + "\n")
        token_file.chmod(0o600)

        # The genesis node goes away for good; the chain goes on without it.
        ready = net.ready()
        manifest = json.loads((run_dir / "testnet.json").read_text())
        genesis = psutil.Process(ready[0]["pid"])
        genesis.kill()
        genesis.wait(timeout=30)
        alive = [f"http://127.0.0.1:{r['http_port']}" for r in ready[1:]]
        start = _status(alive[0])["head_slot"] or 0
        net.wait_for(
            lambda: all((_status(url)["head_slot"] or 0) >= start + 3 for url in alive),
            "the chain to go on without the genesis node",
            60,
        )

        dead = f"127.0.0.1:{ready[0]['udp_port']}"
        live = f"127.0.0.1:{ready[2]['udp_port']}"
        first, first_url = _start_replica(net, run_dir, "replica-a", f"{dead},{live}", token_file)
        started.append(first)

        def joined() -> bool:
            assert first.poll() is None, (run_dir.parent / "replica-a" / "stderr.log").read_text()
            status = _status(first_url)
            return bool(status["genesis"] and status["is_validator"])

        net.wait_for(joined, "the first replica to join through the live seed", JOIN_TIMEOUT_S)
        status = _status(first_url)
        seeds = {s["address"]: s for s in status["seeds"]}
        assert seeds[dead]["node_id"] is None, seeds  # the dead one never answered
        assert seeds[live]["node_id"] == manifest["nodes"][2]["node_id"], seeds
        first_id = status["node_id"]
        assert first_id in {n["node_id"] for n in net.cli("nodes")}

        revoked = net.cli("admin", "revoke-enrollment", enrolled["token_id"])
        assert revoked["applied"], revoked
        second, second_url = _start_replica(net, run_dir, "replica-b", live, token_file)
        started.append(second)
        net.wait_for(lambda: bool(_status(second_url)["genesis"]), "its chain", JOIN_TIMEOUT_S)
        start = _status(second_url)["head_slot"] or 0
        net.wait_for(
            lambda: (_status(second_url)["head_slot"] or 0) >= start + 12,
            "12 slots",
            JOIN_TIMEOUT_S,
        )
        ids = {n["node_id"] for n in net.cli("nodes")}
        assert _status(second_url)["node_id"] not in ids
        assert not _status(second_url)["is_validator"]
        assert first_id in ids  # a node the token admitted stays
    finally:
        for proc in started:
            stop_process(proc)
        net.stop()
