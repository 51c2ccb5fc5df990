"""What a client command runs with: its config, the fleet, its keys, its options."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgechain.cli.client import (
    ClientConfig,
    Fleet,
    find_client_config,
    load_client_config,
    load_key,
)
from edgechain.cli.common import EXIT_USAGE, CliError, print_json
from edgechain.types import SecretKey

if TYPE_CHECKING:  # the signing side (chain.model, BLS): imported by the commands that sign
    from edgechain.chain.model import AppSpec, CommandKind
    from edgechain.cli.commands import CommandResult


@dataclass
class Context:
    config: ClientConfig
    fleet: Fleet
    json: bool
    timeout: float
    wait: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        path = find_client_config(args.client, os.environ, Path.cwd())
        config = load_client_config(path)
        if args.http_timeout <= 0:
            raise CliError("--http-timeout must be above 0", EXIT_USAGE)
        fleet = Fleet(config.nodes, args.http_timeout)
        return cls(config, fleet, args.json, args.timeout, not args.no_wait)

    def operator_key(self) -> SecretKey:
        return load_key(self.config.key, "key", self.config)

    def admin_key(self) -> SecretKey:
        return load_key(self.config.admin_key, "admin_key", self.config)

    def send(
        self,
        sk: SecretKey,
        kind: CommandKind,
        *,
        app: bytes = b"",
        node: bytes = b"",
        key: bytes = b"",
        spec: AppSpec | None = None,
    ) -> CommandResult:
        from edgechain.cli.commands import send_command

        return send_command(
            self.fleet,
            sk,
            kind,
            app=app,
            node=node,
            key=key,
            spec=spec,
            wait=self.wait,
            timeout=self.timeout,
        )

    def emit(self, value: Any, text: str) -> None:
        """``value`` as JSON with ``--json``, else ``text``."""
        if self.json:
            print_json(value)
        else:
            print(text)


def parse_hex(text: str, size: int, what: str) -> bytes:
    """``size`` bytes from hex (``0x`` allowed); CliError naming ``what`` otherwise."""
    value = text.removeprefix("0x")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise CliError(f"{what}: {text!r} is not hexadecimal", EXIT_USAGE) from None
    if len(data) != size:
        raise CliError(f"{what}: expected {size} bytes ({2 * size} hex digits)", EXIT_USAGE)
    return data
