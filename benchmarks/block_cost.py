"""What one block costs every node that checks it, by part, as the validators grow.

Issue 13 asks for an off-duty cost per slot that is flat in N. A node off duty checks
one block a slot; this benchmark takes the parts of that check apart on real blocks
(built by the simulator with every node's reports, then encoded and decoded again, so
each report is a fresh object as it is when it arrives) and times each part on the
thread's CPU clock, cold: a new memo and signature cache per block.

    .venv/bin/python benchmarks/block_cost.py --nodes 20 50 100 --repeats 3

Parts (ms per block, median over blocks and repeats):

* ``decode``: the block's bytes to objects (``decode_block_with_hash``);
* ``roles``: the role shuffle on the parent state (Algorithm 2; once a slot);
* ``plan``: the migration plan the block must carry (Algorithm 1, extended);
* ``state_root``: the parent state's canonical encoding, hashed;
* ``report_fields``: each report's fields and signing root;
* ``report_signatures``: each report's Ed25519 signature (libsodium, one by one);
* ``apply``: the state transition of the checked block;
* ``block_checks_total``: ``validate_full`` without the attestation, which includes
  the parts above that it needs plus the producer's BLS signature and the VDF proof
  (the simulator's proofs are scaled down 1000 times: the real VDF check and the
  attestation are the ones every validator pays anyway, outside issue 13's goal).

Figures only, nothing asserted; the reports per block grow as N / 4 (each node reports
every ``report_interval_slots`` = 4 slots), which is what the parts that grow follow.
``--down-after-slots 60 --epoch-length 40`` gives a genesis whose nodes report every 20
slots (``ChainParams.report_interval_slots``): what still grows then grows with the
state, not with the reports a block carries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgechain.chain import encoding as block_encoding
from edgechain.chain.encoding import decode_block_with_hash, encode_block
from edgechain.chain.model import Block, ChainParams
from edgechain.chain.report_encoding import compute_report_signing_root
from edgechain.chain.signature_cache import SignatureCache
from edgechain.chain.validation import validate_report_fields
from edgechain.consensus import state as st
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.memo import Memo
from edgechain.consensus.state_codec import compute_state_root
from edgechain.sim.config import SimConfig
from edgechain.sim.runner import Simulation

PROOF_SCALE = 1_000
PARTS = (
    "decode",
    "roles",
    "plan",
    "state_root",
    "report_fields",
    "report_signatures",
    "apply",
    "block_checks_total",
)


@dataclass(frozen=True)
class ChainSample:
    """Blocks with the states they were built on, from one simulated run."""

    nodes: int
    params: ChainParams
    blocks: list[tuple[BlockState, bytes]]
    """(parent state, the block's encoding), oldest first."""
    reports_per_block: float


def build_sample(
    nodes: int, slots: int, seed: int, *, down_after_slots: int = 12, epoch_length: int = 8
) -> ChainSample:
    """Run the simulator from a genesis holding every node and keep the head chain's
    blocks after the first few slots (whose parents lack reports); ``down_after_slots``
    and ``epoch_length`` set the report interval (``ChainParams.report_interval_slots``)."""
    config = SimConfig(
        down_after_slots=down_after_slots,
        epoch_length=epoch_length,
        nodes=nodes,
        committee=min(16, nodes - 1),
        slots=slots,
        preset_genesis=True,
        overlay="broadcast",
        trace=False,
        proof_scale=PROOF_SCALE,
        seed=seed,
    )
    sim = Simulation(config)
    sim.run()
    engine = sim.nodes[1].engine
    params = engine.ctx.params
    assert params is not None
    chain: list[tuple[BlockState, Block]] = []
    state = engine.get_head_state()
    while state is not None:
        block = sim.blocks.get(state.block_hash)
        parent = engine.ctx.states.get(block.parent) if block is not None else None
        if parent is None or block is None:
            break
        if isinstance(block, Block) and parent.slot >= 4:
            chain.append((parent, block))
        state = parent
    chain.reverse()
    if not chain:
        raise SystemExit(f"no block past slot 4 in {slots} slots at {nodes} nodes")
    reports = statistics.mean(len(block.reports) for _, block in chain)
    return ChainSample(nodes, params, [(p, encode_block(b)) for p, b in chain], reports)


def _clock(work: Callable[[], object]) -> float:
    started = time.thread_time()
    work()
    return (time.thread_time() - started) * 1000


def measure_block(params: ChainParams, parent: BlockState, data: bytes) -> dict[str, float]:
    """Each part's CPU for one block, cold (ms)."""
    # The decode memo (by the bytes' value), cleared so that decoding is timed.
    block_encoding._decode_block_bytes.cache_clear()
    out: dict[str, float] = {}
    started = time.thread_time()
    block, block_hash = decode_block_with_hash(data)
    out["decode"] = (time.thread_time() - started) * 1000
    assert isinstance(block, Block)
    memo = Memo(randomness=b"\x00" * 32, max_entries=64)
    out["roles"] = _clock(lambda: st.get_roles(memo, parent, block.slot, params.committee_size))
    out["plan"] = _clock(lambda: st.get_plan(memo, params, parent, block.slot))
    out["state_root"] = _clock(lambda: compute_state_root(parent))
    items: list[tuple[bytes, bytes, bytes]] = []

    def check_fields() -> None:
        for report in block.reports:
            key = validate_report_fields(report, parent.validators, block.slot)
            items.append((key, compute_report_signing_root(report), report.signature))

    out["report_fields"] = _clock(check_fields)
    out["report_signatures"] = _clock(lambda: SignatureCache().verify_reports(items))
    mode = ValidationMode(check_attestation=False, proof_scale=PROOF_SCALE)
    fresh = Memo(randomness=b"\x01" * 32, max_entries=64)
    out["block_checks_total"] = _clock(
        lambda: validate_full(fresh, params, parent, block, block_hash, mode)
    )
    out["apply"] = _clock(lambda: st.apply_block(parent, block, block_hash, params))
    return out


def measure(sample: ChainSample, repeats: int) -> dict[str, float]:
    """Median per part over the sample's blocks and ``repeats`` passes."""
    figures: dict[str, list[float]] = {part: [] for part in PARTS}
    for _ in range(repeats):
        for parent, data in sample.blocks:
            for part, ms in measure_block(sample.params, parent, data).items():
                figures[part].append(ms)
    return {part: statistics.median(values) for part, values in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--slots", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--down-after-slots", type=int, default=12, help="genesis K")
    parser.add_argument("--epoch-length", type=int, default=8, help="genesis epoch")
    args = parser.parse_args(argv)
    results = []
    for nodes in args.nodes:
        sample = build_sample(
            nodes,
            args.slots,
            args.seed,
            down_after_slots=args.down_after_slots,
            epoch_length=args.epoch_length,
        )
        results.append((sample, measure(sample, args.repeats)))
    header = f"{'ms per block':<20}" + "".join(f"{f'N={s.nodes}':>10}" for s, _ in results)
    if len(results) > 1:
        header += f"{'last/first':>12}"
    print(header)
    rows = [("reports a block", [s.reports_per_block for s, _ in results])]
    rows += [(part, [r[part] for _, r in results]) for part in PARTS]
    for name, values in rows:
        line = f"{name:<20}" + "".join(f"{v:>10.3f}" for v in values)
        if len(values) > 1 and values[0] > 0:
            line += f"{values[-1] / values[0]:>12.2f}"
        print(line)
    print(f"blocks measured: {[len(s.blocks) for s, _ in results]} x {args.repeats} passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
