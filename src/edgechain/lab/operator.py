"""The testnet's operator key: granted on chain once the network is up, then the
client config that uses it is written (``RUN/client.toml``).

The grant goes through the same code as ``edgechain admin grant`` (a GRANT_OPERATOR
command signed with the run's admin key, posted to a node, applied by a block). It runs
on the launcher's thread pool, so the launcher keeps watching the network meanwhile.
``client.toml`` appears only once the grant is settled: a script that waits for the
file can use the key straight away (``granted`` in the summary says if it worked). A run
whose last slot passes while the grant is in flight waits for it (:meth:`OperatorSetup.
settle`), so even a run of a few slots leaves its config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from pathlib import Path
from typing import Any

from edgechain.cli.admin import grant_operator
from edgechain.cli.client import Fleet, write_client_config
from edgechain.cli.commands import CommandResult
from edgechain.cli.common import CliError
from edgechain.crypto import bls
from edgechain.crypto.keystore import create_keystore
from edgechain.types import SecretKey

CLIENT_FILE = "client.toml"
OPERATOR_KEY_FILE = "operator.key"
ADMIN_KEY_FILE = "admin.key"
GRANT_SETTLE_MARGIN_S = 5.0
"""Beyond the grant's own timeout: its last HTTP request may still be under way."""


def get_grant_timeout(slot_duration: float) -> float:
    """A command reaches a block within a few slots; leave room for a few skips."""
    return max(30.0, 15 * slot_duration)


class OperatorSetup:
    """Create the operator key now; grant it and write ``client.toml`` later."""

    def __init__(
        self,
        run_dir: Path,
        admin_sk: SecretKey,
        slot_duration: float,
        log: Callable[[str], None],
    ) -> None:
        self.run_dir = run_dir
        self.admin_sk = admin_sk
        self.timeout = get_grant_timeout(slot_duration)
        self.log = log
        self.operator_pk = bls.sk_to_pk(create_keystore(run_dir / OPERATOR_KEY_FILE))
        self.urls: list[str] = []
        self.future: Future[CommandResult] | None = None
        self.granted = False
        self.error: str | None = None
        self.written = False

    @property
    def client_path(self) -> Path:
        return self.run_dir / CLIENT_FILE

    def poll(self, pool: Executor, urls: Sequence[str] | None) -> None:
        """Start the grant once ``urls`` (every node's API, after genesis) is known;
        write the config once it is settled."""
        if self.written:
            return
        if self.future is None:
            if urls:
                self.urls = list(urls)
                self.log(f"granting the operator key {bytes(self.operator_pk).hex()[:16]}...")
                fleet = Fleet(self.urls)
                self.future = pool.submit(
                    grant_operator,
                    fleet,
                    self.admin_sk,
                    bytes(self.operator_pk),
                    timeout=self.timeout,
                )
            return
        if not self.future.done():
            return
        try:
            result = self.future.result()
        except CliError as exc:
            self.error = str(exc)
            self.log(f"operator key NOT granted: {exc}")
        else:
            self.granted = True
            self.log(f"operator key granted (seq {result.seq})")
        write_client_config(self.client_path, self.urls, OPERATOR_KEY_FILE, ADMIN_KEY_FILE)
        self.written = True
        self.log(f"client config: {self.client_path}")
        if self.urls:
            self.log(f"dashboard: {self.urls[0]}/")

    def is_in_flight(self) -> bool:
        """Whether the grant was sent and its config is not written yet."""
        return self.future is not None and not self.written

    def settle(self, pool: Executor) -> None:
        """Wait for the grant in flight to settle (it gives up after its own timeout),
        then write the config as :meth:`poll` does."""
        if self.future is None:
            return
        wait([self.future], timeout=self.timeout + GRANT_SETTLE_MARGIN_S)
        self.poll(pool, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.client_path) if self.written else None,
            "operator_key": bytes(self.operator_pk).hex(),
            "granted": self.granted,
            "error": self.error,
        }
