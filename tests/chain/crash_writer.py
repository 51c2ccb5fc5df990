"""Writer process for test_store_crash.py: writes to a BlockStore until it is killed.

Usage: ``python crash_writer.py DB_PATH SEED``. It logs to stdout, one flushed line per
event, so the test knows what was in flight and what was committed when SIGKILL hit:

* ``READY``: the store is open and the tree reloaded;
* ``g HASH`` / ``G HASH``: about to put / has put the genesis;
* ``b HASH PARENT SLOT WEIGHT`` / ``B HASH``: about to put / has put a block;
* ``h HASH`` / ``H HASH``: about to set / has set the head;
* ``m VALUE`` / ``M VALUE``: about to put / has put the meta key ``counter``.

A lower-case line is written before the call, the upper-case one after it returned.
Block bytes are a function of the hash (``expected_bytes``) so the test can check them.
The test keeps its own copy of that function, so the two stay an independent check.
"""

from __future__ import annotations

import hashlib
import random
import sys

from edgechain.chain.store.block_store import BlockStore
from edgechain.types import BlockHash, Slot

GENESIS = BlockHash(hashlib.sha256(b"crash-test-genesis").digest())
MAX_BLOCK_SIZE = 64 * 1024


def expected_bytes(block: bytes) -> bytes:
    # Skewed towards small blocks (mean ~16 KiB) so the database stays small enough
    # to check every round, while still reaching 64 KiB and spilling over many pages.
    u = int.from_bytes(hashlib.sha256(block + b"size").digest()[:4], "big") / 2**32
    return hashlib.shake_256(block).digest(int(MAX_BLOCK_SIZE * u**3))


def log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = BlockStore(path)
    # (hash, slot) of every stored block, oldest slot first: parents to build on.
    known: list[tuple[BlockHash, Slot]] = [(GENESIS, Slot(0))]
    known += [(r.hash, r.slot) for r in store.iter_blocks()]
    log("READY")
    if store.get_genesis() is None:
        log(f"g {GENESIS.hex()}")
        store.put_genesis(GENESIS, b"crash-test-genesis")
        log(f"G {GENESIS.hex()}")
    counter = 0
    while True:
        counter += 1
        # Mostly extend the newest block; sometimes fork off a recent one.
        parent, parent_slot = known[-1] if rng.random() < 0.7 else rng.choice(known[-20:])
        block = BlockHash(hashlib.sha256(f"{seed}/{counter}".encode()).digest())
        slot = Slot(parent_slot + rng.randint(1, 3))
        weight = rng.randint(0, 5)
        log(f"b {block.hex()} {parent.hex()} {slot} {weight}")
        store.put_block(block, parent, slot, weight, expected_bytes(block))
        log(f"B {block.hex()}")
        known.append((block, slot))
        known.sort(key=lambda item: item[1])
        if rng.random() < 0.5:
            head = block if rng.random() < 0.8 else rng.choice(known)[0]
            log(f"h {head.hex()}")
            store.set_head(head)
            log(f"H {head.hex()}")
        if counter % 7 == 0:
            log(f"m {counter}")
            store.put_meta("counter", str(counter).encode())
            log(f"M {counter}")


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
