"""Crypto and election micro-benchmarks: medians over repeated runs.

    .venv/bin/python benchmarks/crypto.py [--repeat 50] [--json results.json] [--only NAME]

Each ``bench_*`` function returns a flat dict of figures (times in milliseconds,
``median`` over ``repeat`` runs timed with ``time.perf_counter``) and, where the project
has one, the ``goal_ms`` it is measured against. ``main`` runs the registry
``BENCHMARKS`` in order, prints one line per benchmark and optionally writes every
result as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edgechain.chain.model import ChainParams
from edgechain.chain.signature_cache import SignatureCache
from edgechain.consensus.roles import compute_roles
from edgechain.crypto import bls, vdf
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.session import SessionKeys, compute_session_key
from edgechain.crypto.shuffle import compute_shuffled_list
from edgechain.types import PublicKey, SecretKey, Slot
from edgechain.wire.codec import decode_message, encode_message
from edgechain.wire.message_kinds import Transport
from edgechain.wire.messages import FindNode

Result = dict[str, float | int | str]
DEFAULT_REPEAT = 50


def _median_ms(
    run: Callable[[], object], repeat: int, before: Callable[[], None] | None = None
) -> float:
    """Median wall time of ``run`` in ms; ``before`` (untimed) runs ahead of each call."""
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def _secret_keys(count: int) -> list[SecretKey]:
    return [
        bls.keygen(hashlib.sha256(b"bench key" + i.to_bytes(4, "big")).digest())
        for i in range(count)
    ]


def _seed(label: bytes) -> bytes:
    return hashlib.sha256(b"bench seed " + label).digest()


def bench_fast_aggregate_verify(repeat: int = DEFAULT_REPEAT, signers: int = 256) -> Result:
    """FastAggregateVerify of one committee vote: cold (keys not yet decoded) and warm."""
    sks = _secret_keys(signers)
    pks = [bls.sk_to_pk(sk) for sk in sks]
    message = b"bench block header hash"
    signature = bls.aggregate([bls.sign(sk, message) for sk in sks])
    assert bls.fast_aggregate_verify(pks, message, signature)
    # Cold: bls.py caches decoded (subgroup-checked) keys; clear the cache before each run.
    cold = _median_ms(
        lambda: bls.fast_aggregate_verify(pks, message, signature),
        repeat,
        before=bls._decode_public_key.cache_clear,
    )
    bls.fast_aggregate_verify(pks, message, signature)
    warm = _median_ms(lambda: bls.fast_aggregate_verify(pks, message, signature), repeat)
    return {"signers": signers, "cold_ms": cold, "warm_ms": warm, "goal_ms": 5.0, "repeat": repeat}


def bench_shuffle(repeat: int = DEFAULT_REPEAT, count: int = 10_000) -> Result:
    """Whole-list swap-or-not shuffle (90 rounds)."""
    seed = _seed(b"shuffle")
    median = _median_ms(lambda: compute_shuffled_list(count, seed), repeat)
    return {"count": count, "median_ms": median, "goal_ms": 50.0, "repeat": repeat}


def bench_vdf_verify(repeat: int = DEFAULT_REPEAT, iterations: int = 20_000) -> Result:
    """VDF verification as a validator pays it (block format 13): every block derives its
    starting form from its parent hash (``block_ms``); the first block of a group period
    (``ChainParams.vdf_group_slots``, 32 slots by default) also derives the period's
    1024-bit discriminant (``epoch_first_ms``). ``per_block_ms`` averages over a period;
    ``per_block_8_ms`` over the 8-slot period of format 12 (one group per finality
    epoch); ``before_ms`` is what every block cost when each one derived its own
    discriminant (format 11)."""
    group_slots = ChainParams("bench", 0, 1000, 1).vdf_group_slots
    group = _seed(b"vdf verify group")
    challenge = _seed(b"vdf verify")
    result = vdf.prove(group, challenge, iterations)
    assert vdf.verify(group, challenge, iterations, result.output, result.proof)

    def check() -> object:
        return vdf.verify(group, challenge, iterations, result.output, result.proof)

    block = _median_ms(check, repeat, before=vdf.get_input_form.cache_clear)
    input_form = _median_ms(
        lambda: vdf.get_input_form(group, challenge), repeat, before=vdf.get_input_form.cache_clear
    )
    # The prime search takes longer or shorter with the seed: average over fresh ones.
    groups = [_seed(b"vdf group %d" % i) for i in range(max(repeat, 30))]
    started = time.perf_counter()
    for fresh in groups:
        vdf.precompute_discriminant(fresh)
    discriminant = (time.perf_counter() - started) * 1000.0 / len(groups)
    warm = _median_ms(check, repeat)
    epoch_first = block + discriminant

    def amortized(slots: int) -> float:
        return round((epoch_first + (slots - 1) * block) / slots, 3)

    return {
        "iterations": iterations,
        "block_ms": block,
        "epoch_first_ms": round(epoch_first, 3),
        "per_block_ms": amortized(group_slots),
        "per_block_8_ms": amortized(8),
        "before_ms": round(warm + discriminant, 3),
        "input_form_ms": input_form,
        "discriminant_ms": round(discriminant, 3),
        "warm_ms": warm,
        "group_slots": group_slots,
        "goal_ms": 10.0,
        "repeat": repeat,
    }


def bench_vdf_prove(repeat: int = 3, iterations: int = 200_000) -> Result:
    """VDF evaluation speed: sets how many iterations fit a slot on this machine."""
    challenge = _seed(b"vdf prove")
    vdf.get_input_form(challenge, challenge)  # time the squarings, not the set-up
    median = _median_ms(lambda: vdf.prove(challenge, challenge, iterations), repeat)
    return {
        "iterations": iterations,
        "median_ms": median,
        "iterations_per_s": round(iterations / (median / 1000.0)),
        "repeat": repeat,
    }


def bench_roles(
    repeat: int = DEFAULT_REPEAT, validators: int = 1000, committee: int = 64
) -> Result:
    """Role election (Algorithm 2) for one slot: sort, roles seed, shuffle, split."""
    keys = [
        PublicKey(hashlib.sha256(b"pk" + i.to_bytes(4, "big")).digest() + bytes(16))
        for i in range(validators)
    ]
    parent_seed = _seed(b"roles")
    slots = iter(range(10**9))
    median = _median_ms(
        lambda: compute_roles(keys, parent_seed, Slot(next(slots)), committee), repeat
    )
    return {"validators": validators, "committee": committee, "median_ms": median, "repeat": repeat}


# --- Block validation -----------------------------------------------------------------


def bench_block_validation(
    repeat: int = DEFAULT_REPEAT, validators: int = 1000, committee: int = 256
) -> Result:
    """Validate a block carrying ``validators`` signed resource reports and an aggregate
    of ``committee`` attestations (chain/validation.py, everything it proves on its own).

    *cold*: no signature seen before; the 1000 report signatures are batch-verified.
    *warm*: the reports were verified on arrival (as the producer and committee members
    do over the overlay), so what remains is the aggregate, the VDF, the producer
    signature and every structural check. ``decode_ms`` is decoding the block's bytes.
    """
    from edgechain.chain.assembly import make_report
    from edgechain.chain.encoding import compute_genesis_hash, decode_block_with_hash, encode_block
    from edgechain.chain.model import AppUsage
    from edgechain.chain.signature_cache import SignatureCache
    from edgechain.chain.validation import BlockContext, validate_block
    from edgechain.chain.validator_set import compute_genesis_validator_set
    from edgechain.testing import build_block, make_genesis
    from edgechain.types import AppId

    genesis, idents = make_genesis(validators, committee_size=committee, difficulty=1_000)
    parent = compute_genesis_hash(genesis)
    reports = tuple(
        make_report(
            ident.sk, Slot(1), timestamp_ms=1, cpu_bp=5_000, ram_bp=2_000, disk_bp=100,
            rtt_us=900, apps=(AppUsage(AppId(ident.node), 1_000, 500, 10, 2_048, 1),),
        )
        for ident in idents
    )  # fmt: skip
    block = build_block(
        parent=parent,
        slot=Slot(1),
        params=genesis.params,
        vdf_iterations=1_000,
        producer=idents[0],
        committee=idents[1 : 1 + committee],
        reports=reports,
    )
    data = encode_block(block)
    _, block_hash = decode_block_with_hash(data)
    ctx = BlockContext(
        params=genesis.params,
        parent_hash=parent,
        parent_slot=Slot(0),
        vdf_iterations=1_000,
        vdf_group=parent,  # a block on the genesis: the genesis's group
        validators=compute_genesis_validator_set(genesis),
        producer_key=idents[0].pk,
        committee=tuple(i.pk for i in idents[1 : 1 + committee]),
    )
    randomness = _seed(b"batch")
    cold = _median_ms(
        lambda: validate_block(block, block_hash, ctx, cache=SignatureCache(randomness)),
        max(1, min(repeat, 5)),
    )
    warm_cache = SignatureCache(randomness)
    validate_block(block, block_hash, ctx, cache=warm_cache)
    warm = _median_ms(lambda: validate_block(block, block_hash, ctx, cache=warm_cache), repeat)
    decode = _median_ms(lambda: decode_block_with_hash(data), repeat)
    return {
        "reports": len(reports),
        "attestations": committee,
        "block_bytes": len(data),
        "warm_ms": warm,
        "cold_ms": cold,
        "decode_ms": decode,
        "goal_ms": 25.0,
        "repeat": repeat,
    }


def bench_dht_envelope(repeat: int = DEFAULT_REPEAT) -> Result:
    """One DHT message (a FindNode) encoded by its sender and decoded by its receiver:
    BLS-signed as every DHT message was, and MACed under the pair's session key
    (crypto/session.py) as between nodes that know each other's key; and the one
    key derivation a pair pays once."""
    sender_sk, receiver_sk = _secret_keys(2)
    sender_pk, receiver_pk = bls.sk_to_pk(sender_sk), bls.sk_to_pk(receiver_sk)
    sender_id = compute_node_id(sender_pk)
    message = FindNode(7, compute_node_id(receiver_pk))
    sender, receiver = SessionKeys(sender_sk, sender_pk), SessionKeys(receiver_sk, receiver_pk)
    sender.get_key(receiver_pk)
    receiver.get_key(sender_pk)

    def signed() -> None:
        decode_message(encode_message(message, sender_id, sender_sk), Transport.DATAGRAM)

    def maced() -> None:
        data = encode_message(
            message, sender_id, sender_sk, sessions=sender, recipient_pk=receiver_pk
        )
        decode_message(data, Transport.DATAGRAM, receiver)

    signed_ms = _median_ms(signed, repeat)
    maced_ms = _median_ms(maced, repeat)
    derive_ms = _median_ms(lambda: compute_session_key(sender_sk, sender_id, receiver_pk), repeat)
    return {
        "signed_ms": signed_ms,
        "maced_ms": maced_ms,
        "ratio": round(signed_ms / maced_ms, 1),
        "key_derivation_ms": derive_ms,
        "repeat": repeat,
    }


def bench_block_signatures(repeat: int = DEFAULT_REPEAT, committee: int = 16) -> Result:
    """What every validator checks of every block beside its VDF: the producer's
    signature and the committee's aggregate. Two checks (four pairings, two final
    exponentiations); one randomised batch of two messages (three pairings, one), as
    ``chain/validation.validate_block_signatures`` did from session 27 to block format
    13; and the batch since format 14, where the producer signs the vote message too
    (two pairings, one hash to the curve)."""
    sks = _secret_keys(committee + 1)
    pks = [bls.sk_to_pk(sk) for sk in sks]
    produced, voted = b"bench producer message", b"bench vote message"
    producer_sig = bls.sign(sks[0], produced)
    producer_vote = bls.sign(sks[0], voted)
    aggregate = bls.aggregate([bls.sign(sk, voted) for sk in sks[1:]])

    def separate() -> None:
        assert bls.verify(pks[0], produced, producer_sig)
        assert bls.fast_aggregate_verify(pks[1:], voted, aggregate)

    def batched(producer_message: bytes, signature: bytes) -> Callable[[], None]:
        def check() -> None:
            key = bls.aggregate_public_keys(pks[1:]).to_compressed_bytes()
            items = [(pks[0], producer_message, signature), (key, voted, aggregate)]
            assert SignatureCache(randomness=b"bench").verify_batch(items) == [True, True]

        return check

    separate_ms = _median_ms(separate, repeat)
    batched_ms = _median_ms(batched(produced, producer_sig), repeat)
    one_message_ms = _median_ms(batched(voted, producer_vote), repeat)
    return {
        "committee": committee,
        "separate_ms": separate_ms,
        "batched_ms": batched_ms,
        "one_message_ms": one_message_ms,
        "ratio": round(separate_ms / one_message_ms, 2),
        "repeat": repeat,
    }


# --------------------------------------------------------------------------------------


BENCHMARKS: dict[str, Callable[[int], Result]] = {
    "fast_aggregate_verify_256": bench_fast_aggregate_verify,
    "shuffle_10000": bench_shuffle,
    "vdf_verify": bench_vdf_verify,
    # Proving is slow (~1 s a run): at most 3 runs whatever --repeat says.
    "vdf_prove": lambda repeat: bench_vdf_prove(max(1, min(repeat, 3))),
    "roles_1000": bench_roles,
    # A testnet's size: the shuffle's byte path (up to 256 validators).
    "roles_100": lambda repeat: bench_roles(repeat, validators=100, committee=16),
    "block_validation_1000_reports": bench_block_validation,
    "dht_envelope": bench_dht_envelope,
    "block_signatures": bench_block_signatures,
}


def _format(result: Result) -> str:
    return "  ".join(
        f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in result.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgechain crypto benchmarks")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per median")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run a subset")
    args = parser.parse_args(argv)
    results: dict[str, Result] = {}
    for name, bench in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        results[name] = bench(args.repeat)
        print(f"{name:28} {_format(results[name])}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
