"""Pre-copy migrations between real process runtimes over loopback TCP, and their faults.

The counter app here rewrites part of its pad at every step, so its state changes
while the rounds copy it. Every test ends with the app running exactly once and its
counter never going backwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from edgechain.chain.model import AppSpec
from edgechain.errors import RejectReason
from edgechain.runtime.precopy import MAX_ROUNDS, write_round
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.protocol import (
    Begin,
    FrameKind,
    Offer,
    decode_verdict,
    encode_frame,
    encode_offer,
    expect_frame,
)
from edgechain.runtime.transfer import MigrationOutcome, TransferTimeouts
from edgechain.runtime.transfer_common import PayloadStream, send_payload

from .helpers import (
    DestinationProcess,
    assert_single_instance,
    get_app,
    get_block_hash,
    get_counter,
    get_entry,
    get_node_id,
    open_nodes,
    read_count,
    wait_count_above,
)

Pair = tuple[ProcessRuntime, ProcessRuntime]
PAD = 3 * 1024 * 1024 + 5000


def start_counter(runtime: ProcessRuntime, rewrite_kib: int = 64) -> tuple[AppSpec, str]:
    spec, tag = get_counter(PAD, rewrite_kib=rewrite_kib)
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    deadline = time.monotonic() + 10
    while not (state / "pad").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_count_above(state, 2)
    return spec, tag


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_precopy_hands_a_changing_state_over_and_back(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = start_counter(a)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, precopy_min_bytes=0) as (na, nb):
            last = 0
            for block, (src, dst) in enumerate([(na, nb), (nb, na), (na, nb)], start=1):
                src_rt, dst_rt = src.runtime, dst.runtime
                assert isinstance(src_rt, ProcessRuntime) and isinstance(dst_rt, ProcessRuntime)
                before = read_count(src_rt.get_state_dir(app))
                assert before >= last
                result = await src.migrate_to(dst, spec, block)
                assert result.outcome is MigrationOutcome.COMPLETED, result
                assert result.precopy_rounds >= 1 and result.precopy_bytes > PAD // 2
                assert result.live  # frozen by the checkpoint hook for the final round
                # The final round carries the rewritten blocks, not the whole pad.
                assert result.raw_bytes < PAD // 2, result
                assert not src_rt.is_running(app) and dst_rt.is_running(app)
                assert_single_instance(tag)
                first = read_count(dst_rt.get_state_dir(app))
                assert first >= before
                last = wait_count_above(dst_rt.get_state_dir(app), first)
                pad = dst_rt.get_state_dir(app) / "pad"
                assert pad.stat().st_size == PAD
            assert na.server.get_stats().completed + nb.server.get_stats().completed == 3

    asyncio.run(run())


def test_final_state_equals_the_frozen_origin(process_pair: Pair, tmp_path: Path) -> None:
    """The origin keeps the state it handed over (frozen, then retired): the
    destination started from exactly that. A stopped app (no rewrite after) is
    compared right after the handover, before it could change its state again."""
    a, b = process_pair
    spec, _ = start_counter(a, rewrite_kib=256)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, precopy_min_bytes=0) as (na, nb):
            # Pause the destination's new copy the moment it exists: a runtime whose
            # restore_staged checks the staged tree against the frozen origin first.
            seen: dict[str, dict[str, str]] = {}
            original = b.restore_staged

            def checking_restore(app_id, spec_, staged: Path) -> None:  # type: ignore[no-untyped-def]
                seen["staged"] = digest_tree(staged)
                seen["origin"] = digest_tree(a.get_state_dir(app))  # frozen meanwhile
                original(app_id, spec_, staged)

            b.restore_staged = checking_restore  # type: ignore[method-assign,assignment]
            result = await na.migrate_to(nb, spec, 1)
            assert result.outcome is MigrationOutcome.COMPLETED, result
            assert result.precopy_rounds >= 1
            assert seen["staged"] == seen["origin"]
            assert "pad" in seen["staged"] and "count" in seen["staged"]

    asyncio.run(run())


def test_a_symlink_in_the_state_migrates_the_plain_way(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = start_counter(a, rewrite_kib=0)
    app = get_app(spec)
    (a.get_state_dir(app) / "link").symlink_to("count")

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, precopy_min_bytes=0) as (na, nb):
            result = await na.migrate_to(nb, spec, 1)
            assert result.outcome is MigrationOutcome.COMPLETED, result
            assert result.precopy_rounds == 0
            assert result.raw_bytes > PAD  # the whole archive
            assert (b.get_state_dir(app) / "link").is_symlink()
            assert_single_instance(tag)

    asyncio.run(run())


def test_destination_killed_during_precopy_leaves_the_app_untouched(
    process_pair: Pair, tmp_path: Path
) -> None:
    a, _ = process_pair
    spec, tag = start_counter(a)
    app = get_app(spec)
    dest = DestinationProcess(tmp_path / "dest", get_node_id("b"))
    try:

        async def run() -> None:
            async with open_nodes([a], tmp_path, precopy_min_bytes=0) as (na,):
                pid_before = a.get_pid(app)
                killed: list[int] = []

                def on_progress(sent: int) -> None:
                    if not killed:
                        killed.append(sent)
                        dest.kill()

                entry = get_entry(spec, na.node_id, get_node_id("b"))
                result = await na.client.migrate(
                    get_block_hash(1), entry, spec, "127.0.0.1", dest.port, on_progress=on_progress
                )
                assert killed
                assert result.outcome is MigrationOutcome.FAILED, result
                assert result.reason.startswith("precopy"), result.reason
                assert result.save_ms == 0  # never frozen, never stopped
                assert a.get_pid(app) == pid_before  # the same process ran on throughout
                before = read_count(a.get_state_dir(app))
                assert wait_count_above(a.get_state_dir(app), before) > before
                assert_single_instance(tag)

        asyncio.run(run())
    finally:
        dest.cleanup()


def test_more_rounds_than_allowed_are_refused(process_pair: Pair, tmp_path: Path) -> None:
    """A peer that never ends its pre-copy is cut off after MAX_ROUNDS."""
    _, b = process_pair
    spec, _ = get_counter(0)
    empty = tmp_path / "empty"
    empty.mkdir()
    delta = tmp_path / "delta"
    write_round(empty, {}, delta, final=False)
    timeouts = TransferTimeouts()

    async def run() -> None:
        async with open_nodes([b], tmp_path) as (nb,):
            reader, writer = await asyncio.open_connection("127.0.0.1", nb.port)
            entry = get_entry(spec, get_node_id("a"), nb.node_id)
            offer = Offer(get_block_hash(1), entry, spec)
            writer.write(encode_frame(FrameKind.OFFER, encode_offer(offer)))
            _, body = await expect_frame(reader, 10, FrameKind.VERDICT)
            assert decode_verdict(body).precopy
            begin = Begin(delta.stat().st_size, False, delta=True)
            for _ in range(MAX_ROUNDS):
                stream = PayloadStream()
                await send_payload(
                    reader, writer, delta, begin, stream, timeouts, expect_done=False
                )
            stream = PayloadStream()
            await send_payload_expecting_nack(reader, writer, delta, begin, stream, timeouts)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10)  # the server lingers, then closes
            writer.close()
            assert nb.server.get_stats().failed == 1
            assert not b.is_running(get_app(spec))

    async def send_payload_expecting_nack(reader, writer, delta, begin, stream, timeouts) -> None:  # type: ignore[no-untyped-def]
        try:
            await send_payload(reader, writer, delta, begin, stream, timeouts, expect_done=False)
        except Exception as exc:
            assert RejectReason.PRECOPY_NOT_OFFERED.value in str(exc), exc
        else:
            raise AssertionError("a round past the limit was acknowledged")

    asyncio.run(run())
