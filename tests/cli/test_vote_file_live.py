"""A node whose block store is moved aside keeps its last finality vote.

What the node tells its operator to do with a damaged store is to move ``chain.db``
aside and start again; the node then syncs the chain from its peers. Until session 51
its last finality vote went with the store, and the restarted node could sign a second
vote for an epoch it had voted in (Casper FFG's first rule). Now each new vote is also
written to ``finality-vote`` beside the store (``node/vote_file.py``).

On a 3-node ``edgechain testnet`` (1 s slots, 4-slot epochs): once node-001 has voted,
it is stopped (SIGTERM), its store moved aside and the node started again on its data
directory. It must come back on the same chain and vote on from the kept vote: its next
vote has a later target epoch. Then a damaged vote file stops it at start with what the
file is for, and the file is left as it was.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from edgechain.node.vote_file import VOTE_FILE_NAME, StoredVote, read_vote_file

from .live_testnet import LiveTestnet, stop_process
from .test_refusals_live import http

SETUP_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 180.0
NODE = "node-001"

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_a_store_moved_aside_keeps_the_nodes_last_finality_vote(run_dir: Path) -> None:
    net = LiveTestnet(run_dir, ("--epoch-length", "4"), nodes=3)
    net.start()
    restarted: subprocess.Popen[bytes] | None = None
    data_dir = run_dir / NODE
    path = data_dir / VOTE_FILE_NAME
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        held: list[StoredVote] = []

        def has_voted(after: StoredVote | None = None) -> bool:
            vote = read_vote_file(path)
            if vote is None or (after is not None and vote == after):
                return False
            held.append(vote)
            return True

        net.wait_for(has_voted, f"{NODE}'s first finality vote", STEP_TIMEOUT_S)
        ready_file = data_dir / "ready.json"
        ready = json.loads(ready_file.read_text())
        node = psutil.Process(ready["pid"])
        argv = node.cmdline()
        node.terminate()
        node.wait(timeout=60)
        last = read_vote_file(path)
        assert last is not None
        aside = run_dir / "aside"
        aside.mkdir()
        for name in ("chain.db", "chain.db-wal", "chain.db-shm"):
            if (data_dir / name).exists():
                (data_dir / name).rename(aside / name)
        ready_file.unlink()
        restarted = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL,
            stderr=(data_dir / "restarted.log").open("wb"), start_new_session=True,
        )  # fmt: skip
        net.wait_for(ready_file.exists, f"{NODE} to start again", SETUP_TIMEOUT_S)

        def has_voted_again() -> bool:
            assert restarted is not None and restarted.poll() is None, "the node died"
            return has_voted(last)

        net.wait_for(has_voted_again, f"{NODE}'s next vote", STEP_TIMEOUT_S)
        again = held[-1]
        assert again.genesis == last.genesis, "not the same chain"
        assert again.vote.target.epoch > last.vote.target.epoch, (last, again)
        assert again.vote.source.epoch >= last.vote.source.epoch, (last, again)
        port = json.loads(ready_file.read_text())["http_port"]
        status = http(f"http://127.0.0.1:{port}/status")[1]
        assert status["is_validator"] and status["head_slot"] > 0, status
        stop_process(restarted)
        restarted = None

        path.write_bytes(path.read_bytes()[:-1])
        before = path.read_bytes()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"the finality vote file {path} is unreadable" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert path.read_bytes() == before
    finally:
        stop_process(restarted)
        net.stop()
