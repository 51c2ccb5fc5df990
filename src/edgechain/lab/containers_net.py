"""A network of node containers on one host (issue 16, "Must show"): the node image
(``deploy/Containerfile``), one node per podman container, driven as an operator would.

:func:`run_container_network` issues one enrollment token with the CLI (``edgechain
admin enroll``, before the chain exists), starts a genesis node's container, reads the
genesis key from its API, starts two more nodes that join through the first one as
their seed, grants an operator key, runs the image's health check in each container,
submits an app through the CLI and waits until a node reports it running; then it stops
the genesis node's container and starts a fourth node whose seeds are the genesis node
and the second node: it must join through the second. Everything it starts is removed
at the end (containers, their volumes, the network), also on failure unless
``EDGECHAIN_KEEP_RUN`` is set.

Only the host's podman CLI and the project's own CLI are used; the containers' APIs are
reached at their addresses on the podman network (a rootful bridge the host routes to).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.runtime.podman import get_containers_conf

CLI = (sys.executable, "-m", "edgechain.cli")
API_PORT = 8080
PEER_PORT = 7000
TOKEN_IN_CONTAINER = "/run/secrets/edgechain-token"
APP_SCRIPT = (
    'f="$EDGECHAIN_STATE_DIR/n"; i=0; [ -f "$f" ] && read -r i < "$f"; '
    'while :; do i=$((i+1)); echo $i > "$f"; sleep 1; done'
)
"""A stateful counter in plain sh (the image has no sample apps)."""


class ContainerNetError(Exception):
    """A step of the run did not complete (its message says which, and what was seen)."""


@dataclass(frozen=True)
class ContainerNetConfig:
    run_dir: Path
    """Keys, client config and token are written here (created, must not exist)."""
    image: str = "localhost/edgechain-node:dev"
    slot_s: float = 2.0
    nodes: int = 3
    """The network before the genesis node's container stops."""
    committee: int = 1
    """Below ``nodes - 1``: a validator set keeps ``committee + 1`` members, so only then
    can the stopped genesis node be excluded and the others go on without it."""
    timeout_s: float = float(os.environ.get("EDGECHAIN_CONTAINERS_TIMEOUT", "240"))
    """For each wait (genesis, each join, the app)."""
    log: Callable[[str], None] = field(default=lambda _: None)


@dataclass
class _Node:
    name: str
    address: str = ""
    node_id: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{API_PORT}"

    @property
    def seed(self) -> str:
        return f"{self.address}:{PEER_PORT}"


