"""A node whose disk fills up stops cleanly and loses no accepted block (live, root).

A testnet of 4 nodes (committee 2, 1 s slots) and a fifth node, started here, whose
data directory is a 24 MiB file system of its own (``lab/small_disk.py``). Once it
accepts blocks, its file system is filled while the chain runs. The node must stop by
itself with exit code 75 (``node_daemon.EXIT_DISK_FULL``) and a "disk full" log line,
no traceback and no unhandled exception; every block it reported as accepted
(``GET /blocks``, polled until it stopped) and its last reported head must be in its
``chain.db``. Then the space is freed and the node restarted: it replays its store,
syncs and follows the network's head again, with every block it had. Before the fill,
an app that writes its state without end is placed on it: the node stops and holds that
app before its disk fills, and runs on (``runtime/disk_guard.py``); removed, its state
goes.

Skipped unless root with loop devices. About 60 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli.live_testnet import VDF_FRACTION

from edgechain.chain.assembly import make_ticket
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore, load_keystore
from edgechain.lab import small_disk
from edgechain.lab.cluster import (
    NodeOptions,
    NodePorts,
    NodeSpec,
    Seeds,
    build_node_argv,
    build_node_env,
    get_guard_prefix,
)
from edgechain.lab.faults_live import LiveTestnet, http_get
from edgechain.lab.testnet_config import DEFAULT_CHAIN_ID, DEFAULT_NODE_COMMAND
from edgechain.node_daemon import EXIT_DISK_FULL
from edgechain.types import PublicKey

pytestmark = [
    pytest.mark.xdist_group("testnet-light"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a small disk needs root (loop mounts)"),
    pytest.mark.skipif(
        os.geteuid() == 0 and not small_disk.is_small_disk_available(),
        reason="no loop devices or ext4 tools (mkfs.ext4) here",
    ),
]

DISK_BYTES = 24 * 2**20
SLOT_S = 1.0
POLL_S = 0.2
UNEXPECTED = ("Traceback", "Exception in callback", "Unhandled exception", "exception was never")
EXPECTED_ERRORS = {
    "disk full: stopping",
    "node stopped on a store failure: restart it once the disk has room",
}


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def try_get(url: str, path: str) -> Any:
    with contextlib.suppress(OSError, ValueError):
        return http_get(url, path)
    return None


class ExtraNode:
    """A node of the testnet started (and restarted) here, on the small disk."""

    def __init__(self, run_dir: Path, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        admin = load_keystore(run_dir / "admin.key")
        pk = bls.sk_to_pk(create_keystore(data_dir / "node.key"))
        ready0 = json.loads((run_dir / "node-000" / "ready.json").read_text())
        spec = NodeSpec(
            index=99,
            data_dir=data_dir,
            public_key=pk,
            ticket=make_ticket(admin, DEFAULT_CHAIN_ID, pk),
            host="127.0.0.1",
            ports=NodePorts(0, 0),
        )
        seeds = Seeds(
            (f"127.0.0.1:{ready0['udp_port']}",), PublicKey(bytes.fromhex(ready0["public_key"]))
        )
        options = NodeOptions(DEFAULT_NODE_COMMAND, DEFAULT_CHAIN_ID, 2, SLOT_S)
        self.argv = build_node_argv(
            spec, options, admin_key=bls.sk_to_pk(admin), seeds=seeds,
            guard=get_guard_prefix(),
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        (self.data_dir / "ready.json").unlink(missing_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.log.parent, env=build_node_env(os.environ), start_new_session=True,
            )  # fmt: skip
        wait_for("the node's ready file", self._read_ready, 30)

    def _read_ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the node exited at start: {self.log.read_text()}"
        with contextlib.suppress(OSError, ValueError, KeyError):
            ready = json.loads((self.data_dir / "ready.json").read_text())
            self.url = f"http://127.0.0.1:{ready['http_port']}"
            return True
        return False

    def exit_code(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s; the exit code (None: never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Its apps' watchdog is a process of its own: gone with the node's group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode


def read_stored(chain_db: Path) -> tuple[set[str], str | None]:
    """The block hashes and the head in a (stopped) node's store."""
    conn = sqlite3.connect(f"file:{chain_db}?mode=ro", uri=True)
    try:
        hashes = {bytes(row[0]).hex() for row in conn.execute("SELECT hash FROM blocks")}
        head = conn.execute("SELECT hash FROM head WHERE id = 0").fetchone()
    finally:
        conn.close()
    return hashes, None if head is None else bytes(head[0]).hex()


def check_log(text: str, expected_errors: set[str]) -> None:
    for marker in UNEXPECTED:
        assert marker not in text, f"{marker!r} in the node's log:\n{text[-3000:]}"
    errors = set()
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "critical"):
                errors.add(entry["msg"])
    assert errors == expected_errors, errors


WRITER_SCRIPT = """#!/bin/sh
# Idle unless it runs on the node whose data directory is $1, else write 1 MiB every
# half second without end.
case "$EDGECHAIN_STATE_DIR" in
  "$1"/*) ;;
  *) exec sleep 3600 ;;
esac
i=0
while true; do
  i=$((i+1))
  head -c 1048576 /dev/zero > "$EDGECHAIN_STATE_DIR/chunk.$i" || echo "write $i failed"
  sleep 0.5
done
"""


