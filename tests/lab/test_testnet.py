"""Real testnets: node processes started by the launcher, on loopback or in network
namespaces, watched to the end, and no process left behind.

Sizes are small (2-core machine): about two minutes in all. ``EDGECHAIN_LONG=1`` makes
the slow test run the issue's size class (50 nodes) instead of its short form.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgechain.chain.attestation import is_majority
from edgechain.lab.cluster import get_guard_prefix
from edgechain.lab.elections import compute_elections, load_chain
from edgechain.lab.netns import get_unavailable_reason, list_links, list_namespaces
from edgechain.lab.testnet_config import LaunchConfig
from edgechain.lab.testnet_launcher import run_testnet
from edgechain.telemetry.cpu import count_merged_slots

LONG = os.environ.get("EDGECHAIN_LONG") == "1"

SUMMARY_KEYS = {
    "nodes",
    "slots",
    "skip_blocks",
    "skip_blocks_after_join",
    "distinct_heads",
    "rss_mb",
    "rtt_ms",
    "cpu_seconds",
    "block_propagation_ms",
    "kills",
    "genesis",
    "join_slot",
    "cpu_per_slot_after_join",
    "ok",
}


def find_processes(run_dir: Path) -> list[str]:
    """Processes whose command line mentions the run directory (launched nodes)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(str(run_dir) in part for part in cmdline) and process.pid != os.getpid():
            found.append(f"{process.pid}: {' '.join(cmdline)[:120]}")
    return found


def assert_nothing_left(run_dir: Path, summary: dict[str, Any]) -> None:
    assert summary["leftover_process_groups"] == []
    assert find_processes(run_dir) == []
    assert summary["crashes"] == []
    assert summary["exit_codes"] == {}, "a node did not exit 0 on SIGTERM"
    assert summary["stop_sigkilled"] == []


def assert_cpu_per_slot(table: dict[str, Any]) -> None:
    """The per-slot CPU table (telemetry/cpu.py): both duties measured, every component
    present, block checks seen, and the components add up to the process's CPU."""
    for duty in ("on_duty", "off_duty"):
        part = table[duty]
        assert part is not None and part["slots"] > 0, duty
        assert set(part["components_ms"]) >= {"vdf_check", "dht", "gossip", "other", "process"}
        assert 0.9 <= part["measured_share"]["median"] <= 1.1, part
    # Blocks are checked off duty too. Not every off-duty slot: on a loaded host a block
    # can arrive after its slot, and its check then falls in the next one, which may be
    # on duty (CI-like load gave a median of 0 over a 12-slot run once).
    assert table["off_duty"]["components_ms"]["vdf_check"]["p99"] > 0
    assert table["on_duty"]["components_ms"]["vdf_proving"]["p99"] > 0


def assert_skips_after_join_explained(summary: dict[str, Any]) -> None:
    """No skip block after the join, except where the slot's producer logged a VDF that
    the host kept off the CPU (lab/skip_causes.py): in CI another test worker shares the
    two cores, and a proof that comes after 2/3 of a 1 s slot must become a skip block.
    One skip of another cause is let through (CI once saw a single skip at slot 7 of a
    28-slot run that no run here reproduced; its cause is in the summary); a second, or
    more than 3 skips in all, fails."""
    join_slot = summary["join_slot"]
    after_join = [c for c in summary["skip_causes"] if c["slot"] > join_slot]
    assert len(after_join) == summary["skip_blocks_after_join"], summary["skip_causes"]
    other = [c for c in after_join if c["cause"] != "vdf_starved"]
    if other:
        warnings.warn(f"a skip block after the join: {other}", stacklevel=2)
    assert len(other) <= 1, after_join
    assert len(after_join) <= 3, after_join


def config(tmp_path: Path, **overrides: Any) -> LaunchConfig:
    values: dict[str, Any] = {
        "nodes": 5,
        "committee": 3,
        "slot_duration": 1.0,
        "slots": 12,
        "join_interval": 0.5,
        "run_dir": tmp_path / "run",
        "json_path": tmp_path / "summary.json",
        "progress": False,
    }
    values.update(overrides)
    return LaunchConfig(**values)


# Real testnets are CPU-bound on 2 cores: run them one after another on one worker.
pytestmark = pytest.mark.xdist_group("testnet")


