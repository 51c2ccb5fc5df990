"""Pre-copy rounds on plain directories: ``precopy.write_round`` at the origin and
``state_delta.apply_state_delta`` at the destination.

The central property: whatever a writer does to the state while the running rounds
read it, the staged tree after the FINAL round (taken with the writer stopped, as the
app is frozen) is byte for byte the origin's state. And a delta is peer input: every
malformed or hostile one is a ``DeltaError``, and nothing lands outside the staging
directory.
"""

from __future__ import annotations

import os
import random
import struct
import threading
from pathlib import Path

import pytest

from edgechain.errors import DecodeError, RejectReason
from edgechain.runtime.precopy import (
    MAX_ROUNDS,
    SMALL_ROUND_BYTES,
    PrecopyUnsupportedError,
    SentFile,
    is_converged,
    write_round,
)
from edgechain.runtime.state_delta import (
    BLOCK_BYTES,
    DeltaError,
    DeltaWriter,
    StagedTree,
    apply_state_delta,
)

MiB = 1024 * 1024


def read_tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: a file's bytes, None for a directory."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = None if path.is_dir() else path.read_bytes()
    return out


def new_tree(tmp_path: Path, max_bytes: int = 1 << 30, max_entries: int = 10_000) -> StagedTree:
    return StagedTree(tmp_path / "staged", max_bytes, max_entries)


def run_round(
    state: Path, sent: dict[str, SentFile], tree: StagedTree, out: Path, *, final: bool
) -> int:
    done = write_round(state, sent, out, final=final)
    assert apply_state_delta(out, tree) is final
    sent.clear()
    sent.update(done.files)
    return done.changed_bytes


def test_rounds_send_only_changed_blocks_and_final_is_exact(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sub" / "deep").mkdir(parents=True)
    big = os.urandom(5 * MiB + 123)
    (state / "pad").write_bytes(big)
    (state / "sub" / "deep" / "small").write_bytes(b"hello")
    (state / "gone").write_bytes(b"x" * 10)
    (state / "gone-dir").mkdir()
    (state / "gone-dir" / "f").write_bytes(b"y")
    tree, out = new_tree(tmp_path), tmp_path / "round.delta"
    sent: dict[str, SentFile] = {}

    first = run_round(state, sent, tree, out, final=False)
    assert first == len(big) + 5 + 10 + 1  # everything, the first time
    assert read_tree(tree.root) == read_tree(state)
    assert run_round(state, sent, tree, out, final=False) == 0  # nothing changed

    # One byte in the third block, an append, a truncation, a new file, deletions.
    with (state / "pad").open("r+b") as f:
        f.seek(2 * BLOCK_BYTES + 7)
        # A byte that differs from the random one there (a fixed b"!" already stood
        # there once in 256 runs, and the round rightly found nothing changed).
        f.write(bytes([big[2 * BLOCK_BYTES + 7] ^ 0xFF]))
    with (state / "sub" / "deep" / "small").open("ab") as f:
        f.write(b" world")
    os.truncate(state / "gone", 0)
    (state / "new").write_bytes(b"n" * 3)
    (state / "gone").unlink()
    (state / "gone-dir" / "f").unlink()
    (state / "gone-dir").rmdir()
    changed = run_round(state, sent, tree, out, final=True)
    assert changed == BLOCK_BYTES + len(b"hello world") + 3
    assert read_tree(tree.root) == read_tree(state)


def test_a_path_that_changes_kind_between_rounds(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "a").write_bytes(b"file")
    (state / "b").mkdir()
    (state / "b" / "inner").write_bytes(b"i")
    tree, out = new_tree(tmp_path), tmp_path / "round.delta"
    sent: dict[str, SentFile] = {}
    run_round(state, sent, tree, out, final=False)
    (state / "a").unlink()
    (state / "a").mkdir()
    (state / "b" / "inner").unlink()
    (state / "b").rmdir()
    (state / "b").write_bytes(b"now a file")
    run_round(state, sent, tree, out, final=False)
    run_round(state, sent, tree, out, final=True)
    assert read_tree(tree.root) == read_tree(state)


def test_the_final_round_is_exact_whatever_a_writer_did_meanwhile(tmp_path: Path) -> None:
    """A writer rewrites, grows, shrinks, creates and deletes while the running rounds
    read; once it stops (the app frozen), the final round makes the copy exact."""
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(7)
    for i in range(4):
        (state / f"f{i}").write_bytes(rng.randbytes(rng.randrange(0, 3 * MiB)))
    stop = threading.Event()

    def write() -> None:
        wrng = random.Random(11)
        while not stop.is_set():
            path = state / f"f{wrng.randrange(6)}"
            action = wrng.randrange(5)
            try:
                if action == 0:
                    path.unlink(missing_ok=True)
                elif action == 1:
                    os.truncate(path, wrng.randrange(0, 3 * MiB))
                else:
                    with path.open("ab" if action == 2 else "r+b") as f:
                        f.seek(wrng.randrange(0, 3 * MiB))
                        f.write(wrng.randbytes(wrng.randrange(1, 300_000)))
            except FileNotFoundError:
                path.write_bytes(wrng.randbytes(1000))

    writer = threading.Thread(target=write)
    writer.start()
    tree, out = new_tree(tmp_path), tmp_path / "round.delta"
    sent: dict[str, SentFile] = {}
    try:
        for _ in range(4):
            run_round(state, sent, tree, out, final=False)
    finally:
        stop.set()
        writer.join()
    run_round(state, sent, tree, out, final=True)
    assert read_tree(tree.root) == read_tree(state)


def test_what_a_delta_cannot_carry_is_unsupported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "file").write_bytes(b"f")
    (state / "link").symlink_to("file")
    with pytest.raises(PrecopyUnsupportedError, match="link"):
        write_round(state, {}, tmp_path / "d", final=False)
    (state / "link").unlink()
    os.link(state / "file", state / "hard")
    with pytest.raises(PrecopyUnsupportedError, match="hard link"):
        write_round(state, {}, tmp_path / "d", final=False)
    (state / "hard").unlink()
    os.mkfifo(state / "fifo")
    with pytest.raises(PrecopyUnsupportedError, match="fifo"):
        write_round(state, {}, tmp_path / "d", final=False)


