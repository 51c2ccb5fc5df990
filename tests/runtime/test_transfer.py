"""Migration transfer between real process runtimes over loopback TCP, and its faults.

Every test ends with the app running exactly once (one process tree on the host) and
its counter continuing from where it stopped: no state lost, never backwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec, PlanEntry
from edgechain.runtime.base import AppNotFoundError, AppStatus
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.protocol import (
    FrameKind,
    Offer,
    Verdict,
    decode_verdict,
    encode_frame,
    encode_offer,
)
from edgechain.runtime.transfer import MigrationOutcome, MigrationResult, TransferTimeouts
from edgechain.types import AppId, BlockHash

from .helpers import (
    DestinationProcess,
    Node,
    TamperProxy,
    assert_single_instance,
    get_app,
    get_block_hash,
    get_counter,
    get_entry,
    get_free_closed_port,
    get_node_id,
    get_tagged_processes,
    open_nodes,
    read_count,
    wait_count_above,
)

Pair = tuple[ProcessRuntime, ProcessRuntime]


def _start_counter(runtime: ProcessRuntime, pad: int = 0) -> tuple[AppSpec, str]:
    spec, tag = get_counter(pad)
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    if pad:
        # Wait for the pad, so every migration carries it.
        deadline = time.monotonic() + 10
        while not (state / "pad").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    wait_count_above(state, 1)
    return spec, tag


def _assert_resumed_at_origin(
    result: MigrationResult, origin: ProcessRuntime, spec: AppSpec, tag: str, before: int
) -> None:
    """The migration failed safely: the app runs once, at the origin, state intact."""
    app = get_app(spec)
    assert result.outcome is MigrationOutcome.FAILED, result
    assert not result.ok
    assert origin.is_running(app)
    assert_single_instance(tag)
    state = origin.get_state_dir(app)
    first = read_count(state)
    assert first >= before  # nothing lost
    assert wait_count_above(state, first) > first  # and it runs again


async def _send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return reply


def test_round_trips_keep_the_counter_going(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a, pad=1 << 20)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            hops: list[tuple[Node, Node]] = [(na, nb), (nb, na), (na, nb), (nb, na)]
            last = 0
            for block, (src, dst) in enumerate(hops, start=1):
                src_rt = src.runtime
                dst_rt = dst.runtime
                assert isinstance(src_rt, ProcessRuntime) and isinstance(dst_rt, ProcessRuntime)
                before = read_count(src_rt.get_state_dir(app))
                assert before >= last  # never backwards, across every hop
                result = await src.migrate_to(dst, spec, block)
                assert result.outcome is MigrationOutcome.COMPLETED, result
                assert result.live  # checkpoint hook: frozen, not stopped
                assert result.save_ms > 0 and result.transmit_ms > 0 and result.resume_ms > 0
                assert result.raw_bytes > 1 << 20
                assert result.compressed_bytes > 1 << 19  # random pad: barely compresses
                # The origin's copy has ended, the destination runs the app, once. The
                # origin keeps the state it handed over (a reorg may give the app back).
                assert not src_rt.is_running(app)
                assert src_rt.get_state_dir(app).exists()
                assert dst_rt.is_running(app)
                assert_single_instance(tag)
                first = read_count(dst_rt.get_state_dir(app))
                assert first >= before  # continues, never from zero
                last = wait_count_above(dst_rt.get_state_dir(app), first)
            assert na.server.get_stats().completed == 2
            assert nb.server.get_stats().completed == 2

    asyncio.run(run())


def test_plan_refused_leaves_the_app_running(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a)
    app = get_app(spec)
    seen: list[tuple[BlockHash, PlanEntry]] = []

    def is_planned(block_hash: BlockHash, entry: PlanEntry) -> bool:
        seen.append((block_hash, entry))
        return False

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, is_planned=is_planned) as (na, nb):
            result = await na.migrate_to(nb, spec, 42)
            assert result.outcome is MigrationOutcome.REFUSED
            assert result.reason == "not_planned"
            assert result.save_ms == 0  # refused before anything was saved
            assert nb.server.get_stats().refused == 1
            # The check saw exactly what the origin sent.
            assert seen == [(get_block_hash(42), get_entry(spec, na.node_id, nb.node_id))]

    asyncio.run(run())
    before = read_count(a.get_state_dir(app))
    assert wait_count_above(a.get_state_dir(app), before) > before  # never paused
    assert b.list() == ()
    assert_single_instance(tag)


def test_misaddressed_and_forged_offers_are_refused(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a)
    other, _ = get_counter()

    def is_spec_current(app: AppId, offered: AppSpec) -> bool:
        return app == get_app(spec) and offered == spec  # what "the chain" records

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, is_spec_current=is_spec_current) as (na, nb):
            elsewhere = get_entry(spec, na.node_id, get_node_id("zz"))
            result = await na.client.migrate(
                get_block_hash(1), elsewhere, spec, "127.0.0.1", nb.port
            )
            assert (result.outcome, result.reason) == (
                MigrationOutcome.REFUSED,
                "wrong_destination",
            )
            # A planned entry for this app, but the header carries another app's spec.
            entry = get_entry(spec, na.node_id, nb.node_id)
            result = await na.client.migrate(get_block_hash(1), entry, other, "127.0.0.1", nb.port)
            assert result.reason == "spec_does_not_match_app"
            assert nb.server.get_stats().refused == 2

    asyncio.run(run())
    assert b.list() == ()
    assert_single_instance(tag)


def test_resending_the_same_transfer_is_harmless(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            result = await na.migrate_to(nb, spec, 7)
            assert result.outcome is MigrationOutcome.COMPLETED
            # The same offer again, raw: the destination says it already runs it.
            entry = get_entry(spec, na.node_id, nb.node_id)
            offer = encode_frame(
                FrameKind.OFFER, encode_offer(Offer(get_block_hash(7), entry, spec))
            )
            reply = await _send_raw(nb.port, offer)
            assert reply[0] == FrameKind.VERDICT
            assert decode_verdict(reply[5:]).verdict is Verdict.ALREADY_RUNNING
            # An origin that never got the DONE resumed its copy and sends again.
            a.start(app, spec)
            before = read_count(b.get_state_dir(app))
            result = await na.migrate_to(nb, spec, 7)
            assert result.outcome is MigrationOutcome.ALREADY_THERE
            assert not a.is_running(app)
            assert_single_instance(tag)
            # The destination's instance was untouched: it keeps counting from its value.
            assert read_count(b.get_state_dir(app)) >= before
            assert nb.server.get_stats().already_running == 2
            # Another block while it runs there (it started the app itself, having
            # taken the origin for down): refused, and the origin's copy ends, state kept.
            a.start(app, spec)
            result = await na.migrate_to(nb, spec, 8)
            assert (result.outcome, result.reason) == (
                MigrationOutcome.ALREADY_THERE,
                "app_already_running_here",
            )
            assert result.ok and not a.is_running(app)
            assert a.get_state_dir(app).is_dir()
            assert_single_instance(tag)
            # Taken, then stopped here (its copy killed, say): the move is still ours,
            # so a late offer of it gets the same answer and restores nothing over it.
            b.stop(app)
            reply = await _send_raw(nb.port, offer)
            assert decode_verdict(reply[5:]).verdict is Verdict.ALREADY_RUNNING
            assert not b.is_running(app)
            b.start(app, spec)
            a.remove(app)

    asyncio.run(run())
    assert_single_instance(tag)


def test_garbage_never_breaks_the_server(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            assert await _send_raw(nb.port, secrets.token_bytes(3000)) != b""
            # A frame head announcing a 4 GiB header: refused without reading on.
            reply = await _send_raw(nb.port, struct.pack(">BI", FrameKind.OFFER, 2**32 - 1))
            assert reply[0] == FrameKind.VERDICT
            assert decode_verdict(reply[5:]).reason == "frame_too_large"
            # A well-framed but garbage header.
            reply = await _send_raw(nb.port, encode_frame(FrameKind.OFFER, b"EMIG\x01" + b"x" * 40))
            assert decode_verdict(reply[5:]).verdict is Verdict.REFUSED
            # A DATA frame where the OFFER should be.
            reply = await _send_raw(nb.port, encode_frame(FrameKind.DATA, b"zz"))
            assert decode_verdict(reply[5:]).reason == "unexpected_frame"
            # The server still serves a real migration.
            result = await na.migrate_to(nb, spec, 3)
            assert result.outcome is MigrationOutcome.COMPLETED

    asyncio.run(run())
    assert_single_instance(tag)


async def _migrate_corrupted(
    origin: Node, destination: Node, spec: AppSpec, may_resume: Callable[[], bool] = lambda: True
) -> MigrationResult:
    """A migration of block 5 through a proxy that flips a byte 600 kB into the stream."""
    proxy = TamperProxy(destination.port, flip_at=600_000)
    port = await proxy.start()
    try:
        return await origin.migrate_to(destination, spec, 5, port=port, may_resume=may_resume)
    finally:
        await proxy.close()


def test_corrupted_stream_resumes_at_origin(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a, pad=1 << 20)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            before = read_count(a.get_state_dir(app))
            result = await _migrate_corrupted(na, nb, spec)
            _assert_resumed_at_origin(result, a, spec, tag, before)
            assert result.save_ms > 0  # it really was saved, then resumed
            assert nb.server.get_stats().failed == 1

    asyncio.run(run())
    assert b.list() == ()
    assert list((tmp_path / "transfer-b" / "incoming").iterdir()) == []


def test_failed_transfer_stays_stopped_where_it_may_not_run(
    process_pair: Pair, tmp_path: Path
) -> None:
    """A node paused mid-transfer past its lease finds the stream broken: the app may be
    running at the destination by then, so it is stopped, not resumed (state kept)."""
    a, b = process_pair
    spec, tag = _start_counter(a, pad=1 << 20)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            result = await _migrate_corrupted(na, nb, spec, may_resume=lambda: False)
            assert result.outcome is MigrationOutcome.FAILED and result.save_ms > 0, result
            assert not a.is_running(app)
            assert get_tagged_processes(tag) == []
            saved = read_count(a.get_state_dir(app))
            # The next offer sends that state as it stands, and the count goes on from it.
            result = await na.migrate_to(nb, spec, 5)
            assert result.outcome is MigrationOutcome.COMPLETED, result
            assert wait_count_above(b.get_state_dir(app), saved) > saved

    asyncio.run(run())
    assert_single_instance(tag)


def test_payload_over_the_destination_bound_resumes_at_origin(
    process_pair: Pair, tmp_path: Path
) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a, pad=300_000)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            nb.server.max_state_bytes = 100_000
            before = read_count(a.get_state_dir(app))
            result = await na.migrate_to(nb, spec, 5)
            _assert_resumed_at_origin(result, a, spec, tag, before)
            assert "payload_too_large" in result.reason

    asyncio.run(run())


def test_a_payload_the_destination_disk_cannot_take_is_refused_before_it_lands(
    process_pair: Pair, tmp_path: Path
) -> None:
    """A destination whose disk filled since its report refuses the payload at BEGIN
    (``no_room``): the app resumes at the origin and nothing lands; with room back, the
    next attempt completes."""
    a, b = process_pair
    spec, tag = _start_counter(a, pad=300_000)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            asked: list[int] = []

            def get_writable() -> int:
                asked.append(1)
                return 500_000  # the payload twice over (archive and state) is more

            nb.server.get_writable = get_writable
            before = read_count(a.get_state_dir(app))
            result = await na.migrate_to(nb, spec, 5)
            _assert_resumed_at_origin(result, a, spec, tag, before)
            assert "no_room" in result.reason and asked
            assert not any((nb.server.work_dir / "incoming").iterdir())
            assert nb.server.get_stats().failed == 1
            nb.server.get_writable = lambda: 10_000_000
            result = await na.migrate_to(nb, spec, 5)
            assert result.outcome is MigrationOutcome.COMPLETED, result

    asyncio.run(run())
    assert_single_instance(tag)
    assert wait_count_above(b.get_state_dir(app), 1) > 1


def test_failed_restore_resumes_at_origin(process_pair: Pair, tmp_path: Path) -> None:
    a, b = process_pair
    spec, tag = _start_counter(a)
    app = get_app(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            b.close()  # the destination's runtime can no longer start anything
            before = read_count(a.get_state_dir(app))
            result = await na.migrate_to(nb, spec, 5)
            _assert_resumed_at_origin(result, a, spec, tag, before)
            assert "restore_failed" in result.reason
            assert not b.get_app_dir(app).exists()  # nothing of it stayed there

    asyncio.run(run())


def test_unreachable_destination_leaves_the_app_running(process_pair: Pair) -> None:
    a, _ = process_pair
    spec, tag = _start_counter(a)
    app = get_app(spec)
    entry = get_entry(spec, get_node_id("a"), get_node_id("b"))

    async def run() -> MigrationResult:
        from edgechain.runtime.transfer import TransferClient

        client = TransferClient(a, timeouts=TransferTimeouts(connect_s=2.0))
        return await client.migrate(
            get_block_hash(1), entry, spec, "127.0.0.1", get_free_closed_port()
        )

    result = asyncio.run(run())
    assert result.outcome is MigrationOutcome.REFUSED
    assert "connect" in result.reason
    assert a.is_running(app)
    assert_single_instance(tag)


def test_migrating_an_app_that_is_not_here_is_a_local_error(process_pair: Pair) -> None:
    a, _ = process_pair
    spec, _ = get_counter()

    async def run() -> None:
        from edgechain.runtime.transfer import TransferClient

        entry = get_entry(spec, get_node_id("a"), get_node_id("b"))
        await TransferClient(a).migrate(get_block_hash(1), entry, spec, "127.0.0.1", 9)

    with pytest.raises(AppNotFoundError):
        asyncio.run(run())


def test_lost_done_never_leaves_two_instances(process_pair: Pair, tmp_path: Path) -> None:
    """The destination's replies are cut right after RECEIVED: DONE never arrives."""
    a, b = process_pair
    spec, tag = _start_counter(a)
    app = get_app(spec)

    async def run() -> MigrationResult:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            # VERDICT (5 + 2 bytes) and RECEIVED (5 bytes) pass; DONE does not.
            proxy = TamperProxy(nb.port, cut_reply_after=12)
            port = await proxy.start()
            try:
                return await na.migrate_to(nb, spec, 9, port=port)
            finally:
                await proxy.close()

    before = read_count(a.get_state_dir(app))
    result = asyncio.run(run())
    # Either outcome is correct; what matters is one instance and no lost state.
    assert result.outcome in (MigrationOutcome.COMPLETED, MigrationOutcome.FAILED)
    assert_single_instance(tag)
    where = a if result.outcome is MigrationOutcome.FAILED else b
    assert where.is_running(app)
    assert not (b if where is a else a).is_running(app)
    first = read_count(where.get_state_dir(app))
    assert first >= before
    assert wait_count_above(where.get_state_dir(app), first) > first


