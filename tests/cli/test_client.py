"""The fleet client against a fake node: config, failover, signing, waiting, output,
errors and exit statuses, all through ``edgechain.cli.main`` as a user would call it."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.chain.command_encoding import compute_submitted_app_id
from edgechain.chain.model import CommandKind, RuntimeKind
from edgechain.cli import main
from edgechain.cli.apps import merge_migrations
from edgechain.cli.client import (
    ClientConfig,
    Fleet,
    load_client_config,
    parse_client_config,
    parse_node_url,
    write_client_config,
)
from edgechain.cli.commands import choose_seq
from edgechain.cli.common import CliError, format_table
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore, load_keystore

from .fake_node import CHAIN_ID, FakeState, make_app_view, serve

SPEC_YAML = """\
name: web
runtime: process
command: ["/bin/sh", "-c", "sleep 1000"]
cpu_bp: 100
ram_bp: 50
stateful: true
policy:
  min_interval_slots: 3
"""


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def url(state: FakeState) -> Iterator[str]:
    with serve(state) as address:
        yield address


@pytest.fixture
def client(tmp_path: Path, url: str) -> Path:
    create_keystore(tmp_path / "operator.key")
    create_keystore(tmp_path / "admin.key")
    path = tmp_path / "client.toml"
    # A dead node first: the client must move on to the one that answers.
    write_client_config(path, [_closed_port_url(), url], "operator.key", "admin.key")
    return path


def _run(capsys: pytest.CaptureFixture[str], client: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--client", str(client), "--timeout", "5", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _operator_pk(tmp_path: Path) -> bytes:
    return bytes(bls.sk_to_pk(load_keystore(tmp_path / "operator.key")))


# --- config ---------------------------------------------------------------------------


def test_client_config_resolves_key_paths_and_rejects_bad_members(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    write_client_config(path, ["http://127.0.0.1:1", "127.0.0.1:2"], "k/op.key")
    config = load_client_config(path)
    assert config == ClientConfig(
        ("http://127.0.0.1:1", "127.0.0.1:2"), tmp_path / "k/op.key", None, path
    )
    with pytest.raises(CliError, match="unknown member"):
        parse_client_config({"nodes": ["http://a:1"], "keys": "x"}, tmp_path, "c")
    with pytest.raises(CliError, match="non-empty list"):
        parse_client_config({"nodes": []}, tmp_path, "c")
    with pytest.raises(CliError, match="not http://HOST:PORT"):
        parse_client_config({"nodes": ["https://a:1"]}, tmp_path, "c")
    assert parse_node_url("http://[::1]:80").host == "::1"


def test_seq_is_time_like_and_above_the_last() -> None:
    assert choose_seq(5, 1_700_000_000_000) == 1_700_000_000_000
    assert choose_seq(1_800_000_000_000, 1_700_000_000_000) == 1_800_000_000_001


def test_table_and_migration_merge() -> None:
    assert format_table(("A", "BB"), [(1, None), ("xyz", 2)]).splitlines() == [
        "A    BB",
        "1    -",
        "xyz  2",
    ]
    app = "ab" * 32
    entry = {"app": app[:16], "slot": 9, "outcome": "completed", "attempt": 0}
    other = {"app": "cd" * 8, "slot": 3, "outcome": "completed", "attempt": 0}
    merged, missing = merge_migrations(
        app, [entry], {"http://a:1": [entry, other], "http://b:2": CliError("down")}
    )
    assert merged == [entry]
    assert missing == ["http://b:2"]


# --- commands -------------------------------------------------------------------------


def test_submit_signs_posts_waits_and_prints_the_app(
    tmp_path: Path, client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC_YAML)
    code, out, err = _run(capsys, client, "apps", "submit", str(spec))
    assert code == 0, err
    [command] = state.commands
    assert command.kind is CommandKind.SUBMIT
    assert bytes(command.signer) == _operator_pk(tmp_path)
    assert command.spec is not None and command.spec.runtime is RuntimeKind.PROCESS
    assert command.spec.command == ("/bin/sh", "-c", "sleep 1000")
    assert command.spec.policy.min_interval_slots == 3
    app_id = compute_submitted_app_id(command.signer, command.seq).hex()
    assert "submit: applied" in out
    assert app_id in out and "queued" in out
    assert "'web' is stateful without replicas" in err  # a note; the submission went on

    spec.write_text(SPEC_YAML + "replica_interval_slots: 3\n")
    code, _, err = _run(capsys, client, "apps", "update", "web", str(spec))
    assert code == 0 and "without replicas" not in err, err


def _write_specs(directory: Path, names: tuple[str, ...]) -> list[str]:
    """SPEC_YAML under each name, one file each; their paths."""
    paths = []
    for name in names:
        path = directory / f"{name}.yaml"
        path.write_text(SPEC_YAML.replace("name: web", f"name: {name}"))
        paths.append(str(path))
    return paths


def test_submit_of_several_specs_signs_consecutive_seqs_in_one_call(
    tmp_path: Path, client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _write_specs(tmp_path, ("web", "db", "cache"))
    code, out, err = _run(capsys, client, "--json", "apps", "submit", *paths)
    assert code == 0, err
    assert [c.spec.name for c in state.commands if c.spec] == ["web", "db", "cache"]
    seqs = [c.seq for c in state.commands]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    results = json.loads(out)
    assert [r["name"] for r in results] == ["web", "db", "cache"]
    assert all(r["applied"] and r["kind"] == "submit" for r in results)
    assert [r["app_id"] for r in results] == [
        compute_submitted_app_id(c.signer, c.seq).hex() for c in state.commands
    ]
    assert set(state.apps) == {r["app_id"] for r in results}


def test_submit_of_several_specs_reports_what_did_not_land(
    tmp_path: Path, client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _write_specs(tmp_path, ("a", "b", "c"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "runtime": "process", "colour": "red"}))
    # A bad file anywhere: nothing is sent.
    code, _, err = _run(capsys, client, "apps", "submit", *paths, str(bad))
    assert code == 2 and "colour" in err and state.commands == []

    # A node refusing the second: the first stands and is named.
    state.refuse, state.refuse_after = (409, {"error": "command_pool_full"}), 1
    code, _, err = _run(capsys, client, "apps", "submit", *paths)
    assert code == 1 and "'b' was refused after 1 of 3" in err and "command_pool_full" in err
    assert len(state.commands) == 1
    first_app = compute_submitted_app_id(state.commands[0].signer, state.commands[0].seq).hex()
    assert first_app in err

    # The middle one never applied while the last did: passed over, and said so.
    state.refuse = state.refuse_after = None
    state.skip_names = {"b"}
    code, out, err = _run(capsys, client, "apps", "submit", *paths)
    assert code == 1 and "the chain did not apply the submission of b" in err
    assert "submit a (app" in out and "2 of 3 apps submitted" in out
    assert "submit b (app" in out and "it applied a later command of this key" in out

    # Another operator's app took the name first: the node dropped it, and says why.
    state.skip_names = set()
    state.drop_names = {"c": "command_invalid: SUBMIT: an app named 'c' exists"}
    code, out, err = _run(capsys, client, "apps", "submit", *paths)
    assert code == 1 and "the chain did not apply the submission of c" in err
    assert "2 of 3 apps submitted" in out and "an app named 'c' exists" in out
    code, _, err = _run(capsys, client, "apps", "submit", paths[2])
    assert code == 1 and "the chain did not apply command seq" in err
    assert "an app named 'c' exists" in err

    # `edgechain command HASH` says where one stands.
    code, out, err = _run(capsys, client, "command", state.dropped_hashes()[0])
    assert code == 0, err
    assert "dropped" in out and "an app named 'c' exists" in out
    code, out, _ = _run(capsys, client, "command", state.dropped_hashes()[0], "--json")
    assert json.loads(out)["status"] == "dropped"
    code, _, err = _run(capsys, client, "command", "ab" * 32)
    assert code == 1 and "no node knows command" in err
    code, _, err = _run(capsys, client, "command", "xyz")
    assert code == 2 and "not hexadecimal" in err

    # A node of an older version, without GET /commands/{hash}: the signer's seq decides.
    state.drop_names, state.status_route = {}, False
    code, out, _ = _run(capsys, client, "apps", "submit", paths[2])
    assert code == 0 and "applied" in out


def test_http_timeout_is_how_long_one_node_may_take(
    client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    state.delay_s = 0.5
    code, _, err = _run(capsys, client, "--http-timeout", "0.1", "apps", "list")
    assert code == 2 and "no node answered" in err and "timed out" in err
    code, out, err = _run(capsys, client, "--http-timeout", "3", "apps", "list")
    assert code == 0 and "0 apps" in out, err
    code, _, err = _run(capsys, client, "--http-timeout", "0", "apps", "list")
    assert code == 2 and "--http-timeout" in err


def test_json_output_and_app_by_name(
    client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    app_id = "12" * 32
    state.apps[app_id] = make_app_view(app_id, "web", "running", "ef" * 32)
    code, out, _ = _run(capsys, client, "apps", "list", "--json")
    assert code == 0
    assert json.loads(out)[0]["app_id"] == app_id
    code, out, _ = _run(capsys, client, "apps", "list")
    assert "web" in out and "efefefefefef" in out and "1 apps" in out

    code, out, err = _run(capsys, client, "apps", "stop", "web", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["applied"] and result["kind"] == "stop"
    assert result["app"]["state"] == "stopped"
    assert state.commands[-1].app.hex() == app_id

    # Applied, then removed by another operator before the client reads it back.
    state.removed_after_apply = {app_id}
    code, out, err = _run(capsys, client, "apps", "start", app_id)
    assert code == 0, err
    assert "start: applied" in out and "the app has been removed since" in out


def test_move_resolves_the_node_prefix(
    client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    app_id = "34" * 32
    state.apps[app_id] = make_app_view(app_id, "db", "running", "aa" * 32)
    state.nodes = [
        {"node_id": "aa" * 32, "address": "127.0.0.1:1"},
        {"node_id": "ab" + "00" * 31, "address": "127.0.0.1:2"},
        {"node_id": "ab" + "11" * 31, "address": "127.0.0.1:3"},
    ]
    code, _, err = _run(capsys, client, "apps", "move", "db", "ab")
    assert code == 2 and "ambiguous" in err
    code, _, err = _run(capsys, client, "apps", "move", "db", "ab11")
    assert code == 0, err
    assert state.commands[-1].kind is CommandKind.MOVE
    assert state.commands[-1].node.hex() == "ab" + "11" * 31
    code, _, err = _run(capsys, client, "apps", "move", "db", "ff")
    assert code == 1 and "no validator" in err


def test_exclude_resolves_a_validator_then_a_silent_voter(
    client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead device skip blocks took out of ``/nodes`` still holds finality back as a
    voter (``/status``'s ``silent_voters``): ``admin exclude`` finds it there too."""
    state.nodes = [{"node_id": "aa" * 32, "address": "127.0.0.1:1"}]
    state.finality = {"silent_voters": ["cd" + "00" * 31, "cd" + "11" * 31]}
    code, _, err = _run(capsys, client, "admin", "exclude", "aa")
    assert code == 0, err
    assert state.commands[-1].node.hex() == "aa" * 32
    code, _, err = _run(capsys, client, "admin", "exclude", "cd")
    assert code == 2 and "ambiguous among the silent voters" in err
    code, _, err = _run(capsys, client, "admin", "exclude", "cd11")
    assert code == 0, err
    assert state.commands[-1].kind is CommandKind.EXCLUDE_NODE
    assert state.commands[-1].node.hex() == "cd" + "11" * 31
    code, _, err = _run(capsys, client, "admin", "exclude", "ef")
    assert code == 1 and "no validator's nor silent voter's node id" in err


