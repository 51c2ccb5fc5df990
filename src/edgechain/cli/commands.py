"""Signed commands from the client: build, sign, post, and wait until applied.

``seq = max(last_seq + 1, now_ms)`` with ``last_seq`` from ``GET /operators/{pk}``:
strictly above every seq the chain applied for this key (replay protection), and
time-like, so two clients sharing a key rarely pick the same one. The command is posted
hex-encoded to ``POST /commands``; it is applied once ``GET /operators/{pk}`` shows
``last_seq >= seq`` (the command is in a block of the node's head chain).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import encode_command
from edgechain.chain.model import AppSpec, CommandKind, SignedCommand
from edgechain.cli.client import Fleet
from edgechain.cli.common import EXIT_FAILED, CliError, short
from edgechain.crypto import bls
from edgechain.types import SecretKey

POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class CommandResult:
    kind: str
    signer: str
    seq: int
    command_hash: str
    app_id: str | None
    applied: bool
    """False with ``--no-wait``: accepted by a node, not yet seen in a block."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "signer": self.signer,
            "seq": self.seq,
            "command_hash": self.command_hash,
            "app_id": self.app_id,
            "applied": self.applied,
        }

    def describe(self, what: str) -> str:
        """``WHAT: applied (seq N, command HASH)``, for the client's text output."""
        done = "applied" if self.applied else "accepted by a node (not waiting for a block)"
        return f"{what}: {done} (seq {self.seq}, command {short(self.command_hash)})"


def get_chain_id(fleet: Fleet) -> str:
    status = fleet.get("/status")
    chain_id = status.get("chain_id") if isinstance(status, dict) else None
    if not isinstance(chain_id, str):
        raise CliError("the node's /status has no chain_id")
    return chain_id


def get_last_seq(fleet: Fleet, public_key_hex: str) -> int:
    operator = fleet.get(f"/operators/{public_key_hex}")
    last_seq = operator.get("last_seq") if isinstance(operator, dict) else None
    if not isinstance(last_seq, int) or isinstance(last_seq, bool):
        raise CliError(f"the node's /operators/{public_key_hex[:12]}... has no last_seq")
    return last_seq


def choose_seq(last_seq: int, now_ms: int) -> int:
    return max(last_seq + 1, now_ms)


def send_command(
    fleet: Fleet,
    sk: SecretKey,
    kind: CommandKind,
    *,
    app: bytes = b"",
    node: bytes = b"",
    key: bytes = b"",
    spec: AppSpec | None = None,
    wait: bool = True,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> CommandResult:
    """Sign and post one command; with ``wait``, return once it is applied on chain."""
    signer = bytes(bls.sk_to_pk(sk)).hex()
    chain_id = get_chain_id(fleet)
    seq = choose_seq(get_last_seq(fleet, signer), int(clock() * 1000))
    command = make_command(sk, chain_id, seq, kind, app=app, node=node, key=key, spec=spec)
    result = post_command(fleet, command, signer)
    if not wait:
        return result
    wait_applied(fleet, signer, seq, timeout)
    return replace(result, applied=True)


def post_command(fleet: Fleet, command: SignedCommand, signer_hex: str) -> CommandResult:
    """``POST /commands``; the result as accepted by a node (not yet applied)."""
    reply = fleet.post("/commands", {"command": encode_command(command).hex()})
    if not isinstance(reply, dict):
        raise CliError("POST /commands did not answer with a JSON object")
    app_id = reply.get("app_id")
    app = bytes(command.app)
    return CommandResult(
        kind=command.kind.name.lower(),
        signer=signer_hex,
        seq=command.seq,
        command_hash=str(reply.get("command_hash", "")),
        app_id=app_id if isinstance(app_id, str) else (app.hex() if app else None),
        applied=False,
    )


def send_submits(
    fleet: Fleet,
    sk: SecretKey,
    specs: Sequence[AppSpec],
    *,
    wait: bool = True,
    timeout: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> list[CommandResult]:
    """Sign and post one SUBMIT per spec, with consecutive sequence numbers, in order;
    with ``wait``, return once the last is applied.

    One call for many apps because the chain applies a signer's commands in seq order
    and refuses any seq at or below the last applied (replay protection): separate
    concurrent calls pick time-like seqs that overtake each other, so the later-landing
    lower ones are spent and must be signed again. Consecutive seqs posted in order
    are kept by a node (an earlier one of the signer is pending) and included by the
    producer in (signer, seq) order (``consensus/command_pool.py``), many per block.
    A node refusing one stops the batch: the ones posted before it stand (CliError
    names them)."""
    signer = bytes(bls.sk_to_pk(sk)).hex()
    chain_id = get_chain_id(fleet)
    first = choose_seq(get_last_seq(fleet, signer), int(clock() * 1000))
    results: list[CommandResult] = []
    for offset, spec in enumerate(specs):
        seq = first + offset
        command = make_command(sk, chain_id, seq, CommandKind.SUBMIT, spec=spec)
        try:
            results.append(post_command(fleet, command, signer))
        except CliError as exc:
            if not results:
                raise
            posted = ", ".join(r.app_id or "?" for r in results)
            raise CliError(
                f"{spec.name!r} was refused after {len(results)} of {len(specs)} submissions "
                f"were accepted (app ids {posted}): {exc}",
                exc.exit_code,
            ) from None
    if not wait or not results:
        return results
    wait_applied(fleet, signer, results[-1].seq, timeout)
    return [replace(r, applied=True) for r in results]


def wait_applied(fleet: Fleet, signer_hex: str, seq: int, timeout: float) -> None:
    """Poll until the signer's ``last_seq`` reaches ``seq``; CliError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if get_last_seq(fleet, signer_hex) >= seq:
            return
        if time.monotonic() >= deadline:
            raise CliError(
                f"command seq {seq} was accepted by a node but is not in a block after "
                f"{timeout:g} s (it may still be applied, or a block producer refused it)",
                EXIT_FAILED,
            )
        time.sleep(POLL_INTERVAL_S)
