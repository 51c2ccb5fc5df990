"""State replicas between real process runtimes over loopback TCP.

The app's host (runtime ``a``) snapshots a running counter and sends it to a replica
node (runtime ``b``, whose transfer server keeps replicas in a ``ReplicaStore``); a
third node (runtime ``c``) restores it and continues counting from it. Every refusal
leaves the replica node's store as it was, the replica node's runtime never runs
anything, and the host's app runs on throughout. Every test ends with no app process
left on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import DecodeError
from edgechain.runtime import replica_send
from edgechain.runtime.base import AppRuntimeError
from edgechain.runtime.checkpoint import SNAPSHOT_PREFIX, StateSnapshot
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.protocol import (
    MAX_BODY_BYTES,
    FrameKind,
    ReplicaOffer,
    Verdict,
    compute_replica_signing_root,
    decode_replica_offer,
    decode_verdict,
    encode_frame,
    encode_replica_offer,
)
from edgechain.runtime.replica import (
    ReplicaInfo,
    ReplicaStore,
    SnapshotRuntime,
    restore_from_replica,
    take_snapshot,
)
from edgechain.runtime.samples import PAPER_STATE_BYTES
from edgechain.runtime.transfer import (
    ReplicaOutcome,
    ReplicaResult,
    TransferClient,
    TransferServer,
)
from edgechain.types import AppId, NodeId, SecretKey

from .helpers import (
    TamperProxy,
    get_app,
    get_counter,
    get_node_id,
    get_tagged_processes,
    read_count,
    wait_count_above,
    wait_until,
)

HOST_SK = bls.keygen(b"replica-test-host-key-seed-32-b!")
IMPOSTOR_SK = bls.keygen(b"replica-test-impostor-seed-32-b!")
HOST_ID = compute_node_id(bls.sk_to_pk(HOST_SK))
IMPOSTOR_ID = compute_node_id(bls.sk_to_pk(IMPOSTOR_SK))
REPLICA_ID = get_node_id("replica")
KEYS = {HOST_ID: bls.sk_to_pk(HOST_SK), IMPOSTOR_ID: bls.sk_to_pk(IMPOSTOR_SK)}


@dataclass
class Trio:
    """The app's host ``a``, the replica node ``b`` (and its store), a third node ``c``."""

    a: ProcessRuntime
    b: ProcessRuntime
    c: ProcessRuntime
    store: ReplicaStore
    tags: list[str]

    def start_counter(self, pad: int = 0) -> tuple[AppSpec, AppId]:
        spec, tag = get_counter(pad)
        self.tags.append(tag)
        app = get_app(spec)
        self.a.start(app, spec)
        state = self.a.get_state_dir(app)
        if pad:
            wait_until((state / "pad").exists)
        wait_count_above(state, 1)
        return spec, app


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    a, b, c = (ProcessRuntime(tmp_path / f"node-{n}", stop_grace_s=2.0) for n in "abc")
    runtimes = (a, b, c)
    trio = Trio(a, b, c, ReplicaStore(tmp_path / "b-data" / "replicas"), [])
    try:
        yield trio
    finally:
        for runtime in runtimes:
            runtime.close()
    wait_until(lambda: not any(get_tagged_processes(tag) for tag in trio.tags), timeout_s=5.0)


def verify_origin(node: NodeId, message: bytes, signature: bytes) -> bool:
    pk = KEYS.get(node)
    return pk is not None and bls.verify(pk, message, signature)