# --- the destination is a separate OS process, killed or stopped mid-migration ----------


def _run_against(
    origin: ProcessRuntime,
    dest: DestinationProcess,
    spec: AppSpec,
    *,
    timeouts: TransferTimeouts | None = None,
    on_progress_at: int = 0,
    action: str = "",
) -> MigrationResult:
    from edgechain.runtime.transfer import TransferClient

    entry = get_entry(spec, get_node_id("a"), get_node_id("b"))
    client = TransferClient(origin, timeouts=timeouts)
    fired = False

    def on_progress(sent: int) -> None:
        nonlocal fired
        if not fired and on_progress_at and sent >= on_progress_at:
            fired = True
            if action == "kill":
                dest.kill()
            elif action == "stop":
                dest.stop(signal.SIGSTOP)

    async def run() -> MigrationResult:
        return await client.migrate(
            get_block_hash(11), entry, spec, "127.0.0.1", dest.port, on_progress=on_progress
        )

    return asyncio.run(run())


def test_destination_killed_mid_transfer(process_pair: Pair, tmp_path: Path) -> None:
    a, _ = process_pair
    spec, tag = _start_counter(a, pad=8 << 20)
    app = get_app(spec)
    dest = DestinationProcess(tmp_path / "dest", get_node_id("b"))
    try:
        before = read_count(a.get_state_dir(app))
        result = _run_against(a, dest, spec, on_progress_at=2 << 20, action="kill")
        assert dest.proc.returncode == -signal.SIGKILL
        assert result.compressed_bytes < 8 << 20  # it died mid-stream
        _assert_resumed_at_origin(result, a, spec, tag, before)
    finally:
        dest.cleanup()


