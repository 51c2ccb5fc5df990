"""Signed commands from the client: build, sign, post, and wait until applied.

``seq = max(last_seq + 1, now_ms)`` with ``last_seq`` from ``GET /operators/{pk}``:
strictly above every seq the chain applied for this key (replay protection), and
time-like, so two clients sharing a key rarely pick the same one. The command is posted
hex-encoded to ``POST /commands``; it is applied once ``GET /commands/{hash}`` finds it
in a block of the node's head chain. The signer's ``last_seq`` reaching the seq does
not say so: a producer passes over a command that no longer applies (another operator's
command came first) and takes the signer's next one. A command the node dropped (it did
not apply to several heads in a row, ``consensus/command_pool.py``) or passed over ends
the wait with the reason, instead of a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgechain.chain.assembly import make_command
from edgechain.chain.command_encoding import encode_command
from edgechain.chain.model import AppSpec, CommandKind, SignedCommand
from edgechain.cli.client import ApiError, Fleet
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
    refusal: str | None = None
    """Why the chain did not apply it (a batch's command; a single one raises)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "signer": self.signer,
            "seq": self.seq,
            "command_hash": self.command_hash,
            "app_id": self.app_id,
            "applied": self.applied,
        }
        if self.refusal is not None:
            out["refusal"] = self.refusal
        return out

    def describe(self, what: str) -> str:
        """``WHAT: applied (seq N, command HASH)``, for the client's text output."""
        if self.refusal is not None:
            done = f"not applied: {self.refusal}"
        elif self.applied:
            done = "applied"
        else:
            done = "accepted by a node (not waiting for a block)"
        return f"{what}: {done} (seq {self.seq}, command {short(self.command_hash)})"


class NotAppliedError(CliError):
    """The chain will not apply the command: the node dropped it, or passed over it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_FAILED)


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
    return wait_applied(fleet, result, time.monotonic() + timeout, timeout)


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
    with ``wait``, return once each is applied or refused (``refusal``).

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
    if not wait:
        return results
    deadline = time.monotonic() + timeout
    waited: list[CommandResult] = []
    for result in results:
        try:
            waited.append(wait_applied(fleet, result, deadline, timeout))
        except NotAppliedError as exc:
            waited.append(replace(result, refusal=str(exc)))
    return waited


def wait_applied(
    fleet: Fleet, result: CommandResult, deadline: float, timeout: float
) -> CommandResult:
    """Poll ``GET /commands/{hash}`` until a block carries the command (``applied``).
    NotAppliedError when the node dropped it or the chain applied a later command of
    its signer without it; CliError at ``deadline`` (monotonic; ``timeout`` s after the
    wait began), with why the node's last head refused it, if it did."""
    refusal: str | None = None
    while True:
        status = get_command_status(fleet, result.command_hash)
        state = status.get("status") if status is not None else None
        if state == "applied":
            return replace(result, applied=True)
        if state == "dropped":
            assert status is not None
            raise NotAppliedError(
                f"the chain did not apply command seq {result.seq}: {status_reason(status)}"
            )
        if state == "pending":
            assert status is not None
            refusal = status_reason(status) if status.get("reason") else None
        elif state is None and (last_seq := get_last_seq(fleet, result.signer)) >= result.seq:
            if status is NO_STATUS_ROUTE:
                return replace(result, applied=True)  # an older node: the seq rule alone
            # Asked again after the seq: a block that came in between carries it.
            if get_command_status(fleet, result.command_hash) is None:
                raise NotAppliedError(
                    f"the chain passed over command seq {result.seq}: it applied a later "
                    f"command of this key (seq {last_seq}) without it"
                )
        if time.monotonic() >= deadline:
            why = f"; the node's head refuses it: {refusal}" if refusal else ""
            raise CliError(
                f"command seq {result.seq} was accepted by a node but is not in a block "
                f"after {timeout:g} s (it may still be applied){why}",
                EXIT_FAILED,
            )
        time.sleep(POLL_INTERVAL_S)


NO_STATUS_ROUTE: dict[str, Any] = {}
"""``get_command_status``'s answer from a node without ``GET /commands/{hash}``."""


def get_command_status(fleet: Fleet, command_hash: str) -> dict[str, Any] | None:
    """``GET /commands/{hash}``; None when the node does not know the command (404),
    ``NO_STATUS_ROUTE`` when the node has no such route (an older version)."""
    try:
        reply = fleet.get(f"/commands/{command_hash}")
    except ApiError as exc:
        if exc.status == 404:
            return NO_STATUS_ROUTE if exc.field == "path" else None
        raise
    if not isinstance(reply, dict):
        raise CliError(f"the node's /commands/{command_hash[:12]}... is not a JSON object")
    return reply


def status_reason(status: dict[str, Any]) -> str:
    reason = status.get("reason")
    return reason if isinstance(reason, str) else "no reason given"