@contextlib.asynccontextmanager
async def open_replica_node(
    trio: Trio,
    wanted: set[AppId],
    *,
    store: bool = True,
    at: tuple[ProcessRuntime, ReplicaStore, NodeId] | None = None,
) -> AsyncIterator[TransferServer]:
    """The replica node's transfer server: it keeps replicas of ``wanted`` from HOST_ID
    (``at``: another node's runtime, store and id than the replica node ``b``)."""

    def is_replica_wanted(app: AppId, origin: NodeId) -> bool:
        return app in wanted and origin == HOST_ID

    runtime, replicas, node = at or (trio.b, trio.store, REPLICA_ID)
    server = TransferServer(
        runtime,
        node,
        lambda *_: False,  # no migration is planned in these tests
        replicas.root.parent / "transfer",
        verify_origin=verify_origin,
        replicas=replicas if store else None,
        is_replica_wanted=is_replica_wanted,
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


async def send(
    trio: Trio, app: AppId, slot: int, port: int, sk: SecretKey = HOST_SK
) -> ReplicaResult:
    return await TransferClient(trio.a, sk=sk).send_replica(app, slot, "127.0.0.1", port)


def read_archive_count(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("state/count")
        assert member is not None
        return int(member.read().decode().strip())


def assert_no_snapshot_left(runtime: ProcessRuntime, app: AppId) -> None:
    assert not list(runtime.get_app_dir(app).glob(f"{SNAPSHOT_PREFIX}*"))


def test_replica_is_stored_and_a_third_node_continues_from_it(trio: Trio) -> None:
    spec, app = trio.start_counter()

    async def run() -> ReplicaResult:
        async with open_replica_node(trio, {app}) as server:
            result = await send(trio, app, 10, server.port)
            assert server.get_stats().replicas == 1
            return result

    result = asyncio.run(run())
    assert result.outcome is ReplicaOutcome.STORED, result
    assert result.ok and result.frozen
    assert 0 < result.paused_ms <= result.save_ms
    assert result.transmit_ms > 0 and result.compressed_bytes > 0
    # The host's app ran on, never restarted: the same process, still counting.
    assert trio.a.is_running(app)
    now = read_count(trio.a.get_state_dir(app))
    assert wait_count_above(trio.a.get_state_dir(app), now) > now
    assert_no_snapshot_left(trio.a, app)
    # The replica node stored it, and runs nothing.
    assert trio.b.list() == ()
    info = trio.store.get(app)
    assert info is not None
    assert (info.app, info.origin, info.slot) == (app, HOST_ID, 10)
    assert info.sha256 == result.sha256 == hashlib.sha256(info.path.read_bytes()).digest()
    assert info.raw_bytes == result.raw_bytes == info.path.stat().st_size
    assert info.compressed_bytes == result.compressed_bytes
    assert trio.store.list() == (info,)
    replica_count = read_archive_count(info.path)
    assert 1 <= replica_count <= now

    # A third node restores it and starts: the counter continues from the replica.
    used = restore_from_replica(trio.c, trio.store, app, spec)
    assert used is not None and (used.slot, used.sha256) == (10, info.sha256)
    assert read_count(trio.c.get_state_dir(app)) == replica_count
    trio.c.start(app, spec)
    assert wait_count_above(trio.c.get_state_dir(app), replica_count) > replica_count
    trio.c.stop(app)


def test_a_stored_replica_is_handed_on_under_its_origins_signature(
    trio: Trio, tmp_path: Path
) -> None:
    """``replica_send.hand_off_replica``: the replica node sends what it stored on to
    the destination of an unlanded move (``Replicator.get_handoffs``); the destination
    checks it as if the host had sent it, and starts the app from it. A copy whose
    signature does not match what it carries is refused."""
    spec, app = trio.start_counter()
    c_store = ReplicaStore(tmp_path / "c-data" / "replicas")
    c_node = (trio.c, c_store, get_node_id("c"))

    async def run() -> tuple[ReplicaResult, ReplicaResult]:
        async with open_replica_node(trio, {app}) as server:
            assert (await send(trio, app, 10, server.port)).ok
        stored = trio.store.get(app)
        assert stored is not None and stored.signature  # kept with the replica
        async with open_replica_node(trio, {app}, at=c_node) as server:
            with trio.store.checkout(app) as info:
                assert info is not None
                client = TransferClient(trio.b)  # no key of its own: the host's signature
                forged = await client.hand_off_replica(
                    dataclasses.replace(info, slot=11), "127.0.0.1", server.port
                )
                handed = await client.hand_off_replica(info, "127.0.0.1", server.port)
            return forged, handed

    forged, handed = asyncio.run(run())
    assert (forged.outcome, forged.reason) == (ReplicaOutcome.REFUSED, "unauthenticated_origin")
    assert handed.outcome is ReplicaOutcome.STORED, handed
    stored, received = trio.store.get(app), c_store.get(app)
    assert stored is not None and received is not None
    assert (received.origin, received.slot, received.sha256, received.signature) == (
        HOST_ID, 10, stored.sha256, stored.signature
    )  # fmt: skip
    replica_count = read_archive_count(received.path)
    assert restore_from_replica(trio.c, c_store, app, spec) is not None
    trio.c.start(app, spec)
    assert wait_count_above(trio.c.get_state_dir(app), replica_count) > replica_count
    trio.c.stop(app)
    # A replica stored before signatures were kept cannot be handed on.
    unsigned = dataclasses.replace(received, signature=b"")
    with pytest.raises(AppRuntimeError, match="signature"):
        asyncio.run(TransferClient(trio.b).hand_off_replica(unsigned, "127.0.0.1", 9))


def test_a_newer_replica_replaces_the_stored_one_and_an_older_is_refused(trio: Trio) -> None:
    _, app = trio.start_counter()

    async def run() -> list[ReplicaResult]:
        async with open_replica_node(trio, {app}) as server:
            return [await send(trio, app, slot, server.port) for slot in (10, 20, 15, 20)]

    first, second, older, same = asyncio.run(run())
    assert first.ok and second.ok and same.ok
    assert (older.outcome, older.reason) == (ReplicaOutcome.REFUSED, "stale_slot")
    assert older.save_ms > 0 and older.compressed_bytes == 0  # refused before the stream
    info = trio.store.get(app)
    assert info is not None and (info.slot, info.sha256) == (20, same.sha256)
    # One archive per app: each replacement removed the one before.
    assert [p.name for p in info.path.parent.glob("*.tar")] == [info.path.name]
    # The store refuses an older slot itself too, and leaves the file with the caller.
    loose = trio.store.get_incoming_path(app)
    loose.write_bytes(b"x")
    assert trio.store.put(app, HOST_ID, 19, loose, hashlib.sha256(b"x").digest(), 1) is None
    assert loose.exists()
    assert trio.store.get(app) == info
    # A store opened again on the same root (a node restart) finds it, and can drop it.
    reopened = ReplicaStore(trio.store.root)
    assert reopened.get(app) == info
    reopened.remove(app)
    assert reopened.get(app) is None and reopened.list() == ()


class _OvertakenStore(ReplicaStore):
    """A replica store into which a newer replica lands while a payload streams in
    (another connection): the put that follows finds it."""

    def put(
        self,
        app: AppId,
        origin: NodeId,
        slot: int,
        archive: Path,
        sha256: bytes,
        raw_bytes: int,
        *,
        compressed_bytes: int = 0,
        signature: bytes = b"",
    ) -> ReplicaInfo | None:
        newer = archive.with_name(archive.name + "-newer")
        newer.write_bytes(archive.read_bytes())
        super().put(app, origin, slot + 1, newer, sha256, raw_bytes, signature=signature)
        return super().put(
            app, origin, slot, archive, sha256, raw_bytes,
            compressed_bytes=compressed_bytes, signature=signature,
        )  # fmt: skip


def test_a_replica_overtaken_while_it_streams_is_refused_as_stale(trio: Trio) -> None:
    """The replica node checks the slot at the offer and again when it stores; a newer
    one stored between the two is the same refusal, ``stale_slot`` (a former replica
    node's hand-off then counts as done, ``ReplicaSync._hand_off``), not a failure
    to try again with the whole payload."""
    _, app = trio.start_counter()
    trio.store = _OvertakenStore(trio.store.root)

    async def run() -> ReplicaResult:
        async with open_replica_node(trio, {app}) as server:
            return await send(trio, app, 10, server.port)

    result = asyncio.run(run())
    assert (result.outcome, result.reason) == (ReplicaOutcome.REFUSED, "stale_slot")
    stored = trio.store.get(app)
    assert stored is not None and stored.slot == 11


def test_a_replica_the_disk_cannot_take_is_refused_and_the_stored_one_stays(
    trio: Trio,
) -> None:
    """A replica node whose disk filled refuses the payload at BEGIN (``no_room``),
    keeps the replica it had, and takes the next one once room is back."""
    _, app = trio.start_counter()
    room = [10_000_000]

    async def run() -> list[ReplicaResult]:
        async with open_replica_node(trio, {app}) as server:
            server.get_writable = lambda: room[0]
            results = [await send(trio, app, 10, server.port)]
            room[0] = 10  # less than any archive
            results.append(await send(trio, app, 20, server.port))
            kept = trio.store.get(app)
            assert kept is not None and kept.slot == 10
            assert not any(trio.store.get_incoming_path(app).parent.iterdir())
            room[0] = 10_000_000
            results.append(await send(trio, app, 30, server.port))
            return results

    first, full, third = asyncio.run(run())
    assert first.ok and not full.ok and third.ok
    assert "no_room" in full.reason
    info = trio.store.get(app)
    assert info is not None and info.slot == 30


def test_offers_the_chain_does_not_want_or_the_host_did_not_sign_are_refused(
    trio: Trio,
) -> None:
    _, app = trio.start_counter()
    other, other_tag = get_counter()

    async def send_raw(port: int, offer: ReplicaOffer) -> tuple[Verdict, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(FrameKind.REPLICA, encode_replica_offer(offer)))
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert reply[0] == FrameKind.VERDICT
        verdict = decode_verdict(reply[5:])
        return verdict.verdict, verdict.reason

    async def run() -> None:
        async with open_replica_node(trio, {app}) as server:
            # Not this node's replica to keep: another app, or another host.
            result = await send(trio, app, 5, server.port, sk=IMPOSTOR_SK)
            assert (result.outcome, result.reason) == (
                ReplicaOutcome.REFUSED,
                "replica_not_wanted",
            )
            other_app = get_app(other)
            trio.a.start(other_app, other)
            trio.tags.append(other_tag)
            result = await send(trio, other_app, 5, server.port)
            assert result.reason == "replica_not_wanted"
            # Naming the host but not signed by it: unsigned, or by another key.
            digest = hashlib.sha256(b"forged").digest()
            forged = ReplicaOffer(app, HOST_ID, 5, digest, 6)
            assert await send_raw(server.port, forged) == (
                Verdict.REFUSED,
                "unauthenticated_origin",
            )
            root = compute_replica_signing_root(app, HOST_ID, 5, digest, 6)
            signed = ReplicaOffer(app, HOST_ID, 5, digest, 6, bls.sign(IMPOSTOR_SK, root))
            assert await send_raw(server.port, signed) == (
                Verdict.REFUSED,
                "unauthenticated_origin",
            )
            # The host's signature over another slot does not carry over.
            moved = ReplicaOffer(app, HOST_ID, 6, digest, 6, bls.sign(HOST_SK, root))
            assert (await send_raw(server.port, moved))[1] == "unauthenticated_origin"
            assert server.get_stats().refused == 5
        async with open_replica_node(trio, {app}, store=False) as server:
            result = await send(trio, app, 5, server.port)
            assert result.reason == "replicas_not_accepted"

    asyncio.run(run())
    assert trio.store.list() == ()
    assert trio.b.list() == ()
    assert trio.a.is_running(app)
    assert_no_snapshot_left(trio.a, app)


def test_corrupted_payloads_are_refused_and_the_stored_replica_stays(
    trio: Trio, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app = trio.start_counter(pad=64 * 1024)

    def lying_snapshot(runtime: SnapshotRuntime, app: AppId) -> tuple[StateSnapshot, bytes]:
        snapshot, digest = take_snapshot(runtime, app)
        return snapshot, hashlib.sha256(digest).digest()  # signed, but not what is sent

    async def run() -> tuple[ReplicaResult, ReplicaResult]:
        async with open_replica_node(trio, {app}) as server:
            assert (await send(trio, app, 1, server.port)).ok
            # One byte of the compressed stream flipped on the wire.
            proxy = TamperProxy(server.port, flip_at=2000)
            port = await proxy.start()
            try:
                damaged = await send(trio, app, 2, port)
            finally:
                await proxy.close()
            # A well-formed stream that is not the snapshot the host signed.
            with monkeypatch.context() as patch:
                patch.setattr(replica_send, "take_snapshot", lying_snapshot)
                lying = await send(trio, app, 3, server.port)
            return damaged, lying

    damaged, lying = asyncio.run(run())
    assert damaged.outcome is ReplicaOutcome.FAILED
    assert "bad_compression" in damaged.reason or "checksum_mismatch" in damaged.reason
    assert lying.outcome is ReplicaOutcome.FAILED
    assert "checksum_mismatch" in lying.reason
    info = trio.store.get(app)
    assert info is not None and info.slot == 1  # the first replica, untouched
    assert not list((trio.store.root / ".incoming").iterdir())
    assert trio.a.is_running(app)
    assert_no_snapshot_left(trio.a, app)


def test_a_replica_corrupted_on_disk_is_not_restored(
    trio: Trio, caplog: pytest.LogCaptureFixture
) -> None:
    spec, app = trio.start_counter()

    async def run() -> ReplicaResult:
        async with open_replica_node(trio, {app}) as server:
            return await send(trio, app, 4, server.port)

    assert asyncio.run(run()).ok
    info = trio.store.get(app)
    assert info is not None
    data = bytearray(info.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="edgechain.runtime.replica"):
        assert restore_from_replica(trio.c, trio.store, app, spec) is None
    assert "corrupt replica" in caplog.text
    assert not trio.c.get_state_dir(app).exists()  # nothing unpacked: empty state


def test_replica_of_a_stopped_app_leaves_it_stopped(trio: Trio) -> None:
    spec, app = trio.start_counter()
    trio.a.stop(app)
    stopped_at = read_count(trio.a.get_state_dir(app))

    async def run() -> ReplicaResult:
        async with open_replica_node(trio, {app}) as server:
            return await send(trio, app, 8, server.port)

    result = asyncio.run(run())
    assert result.ok and not result.frozen and result.paused_ms == 0
    assert not trio.a.is_running(app)  # a replica is not a start, at either end
    assert trio.b.list() == ()
    info = restore_from_replica(trio.c, trio.store, app, spec)
    assert info is not None and info.slot == 8
    assert read_count(trio.c.get_state_dir(app)) == stopped_at


def test_a_paper_sized_state_pauses_the_app_briefly(trio: Trio) -> None:
    """15 MB of incompressible state: the app is frozen only for the archive."""
    spec, app = trio.start_counter(pad=PAPER_STATE_BYTES)
    _, small_app = trio.start_counter()

    async def run() -> tuple[ReplicaResult, ReplicaResult]:
        async with open_replica_node(trio, {app, small_app}) as server:
            big = await send(trio, app, 30, server.port)
            small = await send(trio, small_app, 30, server.port)
            return big, small

    start = time.monotonic()
    big, small = asyncio.run(run())
    assert big.ok and small.ok, (big, small)
    assert big.raw_bytes > PAPER_STATE_BYTES and big.compressed_bytes > PAPER_STATE_BYTES // 2
    assert big.frozen and big.paused_ms < 2000, big
    assert small.frozen and small.paused_ms < 500, small
    print(
        f"\nreplica pause: small {small.paused_ms:.1f} ms ({small.raw_bytes} B), "
        f"15 MB {big.paused_ms:.1f} ms ({big.raw_bytes} B -> {big.compressed_bytes} B); "
        f"save {big.save_ms:.1f} ms, transmit {big.transmit_ms:.1f} ms, "
        f"store {big.store_ms:.1f} ms; round {time.monotonic() - start:.2f} s"
    )
    info = restore_from_replica(trio.c, trio.store, app, spec)
    assert info is not None
    assert (trio.c.get_state_dir(app) / "pad").stat().st_size == PAPER_STATE_BYTES


def test_replica_offers_round_trip_and_malformed_ones_are_decode_errors() -> None:
    digest = hashlib.sha256(b"state").digest()
    root = compute_replica_signing_root(AppId(digest), HOST_ID, 7, digest, 5)
    offer = ReplicaOffer(AppId(digest), HOST_ID, 7, digest, 5, bls.sign(HOST_SK, root))
    body = encode_replica_offer(offer)
    assert len(body) == MAX_BODY_BYTES[FrameKind.REPLICA]
    assert decode_replica_offer(body) == offer
    unsigned = encode_replica_offer(ReplicaOffer(AppId(digest), HOST_ID, 7, digest, 5))
    assert decode_replica_offer(unsigned).signature == b""
    bad = {
        "header_truncated": body[:50],
        "bad_magic": b"EMIG" + body[4:],
        "bad_version": body[:4] + b"\x09" + body[5:],
        "header_trailing_bytes": body + b"x",
        "bad_offer_signature": unsigned[:-4] + (10).to_bytes(4, "big") + bytes(10),
    }
    for reason, data in bad.items():
        with pytest.raises(DecodeError) as caught:
            decode_replica_offer(data)
        assert caught.value.reason == reason