def test_destination_killed_mid_restore(process_pair: Pair, tmp_path: Path) -> None:
    a, _ = process_pair
    spec, tag = _start_counter(a, pad=1 << 20)
    app = get_app(spec)
    dest = DestinationProcess(tmp_path / "dest", get_node_id("b"), hang_in_restore=True)
    try:
        before = read_count(a.get_state_dir(app))

        async def run() -> MigrationResult:
            from edgechain.runtime.transfer import TransferClient

            entry = get_entry(spec, get_node_id("a"), get_node_id("b"))
            migration = asyncio.ensure_future(
                TransferClient(a).migrate(get_block_hash(12), entry, spec, "127.0.0.1", dest.port)
            )
            deadline = time.monotonic() + 20
            while not dest.restoring_marker.exists():
                assert time.monotonic() < deadline, "the destination never reached restore"
                assert not migration.done(), migration.result()
                await asyncio.sleep(0.01)
            # Unpacked, about to start the app: the node dies now.
            dest.kill()
            return await migration

        result = asyncio.run(run())
        assert result.transmit_ms > 0  # the payload got there; the restore did not finish
        _assert_resumed_at_origin(result, a, spec, tag, before)
    finally:
        dest.cleanup()


def test_stalled_destination_times_out(process_pair: Pair, tmp_path: Path) -> None:
    a, _ = process_pair
    spec, tag = _start_counter(a, pad=4 << 20)
    app = get_app(spec)
    dest = DestinationProcess(tmp_path / "dest", get_node_id("b"))
    try:
        before = read_count(a.get_state_dir(app))
        timeouts = TransferTimeouts(connect_s=1.0, io_s=1.0, restore_s=2.0)
        start = time.monotonic()
        result = _run_against(
            a, dest, spec, timeouts=timeouts, on_progress_at=1 << 20, action="stop"
        )
        assert time.monotonic() - start < 10
        assert "timeout" in result.reason
        _assert_resumed_at_origin(result, a, spec, tag, before)
    finally:
        dest.cleanup()  # SIGKILL while stopped: it never gets to start a second copy
    assert_single_instance(tag)
    assert len(get_tagged_processes(tag)) == 1
    assert os.path.isdir(a.get_state_dir(app))


