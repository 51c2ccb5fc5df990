"""The testnet's operator key: granted through the client code path (against a fake
node), then the client config written."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgechain.chain.model import CommandKind
from edgechain.cli.client import load_client_config
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.lab.operator import OperatorSetup

from .fake_node import FakeState, serve


def test_operator_key_is_granted_then_the_client_config_written(tmp_path: Path) -> None:
    admin_sk = create_keystore(tmp_path / "admin.key")
    state = FakeState()
    logged: list[str] = []
    setup = OperatorSetup(tmp_path, admin_sk, 1.0, logged.append)
    with serve(state) as url, ThreadPoolExecutor(1) as pool:
        setup.poll(pool, None)  # no chain yet
        assert setup.future is None
        setup.poll(pool, [url])
        deadline = time.monotonic() + 20
        while not setup.written and time.monotonic() < deadline:
            setup.poll(pool, [url])
            time.sleep(0.05)
    assert setup.written and setup.granted
    [command] = state.commands
    assert command.kind is CommandKind.GRANT_OPERATOR
    assert command.key == bytes(setup.operator_pk)
    assert bytes(command.signer) == bytes(bls.sk_to_pk(admin_sk))
    config = load_client_config(tmp_path / "client.toml")
    assert config.nodes == (url,)
    assert config.key == tmp_path / "operator.key"
    assert config.admin_key == tmp_path / "admin.key"
    assert setup.to_json()["granted"]
    assert any("granted" in line for line in logged)


def test_a_grant_in_flight_at_the_runs_end_is_settled_and_its_config_written(
    tmp_path: Path,
) -> None:
    """A run of a few slots can end while the grant waits for its block: ``settle``
    waits for it, so ``client.toml`` is still written (CI: the ports-taken testnet of 2
    slots, at afff50c, ended before its grant was applied)."""
    admin_sk = create_keystore(tmp_path / "admin.key")
    state = FakeState()
    setup = OperatorSetup(tmp_path, admin_sk, 1.0, lambda line: None)
    with serve(state) as url, ThreadPoolExecutor(1) as pool:
        setup.poll(pool, [url])
        assert setup.is_in_flight()
        setup.settle(pool)
    assert setup.written and setup.granted and not setup.is_in_flight()
    assert load_client_config(tmp_path / "client.toml").nodes == (url,)


def test_settling_without_a_grant_sent_writes_nothing(tmp_path: Path) -> None:
    admin_sk = create_keystore(tmp_path / "admin.key")
    setup = OperatorSetup(tmp_path, admin_sk, 1.0, lambda line: None)
    with ThreadPoolExecutor(1) as pool:
        setup.settle(pool)
    assert not setup.written and not setup.is_in_flight()
    assert not (tmp_path / "client.toml").exists()
