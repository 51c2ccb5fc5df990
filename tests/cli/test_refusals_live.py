"""Nobody runs code on the fleet without the right key: a real testnet refuses and counts.

``edgechain testnet --forever`` starts 4 node processes. Through the CLI the admin grants
a second operator key and revokes it again. Then five bad commands, each naming an app
whose command line carries a unique marker, are

* posted to a node's ``POST /commands`` (refused with 403 or 409), and
* gossiped straight into every node's transport port, as a node would gossip them
  (the "non-operator" one signed by a validator's own node key),

and every node must count every refusal by reason in ``GET /status``; no block carries
them, the fleet view stays empty and no process with the marker ever appears. A fifth
node started by hand without an admission ticket says why it cannot join and never
becomes a validator, its request gossiped anyway is refused and counted by every node,
and a node the admin excludes says it is banned and never comes back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgechain.chain.assembly import EMPTY_SIGNATURE, make_command, make_inclusion_request
from edgechain.chain.command_encoding import compute_command_hash, encode_command
from edgechain.chain.model import AppSpec, CommandKind, RuntimeKind, SignedCommand
from edgechain.consensus.messages import CommandMsg, InclusionMsg
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.keystore import create_keystore, load_keystore
from edgechain.errors import RejectReason
from edgechain.types import NodeId, SecretKey
from edgechain.wire.codec import encode_gossip_payload, encode_message
from edgechain.wire.framing import encode_frame
from edgechain.wire.messages import GossipMsg, compute_message_id

from .live_testnet import EDGECHAIN, LiveTestnet, stop_process

SETUP_TIMEOUT_S = 300.0
"""Generous: on a busy 2-core host the joins, genesis and the grant can take minutes."""
COUNT_TIMEOUT_S = 30.0

pytestmark = pytest.mark.xdist_group("testnet-light")


def wait_for(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def http(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class RefusalsTestnet(LiveTestnet):
    def wait_for_client(self) -> None:
        """Genesis and the operator grant are done once client.toml exists."""
        launcher = self.launcher
        assert launcher is not None
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while not self.client.exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                _, output = self.stop()
                raise AssertionError(f"no client.toml; the launcher said:\n{output[-4000:]}")
            time.sleep(0.3)

    def ready(self) -> list[dict[str, Any]]:
        """Each node's ready file: node id, ports, pid."""
        manifest = json.loads((self.run_dir / "testnet.json").read_text())
        return [
            json.loads((self.run_dir / n["name"] / "ready.json").read_text())
            for n in manifest["nodes"]
        ]

    def statuses(self) -> list[dict[str, Any]]:
        return [http(f"http://127.0.0.1:{r['http_port']}/status")[1] for r in self.ready()]


def gossip(port: int, message: CommandMsg | InclusionMsg, origin_sk: SecretKey) -> None:
    """Hand ``message`` to a node as a gossip hop from ``origin_sk``'s node would."""
    origin = NodeId(compute_node_id(bls.sk_to_pk(origin_sk)))
    payload = encode_gossip_payload(message, origin, origin_sk)
    frame = encode_frame(encode_message(GossipMsg(compute_message_id(payload), 4, payload), origin))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(frame)