def test_small_testnet_reaches_one_head_without_skips(tmp_path: Path) -> None:
    # 28 slots: long enough for finality (epochs of 8 slots; epoch 1 is final once
    # epoch 2 is justified, in its first reports after slot 16).
    cfg = config(tmp_path, slots=28)
    summary = run_testnet(cfg)

    assert set(summary) >= SUMMARY_KEYS
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["genesis"], summary["failure"]
    assert summary["slots"] == 28
    finality = summary["finality"]
    assert set(finality["finalized_slot"]["per_node"]) == {f"node-{i:03d}" for i in range(5)}
    assert finality["finalized_slot"]["min"] >= 8, finality
    assert finality["lag_slots"]["max"] <= 20, finality
    assert summary["nodes_answering"] == 5
    assert summary["join_slot"] is not None
    assert summary["validators_at_end"] == 5
    assert_skips_after_join_explained(summary)
    assert summary["distinct_heads"] == 1, summary["heads"]
    assert summary["blocks"] >= 10
    assert summary["block_propagation_ms"]["samples"] > 0
    assert summary["block_propagation_ms"]["p50"] <= summary["block_propagation_ms"]["p99"]
    assert set(summary["rss_mb"]["per_node"]) == {f"node-{i:03d}" for i in range(5)}
    assert 5 < summary["rss_mb"]["max"] < 500
    # Every node measured an RTT (node/rtt.py) in a 28-slot run of 1 s slots.
    assert set(summary["rtt_ms"]["per_node"]) == {f"node-{i:03d}" for i in range(5)}
    assert 0 < summary["rtt_ms"]["max"] < 5_000
    # Reports (node/report_times.py): every block after join counted, its producer's
    # timings pooled; a report cannot reach the producer before it was signed.
    reports = summary["reports"]
    assert reports["blocks_measured"] > 0 and reports["due"] > 0
    assert 0 < reports["inclusion"] <= 1
    to_producer = reports["to_producer_ms"]
    assert to_producer["samples"] > 0
    assert 0 <= to_producer["p50"] <= to_producer["p99"] <= to_producer["max"]
    assert all(v > 0 for v in summary["cpu_seconds"]["per_node"].values())
    assert_cpu_per_slot(summary["cpu_per_slot"])

    # The same table over the slots after the join alone (GET /status?cpu_since_slot=):
    # some slots, as many at most (a 5-node join can end before a node's first sample;
    # with a committee of 3 a node is off duty in few slots, maybe none after the join).
    after = summary["cpu_per_slot_after_join"]
    assert 0 < count_merged_slots(after) <= count_merged_slots(summary["cpu_per_slot"])
    statuses = [
        node["status"] for node in json.loads((cfg.run_dir / "collected.json").read_text()).values()
    ]
    # Every node's DHT traffic went MACed after the first message to each peer.
    assert all(s["dht_sessions"]["macs_verified"] > 0 for s in statuses)
    assert all(not s["decode_errors"] for s in statuses)
    # Pull repair rode on the push (network/gossip.py): with a block a second, heartbeats
    # found that the node's copies had carried its announcements, and sent no IHave.
    assert all(s["gossip"]["delivered"] > 0 for s in statuses)
    assert sum(s["gossip"]["heartbeats_skipped"] for s in statuses) > 0, statuses
    assert summary["kills"] == []
    assert summary["ok"]
    assert_nothing_left(cfg.run_dir, summary)
    # The launcher made every key and ticket: keystores are private, ids are recorded.
    manifest = json.loads((cfg.run_dir / "testnet.json").read_text())
    assert len(manifest["nodes"]) == 5
    for node in manifest["nodes"]:
        key = cfg.run_dir / node["name"] / "node.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        ready = json.loads((cfg.run_dir / node["name"] / "ready.json").read_text())
        assert ready["node_id"] == node["node_id"]


def _find_free_ports(count: int, held: tuple[int, ...]) -> tuple[int, list[socket.socket]]:
    """A base port below the ephemeral range whose ``count`` ports are free, with the
    ports at the offsets ``held`` held, listening."""
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20_000, 30_000, 2)
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
                probe.listen()
        except OSError:
            for probe in probes:
                probe.close()
            continue
        keep = [probes[offset] for offset in held]
        for probe in probes:
            if probe not in keep:
                probe.close()
        return base, keep
    raise AssertionError("no free port range")