def test_only_the_planned_origin_can_offer(process_pair: Pair, tmp_path: Path) -> None:
    """With origin checks on, an unsigned or foreign-signed offer is refused: nobody who
    merely read the plan can slip a forged archive in before the real origin."""
    from edgechain.crypto import bls
    from edgechain.runtime.transfer import TransferClient, TransferServer

    a, b = process_pair
    spec, tag = _start_counter(a)
    origin_sk = bls.keygen(b"\x11" * 32)
    impostor_sk = bls.keygen(b"\x22" * 32)
    origin_id, dest_id = get_node_id("a"), get_node_id("b")
    keys = {origin_id: bls.sk_to_pk(origin_sk)}

    def verify_origin(node: object, message: bytes, signature: bytes) -> bool:
        pk = keys.get(node)  # type: ignore[call-overload]
        return pk is not None and bls.verify(pk, message, signature)

    async def run() -> list[MigrationResult]:
        server = TransferServer(
            b, dest_id, lambda *_: True, tmp_path / "dest", verify_origin=verify_origin
        )
        await server.start("127.0.0.1", 0)
        entry = get_entry(spec, origin_id, dest_id)
        results = []
        try:
            for sk in (None, impostor_sk, origin_sk):
                client = TransferClient(a, sk=sk)
                results.append(
                    await client.migrate(get_block_hash(5), entry, spec, "127.0.0.1", server.port)
                )
        finally:
            await server.close()
        return results

    unsigned, forged, genuine = asyncio.run(run())
    assert (unsigned.outcome, unsigned.reason) == (
        MigrationOutcome.REFUSED,
        "unauthenticated_origin",
    )
    assert (forged.outcome, forged.reason) == (MigrationOutcome.REFUSED, "unauthenticated_origin")
    assert genuine.outcome is MigrationOutcome.COMPLETED
    assert [i.status for i in a.list()] == [AppStatus.STOPPED]  # ended, state kept
    assert_single_instance(tag)
    b.stop(get_app(spec))


def test_closing_the_server_under_an_open_connection_logs_no_error(
    process_pair: Pair, tmp_path: Path
) -> None:
    """A node that stops while a peer is connected stops quietly (Python 3.11 logged
    each cancelled stream handler as an "Exception in callback")."""
    errors: list[dict[str, object]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, c: errors.append(c))
        async with open_nodes(list(process_pair), tmp_path) as (na, _nb):
            _reader, writer = await asyncio.open_connection("127.0.0.1", na.server.port)

            def is_handled() -> bool:  # accepted: a handler waits for an offer
                names = [getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()]
                return "TransferServer._on_connection" in names

            deadline = time.monotonic() + 10
            while not is_handled():
                assert time.monotonic() < deadline, "connection never accepted"
                await asyncio.sleep(0.01)
            await na.server.close()
            await asyncio.sleep(0.1)  # the handler's done callback has run
            writer.close()

    asyncio.run(run())
    assert errors == []