def test_bad_commands_are_refused_and_counted_by_every_node(run_dir: Path) -> None:
    marker = f"refused-{os.getpid()}-{time.monotonic_ns()}"
    spec = AppSpec("owned", RuntimeKind.PROCESS, command=("/bin/sh", "-c", f"sleep 600 # {marker}"))
    net = RefusalsTestnet(run_dir)
    net.start()
    intruder: subprocess.Popen[bytes] | None = None
    try:
        net.wait_for_client()
        chain_id = http(f"{_url(net, 0)}/status")[1]["chain_id"]
        admin_sk = load_keystore(run_dir / "admin.key")
        stranger_sk = create_keystore(run_dir.parent / "stranger.key")
        revoked_sk = create_keystore(run_dir.parent / "revoked.key")
        revoked_pk = bls.sk_to_pk(revoked_sk).hex()
        net.cli("admin", "grant", revoked_pk)
        net.cli("admin", "revoke", revoked_pk)
        node_sk = load_keystore(run_dir / "node-001" / "node.key")
        admin_seq = http(f"{_url(net, 0)}/operators/{bls.sk_to_pk(admin_sk).hex()}")[1]["last_seq"]

        def sign(sk: SecretKey, seq: int, kind: CommandKind = CommandKind.SUBMIT) -> SignedCommand:
            return make_command(sk, chain_id, seq, kind, spec=spec)

        bad = {
            RejectReason.COMMAND_BAD_SIGNATURE: dataclasses.replace(
                sign(admin_sk, admin_seq + 10), signature=EMPTY_SIGNATURE
            ),
            RejectReason.COMMAND_UNKNOWN_SIGNER: sign(stranger_sk, 1),
            RejectReason.COMMAND_REVOKED: sign(revoked_sk, time.time_ns()),
            RejectReason.COMMAND_REPLAYED: sign(admin_sk, admin_seq),
            # A validator gossips a command signed with its own node key.
            "non_operator": sign(node_sk, 1),
        }

        # The API refuses each one with a 4xx naming the reason.
        for cmd in bad.values():
            code, reply = http(f"{_url(net, 0)}/commands", {"command": encode_command(cmd).hex()})
            assert code in (403, 409), (code, reply)
        before = [dict(s["peer_errors"]) for s in net.statuses()]

        # Gossiped into every node: every node refuses and counts each one.
        ports = [r["udp_port"] for r in net.ready()]
        for port in ports:
            for cmd in bad.values():
                gossip(port, CommandMsg(cmd), node_sk)

        def counted() -> bool:
            for was, now in zip(before, (s["peer_errors"] for s in net.statuses()), strict=True):
                grown = {k: now.get(k, 0) - was.get(k, 0) for k in now}
                if grown.get(RejectReason.COMMAND_BAD_SIGNATURE, 0) < 1:
                    return False
                if grown.get(RejectReason.COMMAND_UNKNOWN_SIGNER, 0) < 2:  # stranger + node key
                    return False
                if grown.get(RejectReason.COMMAND_REVOKED, 0) < 1:
                    return False
                if grown.get(RejectReason.COMMAND_REPLAYED, 0) < 1:
                    return False
            return True

        wait_for(counted, "every node to count every refusal", COUNT_TIMEOUT_S)

        # A node without a ticket says why it cannot join (its log and /status), asks
        # nobody, and never becomes a validator.
        ready = net.ready()
        manifest = json.loads((run_dir / "testnet.json").read_text())
        intruder_dir = run_dir.parent / "intruder"
        intruder = subprocess.Popen(
            [EDGECHAIN, "node", "--data-dir", str(intruder_dir), "--listen", "127.0.0.1:0",
             "--http", "127.0.0.1:0", "--seeds", f"127.0.0.1:{ready[0]['udp_port']}",
             "--genesis-key", manifest["nodes"][0]["public_key"], "--chain-id", chain_id,
             "--slot-duration", "1", "--ready-file", str(run_dir.parent / "intruder.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        intruder_ready = run_dir.parent / "intruder.json"
        wait_for(intruder_ready.exists, "the ticketless node to start", SETUP_TIMEOUT_S)
        intruder_url = f"http://127.0.0.1:{json.loads(intruder_ready.read_text())['http_port']}"

        def knows_it_is_refused() -> bool:
            mine = http(f"{intruder_url}/status")[1]
            problem = mine["admission_problem"] or ""
            return bool(mine["genesis"] and mine["head_slot"]) and "bad_admission_ticket" in problem

        wait_for(knows_it_is_refused, "the ticketless node to say why it cannot join", 60)
        # Its request, gossiped to every node anyway (as a node that skipped that check
        # would send it): every node refuses and counts it.
        head_slot = net.statuses()[0]["head_slot"]
        ticketless = make_inclusion_request(stranger_sk, "127.0.0.1:9", (), nonce=head_slot)
        before_tickets = [s["peer_errors"].get("bad_admission_ticket", 0) for s in net.statuses()]
        for port in ports:
            gossip(port, InclusionMsg(ticketless), node_sk)

        def ticket_refused() -> bool:
            now = [s["peer_errors"].get("bad_admission_ticket", 0) for s in net.statuses()]
            return all(n > b for n, b in zip(now, before_tickets, strict=True))

        wait_for(ticket_refused, "every node to refuse the ticketless request", COUNT_TIMEOUT_S)
        start_slot = net.statuses()[0]["head_slot"]
        wait_for(lambda: net.statuses()[0]["head_slot"] >= start_slot + 8, "8 more slots", 60)
        assert not http(f"{intruder_url}/status")[1]["is_validator"]
        assert len(net.cli("nodes")) == 4

        # Nothing ran, nothing was carried: no app on chain, no process with the marker.
        assert net.cli("apps", "list") == []
        assert not any(marker in " ".join(p.info["cmdline"] or ()) for p in
                       psutil.process_iter(["cmdline"]))  # fmt: skip

        # The admin excludes a validator: it leaves the set, says it is banned, and is
        # never included again.
        victim = manifest["nodes"][3]["node_id"]
        net.cli("admin", "exclude", victim)
        ids = {n["node_id"] for n in net.cli("nodes")}
        assert victim not in ids and len(ids) == 3
        wait_for(
            lambda: "banned_node" in (net.statuses()[3]["admission_problem"] or ""),
            "the excluded node to say it is banned",
            60,
        )
        start_slot = net.statuses()[0]["head_slot"]
        wait_for(lambda: net.statuses()[0]["head_slot"] >= start_slot + 10, "10 more slots", 90)
        assert victim not in {n["node_id"] for n in net.cli("nodes")}

        check_an_overtaken_command_is_refused_at_once(net, chain_id)
    finally:
        stop_process(intruder)
        net.stop()


def check_an_overtaken_command_is_refused_at_once(net: RefusalsTestnet, chain_id: str) -> None:
    """Two operators at once: the client's ``apps stop`` is taken by the API while the app
    exists, but a second operator's REMOVE of it comes first. The CLI says why the chain
    did not apply the STOP, once the node dropped it; it used to wait for a block until
    its 60 s timeout and then say it did not know.

    The order is made certain: the other two validators are paused (no block can be
    made) while both commands reach node 0, and the REMOVE's signer sorts first, which
    is the order a producer takes one signer's commands after another's."""
    run_dir = net.run_dir
    client_pk = bls.sk_to_pk(load_keystore(run_dir / "operator.key"))  # client.toml's key
    tries = 0
    rival_sk = create_keystore(run_dir.parent / f"rival-{tries}.key")
    while bytes(bls.sk_to_pk(rival_sk)) >= bytes(client_pk):
        tries += 1
        rival_sk = create_keystore(run_dir.parent / f"rival-{tries}.key")
    net.cli("admin", "grant", bls.sk_to_pk(rival_sk).hex())
    app = net.cli("apps", "submit", str(_write_spec(run_dir.parent, "contested")))["app_id"]
    assert isinstance(app, str)

    paused = [psutil.Process(r["pid"]) for r in net.ready()[1:3]]
    stopper: subprocess.Popen[str] | None = None
    try:
        try:
            for proc in paused:
                proc.suspend()
            remove = make_command(rival_sk, chain_id, time.time_ns() // 1_000_000,
                                  CommandKind.REMOVE, app=bytes.fromhex(app))  # fmt: skip
            body = {"command": encode_command(remove).hex()}
            code, reply = http(f"{_url(net, 0)}/commands", body)
            assert code == 202, reply
            log = run_dir / "node-000" / "stderr.log"
            stopper = subprocess.Popen(
                [EDGECHAIN, "--client", str(net.client), "apps", "stop", app, "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            wait_for(lambda: _accepted(log, "stop"), "node 0 to take the STOP", 60)
        finally:
            for proc in paused:
                proc.resume()
        _, err = stopper.communicate(timeout=120)
    finally:
        if stopper is not None and stopper.poll() is None:
            stopper.kill()
            stopper.wait()
    assert stopper.returncode == 1, err
    assert "the chain did not apply command seq" in err and "unknown app" in err, err
    assert app not in {a["app_id"] for a in net.cli("apps", "list")}
    status = net.cli("command", compute_command_hash(remove).hex())
    assert status["status"] == "applied" and status["kind"] == "remove", status


def _write_spec(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nruntime: process\ncommand: [/bin/sleep, '600']\n")
    return path


def _accepted(log: Path, kind: str) -> bool:
    """Whether the node's log has a ``command accepted`` line for a ``kind`` command."""
    for line in log.read_text().splitlines():
        if '"command accepted"' in line and json.loads(line).get("kind") == kind:
            return True
    return False


def _url(net: RefusalsTestnet, index: int) -> str:
    return f"http://127.0.0.1:{net.ready()[index]['http_port']}"
