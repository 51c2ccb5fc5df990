"""Identical replicas, closed admission (issue 16, item 4), through the CLI.

On a 4-node ``edgechain testnet`` with an admin key, ``edgechain admin enroll`` prints a
token; a new node started with nothing but ``--enrollment-token-file`` (it makes its own
key on first start) becomes a validator. ``edgechain admin revoke-enrollment`` then
revokes the token: a second node presenting it is never included, while the first
stays.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .live_testnet import EDGECHAIN, stop_process
from .test_refusals_live import SETUP_TIMEOUT_S, RefusalsTestnet, http

JOIN_TIMEOUT_S = 120

pytestmark = pytest.mark.xdist_group("testnet")


def _start_node(
    net: RefusalsTestnet, run_dir: Path, name: str, token_file: Path
) -> tuple[subprocess.Popen[bytes], str]:
    ready = net.ready()
    manifest = json.loads((run_dir / "testnet.json").read_text())
    chain_id = http(f"http://127.0.0.1:{ready[1]['http_port']}/status")[1]["chain_id"]
    data_dir = run_dir.parent / name
    ready_file = run_dir.parent / f"{name}.json"
    proc = subprocess.Popen(
        [EDGECHAIN, "node", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--seeds", f"127.0.0.1:{ready[1]['udp_port']}",
         "--genesis-key", manifest["nodes"][0]["public_key"], "--chain-id", chain_id,
         "--enrollment-token-file", str(token_file), "--ready-file", str(ready_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    net.wait_for(ready_file.exists, f"{name} to start", SETUP_TIMEOUT_S)
    return proc, f"http://127.0.0.1:{json.loads(ready_file.read_text())['http_port']}"


def _status(url: str) -> dict[str, Any]:
    reply: dict[str, Any] = http(f"{url}/status")[1]
    return reply


def test_one_token_admits_replicas_until_it_is_revoked(run_dir: Path) -> None:
    net = RefusalsTestnet(run_dir)
    net.start()
    started: list[subprocess.Popen[bytes]] = []
    try:
        net.wait_for_client()
        enrolled = net.cli("admin", "enroll", "--valid-for", "1h")
        token_file = run_dir.parent / "token"
        token_file.write_text(enrolled["token"] + "\n")
        token_file.chmod(0o600)

        first, first_url = _start_node(net, run_dir, "replica-a", token_file)
        started.append(first)
        net.wait_for(
            lambda: _status(first_url)["is_validator"], "the first replica", JOIN_TIMEOUT_S
        )
        first_id = _status(first_url)["node_id"]
        assert first_id in {n["node_id"] for n in net.cli("nodes")}

        revoked = net.cli("admin", "revoke-enrollment", enrolled["token_id"])
        assert revoked["applied"], revoked
        second, second_url = _start_node(net, run_dir, "replica-b", token_file)
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