def test_nodes_whose_ports_are_taken_are_started_again_and_not_waited_for(
    tmp_path: Path,
) -> None:
    """A testnet's fixed ports lie where another process may hold one for a moment
    (an outgoing socket): node-001 of a 6-node testnet found its peer port taken, exited,
    and the testnet waited for it for good. The launcher starts such a node again
    (node-000's and node-001's peer ports are held until the launcher's log says so),
    and a node that still crashes (node-004's port is never given back) is left out of
    the client config rather than waited for."""
    base, held = _find_free_ports(10, (0, 2, 8))
    log = tmp_path / "run" / "launcher.log"
    names = ("node-000", "node-001")
    done = threading.Event()

    def release_when_refused() -> None:
        waiting = dict(zip(names, held, strict=False))
        while waiting and not done.wait(0.05):
            text = log.read_text() if log.exists() else ""
            for name in [n for n in waiting if f"{n} cannot listen on" in text]:
                waiting.pop(name).close()

    watcher = threading.Thread(target=release_when_refused, daemon=True)
    watcher.start()
    try:
        summary = run_testnet(config(tmp_path, slots=2, base_port=base))
    finally:
        done.set()
        watcher.join()
        for probe in held:
            probe.close()
    assert summary["genesis"], summary["failure"]
    text = log.read_text()
    for name, port in zip((*names, "node-004"), (base, base + 2, base + 8), strict=True):
        said = f"{name} cannot listen on 127.0.0.1:{port} for the peers (--listen)"
        assert said in text, text
    assert "starting it again (1 of 3)" in text and "starting it again (3 of 3)" in text, text
    assert [c["name"] for c in summary["crashes"]] == ["node-004"], summary["crashes"]
    assert "client config without node-004" in text, text
    client = (tmp_path / "run" / "client.toml").read_text()
    assert client.count("http://") == 4, client
    assert summary["nodes_answering"] == 4


def test_killed_nodes_are_skipped_and_resync(tmp_path: Path) -> None:
    """kill -9 two nodes: the chain goes on, their slots become skip blocks excluding
    them, and once restarted they follow the same head again."""
    cfg = config(tmp_path, nodes=6, slots=24, kill=2, kill_at=6, restart_after=8, seed=3)
    summary = run_testnet(cfg)

    assert summary["genesis"], summary["failure"]
    assert len(summary["kills"]) == 2
    for kill in summary["kills"]:
        assert kill["name"] != "node-000"  # never the bootstrap
        assert kill["restart_slot"] is not None
        assert kill["blocks_it_produced_while_down"] == []
        # Every slot it was elected to produce while down is a skip block excluding it.
        assert kill["elected_slots_skipped"], kill["elected_while_down"]
        assert kill["resynced"], kill
    assert summary["distinct_heads"] == 1, summary["heads"]
    # The chain kept going while they were down: every slot of the outage whose elected
    # committee still had a live majority got a block (live producer) or a skip block
    # (killed producer). A slot whose committee was mostly killed nodes can attest
    # neither, and stays empty (paper §3.4; liveness from chain data is issue 9's).
    #
    # Tolerated, two lost slots in all (known, closing notes): on a loaded 2-core host a
    # live producer can be starved for its slot (the burst of restarted nodes replaying
    # and syncing; an unexplained skip), or the candidate reaches one of a committee's
    # two live members before 2/3 of the 1 s slot and the other after it, so one votes
    # for the block and the other for the skip block and neither gets a majority (an
    # empty slot). More would be a regression.
    collected = json.loads((cfg.run_dir / "collected.json").read_text())
    reference = collected[summary["reference_node"]]["chain"]
    low, high = summary["kills"][0]["down_slots"]
    genesis, chain = load_chain(
        cfg.run_dir / summary["reference_node"] / "chain.db", [e["hash"] for e in reference]
    )
    elections = compute_elections(genesis, chain, range(low, high + 1))
    down = {k["node_id"] for k in summary["kills"]}
    by_slot = {e["slot"]: e for e in reference}
    lost = set(summary["unexplained_skip_slots"])
    attestable = 0
    for slot, elected in elections.items():
        live = sum(1 for member in elected.committee if member not in down)
        if not is_majority(live, len(elected.committee)):
            continue
        attestable += 1
        entry = by_slot.get(slot)
        if entry is None:
            lost.add(slot)
        elif slot not in lost:
            assert entry["skip"] == (elected.producer in down), (slot, elected, entry)
    assert len(lost) <= 2, (sorted(lost), elections, reference)
    assert attestable == 0 or len(lost) < attestable, (sorted(lost), attestable)
    if attestable == 0:
        warnings.warn("every committee of the outage was mostly down", stacklevel=1)
    if not any(k["elected_while_down"] for k in summary["kills"]):
        warnings.warn(
            "no killed node was elected while down: skip path not exercised", stacklevel=1
        )
    assert_nothing_left(cfg.run_dir, summary)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _start_launcher(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    run_dir = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "edgechain.lab.testnet",
        "--nodes",
        "4",
        "--committee",
        "3",
        "--slot-duration",
        "1",
        "--slots",
        "1000",
        "--join-interval",
        "0.3",
        "--run-dir",
        str(run_dir),
        "--quiet",
        *extra,
    ]
    # SIGINT ignored on purpose: like a background job of a non-interactive shell.
    launcher = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    return launcher, run_dir