def test_history_merges_migration_timings(
    client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    app_id = "56" * 32
    state.apps[app_id] = make_app_view(app_id, "db", "running", "aa" * 32)
    state.migrations = [
        {"app": app_id[:16], "slot": 12, "to": "bb" * 16, "outcome": "completed", "save_ms": 4.5},
        {"app": "99" * 8, "slot": 13, "outcome": "completed"},
    ]
    code, out, err = _run(capsys, client, "apps", "history", "db", "--json")
    assert code == 0, err
    history = json.loads(out)
    assert [e["kind"] for e in history["events"]] == ["submitted", "placed"]
    assert [m["slot"] for m in history["migrations"]] == [12]
    # The dead node of the config could not tell.
    assert len(history["nodes_not_answering"]) == 1
    code, out, _ = _run(capsys, client, "apps", "history", app_id[:8])
    assert "placed" in out and "4.5 ms" in out


def test_api_errors_exit_1_and_local_errors_exit_2(
    tmp_path: Path, client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, client, "apps", "show", "nothing")
    assert (code, err) == (1, "error: no app 'nothing' (field app)\n")

    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "x", "runtime": "process", "colour": "red"}))
    code, _, err = _run(capsys, client, "apps", "submit", str(spec))
    assert code == 2 and "colour" in err
    assert state.commands == []

    spec.write_text("{")
    code, _, err = _run(capsys, client, "apps", "submit", str(spec))
    assert code == 2 and "not valid JSON" in err

    (tmp_path / "ok.yaml").write_text(SPEC_YAML)
    state.refuse = (403, {"error": "command_unknown_signer"})
    code, _, err = _run(capsys, client, "apps", "submit", str(tmp_path / "ok.yaml"))
    assert code == 1 and err.endswith("\nerror: command_unknown_signer\n"), err

    state.refuse = None
    state.apply_after_polls = -1
    code, _, err = _run(
        capsys, client, "--timeout", "0.5", "apps", "submit", str(tmp_path / "ok.yaml")
    )
    assert code == 1 and "not in a block after 0.5 s" in err

    code, out, err = _run(capsys, client, "--no-wait", "apps", "submit", str(tmp_path / "ok.yaml"))
    assert code == 0 and "not waiting" in out

    dead = tmp_path / "dead.toml"
    write_client_config(dead, [_closed_port_url()], "operator.key")
    code, _, err = _run(capsys, dead, "apps", "list")
    assert code == 2 and "no node answered" in err

    assert main(["apps", "list", "--client", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read client config" in capsys.readouterr().err


def test_admin_keygen_ticket_grant(
    tmp_path: Path, client: Path, state: FakeState, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, client, "admin", "keygen", str(tmp_path / "new.key"), "--json")
    assert code == 0
    new_pk = json.loads(out)["public_key"]
    assert bytes(bls.sk_to_pk(load_keystore(tmp_path / "new.key"))).hex() == new_pk
    code, _, err = _run(capsys, client, "admin", "keygen", str(tmp_path / "new.key"))
    assert code == 2 and "already exists" in err

    code, out, _ = _run(capsys, client, "admin", "ticket", new_pk)
    assert code == 0
    from edgechain.chain.assembly import make_ticket
    from edgechain.types import PublicKey

    admin_sk = load_keystore(tmp_path / "admin.key")
    assert out.strip() == make_ticket(admin_sk, CHAIN_ID, PublicKey(bytes.fromhex(new_pk))).hex()

    # A keystore file stands for its public key.
    code, out, err = _run(capsys, client, "admin", "grant", str(tmp_path / "new.key"))
    assert code == 0, err
    command = state.commands[-1]
    assert command.kind is CommandKind.GRANT_OPERATOR
    assert command.key.hex() == new_pk
    assert bytes(command.signer) == bytes(bls.sk_to_pk(admin_sk))
    code, _, err = _run(capsys, client, "admin", "revoke", "00ff")
    assert code == 2 and "96 hex digits" in err


def test_a_node_that_did_not_answer_is_not_waited_for_again_in_one_command(url: str) -> None:
    """With a silent node first, ``apps list`` waited for it twice (its list, then every
    node's runtime view): one timeout per command is enough."""
    accepted: list[socket.socket] = []
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(0.05)
    stop = threading.Event()

    def hold() -> None:  # accepts, counts, never answers
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(silent.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        fleet = Fleet([f"http://127.0.0.1:{silent.getsockname()[1]}", url], timeout=0.5)
        assert fleet.get("/apps") == []
        answers = fleet.get_each("/apps")
        assert isinstance(answers[str(fleet.urls[0])], CliError)
        assert not isinstance(answers[str(fleet.urls[1])], CliError)
        assert len(accepted) == 1
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        silent.close()
