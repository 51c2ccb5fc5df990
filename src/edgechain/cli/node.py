"""``edgechain node``: the daemon (options: see ``DESCRIPTION``)."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgechain.cli.common import EXIT_FAILED, EXIT_USAGE
from edgechain.consensus.context import DEFAULT_GENESIS_DELAY_MS

if TYPE_CHECKING:
    from edgechain.node.config import NodeConfig

DESCRIPTION = """\
Run a node daemon.

Options come from flags, EDGECHAIN_<NAME> environment variables (EDGECHAIN_DATA_DIR,
EDGECHAIN_OPEN_ADMISSION=1, ...) or a TOML file (--config; keys as the flags without
the dashes), in that order of precedence over the defaults."""


@dataclass(frozen=True)
class NodeOption:
    kind: type
    default: Any
    help: str
    metavar: str | None = None


NODE_OPTIONS: dict[str, NodeOption] = {
    "data_dir": NodeOption(
        str, "./edgechain-data", "directory for the key, chain store and apps", "DIR"
    ),
    "listen": NodeOption(
        str, "127.0.0.1:0", "UDP and TCP address for peers (port 0: any free port)", "HOST:PORT"
    ),
    "http": NodeOption(
        str,
        "127.0.0.1:0",
        "HTTP API address; localhost unless you mean to expose it (port 0: any)",
        "HOST:PORT",
    ),
    "advertise_host": NodeOption(
        str, None, "host other nodes reach us at (default: the --listen host)", "HOST"
    ),
    "seeds": NodeOption(
        str,
        "",
        "comma-separated addresses of nodes to find the network through (names or IPs; "
        "no keys needed); joining works while any one of them answers (a TOML list too)",
        "HOST:PORT,...",
    ),
    "genesis_key": NodeOption(
        str,
        "",
        "the public key (hex) that signed the chain's genesis: the node's trust anchor",
        "HEX",
    ),
    "chain_id": NodeOption(str, "edgechain", "network name; signatures are bound to it", "NAME"),
    "admin_key": NodeOption(
        str,
        "",
        "the admin's public key (hex; `edgechain admin keygen FILE` makes one); fixed at "
        "genesis: it signs admission tickets and grants operator keys",
        "HEX",
    ),
    "ticket": NodeOption(
        str, "", "this node's admission ticket from the admin (`edgechain admin ticket`)", "HEX"
    ),
    "enrollment_token": NodeOption(
        str,
        "",
        "an enrollment token from the admin (`edgechain admin enroll`): admits this node "
        "with whatever key it made, like every replica given the same token",
        "HEX",
    ),
    "enrollment_token_file": NodeOption(
        str,
        None,
        "read the enrollment token from this file (a Swarm or Kubernetes secret)",
        "FILE",
    ),
    "open_admission": NodeOption(
        bool, False, "lab networks: any node may join without a ticket", None
    ),
    "operator_key": NodeOption(
        str,
        None,
        "an operator keystore file: the node signs POST /apps for local callers holding "
        "its API token (<data-dir>/api.token)",
        "FILE",
    ),
    "app_user": NodeOption(
        str,
        "nobody",
        "when the node runs as root, apps (processes and containers) run as this "
        "unprivileged USER[:GROUP] (never root)",
        "USER",
    ),
    "genesis": NodeOption(
        bool, False, "this node creates the chain (needs --admin-key or --open-admission)", None
    ),
    "committee": NodeOption(int, 8, "committee size (genesis parameter)", "N"),
    "slot_duration": NodeOption(float, 2.0, "seconds per slot (genesis parameter)", "SEC"),
    "genesis_delay": NodeOption(
        float,
        DEFAULT_GENESIS_DELAY_MS / 1000,
        "with --genesis: seconds from creating the genesis to its first slot, for it to "
        "reach the first committee (a testnet on one host gives less)",
        "SEC",
    ),
    "epoch_length": NodeOption(
        int,
        8,
        "slots per finality epoch (genesis parameter); with --down-after-slots it sets "
        "how often every node reports: min(down-after-slots / 3, epoch-length / 2)",
        "SLOTS",
    ),
    "down_after_slots": NodeOption(
        int,
        12,
        "a validator silent on chain this many slots is down and its apps are recovered "
        "elsewhere (genesis parameter); longer: fewer reports a block, slower recovery",
        "SLOTS",
    ),
    "vdf_fraction": NodeOption(
        float, 0.25, "share of a slot the VDF should take (genesis parameter)", "FRACTION"
    ),
    "labels": NodeOption(str, "", "comma-separated labels for app placement policies", "A,B"),
    "cpu_capacity": NodeOption(
        float,
        None,
        "CPU cores this node offers its apps (> 0, may be fractional): every CPU share "
        "it reports is of this many cores, and its total is its apps' (its own process "
        "left out) (default: shares of the whole host, host-wide total)",
        "CORES",
    ),
    "container_engine": NodeOption(
        str,
        None,
        "the Docker Engine API of this node's Docker or Podman (unix:///PATH): the node "
        "then runs container apps too and says so on chain (default: process apps only)",
        "URL",
    ),
    "allow_root_containers": NodeOption(
        bool,
        False,
        "container apps whose spec says run_as_root may run as root inside their "
        "container here (declared on chain; default: every container runs as --app-user)",
        None,
    ),
    "container_network": NodeOption(
        str, "none", "network mode of this node's containers (none, host, bridge, a name)", "MODE"
    ),
    "clock_offset_ms": NodeOption(
        int,
        0,
        "clock-skew experiments: milliseconds added to every wall-clock read of the node "
        "and its fencing watchdog, as on a device whose clock is that far off (negative: "
        "behind); /status shows it as clock_offset_ms (default 0)",
        "MS",
    ),
    "leave_on_sigterm": NodeOption(
        bool,
        False,
        "SIGTERM makes the node leave first (drain, hand its apps over, exit, stop with "
        "code 0), as `edgechain node leave` does; a second SIGTERM stops it at once",
        None,
    ),
    "leave_timeout": NodeOption(
        float,
        600.0,
        "how long a leave waits for the node's apps to move away before it exits anyway",
        "SEC",
    ),
    "ready_file": NodeOption(
        str, None, "write a JSON file with the node id and bound ports once listening", "FILE"
    ),
    "log_level": NodeOption(str, "INFO", "DEBUG, INFO, WARNING or ERROR", "LEVEL"),
}

TRUE_WORDS = ("1", "true", "yes", "on")
RESERVED_LABEL_PREFIX = "edgechain."


class NodeOptionError(Exception):
    """Options that cannot start a node; the message says what to pass."""


def resolve_node_options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Flags over EDGECHAIN_* environment over the TOML file over defaults."""
    import tomllib

    values: dict[str, Any] = {k: option.default for k, option in NODE_OPTIONS.items()}
    if args.config:
        with open(args.config, "rb") as f:
            for key, value in tomllib.load(f).items():
                name = key.replace("-", "_")
                if name not in NODE_OPTIONS:
                    raise NodeOptionError(f"{args.config}: unknown option {key!r}")
                values[name] = value
    for name, option in NODE_OPTIONS.items():
        variable = "EDGECHAIN_" + name.upper()
        env = environ.get(variable)
        if env is None:
            continue
        try:
            values[name] = env.lower() in TRUE_WORDS if option.kind is bool else option.kind(env)
        except ValueError:
            raise NodeOptionError(
                f"{variable}={env!r}: expected {option.metavar or option.kind.__name__}"
            ) from None
    for name in NODE_OPTIONS:
        flag = getattr(args, name, None)
        if flag is not None and flag is not False:
            values[name] = flag
    return values


