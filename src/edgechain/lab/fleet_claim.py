"""The paper's abstract, with real processes: N nodes running M apps on this machine
(issue 15, "the abstract's claim with real processes ... at the slot duration that holds
0 skip blocks").

One run (``benchmarks/fleet_claim.py``):

1. ``edgechain testnet --forever`` of ``nodes`` real node processes (``LiveTestnet``);
   it waits for genesis and for the operator's grant.
2. ``apps`` counter apps (``apps/counter``: a shell loop that counts into its state
   dir) submitted through the CLI a few at a time (``lab/balance_setup.submit_specs``);
   the planner places them (no drain: the paper's steady state, not its worst case).
3. Waits until every app runs exactly once (one unfrozen process group on the host,
   found by its tag) on the node the chain places it on.
4. Holds ``hold_slots`` slots, sampling the process table every second: the most
   unfrozen copies of one app ever seen at once, and the apps seen not running.
5. Stops the testnet; its summary (``summary.json``: blocks, skip blocks after the
   join, distinct heads, report figures, RSS and CPU per slot) goes into the result.

The result says whether the claim held: every node joined, 0 skip blocks after the
join, one head, every app once throughout the hold, nothing left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.lab.balance_setup import submit_specs
from edgechain.lab.exactly_once_watch import CounterApp, Observer, get_fleet
from edgechain.lab.faults_live import LiveError, LiveTestnet, wait_until
from edgechain.runtime.samples import get_apps_dir

SAMPLE_S = 1.0
CLAIM_HTTP_TIMEOUT_S = 30.0
"""How long a node may take to answer in this lab (its testnet has no paused node)."""


@dataclass(frozen=True)
class ClaimConfig:
    run_dir: Path
    """Must not exist yet, under a directory others may traverse (0711)."""
    nodes: int = 100
    committee: int = 16
    apps: int = 200
    slot_s: float = 16.0
    join_s: float = 1.0
    hold_slots: int = 10
    counter_interval_s: float = 2.0
    app_cpu_bp: int = 50
    """Each app's declared CPU request (0.5 % of a node): a counter's real use is less."""
    setup_timeout_s: float = 3600.0
    vdf_fraction: float | None = None
    """Of a slot, the producer's VDF (``testnet --vdf-fraction``; None: the node's 0.25)."""
    log: Callable[[str], None] = field(default=lambda _: None)


def write_specs(config: ClaimConfig) -> tuple[dict[str, Path], dict[str, str]]:
    """The apps' spec files: name -> path, and name -> tag (in the counter's argv)."""
    spec_dir = config.run_dir.parent / f"{config.run_dir.name}-specs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    script = get_apps_dir() / "counter" / "counter.sh"
    run = secrets.token_hex(3)
    specs, tags = {}, {}
    for index in range(config.apps):
        name = f"claim-{index:03d}"
        tag = f"claim-{os.getpid()}-{run}-{index:03d}"
        path = spec_dir / f"{name}.yaml"
        path.write_text(
            f"name: {name}\n"
            "runtime: process\n"
            f'command: ["/bin/sh", "{script}", "0", "{config.counter_interval_s:g}", "{tag}"]\n'
            f"cpu_bp: {config.app_cpu_bp}\n"
            "ram_bp: 10\n"
        )
        specs[name], tags[name] = path, tag
    return specs, tags


def wait_all_once(net: LiveTestnet, obs: Observer, timeout_s: float) -> None:
    """Every app runs exactly once, on the node the chain places it on."""
    last = ["nothing sampled yet"]

    def placed() -> bool:
        _, instances = obs.scan()
        once = obs.get_running_once(instances)
        if set(once) != set(obs.apps):
            last[0] = f"{len(once)} of {len(obs.apps)} apps run once"
            return False
        fleet = get_fleet(net)
        wrong = [a for a in obs.apps if (fleet.get(a) or {}).get("node_name") != once[a].node]
        last[0] = f"{len(wrong)} apps not where the chain places them"
        return not wrong

    try:
        wait_until(placed, "every app once where the chain says", timeout_s, net.check_alive)
    except LiveError as exc:
        raise LiveError(f"{exc}; last: {last[0]}") from None


def hold(net: LiveTestnet, obs: Observer, seconds: float) -> dict[str, Any]:
    """Sample the process table for ``seconds``: samples in which some app was not
    running once (the most copies of one app is the observer's ``max_copies``)."""
    end = time.monotonic() + seconds
    samples = short = 0
    while time.monotonic() < end:
        net.check_alive()
        _, instances = obs.scan(timed=True)
        samples += 1
        if len(obs.get_running_once(instances)) != len(obs.apps):
            short += 1
        time.sleep(SAMPLE_S)
    return {"seconds": round(seconds, 1), "samples": samples, "samples_not_all_once": short}


def run_claim(config: ClaimConfig) -> dict[str, Any]:
    """One run (module docstring). Never leaves a process behind; a step that cannot
    complete ends the run with ``error`` set."""
    net = LiveTestnet(
        config.run_dir,
        nodes=config.nodes,
        committee=config.committee,
        slot_s=config.slot_s,
        join_s=config.join_s,
        vdf_fraction=config.vdf_fraction,
    )
    # 100 node processes on 2 cores: a node's API can take many seconds to answer a
    # request that arrives while it validates a block (it gets ~2 % of a core).
    net.http_timeout_s = CLAIM_HTTP_TIMEOUT_S
    result: dict[str, Any] = {
        "config": {
            "nodes": config.nodes,
            "committee": config.committee,
            "apps": config.apps,
            "slot_s": config.slot_s,
            "join_s": config.join_s,
            "hold_slots": config.hold_slots,
            "counter_interval_s": config.counter_interval_s,
            "app_cpu_bp": config.app_cpu_bp,
        },
        "run_dir": str(config.run_dir),
        "error": None,
    }
    obs: Observer | None = None
    started = time.monotonic()
    try:
        net.start()
        net.wait_ready(config.setup_timeout_s)
        result["ready_after_s"] = round(time.monotonic() - started, 1)
        config.log(f"genesis and grant after {result['ready_after_s']} s; submitting")
        specs, tags = write_specs(config)
        net.tags.update(tags.values())
        ids = submit_specs(net, specs, net.run_dir / "client.toml", config.setup_timeout_s,
                           config.log)  # fmt: skip
        obs = Observer(net, {ids[n]: CounterApp(n, tags[n], ids[n]) for n in specs})
        result["submitted_after_s"] = round(time.monotonic() - started, 1)
        config.log(f"{len(ids)} apps on chain after {result['submitted_after_s']} s")
        wait_all_once(net, obs, config.setup_timeout_s)
        result["all_running_after_s"] = round(time.monotonic() - started, 1)
        config.log(f"every app runs once after {result['all_running_after_s']} s; holding")
        result["hold"] = hold(net, obs, config.hold_slots * config.slot_s)
        result["nodes_running_apps"] = len({i.node for i in obs.scan()[1]})
    except LiveError as exc:
        result["error"] = str(exc)
        config.log(f"error: {exc}")
    except KeyboardInterrupt:
        result["error"] = "interrupted"  # the testnet still stops, and the result is kept
    finally:
        result.update(net.stop_and_record(started))
    result["copies"] = obs.to_json() if obs is not None else None
    result["testnet"] = read_testnet_summary(config.run_dir)
    result["violations"] = check_claim(result)
    result["ok"] = not result["violations"]
    return result


def read_testnet_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary


def check_claim(result: dict[str, Any]) -> list[str]:
    """What of the claim did not hold (empty: it held)."""
    out = []
    if result["error"]:
        out.append(f"run error: {result['error']}")
    copies = result.get("copies") or {}
    if copies.get("max_unfrozen_copies", 0) > 1:
        out.append(f"an app ran twice: {copies.get('doubles')}")
    held = result.get("hold") or {}
    if held.get("samples_not_all_once"):
        out.append(f"{held['samples_not_all_once']} samples with an app not running once")
    if result["leftover_processes"]:
        out.append(f"left behind: {result['leftover_processes']}")
    net = result.get("testnet")
    if net is None:
        out.append("no testnet summary")
        return out
    if net.get("nodes_without_genesis"):
        out.append(f"nodes without genesis: {net['nodes_without_genesis']}")
    if net.get("skip_blocks_after_join"):
        out.append(f"{net['skip_blocks_after_join']} skip blocks after the join")
    if net.get("distinct_heads") != 1:
        out.append(f"{net.get('distinct_heads')} heads at the end")
    return out