def test_is_converged() -> None:
    assert is_converged(1, SMALL_ROUND_BYTES, None)  # small: freeze now
    assert not is_converged(1, 100 * MiB, None)
    assert not is_converged(2, 50 * MiB, 100 * MiB)  # shrinking: go on
    assert is_converged(3, 60 * MiB, 50 * MiB)  # not shrinking: more would not help
    assert is_converged(MAX_ROUNDS, 50 * MiB, 100 * MiB)


# --- hostile deltas -----------------------------------------------------------------------


def write_delta(path: Path, entries: list[tuple[str, str, int, list[tuple[int, bytes]]]]) -> None:
    """``entries``: (kind "dir"/"file", path, size, blocks)."""
    with path.open("w+b") as f:
        writer = DeltaWriter(f, final=False)
        for kind, name, size, blocks in entries:
            if kind == "dir":
                writer.add_dir(name, 0o755)
                continue
            writer.begin_file(name, 0o644)
            for index, data in blocks:
                writer.add_block(index, data)
            writer.end_file(size)
        writer.close()


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("file", "../escape", 1, [(0, b"x")])], RejectReason.DELTA_BAD_PATH),
        ([("file", "/etc/passwd", 1, [(0, b"x")])], RejectReason.DELTA_BAD_PATH),
        ([("file", "a//b", 1, [(0, b"x")])], RejectReason.DELTA_BAD_PATH),
        ([("file", "./a", 1, [(0, b"x")])], RejectReason.DELTA_BAD_PATH),
        ([("file", "nodir/a", 1, [(0, b"x")])], RejectReason.DELTA_BAD_PATH),
        ([("file", "a", 1, [(1, b"x")])], RejectReason.DELTA_BAD_BLOCK),  # past the end
        ([("file", "a", 10, [(0, b"x")])], RejectReason.DELTA_BAD_BLOCK),  # short block
        (
            [("file", "a", 2 * BLOCK_BYTES, [(1, b"x" * BLOCK_BYTES), (0, b"y" * BLOCK_BYTES)])],
            RejectReason.DELTA_BAD_BLOCK,  # out of order
        ),
        ([("file", "a", 1 << 40, [])], RejectReason.PAYLOAD_TOO_LARGE),
        ([("dir", f"d{i}", 0, []) for i in range(20)], RejectReason.DELTA_TOO_MANY_ENTRIES),
    ],
)
def test_hostile_deltas_are_peer_errors(
    tmp_path: Path, entries: list[tuple[str, str, int, list[tuple[int, bytes]]]], reason: str
) -> None:
    delta = tmp_path / "d"
    write_delta(delta, entries)
    tree = new_tree(tmp_path, max_bytes=1 << 30, max_entries=10)
    with pytest.raises(DeltaError) as caught:
        apply_state_delta(delta, tree)
    assert isinstance(caught.value, DecodeError)
    assert caught.value.reason is reason
    assert not (tmp_path / "escape").exists()


def test_truncated_or_garbled_deltas_are_peer_errors(tmp_path: Path) -> None:
    delta = tmp_path / "d"
    write_delta(delta, [("file", "a", 5, [(0, b"hello")])])
    whole = delta.read_bytes()
    cases = [
        whole[:-3],  # truncated end
        whole[:20],  # truncated mid-entry
        b"XXXX" + whole[4:],  # bad magic
        whole[:4] + b"\x80" + whole[5:],  # unknown flag
        whole + b"trailing",
        whole[:-4] + struct.pack(">I", 9),  # wrong entry count
    ]
    for case, data in enumerate(cases):
        delta.write_bytes(data)
        tree = new_tree(tmp_path / f"case-{case}")
        with pytest.raises(DeltaError):
            apply_state_delta(delta, tree)


def test_the_staged_books_match_the_disk_after_every_kind_of_change(tmp_path: Path) -> None:
    """The running byte total and the directory index agree with what is on disk after
    growth, shrinking, kind changes and a final prune of a nested tree."""
    state = tmp_path / "state"
    (state / "a" / "b").mkdir(parents=True)
    (state / "a" / "b" / "f").write_bytes(b"x" * 3000)
    (state / "a" / "g").write_bytes(b"y" * 10)
    (state / "h").write_bytes(b"z" * 7)
    tree, out = new_tree(tmp_path), tmp_path / "round.delta"
    sent: dict[str, SentFile] = {}
    run_round(state, sent, tree, out, final=False)
    assert tree.staged_bytes == 3017
    (state / "a" / "b" / "f").unlink()
    (state / "a" / "b").rmdir()
    (state / "a" / "b").write_bytes(b"now a file")
    (state / "h").write_bytes(b"z")
    run_round(state, sent, tree, out, final=False)
    (state / "a" / "g").unlink()
    (state / "a" / "b").unlink()
    (state / "a").rmdir()
    run_round(state, sent, tree, out, final=True)
    assert read_tree(tree.root) == read_tree(state) == {"h": b"z"}
    assert tree.staged_bytes == 1 and tree.sizes == {"h": 1} and tree.dirs == set()
    assert {p for paths in tree.children.values() for p in paths} == {"h"}