def check_node_options(values: Mapping[str, Any]) -> None:
    """Refuse combinations that cannot make a working (or a safe) node."""
    if values["genesis"] and not values["admin_key"] and not values["open_admission"]:
        raise NodeOptionError(
            "a new chain needs an admin key: pass --admin-key PUBKEY (create one with "
            "`edgechain admin keygen admin.key`), or --open-admission for a lab network "
            "that anyone may join"
        )
    closed = values["admin_key"] and not values["open_admission"]
    if values["genesis"] and closed and not get_admission(values):
        raise NodeOptionError(
            "a closed chain admits its genesis node too: pass --enrollment-token(-file) "
            "(`edgechain admin enroll --slot-duration SEC` makes one before the chain "
            "exists) or --ticket, or --open-admission for a lab network"
        )
    if not values["genesis"] and not (get_seeds(values) and values["genesis_key"]):
        raise NodeOptionError(
            "a node that does not create the chain (--genesis) joins one: pass "
            "--seeds HOST:PORT[,HOST:PORT...] and --genesis-key HEX"
        )
    get_cpu_capacity(values)
    get_clock_offset_ms(values)
    get_positive_slots(values, "epoch_length")
    get_positive_slots(values, "down_after_slots")
    get_vdf_target_bp(values)
    get_leave_timeout(values)
    get_genesis_delay_ms(values)
    get_admission(values)
    get_labels(values)
    engine = values.get("container_engine")
    if values.get("allow_root_containers") and engine is None:
        raise NodeOptionError("--allow-root-containers needs --container-engine")
    if engine is not None and not str(engine).startswith(("unix://", "tcp://", "http://")):
        raise NodeOptionError(
            f"--container-engine {engine!r}: expected the Engine API URL, such as "
            "unix:///run/podman/podman.sock or unix:///var/run/docker.sock"
        )