def check_writer_is_held(net: LiveTestnet, base: Path, node: ExtraNode) -> None:
    """An app that writes its state without end (2 MiB a second), placed on the node on
    the small disk: the node stops and holds it before the disk fills
    (``runtime/disk_guard.py``), says why, and runs on; removed, its state goes."""
    script, spec = base / "writer.sh", base / "writer.json"
    script.write_text(WRITER_SCRIPT)
    script.chmod(0o755)
    node_id = http_get(node.url, "/status")["node_id"]

    nodes: dict[str, dict[str, Any]] = {}

    def is_active() -> bool:
        # Placing on it needs its inclusion and a report in the chain.
        nodes.update((n["node_id"], n) for n in net.cli("nodes"))
        found = nodes.get(node_id)
        return found is not None and found["status"] == "active" and found["report_slot"]

    wait_for("the node to be active on the chain", is_active, 60)
    # Its report gives the chain its room for app state (block format 17), measured on
    # its small disk: below the disk's size, and far below the other nodes'.
    rooms = {n: view["state_room_bytes"] for n, view in nodes.items()}
    assert isinstance(rooms[node_id], int) and rooms[node_id] < DISK_BYTES, rooms
    assert any(isinstance(r, int) and r > 4 * DISK_BYTES for r in rooms.values()), rooms
    # Pinned to it: the planner, which moves apps off a node whose disk fills, leaves
    # the writer there.
    command = ["/bin/sh", str(script), str(node.data_dir)]
    spec.write_text(json.dumps({"name": "writer", "runtime": "process", "cpu_bp": 10,
                                "ram_bp": 10, "stateful": True, "command": command,
                                "policy": {"pin_node": node_id}}))  # fmt: skip
    app = net.cli("apps", "submit", str(spec))["app_id"]
    held: dict[str, Any] = {}

    def is_held() -> bool:
        assert node.exit_code() is None, "the node stopped: " + node.log.read_text()[-3000:]
        for copy in try_get(node.url, "/runtime/apps") or []:
            if copy["app"] == app and copy["status"] == "disk_full":
                held.update(copy)
                return True
        return False

    wait_for("the writer to be held on the node it fills", is_held, 90)
    assert not held["running"] and "reserve" in held["hold"], held
    assert node.exit_code() is None
    app_dir = node.data_dir / "apps" / app
    assert app_dir.exists()
    net.cli("apps", "rm", app)
    wait_for("the writer's state to be deleted", lambda: not app_dir.exists(), 60)


def test_full_disk_stops_the_node_cleanly_and_loses_no_accepted_block() -> None:
    # Not pytest's tmp_path (0700): a root node's apps run as another user.
    base = Path(tempfile.mkdtemp(prefix="edgechain-small-disk-"))
    base.chmod(0o711)
    net = LiveTestnet(base / "run", nodes=4, committee=2, slot_s=SLOT_S, vdf_fraction=VDF_FRACTION)
    disk = base / "extra"
    log = base / "extra.log"
    node: ExtraNode | None = None
    passed = False
    try:
        net.start()
        net.wait_ready(120)
        small_disk.mount_small_disk(disk, DISK_BYTES)
        disk.chmod(0o711)
        node = ExtraNode(net.run_dir, disk, log)
        node.start()
        url = node.url

        def is_following() -> bool:
            status = try_get(url, "/status")
            return bool(status and status["is_validator"] and status["blocks_accepted"] >= 3)

        wait_for("the node to join and accept blocks", is_following, 60)
        check_writer_is_held(net, base, node)

        # Fill its disk while the chain runs; keep what it reports until it stops.
        reported = {b["hash"] for b in http_get(url, "/blocks")}
        heads = {http_get(url, "/status")["head"]}
        assert len(reported) >= 3, reported
        # The node may free a page right after (SQLite's journal): topped up each poll.
        filled = small_disk.fill(disk)
        assert filled > 0

        def has_stopped() -> bool:
            nonlocal filled
            filled += small_disk.fill(disk)
            blocks, status = try_get(url, "/blocks"), try_get(url, "/status")
            if blocks is not None:
                reported.update(b["hash"] for b in blocks)
            if status is not None and status["head"]:
                heads.add(status["head"])
            return node is not None and node.exit_code() is not None

        wait_for("the node to stop on its full disk", has_stopped, 60)
        assert node.exit_code() == EXIT_DISK_FULL, log.read_text()[-3000:]
        text = log.read_text()
        check_log(text, EXPECTED_ERRORS)

        # Space comes back; every block it reported is in its store.
        assert small_disk.free(disk) == filled
        stored, stored_head = read_stored(disk / "chain.db")
        assert reported <= stored, sorted(reported - stored)
        assert stored_head is not None
        # /status shows the engine's head: every head it showed is a stored block.
        assert heads <= stored, sorted(heads - stored)

        # Restarted, it replays its store, syncs and follows the network's head again.
        node.start()
        restart_slot = int(net.get_slot(time.time()))

        def follows_the_network() -> bool:
            ours, theirs = try_get(node.url, "/status"), net.get("/status", avoid=())
            return bool(
                ours
                and ours["head_slot"] is not None
                and ours["head_slot"] > restart_slot + 2
                and ours["head"] == theirs["head"]
            )

        wait_for("the restarted node to follow the network's head", follows_the_network, 60)
        assert node.stop() == 0
        check_log(log.read_text()[len(text) :], set())
        after, _ = read_stored(disk / "chain.db")
        assert stored <= after, "blocks lost across the restart"
        passed = True
    finally:
        if node is not None:
            node.stop()
        net.stop()
        with contextlib.suppress(small_disk.SmallDiskError):
            small_disk.unmount(disk)
        if passed and not os.environ.get("EDGECHAIN_KEEP_RUN"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"run dir: {base}")