def _log(run_dir: Path) -> str:
    path = run_dir / "launcher.log"
    return path.read_text() if path.exists() else ""


def test_ctrl_c_stops_every_node_and_writes_the_summary(tmp_path: Path) -> None:
    launcher, run_dir = _start_launcher(tmp_path, "--json", str(tmp_path / "s.json"))
    try:
        _wait_for(lambda: "genesis after" in _log(run_dir), 60, "genesis")
        assert len(find_processes(run_dir)) >= 4  # the launcher and its nodes
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, output.decode()
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"]
    assert summary["genesis"]
    assert_nothing_left(run_dir, summary)


@pytest.mark.skipif(not get_guard_prefix(), reason="setpriv (util-linux) is not installed")
def test_nodes_die_with_a_sigkilled_launcher(tmp_path: Path) -> None:
    """No cleanup code can run on SIGKILL: the nodes' parent-death signal does it."""
    launcher, run_dir = _start_launcher(tmp_path)
    try:
        _wait_for(lambda: len(find_processes(run_dir)) >= 3, 60, "nodes")
        launcher.kill()
        launcher.wait(timeout=10)
        _wait_for(lambda: find_processes(run_dir) == [], 10, "the nodes to die")
    finally:
        launcher.kill()


def _netns_unavailable() -> str | None:
    reason = get_unavailable_reason()
    if reason is not None:
        return reason
    try:
        list_namespaces()
    except Exception as exc:
        return f"ip netns does not work here: {exc}"
    return None


@pytest.mark.root
def test_netns_testnet(tmp_path: Path) -> None:
    """One namespace per node on a private bridge: real addresses, cleaned up after."""
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cfg = config(tmp_path, nodes=4, slots=8, netns=True, netns_prefix="ect", netns_subnet=250)
    summary = run_testnet(cfg)

    assert summary["genesis"], summary["failure"]
    assert summary["distinct_heads"] == 1, summary["heads"]
    assert_skips_after_join_explained(summary)
    assert summary["ok"]
    manifest = json.loads((cfg.run_dir / "testnet.json").read_text())
    assert [n["host"] for n in manifest["nodes"]] == [f"10.213.250.{i}" for i in range(2, 6)]
    assert [n["namespace"] for n in manifest["nodes"]] == [f"ect-{i}" for i in range(4)]
    assert_nothing_left(cfg.run_dir, summary)
    assert not [n for n in list_namespaces() if n.startswith("ect-")]
    assert not [n for n in list_links() if n.startswith("ect")]


@pytest.mark.slow
def test_bigger_testnet(tmp_path: Path) -> None:
    """Short form: 12 nodes, committee 6, 14 slots (every node joined by slot 2 here);
    EDGECHAIN_LONG=1: 50 nodes, committee 16, 60 slots."""
    nodes, committee, slots = (50, 16, 60) if LONG else (12, 6, 14)
    cfg = config(
        tmp_path,
        nodes=nodes,
        committee=committee,
        slot_duration=2.0,
        slots=slots,
        join_interval=0.5,
    )
    summary = run_testnet(cfg)

    assert summary["genesis"], summary["failure"]
    assert summary["validators_at_end"] == nodes
    assert summary["distinct_heads"] == 1, summary["heads"]
    assert_skips_after_join_explained(summary)
    assert_nothing_left(cfg.run_dir, summary)