def get_seeds(values: Mapping[str, Any]) -> tuple[str, ...]:
    """``seeds`` as addresses: a comma-separated string (flag, environment) or a TOML
    list; each must be HOST:PORT."""
    raw = values.get("seeds") or ()
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    seeds = tuple(str(part).strip() for part in parts if str(part).strip())
    for seed in seeds:
        host, _, port = seed.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise NodeOptionError(f"--seeds: {seed!r} is not HOST:PORT")
    return seeds


def get_admission(values: Mapping[str, Any]) -> bytes:
    """What the node's inclusion request presents: its ticket, or an enrollment token
    (given in hex, or in a file); at most one of them."""
    token_file = values.get("enrollment_token_file")
    given = [
        name for name in ("ticket", "enrollment_token", "enrollment_token_file") if values.get(name)
    ]
    if len(given) > 1:
        flags = " and ".join("--" + name.replace("_", "-") for name in given)
        raise NodeOptionError(f"{flags}: pass one way of being admitted")
    if token_file:
        try:
            text = Path(token_file).read_text().strip()
        except OSError as exc:
            raise NodeOptionError(f"--enrollment-token-file {token_file}: {exc.strerror}") from None
        values = {"enrollment_token": text}
    if not values.get("enrollment_token"):
        return _hex(values, "ticket") if values.get("ticket") else b""
    token = _hex(values, "enrollment_token")
    from edgechain.chain.enrollment import decode_enrollment_token

    try:
        decode_enrollment_token(token)
    except ValueError as exc:
        raise NodeOptionError(f"--enrollment-token: {exc}") from None
    return token


def get_labels(values: Mapping[str, Any]) -> tuple[str, ...]:
    """``labels`` split at commas; the ``edgechain.`` ones are the node's own (its
    transfer port, its runtimes) and may not be set by hand."""
    labels = tuple(label.strip() for label in str(values.get("labels") or "").split(","))
    labels = tuple(label for label in labels if label)
    reserved = [label for label in labels if label.startswith(RESERVED_LABEL_PREFIX)]
    if reserved:
        raise NodeOptionError(
            f"--labels {','.join(reserved)}: labels starting with {RESERVED_LABEL_PREFIX!r} "
            "are set by the node itself (--container-engine declares container apps)"
        )
    return labels


def get_positive_slots(values: Mapping[str, Any], name: str) -> int:
    """A genesis parameter counted in slots: a whole number of at least 1."""
    value = values.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    flag = "--" + name.replace("_", "-")
    raise NodeOptionError(f"{flag} {value!r}: expected a whole number of slots, at least 1")


def get_vdf_target_bp(values: Mapping[str, Any]) -> int:
    """``vdf_fraction`` in basis points of a slot: a share above 0 and at most 1 (a
    VDF as long as the slot leaves no time to vote; at 0 it would delay nothing)."""
    value = values.get("vdf_fraction")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
        return max(1, int(value * 10_000))
    raise NodeOptionError(
        f"--vdf-fraction {value!r}: expected a share of a slot above 0, at most 1"
    )


def get_cpu_capacity(values: Mapping[str, Any]) -> float | None:
    """``cpu_capacity`` as a number of cores, None when not given; refuses anything
    but a finite number above 0 (a TOML file may hold a string or a boolean)."""
    value = values.get("cpu_capacity")
    if value is None:
        return None
    cores: float | None = None
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError, ValueError):
            cores = float(value)
    if cores is None or not math.isfinite(cores) or cores <= 0:
        raise NodeOptionError(
            f"--cpu-capacity {value!r}: expected a number of CPU cores above 0, such as "
            "2 or 0.5 (leave it out to report shares of the whole host)"
        )
    return cores


