"""``edgechain node`` options: help texts, precedence, and the refusals before start."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgechain.chain.encoding import encode_genesis
from edgechain.chain.model import ChainParams
from edgechain.chain.store.block_store import BlockStore
from edgechain.cli import build_parser, main
from edgechain.cli.node import (
    NODE_OPTIONS,
    NodeOptionError,
    check_node_options,
    get_clock_offset_ms,
    get_cpu_capacity,
    get_genesis_delay_ms,
    get_labels,
    get_leave_timeout,
    get_positive_slots,
    get_seeds,
    make_node_config,
    resolve_node_options,
)
from edgechain.crypto import bls
from edgechain.testing import make_genesis
from edgechain.types import BlockHash, Slot


def _node_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    node: argparse.ArgumentParser = sub.choices["node"]
    return node


def test_every_node_flag_has_a_help_text() -> None:
    actions = [a for a in _node_parser()._actions if a.option_strings]
    assert {a.dest for a in actions} >= set(NODE_OPTIONS)
    for action in actions:
        assert action.help and len(action.help) > 10, action.option_strings


def test_flags_over_environment_over_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('chain-id = "from-file"\ncommittee = 5\nlabels = "a,b"\n')
    args = build_parser().parse_args(["node", "--config", str(config), "--committee", "7"])
    values = resolve_node_options(
        args, {"EDGECHAIN_CHAIN_ID": "from-env", "EDGECHAIN_OPEN_ADMISSION": "yes"}
    )
    assert values["committee"] == 7
    assert values["chain_id"] == "from-env"
    assert values["labels"] == "a,b"
    assert values["open_admission"] is True
    config.write_text("comittee = 5\n")
    args = build_parser().parse_args(["node", "--config", str(config)])
    with pytest.raises(NodeOptionError, match="unknown option 'comittee'"):
        resolve_node_options(args, {})


def test_a_new_chain_needs_an_admin_key(capsys: pytest.CaptureFixture[str]) -> None:
    base = {k: o.default for k, o in NODE_OPTIONS.items()}
    with pytest.raises(NodeOptionError, match="a new chain needs an admin key"):
        check_node_options({**base, "genesis": True})
    # A closed chain's genesis node is admitted like the others: its joiners check it.
    with pytest.raises(NodeOptionError, match="admits its genesis node too"):
        check_node_options({**base, "genesis": True, "admin_key": "ab" * 48})
    check_node_options({**base, "genesis": True, "admin_key": "ab" * 48, "ticket": "cd" * 96})
    check_node_options({**base, "genesis": True, "open_admission": True})
    with pytest.raises(NodeOptionError, match="--seeds HOST:PORT"):
        check_node_options(base)
    with pytest.raises(NodeOptionError, match="--seeds HOST:PORT"):
        check_node_options({**base, "seeds": "a:1"})  # and the genesis key
    check_node_options({**base, "seeds": "a:1", "genesis_key": "ab" * 48})

    assert main(["node", "--genesis", "--data-dir", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "a new chain needs an admin key" in err and "--open-admission" in err


def test_seeds_come_as_a_comma_separated_string_or_a_toml_list(tmp_path: Path) -> None:
    assert get_seeds({"seeds": " a:1, [::1]:7000 ,,b.example:2"}) == (
        "a:1", "[::1]:7000", "b.example:2"
    )  # fmt: skip
    assert get_seeds({"seeds": ""}) == ()
    config = tmp_path / "node.toml"
    config.write_text('seeds = ["seed-0:7000", "10.0.0.9:7000"]\n')
    args = build_parser().parse_args(["node", "--config", str(config)])
    assert get_seeds(resolve_node_options(args, {})) == ("seed-0:7000", "10.0.0.9:7000")
    args = build_parser().parse_args(["node", "--config", str(config)])
    values = resolve_node_options(args, {"EDGECHAIN_SEEDS": "c:3"})
    assert get_seeds(values) == ("c:3",)  # the environment wins over the file
    for bad in ("nohost", "a:", ":7", "a:0", "a:70000", "a:x"):
        with pytest.raises(NodeOptionError, match="is not HOST:PORT"):
            get_seeds({"seeds": bad})


@pytest.mark.parametrize("value", [0, -1.5, "two", float("nan"), float("inf"), True, "0"])
def test_a_cpu_capacity_is_a_positive_number_of_cores(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--cpu-capacity .*number of CPU cores above 0"):
        get_cpu_capacity({"cpu_capacity": value})


def test_cpu_capacity_from_flags_environment_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert get_cpu_capacity({"cpu_capacity": None}) is None
    assert get_cpu_capacity({"cpu_capacity": "0.5"}) == 0.5
    args = build_parser().parse_args(["node", "--cpu-capacity", "0.25"])
    assert get_cpu_capacity(resolve_node_options(args, {})) == 0.25
    args = build_parser().parse_args(["node"])
    values = resolve_node_options(args, {"EDGECHAIN_CPU_CAPACITY": "1.5"})
    assert get_cpu_capacity(values) == 1.5
    with pytest.raises(NodeOptionError, match="EDGECHAIN_CPU_CAPACITY='lots': expected CORES"):
        resolve_node_options(args, {"EDGECHAIN_CPU_CAPACITY": "lots"})
    config = tmp_path / "node.toml"
    config.write_text("cpu-capacity = 2\n")
    args = build_parser().parse_args(["node", "--config", str(config)])
    assert get_cpu_capacity(resolve_node_options(args, {})) == 2.0
    # Refused before the node starts, with the option named.
    argv = ["node", "--genesis", "--open-admission", "--cpu-capacity", "-1"]
    assert main([*argv, "--data-dir", str(tmp_path / "d")]) == 2
    assert "--cpu-capacity -1.0: expected a number of CPU cores above 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root node drops apps to an app user")
def test_a_missing_app_user_stops_the_node_with_a_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "edgechain.cli", "node", "--data-dir", str(tmp_path / "d"),
            "--genesis", "--open-admission", "--app-user", "no-such-user-here",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "app user 'no-such-user-here' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def _genesis_options(*flags: str) -> dict[str, object]:
    args = build_parser().parse_args(["node", "--genesis", "--open-admission", *flags])
    return resolve_node_options(args, {})


def test_labels_of_the_node_itself_cannot_be_set_by_hand() -> None:
    assert get_labels(_genesis_options("--labels", "region=eu, gpu")) == ("region=eu", "gpu")
    for label in ("edgechain.runtime=container", "edgechain.transfer=1"):
        with pytest.raises(NodeOptionError, match="set by the node itself"):
            check_node_options(_genesis_options("--labels", f"eu,{label}"))


def test_container_engine_options_are_checked() -> None:
    check_node_options(_genesis_options("--container-engine", "unix:///run/podman.sock"))
    with pytest.raises(NodeOptionError, match="expected the Engine API URL"):
        check_node_options(_genesis_options("--container-engine", "/run/podman.sock"))
    with pytest.raises(NodeOptionError, match="needs --container-engine"):
        check_node_options(_genesis_options("--allow-root-containers"))


def test_an_engine_that_does_not_answer_stops_the_node(tmp_path: Path) -> None:
    """A node that would declare container apps on chain without an engine to run them
    does not start; it says which engine did not answer."""
    argv = [sys.executable, "-m", "edgechain.cli", "node", "--genesis", "--open-admission",
            "--data-dir", str(tmp_path / "data"),
            "--container-engine", f"unix://{tmp_path / 'missing.sock'}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "missing.sock does not answer" in done.stderr, done.stderr


def test_a_clock_offset_from_flags_environment_and_file_reaches_the_node_config(
    tmp_path: Path,
) -> None:
    assert make_node_config(_genesis_options()).clock_offset_ms == 0
    config = make_node_config(_genesis_options("--clock-offset-ms", "-1500"))
    assert config.clock_offset_ms == -1500
    assert make_node_config(_genesis_options("--clock-offset-ms=250")).clock_offset_ms == 250
    args = build_parser().parse_args(["node", "--genesis", "--open-admission"])
    values = resolve_node_options(args, {"EDGECHAIN_CLOCK_OFFSET_MS": "-40"})
    assert make_node_config(values).clock_offset_ms == -40
    file = tmp_path / "node.toml"
    file.write_text("genesis = true\nopen-admission = true\nclock-offset-ms = 3000\n")
    args = build_parser().parse_args(["node", "--config", str(file)])
    assert make_node_config(resolve_node_options(args, {})).clock_offset_ms == 3000
    # The flag wins, 0 included.
    args = build_parser().parse_args(["node", "--config", str(file), "--clock-offset-ms", "0"])
    assert make_node_config(resolve_node_options(args, {})).clock_offset_ms == 0


@pytest.mark.parametrize("value", [1.5, "soon", True, "1e3"])
def test_a_clock_offset_is_a_whole_number_of_milliseconds(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--clock-offset-ms .*whole number of milli"):
        get_clock_offset_ms({"clock_offset_ms": value})
    with pytest.raises(NodeOptionError, match=r"--clock-offset-ms"):
        check_node_options({**_genesis_options(), "clock_offset_ms": value})


def _get_node_argv(run_dir: Path, *flags: str) -> list[str]:
    """``edgechain node`` founding a chain of its own in ``run_dir/node``."""
    data_dir, ready = run_dir / "node", run_dir / "ready.json"
    admin = bls.sk_to_pk(bls.keygen(b"\x05" * 32)).hex()
    return [sys.executable, "-m", "edgechain.cli", "node", "--genesis", "--admin-key", admin,
            "--open-admission", "--data-dir", str(data_dir), "--ready-file", str(ready),
            *flags]  # fmt: skip


@contextlib.contextmanager
def _running_node(run_dir: Path, *flags: str) -> Iterator[tuple[Path, int]]:
    """The real daemon on a new chain of its own: its data dir and HTTP port; stopped
    by SIGTERM at the end, which it must survive with exit status 0."""
    run_dir.mkdir(exist_ok=True)
    data_dir, ready = run_dir / "node", run_dir / "ready.json"
    node = subprocess.Popen(
        _get_node_argv(run_dir, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert node.poll() is None, node.communicate()[1].decode()
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.1)
        yield data_dir, int(json.loads(ready.read_text())["http_port"])
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.communicate()
    assert node.returncode == 0


def _get_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as reply:
        status = json.load(reply)
    assert isinstance(status, dict)
    return status


def test_a_node_started_with_a_clock_offset_shows_it_and_gives_it_to_its_watchdog(
    run_dir: Path,
) -> None:
    """The real daemon: ``--clock-offset-ms`` reaches ``/status`` and the watchdog the
    node starts (its argv and its first log line)."""
    with _running_node(run_dir, "--clock-offset-ms", "-1500") as (data_dir, port):
        assert _get_status(port)["clock_offset_ms"] == -1500
        watchdog_pid = int((data_dir / "watchdog.pid").read_text().split()[0])
        assert "--clock-offset-ms=-1500" in psutil.Process(watchdog_pid).cmdline()
        # The watchdog writes its first line once it runs: wait for it (a loaded CI-like
        # host once read the file before the line was there).
        start = _wait_for_start_line(data_dir / "watchdog.log")
        assert start["clock_offset_ms"] == -1500


def test_a_killed_watchdog_is_started_again_by_its_node(run_dir: Path) -> None:
    """Nothing fences a node's apps without its watchdog: killed, it is started again
    within about a second, and ``/status`` shows the new one and the restart."""
    with _running_node(run_dir) as (data_dir, port):
        first = _get_status(port)["watchdog"]
        assert first["restarts"] == 0 and psutil.pid_exists(first["pid"])
        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (now := _get_status(port)["watchdog"])["restarts"] == 0:
            assert time.monotonic() < deadline, "the watchdog was not started again"
            time.sleep(0.1)
        assert now["restarts"] == 1 and now["pid"] != first["pid"]
        assert psutil.Process(now["pid"]).status() != psutil.STATUS_ZOMBIE
        recorded = int((data_dir / "watchdog.pid").read_text().split()[0])
        assert recorded == now["pid"]


def test_a_data_dir_of_another_block_format_is_refused_with_what_to_do(run_dir: Path) -> None:
    """A chain written by another edgechain version (its genesis stored under another
    format's hash domain, as a format bump leaves it) stops the node at start, before it
    replays a block, with a message that says so; the store is left as it was."""
    run_dir.mkdir()
    db = run_dir / "node" / "chain.db"
    db.parent.mkdir()
    genesis, _ = make_genesis(5)
    encoded = encode_genesis(genesis)
    with BlockStore(db) as store:
        older = hashlib.sha256(b"edgechain/genesis/v1" + encoded).digest()
        store.put_genesis(BlockHash(older), encoded)
    before = db.read_bytes()
    node = subprocess.run(
        _get_node_argv(run_dir), capture_output=True, text=True, timeout=60, check=False
    )
    assert node.returncode == 1, node.stderr
    assert "written by another edgechain version" in node.stderr
    assert "start this node on a new data directory" in node.stderr
    assert "Traceback" not in node.stderr
    assert db.read_bytes() == before


def test_a_damaged_block_store_stops_the_node_at_start_with_what_to_do(run_dir: Path) -> None:
    """A page of ``chain.db`` garbled while the node was down (an SD card, a bad sector):
    the header and schema are intact, so only a read reaching that page would fail,
    maybe hours later, in the middle of an app's move. The node refuses to start
    instead, with what to do, and leaves the file as it was."""
    run_dir.mkdir()
    db = run_dir / "node" / "chain.db"
    db.parent.mkdir()
    genesis, _ = make_genesis(5)
    encoded = encode_genesis(genesis)
    genesis_hash = BlockHash(hashlib.sha256(encoded).digest())  # refused before it counts
    with BlockStore(db) as store:
        store.put_genesis(genesis_hash, encoded)
        parent = genesis_hash
        for slot in range(1, 40):  # block-sized rows: a file of many pages
            block_hash = BlockHash(hashlib.sha256(bytes([slot])).digest())
            store.put_block(block_hash, parent, Slot(slot), slot, bytes([slot]) * 5000)
            parent = block_hash
    data = bytearray(db.read_bytes())
    page_size = 4096
    page = len(data) // page_size // 2
    data[page * page_size : (page + 1) * page_size] = hashlib.shake_256(b"bad").digest(page_size)
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    node = subprocess.run(
        _get_node_argv(run_dir), capture_output=True, text=True, timeout=60, check=False
    )
    assert node.returncode == 1, node.stderr
    assert "is damaged" in node.stderr and "-wal and -shm files aside" in node.stderr
    assert "Traceback" not in node.stderr
    assert db.read_bytes() == before


def _wait_for_start_line(path: Path, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [json.loads(line) for line in lines if '"start"' in line]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"no start line in {path}: {lines}"
        time.sleep(0.1)


def test_a_node_on_every_interface_advertises_the_address_its_peers_reach() -> None:
    """In a container the node listens on 0.0.0.0: it advertises the local address of
    its route to a seed (or the default route), never 0.0.0.0."""
    from edgechain.node.config import get_advertise_host

    assert get_advertise_host("node.example", "0.0.0.0", ()) == "node.example"
    assert get_advertise_host(None, "10.1.2.3", ("10.9.9.9:7000",)) == "10.1.2.3"
    found = get_advertise_host(None, "0.0.0.0", ("unresolvable.invalid:7000",))
    assert found not in ("0.0.0.0", "") and found.count(".") == 3


def test_an_enrollment_token_for_the_founders_is_made_before_the_chain(tmp_path: Path) -> None:
    """``admin enroll --slot-duration``: offline (the client's node is never asked),
    valid for its duration in slots counted from genesis."""
    from edgechain.chain.enrollment import decode_enrollment_token

    def cli(*argv: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "edgechain.cli", "--json", *argv],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert isinstance(answer, dict)
        return answer

    cli("admin", "keygen", "admin.key")
    (tmp_path / "client.toml").write_text(
        'nodes = ["http://127.0.0.1:9"]\nadmin_key = "admin.key"\n'
    )
    made = cli("--client", "client.toml", "admin", "enroll", "--valid-for", "1h",
               "--slot-duration", "2", "--chain-id", "fleet")  # fmt: skip
    token = decode_enrollment_token(bytes.fromhex(str(made["token"])))
    assert (made["chain_id"], token.expires_slot) == ("fleet", 1800)
    # Without it, the node is asked (and here none answers): a clear error.
    done = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "--client", "client.toml", "admin", "enroll"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0 and "no node answered" in done.stderr


def test_the_genesis_sets_how_often_nodes_report_by_its_down_after_and_epoch() -> None:
    """``--down-after-slots`` and ``--epoch-length`` reach the genesis template; the
    report interval follows from them (``ChainParams.report_interval_slots``)."""
    config = make_node_config(_genesis_options())
    assert (config.epoch_length, config.down_after_slots) == (8, 12)
    config = make_node_config(_genesis_options("--epoch-length", "40", "--down-after-slots", "60"))
    assert (config.epoch_length, config.down_after_slots) == (40, 60)
    params = ChainParams("c", 0, 2_000, 4)
    assert params.report_interval_slots == 4  # the defaults: 12 // 3 and 8 // 2
    assert replace(params, epoch_length=40, down_after_slots=60).report_interval_slots == 20
    # The shorter of the two rules: two lost reports of slack, two votes an epoch.
    assert replace(params, epoch_length=40, down_after_slots=12).report_interval_slots == 4
    assert replace(params, epoch_length=6, down_after_slots=60).report_interval_slots == 3
    assert replace(params, epoch_length=1, down_after_slots=1).report_interval_slots == 1


@pytest.mark.parametrize("value", [0, -3, True, "8", 2.5])
def test_a_genesis_slot_count_is_a_whole_number_of_at_least_one(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--epoch-length .*whole number of slots"):
        get_positive_slots({"epoch_length": value}, "epoch_length")
    with pytest.raises(NodeOptionError, match=r"--down-after-slots"):
        check_node_options({**_genesis_options(), "down_after_slots": value})


def test_the_vdf_fraction_reaches_the_genesis_in_basis_points() -> None:
    assert make_node_config(_genesis_options()).vdf_target_bp == 2_500
    assert make_node_config(_genesis_options("--vdf-fraction", "0.05")).vdf_target_bp == 500


@pytest.mark.parametrize("value", [0, -0.1, 1.5, "0.1", True, float("nan")])
def test_a_vdf_fraction_is_a_share_of_a_slot_above_0_at_most_1(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--vdf-fraction .*above 0, at most 1"):
        check_node_options({**_genesis_options(), "vdf_fraction": value})


def test_the_genesis_delay_reaches_the_engine_in_milliseconds() -> None:
    assert make_node_config(_genesis_options()).genesis_delay_ms == 3_000
    assert make_node_config(_genesis_options("--genesis-delay", "1.25")).genesis_delay_ms == 1_250


@pytest.mark.parametrize("value", [-1, 61, "soon", True, float("nan")])
def test_a_genesis_delay_is_seconds_from_0_to_60(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--genesis-delay .*seconds from 0 to 60"):
        get_genesis_delay_ms({"genesis_delay": value})
    with pytest.raises(NodeOptionError, match=r"--genesis-delay"):
        check_node_options({**_genesis_options(), "genesis_delay": value})


@pytest.mark.parametrize("value", [0, -1, "soon", True, float("inf")])
def test_a_leave_timeout_is_seconds_above_0(value: object) -> None:
    with pytest.raises(NodeOptionError, match=r"--leave-timeout .*seconds above 0"):
        check_node_options({**_genesis_options(), "leave_timeout": value})
    assert get_leave_timeout({"leave_timeout": "2.5"}) == 2.5


def _hold_port() -> socket.socket:
    """A TCP port of this host held by the test (listening), as another process would."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held


@pytest.mark.parametrize(
    ("flag", "what"), [("--http", "the HTTP API (--http)"), ("--listen", "the peers (--listen)")]
)
def test_a_taken_port_stops_the_node_with_a_message(run_dir: Path, flag: str, what: str) -> None:
    """A port another process holds: one line that says which and what for, exit 1, no
    traceback (it was a traceback)."""
    with _hold_port() as held:
        port = held.getsockname()[1]
        argv = _get_node_argv(run_dir, flag, f"127.0.0.1:{port}")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port} for {what}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_transfer_port_stops_the_node_and_says_how_to_take_another(
    run_dir: Path,
) -> None:
    """The transfer port is remembered (peers know it from the chain). Taken when the
    node starts again, the node stops and names the file that remembers it; without
    that file it takes a new one."""
    with _running_node(run_dir) as (data_dir, _):
        port_file = data_dir / "apps" / "transfer.port"
        port = int(port_file.read_text())
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        done = subprocess.run(
            _get_node_argv(run_dir), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 1, done.stderr
        assert f"cannot listen on 127.0.0.1:{port} for state transfers" in done.stderr
        assert f"delete {port_file} and the node takes a new one" in done.stderr
        assert "Traceback" not in done.stderr
        port_file.unlink()
        (run_dir / "ready.json").unlink()
        with _running_node(run_dir):
            assert int(port_file.read_text()) != port