def cli(*argv: str, client: Path | None = None) -> Any:
    """``edgechain --json ...`` (with ``--client``), its JSON answer."""
    command = [*CLI, "--json", *argv]
    if client is not None:
        command[3:3] = ["--client", str(client)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise ContainerNetError(f"edgechain {' '.join(argv[:2])}: {done.stderr.strip()}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def get_json(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=5) as answer:
        return json.loads(answer.read())


def wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    """Poll ``check`` (falsy, or an exception: not yet) until it answers, or fail."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError, urllib.error.URLError, ContainerNetError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(1.0)
    raise ContainerNetError(f"timed out after {timeout_s:.0f} s waiting for {what} ({last})")


class ContainerNetwork:
    """The containers, volumes and network of one run (named with a random prefix);
    ``conf``: the ``containers.conf`` podman needs on this host (``runtime/podman.py``:
    runc, cgroupfs, ulimits within the host's limits)."""

    def __init__(self, config: ContainerNetConfig, conf: Path) -> None:
        self.config = config
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.prefix = f"ecnet-{secrets.token_hex(3)}"
        self.network = self.prefix
        self.nodes: list[_Node] = []

    def run_podman(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *argv], capture_output=True, text=True, check=False, env=self.env
        )

    def podman(self, *argv: str, check: bool = True) -> str:
        """``podman ARGV``'s output; with ``check``, a failure raises ContainerNetError."""
        done = self.run_podman(*argv)
        if check and done.returncode != 0:
            raise ContainerNetError(f"podman {' '.join(argv[:3])}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create(self) -> None:
        self.podman("network", "create", self.network)

    def start_node(self, env: dict[str, str], token: Path | None = None) -> _Node:
        node = _Node(f"{self.prefix}-{len(self.nodes)}")
        argv = ["run", "-d", "--name", node.name, "--hostname", node.name,
                "--network", self.network, "-v", f"{node.name}:/var/lib/edgechain"]  # fmt: skip
        if token is not None:
            argv += ["-v", f"{token}:{TOKEN_IN_CONTAINER}:ro,Z"]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        # Recorded first: a run that fails still made the volume (remove() takes it).
        self.nodes.append(node)
        self.podman(*argv, self.config.image)
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        # Set once the container's network is up, a moment after `run` returns.
        node.address = wait_for(
            f"{node.name}'s address", lambda: self.podman("inspect", "--format", fmt, node.name), 30
        )
        return node

    def stop_node(self, node: _Node) -> None:
        self.podman("stop", "--time", "10", node.name)

    def is_healthy(self, node: _Node) -> bool:
        """The image's HEALTHCHECK, run once by podman (its timers need systemd)."""
        return self.run_podman("healthcheck", "run", node.name).returncode == 0

    def get_logs(self, node: _Node, lines: int = 30) -> str:
        done = self.run_podman("logs", "--tail", str(lines), node.name)
        return (done.stdout + done.stderr).strip()

    def remove(self) -> None:
        """Everything this run made, whatever state it is in."""
        names = [n.name for n in self.nodes]
        if names:
            self.podman("rm", "-f", "--time", "5", *names, check=False)
            self.podman("volume", "rm", "-f", *names, check=False)
        self.podman("network", "rm", "-f", self.network, check=False)


def get_validators(node: _Node) -> list[dict[str, Any]]:
    return list(get_json(node.url, "/nodes"))


def get_head_slot(node: _Node) -> int:
    return int(get_json(node.url, "/status")["head_slot"] or 0)


def write_client(path: Path, nodes: Sequence[_Node]) -> None:
    urls = ", ".join(f'"{n.url}"' for n in nodes)
    path.write_text(f'nodes = [{urls}]\nkey = "operator.key"\nadmin_key = "admin.key"\n')


def run_container_network(config: ContainerNetConfig) -> dict[str, Any]:
    """The run of the module docstring; its figures, or ``error`` naming the failed step."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o711)
    conf = run_dir / "containers.conf"
    (run_dir / "tmp").mkdir()
    conf.write_text(get_containers_conf(run_dir / "tmp"))
    net = ContainerNetwork(config, conf)
    log = config.log
    result: dict[str, Any] = {"image": config.image, "error": None, "steps": {}}
    started = time.monotonic()

    def step(name: str) -> None:
        result["steps"][name] = round(time.monotonic() - started, 1)
        log(f"{name} after {result['steps'][name]} s")

    try:
        admin_pk = cli("admin", "keygen", str(run_dir / "admin.key"))["public_key"]
        cli("admin", "keygen", str(run_dir / "operator.key"))
        net.create()
        # One enrollment token for every node, the genesis node included, made before
        # the chain exists (its validity counts from genesis): identical replicas.
        client = run_dir / "client.toml"
        client.write_text('nodes = ["http://127.0.0.1:9"]\nadmin_key = "admin.key"\n')
        token_file = run_dir / "enrollment.token"
        enrolled = cli("admin", "enroll", "--valid-for", "1d", "--slot-duration",
                       f"{config.slot_s:g}", client=client)  # fmt: skip
        token_file.write_text(enrolled["token"] + "\n")
        token_file.chmod(0o644)  # read by the node's unprivileged user in the container
        token_env = {"EDGECHAIN_ENROLLMENT_TOKEN_FILE": TOKEN_IN_CONTAINER}
        genesis = net.start_node({
            **token_env,
            "EDGECHAIN_GENESIS": "1",
            "EDGECHAIN_ADMIN_KEY": admin_pk,
            "EDGECHAIN_COMMITTEE": str(config.committee),
            "EDGECHAIN_SLOT_DURATION": f"{config.slot_s:g}",
        }, token_file)  # fmt: skip
        # Its key is the chain's trust anchor; its API answers before genesis.
        status = wait_for("the genesis node's API", lambda: get_json(genesis.url, "/status"),
                          config.timeout_s)  # fmt: skip
        genesis_key, genesis.node_id = status["public_key"], status["node_id"]
        write_client(client, [genesis])
        joiner_env = {**token_env, "EDGECHAIN_GENESIS_KEY": genesis_key}
        for _ in range(config.nodes - 1):
            net.start_node({**joiner_env, "EDGECHAIN_SEEDS": genesis.seed}, token_file)
        founders = config.nodes  # genesis with committee + 1 of them, the others join
        wait_for(f"{founders} validators and blocks", lambda: get_head_slot(genesis)
                 >= 3 and len(get_validators(genesis)) == founders, config.timeout_s)  # fmt: skip
        step(f"{founders} validators")
        cli("admin", "grant", str(run_dir / "operator.key"), client=client)
        step("operator granted")
        result["healthy"] = {n.name: net.is_healthy(n) for n in net.nodes}
        write_client(client, net.nodes)
        spec = run_dir / "app.yaml"
        command = json.dumps(["/bin/sh", "-c", APP_SCRIPT])
        spec.write_text(f"name: container-counter\nruntime: process\ncommand: {command}\n"
                        "stateful: true\n")  # fmt: skip
        submitted = cli("apps", "submit", str(spec), client=client)
        app_id = submitted["app_id"]

        def app_runs() -> Any:
            view = next(a for a in get_json(genesis.url, "/apps") if a["app_id"] == app_id)
            return view if view["node"] and view["node"] in view["reported_on"] else None

        view = wait_for("the app reported running", app_runs, config.timeout_s)
        host = next(n for n in net.nodes if view["node"] == _node_id(n))
        result["app"] = {"app_id": app_id, "node": host.name}
        step(f"app running on {host.name}")
        net.stop_node(genesis)
        step("genesis container stopped")
        second = net.nodes[1]
        fourth = net.start_node(
            {**joiner_env, "EDGECHAIN_SEEDS": f"{genesis.seed},{second.seed}"}, token_file
        )
        fourth_id = wait_for("the fourth node's id", lambda: _node_id(fourth), config.timeout_s)
        wait_for("the fourth node admitted", lambda: fourth_id in
                 {v["node_id"] for v in get_validators(second)}, config.timeout_s)  # fmt: skip
        first = get_head_slot(second)
        wait_for("blocks after the fourth joined", lambda: get_head_slot(fourth) > first + 2,
                 config.timeout_s)  # fmt: skip
        seeds = get_json(fourth.url, "/status")["seeds"]
        result["fourth_seeds"] = {s["address"]: s.get("reached_at") for s in seeds}
        step("fourth node joined through the second seed")
        result["validators"] = {
            v["node_id"][:16]: v["status"] for v in get_validators(second)
        }  # the genesis node excluded or down
        result["head_slot"] = get_head_slot(second)
    except (ContainerNetError, subprocess.SubprocessError, OSError, KeyError, StopIteration) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["logs"] = {n.name: net.get_logs(n) for n in net.nodes}
    finally:
        if result["error"] is None or not os.environ.get("EDGECHAIN_KEEP_RUN"):
            net.remove()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def _node_id(node: _Node) -> str:
    """The node's id (hex) from its own ``/status``, remembered."""
    if not node.node_id:
        node.node_id = str(get_json(node.url, "/status")["node_id"])
    return node.node_id


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--image", default=ContainerNetConfig.image)
    parser.add_argument("--slot-duration", type=float, default=ContainerNetConfig.slot_s)
    args = parser.parse_args(argv)
    config = ContainerNetConfig(
        args.run_dir, image=args.image, slot_s=args.slot_duration, log=print
    )
    result = run_container_network(config)
    print(json.dumps(result, indent=2))
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
