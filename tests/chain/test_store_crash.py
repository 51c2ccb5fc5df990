"""The block store survives SIGKILL at any moment.

A writer process (crash_writer.py) puts blocks of up to 64 KiB, moves the head and
updates a meta key as fast as it can, logging each call before it starts and after it
returns. The test kills it with SIGKILL at random moments (during start-up and WAL
recovery, during the tree reload, during commits), reopens the store and checks that:
it opens, ``integrity_check`` is ok, every stored block has exactly the bytes written
for its hash and the metadata announced, nothing appears that was never attempted,
everything reported as committed is there, and the head and meta hold a value that
was committed or was in flight when the kill landed.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgechain.chain.store.block_store import BlockStore, load_fork_choice
from edgechain.chain.store.blocks import BlockRecord
from edgechain.types import BlockHash, Slot

WRITER = Path(__file__).with_name("crash_writer.py")
GENESIS = BlockHash(hashlib.sha256(b"crash-test-genesis").digest())
ROUNDS = 20
TIME_BUDGET_S = 25.0
MIN_ROUNDS = 6


def expected_bytes(block: bytes) -> bytes:
    """The writer's deterministic block content (kept separately on purpose)."""
    u = int.from_bytes(hashlib.sha256(block + b"size").digest()[:4], "big") / 2**32
    return hashlib.shake_256(block).digest(int(64 * 1024 * u**3))


@dataclass
class Ledger:
    """What the writers said, over all rounds, in order."""

    attempted: dict[BlockHash, BlockRecord] = field(default_factory=dict)
    committed: set[BlockHash] = field(default_factory=set)
    genesis_committed: bool = False
    head_candidates: set[BlockHash | None] = field(default_factory=lambda: {None})
    meta_candidates: set[bytes | None] = field(default_factory=lambda: {None})

    def read_log(self, text: str) -> int:
        """Fold one writer's log in; return how many blocks it committed."""
        committed = 0
        # A line without its newline was cut by the kill: treat it as never written.
        lines = text.split("\n")[:-1]
        for line in lines:
            kind, *args = line.split(" ")
            if kind == "b":
                block, parent = BlockHash(bytes.fromhex(args[0])), BlockHash(bytes.fromhex(args[1]))
                self.attempted[block] = BlockRecord(block, parent, Slot(int(args[2])), int(args[3]))
            elif kind == "B":
                self.committed.add(BlockHash(bytes.fromhex(args[0])))
                committed += 1
            elif kind == "G":
                self.genesis_committed = True
            elif kind == "h":
                # In flight: may or may not have landed.
                self.head_candidates.add(BlockHash(bytes.fromhex(args[0])))
            elif kind == "H":
                self.head_candidates = {BlockHash(bytes.fromhex(args[0]))}
            elif kind == "m":
                self.meta_candidates.add(args[0].encode())
            elif kind == "M":
                self.meta_candidates = {args[0].encode()}
        return committed


def wait_for_ready(log_path: Path, process: subprocess.Popen[bytes], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        if log_path.read_bytes().startswith(b"READY\n"):
            return True
        time.sleep(0.005)
    return False


def kill_writer_at_random(db: Path, log_path: Path, seed: int, rng: random.Random) -> None:
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(seed)], stdout=out, stderr=subprocess.PIPE
        )
    try:
        if rng.random() < 0.25:
            # Anywhere from interpreter start-up through WAL recovery and tree reload.
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert wait_for_ready(log_path, process, 15.0), "writer never became ready"
            time.sleep(rng.uniform(0.0, 0.2))
        assert process.poll() is None, process.communicate()[1].decode()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def check_store(db: Path, ledger: Ledger, verified: set[BlockHash]) -> None:
    """Reopen after a kill and check everything; verify bytes of new blocks only."""
    with BlockStore(db) as store:
        store.check_integrity()
        genesis = store.get_genesis()
        if ledger.genesis_committed:
            assert genesis is not None
        if genesis is not None:
            assert genesis.hash == GENESIS
        stored = set()
        for record in store.iter_blocks():
            stored.add(record.hash)
            assert ledger.attempted.get(record.hash) == record, "never written like this"
            if record.hash not in verified:
                assert store.get_block(record.hash) == expected_bytes(record.hash)
                verified.add(record.hash)
        assert ledger.committed <= stored, "a committed block was lost"
        head = store.get_head()
        assert head in ledger.head_candidates
        assert head is None or head in stored or head == GENESIS
        assert store.get_meta("counter") in ledger.meta_candidates
        if genesis is not None:
            tree = load_fork_choice(store)
            assert len(tree) == len(stored) + 1


@pytest.mark.timeout(120)
def test_store_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    rng = random.Random(20240611)
    ledger = Ledger()
    verified: set[BlockHash] = set()
    kills_mid_write = 0
    started = time.monotonic()
    try:
        for round_number in range(ROUNDS):
            enough = kills_mid_write >= 3 and len(ledger.committed) >= 50
            if round_number >= MIN_ROUNDS and enough and time.monotonic() - started > TIME_BUDGET_S:
                break  # a loaded machine runs fewer rounds once the coverage is there
            log_path = tmp_path / f"writer-{round_number}.log"
            kill_writer_at_random(db, log_path, seed=round_number, rng=rng)
            if ledger.read_log(log_path.read_text()) > 0:
                kills_mid_write += 1
            check_store(db, ledger, verified)
        assert kills_mid_write >= 3, "too few kills landed while blocks were being written"
        assert len(ledger.committed) >= 50
        # Once more over every block, including those checked in earlier rounds.
        with BlockStore(db) as store:
            for block in ledger.committed:
                assert store.get_block(block) == expected_bytes(block)
    finally:
        for path in tmp_path.glob("chain.db*"):
            os.remove(path)  # up to tens of MB: do not leave it to pytest's tmp dirs