def _to_seconds(value: object) -> float:
    """An option's number of seconds, NaN for anything but a number (a TOML file may
    hold a string or a boolean)."""
    try:
        return float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def get_leave_timeout(values: Mapping[str, Any]) -> float:
    """``leave_timeout`` in seconds: a finite number above 0."""
    value = values.get("leave_timeout", 600.0)
    seconds = _to_seconds(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise NodeOptionError(f"--leave-timeout {value!r}: expected seconds above 0")
    return seconds


def get_genesis_delay_ms(values: Mapping[str, Any]) -> int:
    """``genesis_delay`` in whole milliseconds: seconds from 0 to a minute."""
    value = values.get("genesis_delay", DEFAULT_GENESIS_DELAY_MS / 1000)
    if not 0 <= (seconds := _to_seconds(value)) <= 60:  # also refuses NaN
        raise NodeOptionError(f"--genesis-delay {value!r}: expected seconds from 0 to 60")
    return round(seconds * 1000)


def get_clock_offset_ms(values: Mapping[str, Any]) -> int:
    """``clock_offset_ms`` as whole milliseconds (0 when not given); refuses anything
    else (a TOML file may hold a float, a string or a boolean)."""
    value = values.get("clock_offset_ms", 0)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise NodeOptionError(
        f"--clock-offset-ms {value!r}: expected a whole number of milliseconds, such as "
        "1500 or -1500"
    )


def _hex(values: Mapping[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(str(values[name]))
    except ValueError:
        raise NodeOptionError(f"--{name.replace('_', '-')}: not hexadecimal") from None


def make_node_config(v: Mapping[str, Any]) -> NodeConfig:
    """The node's configuration from resolved options (``resolve_node_options``)."""
    from edgechain.node.config import NodeConfig

    return NodeConfig(
        data_dir=Path(v["data_dir"]),
        listen=v["listen"],
        http=v["http"],
        advertise_host=v["advertise_host"],
        seeds=get_seeds(v),
        genesis_key=_hex(v, "genesis_key"),
        chain_id=v["chain_id"],
        admin_key=_hex(v, "admin_key"),
        ticket=get_admission(v),
        open_admission=bool(v["open_admission"]),
        operator_key=Path(v["operator_key"]) if v["operator_key"] else None,
        app_user=str(v["app_user"]),
        genesis=bool(v["genesis"]),
        committee=int(v["committee"]),
        epoch_length=get_positive_slots(v, "epoch_length"),
        down_after_slots=get_positive_slots(v, "down_after_slots"),
        slot_duration_ms=int(float(v["slot_duration"]) * 1000),
        genesis_delay_ms=get_genesis_delay_ms(v),
        vdf_target_bp=get_vdf_target_bp(v),
        labels=get_labels(v),
        cpu_capacity=get_cpu_capacity(v),
        container_engine=v["container_engine"] or None,
        container_network=str(v["container_network"]),
        allow_root_containers=bool(v["allow_root_containers"]),
        clock_offset_ms=get_clock_offset_ms(v),
        ready_file=Path(v["ready_file"]) if v["ready_file"] else None,
        leave_on_sigterm=bool(v["leave_on_sigterm"]),
        leave_timeout_ms=int(get_leave_timeout(v) * 1000),
    )


def cmd_node(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import sys

    try:
        v = resolve_node_options(args, dict(os.environ))
        if args.action == "leave":
            from edgechain.cli.leave import leave_node

            return leave_node(Path(v["data_dir"]), get_leave_timeout(v))
        if args.action == "health":
            from edgechain.cli.health import check_health

            return check_health(Path(v["data_dir"]))
        check_node_options(v)
    except (NodeOptionError, OSError, ValueError) as exc:
        print(f"edgechain node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from edgechain.errors import LocalError
    from edgechain.node.log_format import configure_logging
    from edgechain.node_daemon import run_node

    try:
        config = make_node_config(v)
    except (NodeOptionError, OSError, ValueError) as exc:
        print(f"edgechain node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(v["log_level"])
    try:
        asyncio.run(run_node(config))
    except LocalError as exc:
        # Our configuration (a bad app user, an unreadable key, a taken port): say what,
        # without a traceback; a bug still raises.
        print(f"edgechain node: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser(
        "node",
        help="run a node daemon",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    node.add_argument(
        "action",
        nargs="?",
        choices=("run", "leave", "health"),
        default="run",
        help="run the daemon (default), or ask the node of --data-dir to leave the "
        "network: it drains, its apps move away with their state, its exit goes into "
        "a block, and it stops with exit code 0; or check that it answers (health: "
        "exit code 0, for container health checks)",
    )
    node.add_argument("--config", metavar="FILE.toml", help="options from a TOML file")
    for name, option in NODE_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        default = "" if option.default in (None, "", False) else f" (default {option.default})"
        if option.kind is bool:
            node.add_argument(flag, action="store_true", default=None, help=option.help)
        else:
            node.add_argument(
                flag,
                type=option.kind,
                default=None,
                metavar=option.metavar,
                help=option.help + default,
            )
    node.set_defaults(func=cmd_node)
