"""A tiny stand-in for a node's HTTP API, for client tests without a network.

It speaks the documented routes with canned data, decodes and verifies the signed
commands it is sent, and applies them (``last_seq``, the app table) after a number of
``GET /operators`` or ``GET /commands/{hash}`` polls, as a block would some time after
the post.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from edgechain.chain.command_encoding import (
    compute_command_hash,
    compute_command_signing_root,
    compute_submitted_app_id,
    decode_command,
)
from edgechain.chain.model import CommandKind, SignedCommand
from edgechain.crypto import bls

CHAIN_ID = "fake-chain"


@dataclass
class FakeState:
    chain_id: str = CHAIN_ID
    last_seq: dict[str, int] = field(default_factory=dict)
    commands: list[SignedCommand] = field(default_factory=list)
    pending: list[tuple[int, SignedCommand]] = field(default_factory=list)
    apply_after_polls: int = 1
    """Polls before a posted command counts as applied (-1: never)."""
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    migrations: list[dict[str, Any]] = field(default_factory=list)
    refuse: tuple[int, dict[str, Any]] | None = None
    """Answer POST /commands with this status and body."""
    delay_s: float = 0.0
    """Answer every request this late (a node on a saturated host)."""
    refuse_after: int | None = None
    """Refuse (as ``refuse``) every POST /commands once this many were accepted."""
    skip_names: set[str] = field(default_factory=set)
    """Submissions of these app names are accepted but never applied (a producer found
    them not to apply; a later seq then spends them)."""
    removed_after_apply: set[str] = field(default_factory=set)
    """Apps another operator removes right after a command of the client applied."""
    status_route: bool = True
    """False: no ``GET /commands/{hash}`` (a node of an older version)."""
    drop_names: dict[str, str] = field(default_factory=dict)
    """Submissions of these app names are dropped unapplied, for the reason given (the
    node's head refused them, ``consensus/command_pool.py``)."""
    finality: dict[str, Any] = field(default_factory=dict)
    """``GET /status``'s ``finality`` (its silent voters, for ``admin exclude``)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    """Reasons of the commands dropped, by hash."""
    applied: set[str] = field(default_factory=set)
    """The hashes of the commands applied (not skipped)."""

    def dropped_hashes(self) -> list[str]:
        return list(self.dropped)

    def poll(self) -> None:
        still = []
        for polls, command in self.pending:
            if polls <= 0:
                self._apply(command)
            else:
                still.append((polls - 1, command))
        self.pending = still

    def _apply(self, command: SignedCommand) -> None:
        if command.spec is not None and command.spec.name in self.drop_names:
            self.dropped[compute_command_hash(command).hex()] = self.drop_names[command.spec.name]
            return
        signer = bytes(command.signer).hex()
        self.last_seq[signer] = max(self.last_seq.get(signer, 0), command.seq)
        if command.spec is not None and command.spec.name in self.skip_names:
            return
        self.applied.add(compute_command_hash(command).hex())
        if command.kind is CommandKind.SUBMIT:
            assert command.spec is not None
            app_id = compute_submitted_app_id(command.signer, command.seq).hex()
            self.apps[app_id] = make_app_view(app_id, command.spec.name, "queued", None)
        elif command.kind is CommandKind.REMOVE:
            self.apps.pop(command.app.hex(), None)
        elif command.app.hex() in self.apps:
            view = self.apps[command.app.hex()]
            if command.kind is CommandKind.STOP:
                view["state"] = "stopped"
            elif command.kind is CommandKind.START:
                view["state"] = "running"
            elif command.kind is CommandKind.MOVE:
                view["node"] = command.node.hex()
            elif command.kind is CommandKind.UPDATE:
                view["version"] += 1
            if command.app.hex() in self.removed_after_apply:
                del self.apps[command.app.hex()]


def make_app_view(app_id: str, name: str, state: str, node: str | None) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "name": name,
        "state": state,
        "version": 1,
        "node": node,
        "runtime": "process",
        "owner": "ab" * 48,
        "created_slot": 3,
        "last_move_slot": None,
        "move_to": None,
        "reported_on": [node] if node else [],
        "spec": {"name": name, "runtime": "process", "command": ["/bin/true"]},
    }


class _Handler(BaseHTTPRequestHandler):
    state: FakeState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._route("POST", self.rfile.read(length))

    def _route(self, method: str, body: bytes) -> None:
        state = self.state
        time.sleep(state.delay_s)
        path = urlsplit(self.path).path
        state.requests.append((method, self.path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and path == "/status":
            status = {"chain_id": state.chain_id, "head_slot": 40, "slot": 41}
            return self._reply(200, {**status, "finality": state.finality})
        if method == "GET" and parts[0] == "operators" and len(parts) == 2:
            state.poll()
            pk = parts[1]
            return self._reply(
                200,
                {
                    "public_key": pk,
                    "admin": False,
                    "operator": True,
                    "last_seq": state.last_seq.get(pk, 0),
                },
            )
        if method == "POST" and path == "/commands":
            return self._post_command(body)
        if method == "GET" and parts[0] == "commands" and len(parts) == 2 and state.status_route:
            return self._get_command(parts[1])
        if method == "GET" and path == "/apps":
            return self._reply(200, [dict(v) for v in state.apps.values()])
        if method == "GET" and parts[0] == "apps" and len(parts) in (2, 3):
            return self._get_app(parts)
        if method == "GET" and path == "/nodes":
            return self._reply(200, state.nodes)
        if method == "GET" and path == "/migrations":
            return self._reply(200, state.migrations)
        if method == "GET" and path == "/blocks":
            return self._reply(200, [])
        return self._reply(404, {"error": "no such endpoint", "field": "path"})

    def _post_command(self, body: bytes) -> None:
        state = self.state
        if state.refuse is not None and (
            state.refuse_after is None or len(state.commands) >= state.refuse_after
        ):
            return self._reply(*state.refuse)
        command = decode_command(bytes.fromhex(json.loads(body)["command"]))
        root = compute_command_signing_root(state.chain_id, command)
        if not bls.verify(command.signer, root, command.signature):
            return self._reply(403, {"error": "command_bad_signature"})
        state.commands.append(command)
        if state.apply_after_polls >= 0:
            state.pending.append((state.apply_after_polls, command))
        reply: dict[str, Any] = {
            "command_hash": compute_command_hash(command).hex(),
            "seq": command.seq,
        }
        if command.kind is CommandKind.SUBMIT:
            reply["app_id"] = compute_submitted_app_id(command.signer, command.seq).hex()
        return self._reply(202, reply)

    def _get_command(self, digest: str) -> None:
        """Applied, pending, or unknown (404: never posted, or skipped)."""
        state = self.state
        state.poll()
        if digest in state.applied:
            return self._reply(200, {"command_hash": digest, "status": "applied", "slot": 40})
        if digest in state.dropped:
            reply = {"command_hash": digest, "status": "dropped", "reason": state.dropped[digest]}
            return self._reply(200, reply)
        if any(compute_command_hash(c).hex() == digest for _, c in state.pending):
            return self._reply(200, {"command_hash": digest, "status": "pending", "slot": 39})
        if state.apply_after_polls < 0 and any(
            compute_command_hash(c).hex() == digest for c in state.commands
        ):
            return self._reply(200, {"command_hash": digest, "status": "pending", "slot": 39})
        return self._reply(404, {"error": "unknown command", "field": "hash"})

    def _get_app(self, parts: list[str]) -> None:
        apps = self.state.apps
        text = parts[1]
        matches = [
            v for a, v in apps.items() if a == text or v["name"] == text or a.startswith(text)
        ]
        if not matches:
            return self._reply(404, {"error": f"no app {text!r}", "field": "app"})
        if len(matches) > 1:
            return self._reply(409, {"error": f"ambiguous app {text!r}", "field": "app"})
        view = matches[0]
        if len(parts) == 3:
            events = [{"slot": 5, "kind": "submitted"}, {"slot": 7, "kind": "placed"}]
            return self._reply(200, {"app_id": view["app_id"], "events": events, "migrations": []})
        return self._reply(200, view)


@contextmanager
def serve(state: FakeState) -> Iterator[str]:
    """Serve ``state`` on a loopback port; yields the URL."""
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
