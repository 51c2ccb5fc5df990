"""Live evidence for "every app runs exactly once" (issue 9, "Must show"): a device that
dies, and a node paused for a while, on a real testnet.

One run (:func:`run_exactly_once`): start ``edgechain testnet`` (``lab/faults_live.py``),
submit N stateful counter apps through the CLI to one node, wait until each runs exactly
once and has a replica on its replica node, then on the same testnet, one after the
other (the pause comes second so the kill's recoveries are exercised again; a fresh
testnet would cost another genesis and N submissions):

* **kill** — the node hosting the most apps dies with its apps and its watchdog: all
  frozen with SIGSTOP, then SIGKILLed, so nothing of it acts after the first signal.
  Per app: seconds and slots until it runs exactly once again, and the count it resumed
  from (``counter: starting from N`` in its new log) against the newest replica's count
  and the count it had at the kill.
* **pause** — the (live) node hosting the most apps is SIGSTOPped for ``pause_s``; its
  watchdog and apps are left alone, as on a wedged node. Per app: when its copy there
  froze (from the pause, and from the node's lease end), when it ran elsewhere, and after
  SIGCONT when the stale copy was gone; the node's log after SIGCONT says where that
  time went (``lab/exactly_once_report.py``).

The process table is sampled every ``sample_s`` (one instance per process group) from
setup to the end; an app with two unfrozen copies in a sample, still both unfrozen on a
second look right after, is a violation (the second look keeps a scan that is not
atomic, which may read a migration's origin before it froze and its destination after
it started, from being taken for a double).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from edgechain.lab.exactly_once_report import (
    Bounds,
    check_result,
    read_node_log,
    read_watchdog_log,
)
from edgechain.lab.exactly_once_watch import (
    NODES_POLL_S,
    SETTLE_SLOTS,
    ExactlyOnceConfig,
    Observer,
    ReplicaWatch,
    StartLines,
    check_final,
    describe_resumption,
    get_fleet,
    get_last_seen,
    get_recover_slot,
    get_size,
    pick_host,
    submit_apps,
    wait_steady,
)
from edgechain.lab.faults_live import (
    Instance,
    LiveError,
    LiveTestnet,
    by_app,
    confirm_running,
    get_watchdog_pid,
    read_count,
    signal_groups,
)
from edgechain.orchestrator.liveness import get_fence_slots
from edgechain.runtime.lease import (
    LEASE_FILE,
    WATCHDOG_LOG_FILE,
    WATCHDOG_STATE_FILE,
    read_json,
)

__all__ = ["ExactlyOnceConfig", "run_exactly_once"]

RESUME_WATCH_SLOTS = 5
"""Sampling goes on at least this long after SIGCONT, however early the stale copies
went: the node catches up with the chain then (about a slot here), and a copy it would
start again on an old head must show up in the samples."""


def run_kill(net: LiveTestnet, obs: Observer, config: ExactlyOnceConfig) -> dict[str, Any]:
    """kill -9 of the node hosting the most apps, with its apps and watchdog."""
    params = net.get_params()
    k = params.down_after_slots
    nodes = net.get_nodes()
    _, instances = obs.scan()
    host = pick_host(instances, ())
    node = nodes[host]
    victims = {i.app: i for i in instances if i.node == host}
    fleet = get_fleet(net)
    last_seen = get_last_seen(net, node.node_id, (host,))
    groups = [node.pid, *(i.pid for i in victims.values())]
    watchdog = get_watchdog_pid(node.data_dir)
    if watchdog is not None:
        groups.append(watchdog)  # a dying device takes its watchdog along
    # All of it stops first, then dies: nothing of the device acts after the first signal.
    # Every fault's time is read just before its signal: this process may be preempted
    # right after sending it, and a time read late would shorten every latency.
    t_kill = time.time()
    signal_groups(groups, signal.SIGSTOP)
    pre_counts = {
        app: read_count(node.data_dir / "apps" / app / "state" / "count") for app in victims
    }
    signal_groups(groups, signal.SIGKILL)
    config.log(
        f"kill: {host} and its {len(victims)} apps killed at slot {net.get_slot(t_kill):.1f}"
    )
    replicas = ReplicaWatch(net, {app: fleet[app]["replica_name"] for app in victims})
    replicas.refresh()
    recovered: dict[str, tuple[float, Instance]] = {}
    started = StartLines(net)
    deadline = t_kill + 3 * k * config.slot_s
    next_poll = 0.0
    while time.time() < deadline:
        t, instances = obs.scan(timed=True)
        once = obs.get_running_once(instances)
        for app in victims:
            if app not in recovered and app in once and once[app].node != host:
                recovered[app] = (t, once[app])
                started.add(app, once[app])
        started.poll()
        if t >= next_poll:
            seen = get_last_seen(net, node.node_id, (host,))
            last_seen = max(last_seen or -1, seen) if seen is not None else last_seen
            replicas.refresh(recovered)
            next_poll = t + NODES_POLL_S
        last = max((r[0] for r in recovered.values()), default=t)
        if len(recovered) == len(victims) and t - last >= SETTLE_SLOTS * config.slot_s:
            break
        time.sleep(max(0.0, t + config.sample_s - time.time()))
    started.wait()
    fleet_after = get_fleet(net, (host,))
    copies_at_end = by_app(instances)
    apps = []
    for app in sorted(victims, key=lambda a: obs.apps[a].name):
        replica = replicas.seen[app]
        entry: dict[str, Any] = {
            "name": obs.apps[app].name,
            "app": app,
            "replica_node": fleet[app]["replica_name"],
            "replica_slot": replica.slot if replica else None,
            "count_at_kill": pre_counts[app],
            "recovered_on": None,
            "chain_node": fleet_after[app]["node_name"],
            "copies_at_end": [[i.node, i.frozen] for i in copies_at_end.get(app, [])],
        }
        if app in recovered:
            t, first = recovered[app]
            start, at_kill = started.found.get(app), pre_counts[app]
            entry.update(
                recovered_on=first.node,
                recovered_after_s=round(t - t_kill, 2),
                recovered_after_slots=round((t - t_kill) / config.slot_s, 2),
                recovered_slot=round(net.get_slot(t), 2),
                recover_block_slot=get_recover_slot(net, app, net.get_slot(t_kill), (host,)),
                behind_count_at_kill=None if start is None or at_kill is None else at_kill - start,
                **describe_resumption(start, replica.count if replica else None),
            )
        apps.append(entry)
    return {
        "node": host,
        "node_id": node.node_id,
        "apps_on_chain": sorted(fleet[a]["name"] for a in fleet if fleet[a]["node_name"] == host),
        "killed_at_slot": round(net.get_slot(t_kill), 2),
        "last_seen_slot": last_seen,
        "apps": apps,
    }


def run_pause(
    net: LiveTestnet, obs: Observer, config: ExactlyOnceConfig, dead: tuple[str, ...]
) -> dict[str, Any]:
    """SIGSTOP of the live node hosting the most apps for ``pause_s``, then SIGCONT."""
    params = net.get_params()
    k = params.down_after_slots
    nodes = net.get_nodes()
    _, instances = obs.scan()
    host = pick_host(instances, dead)
    node = nodes[host]
    victims = sorted((i.app for i in instances if i.node == host), key=lambda a: obs.apps[a].name)
    avoid = (*dead, host)
    fleet = get_fleet(net, dead)
    last_seen = get_last_seen(net, node.node_id, avoid)
    replicas = ReplicaWatch(net, {app: fleet[app]["replica_name"] for app in victims})
    t_stop = time.time()
    signal_groups([node.pid], signal.SIGSTOP)  # the node only: its watchdog and apps run on
    lease = read_json(node.data_dir / LEASE_FILE) or {}
    config.log(f"pause: {host} ({len(victims)} apps) stopped at slot {net.get_slot(t_stop):.1f}")
    replicas.refresh()
    frozen_since: dict[str, float] = {}
    elsewhere: dict[str, tuple[float, Instance]] = {}
    started = StartLines(net)
    gone: dict[str, float] = {}
    frozen_counts: dict[str, int | None] = {}
    t_cont: float | None = None
    watchdog: dict[str, Any] = {}
    log_offset = 0
    deadline = t_stop + config.pause_s + 3 * k * config.slot_s
    next_poll = 0.0
    while time.time() < deadline:
        t, instances = obs.scan(timed=True)
        groups = by_app(instances)
        for app in victims:
            group = groups.get(app, [])
            here = [i for i in group if i.node == host]
            if here:
                gone.pop(app, None)  # a copy (again) on the paused node
                if t_cont is None and all(i.frozen for i in here):
                    frozen_since.setdefault(app, t)  # the start of the current stretch
                elif t_cont is None and confirm_running(i.pid for i in here if not i.frozen):
                    # A second look, as for doubles: a frozen copy the watchdog retires
                    # (SIGKILL) reads as running for an instant (is_dying's window), and
                    # ended the stretch it had been frozen for (a make test run: "not
                    # frozen", the watchdog's log saying frozen for 4 s, then retired).
                    frozen_since.pop(app, None)
            elif app not in gone:
                # Killed: by the node after SIGCONT, or already during the pause by its
                # watchdog, which retires what it froze once the chain may recover it.
                gone[app] = t
            unfrozen = [i for i in group if not i.frozen]
            if app not in elsewhere and len(unfrozen) == 1 and unfrozen[0].node != host:
                elsewhere[app] = (t, unfrozen[0])
                started.add(app, unfrozen[0])
        started.poll()
        if t_cont is None and t >= t_stop + config.pause_s:
            # Still stopped, so final: the count each frozen copy holds.
            frozen_counts = {
                a: read_count(node.data_dir / "apps" / a / "state" / "count") for a in victims
            }
            watchdog = read_json(node.data_dir / WATCHDOG_STATE_FILE) or {}
            log_offset = get_size(node.data_dir / "stderr.log")
            t_cont = time.time()
            signal_groups([node.pid], signal.SIGCONT)
            config.log(f"pause: {host} continued at slot {net.get_slot(t_cont):.1f}")
        if t >= next_poll:
            seen = get_last_seen(net, node.node_id, avoid) if t_cont is None else None
            last_seen = max(last_seen or -1, seen) if seen is not None else last_seen
            replicas.refresh(elsewhere)
            next_poll = t + NODES_POLL_S
        events = [e[0] for e in elsewhere.values()] + list(gone.values())
        if (
            t_cont is not None
            and len(gone) == len(elsewhere) == len(victims)
            and t - max(events, default=t) >= SETTLE_SLOTS * config.slot_s
            and t - t_cont >= RESUME_WATCH_SLOTS * config.slot_s
        ):
            break
        time.sleep(max(0.0, t + config.sample_s - time.time()))
    if t_cont is None:  # the loop ran out before the pause did (a too long --pause)
        t_cont = time.time()
        signal_groups([node.pid], signal.SIGCONT)
    started.wait()
    copies_at_end = by_app(instances)
    fleet_after = get_fleet(net, dead)
    valid_until = lease.get("valid_until_ms")
    lease_end = valid_until / 1000 if isinstance(valid_until, int) else None
    apps = []
    for app in victims:
        replica = replicas.seen[app]
        frozen_at = frozen_since.get(app)
        entry: dict[str, Any] = {
            "name": obs.apps[app].name,
            "app": app,
            "replica_node": fleet[app]["replica_name"],
            "replica_slot": replica.slot if replica else None,
            "frozen_after_s": None if frozen_at is None else round(frozen_at - t_stop, 2),
            "frozen_after_slots": None
            if frozen_at is None
            else round((frozen_at - t_stop) / config.slot_s, 2),
            "frozen_vs_lease_end_s": None
            if frozen_at is None or lease_end is None
            else round(frozen_at - lease_end, 2),
            "frozen_count": frozen_counts.get(app),
            "recovered_on": None,
            "chain_node": fleet_after[app]["node_name"],
            "copies_at_end": [[i.node, i.frozen] for i in copies_at_end.get(app, [])],
            "stale_gone_after_pause_s": None if app not in gone else round(gone[app] - t_stop, 2),
            # Negative: gone before SIGCONT (the watchdog retired it during the pause).
            "stale_gone_after_cont_s": None if app not in gone else round(gone[app] - t_cont, 2),
            "stale_gone_after_cont_slots": None
            if app not in gone
            else round((gone[app] - t_cont) / config.slot_s, 2),
        }
        if app in elsewhere:
            t, first = elsewhere[app]
            start, frozen_count = started.found.get(app), frozen_counts.get(app)
            entry.update(
                recovered_on=first.node,
                ran_elsewhere_after_s=round(t - t_stop, 2),
                ran_elsewhere_after_slots=round((t - t_stop) / config.slot_s, 2),
                ran_elsewhere_slot=round(net.get_slot(t), 2),
                recover_block_slot=get_recover_slot(net, app, net.get_slot(t_stop), avoid),
                behind_frozen_count=None
                if start is None or frozen_count is None
                else frozen_count - start,
                **describe_resumption(start, replica.count if replica else None),
            )
        apps.append(entry)
    since_ms = watchdog.get("since_ms")
    return {
        "node": host,
        "node_id": node.node_id,
        "apps_on_chain": sorted(fleet[a]["name"] for a in fleet if fleet[a]["node_name"] == host),
        "paused_at_slot": round(net.get_slot(t_stop), 2),
        "continued_at_slot": round(net.get_slot(t_cont), 2),
        "pause_s": round(t_cont - t_stop, 2),
        "last_seen_slot": last_seen,
        "lease_end_slot": None if lease_end is None else round(net.get_slot(lease_end), 2),
        "watchdog_frozen": sorted(watchdog.get("frozen") or []),
        "watchdog_log": read_watchdog_log(node.data_dir / WATCHDOG_LOG_FILE, t_stop),
        "watchdog_frozen_since_slot": round(net.get_slot(since_ms / 1000), 2)
        if isinstance(since_ms, int)
        else None,
        "apps": apps,
        "node_log": read_node_log(
            node.data_dir / "stderr.log",
            log_offset,
            t_cont,
            net.get_slot,
            config.slot_s,
            {e["recover_block_slot"] for e in apps if e.get("recover_block_slot") is not None},
        ),
    }


def run_exactly_once(config: ExactlyOnceConfig) -> dict[str, Any]:
    """One run: setup, kill, pause (module docstring). Never leaves a process behind;
    a step that cannot complete ends the run with ``error`` set."""
    net = LiveTestnet(
        config.run_dir,
        nodes=config.nodes,
        committee=config.committee,
        slot_s=config.slot_s,
        vdf_fraction=config.vdf_fraction,
    )
    result: dict[str, Any] = {"run_dir": str(config.run_dir), "error": None}
    obs: Observer | None = None
    started = time.monotonic()
    try:
        net.start()
        net.wait_ready(config.setup_timeout_s)
        params = net.get_params()
        k = params.down_after_slots
        result["params"] = {
            "K": k,
            "F": get_fence_slots(k),
            "R": config.replica_every,
            "slot_s": params.slot_duration_ms / 1000,
            "nodes": config.nodes,
            "committee": config.committee,
            "apps": config.apps,
            "pause_s": config.pause_s,
            "counter_interval_s": config.counter_interval_s,
            "sample_s": config.sample_s,
        }
        result["ready_after_s"] = round(time.monotonic() - started, 1)
        config.log(f"testnet ready after {result['ready_after_s']} s; submitting")
        apps = submit_apps(net, config)
        obs = Observer(net, apps)
        wait_steady(net, obs, 0, config.setup_timeout_s)
        result["placed_after_s"] = round(time.monotonic() - started, 1)
        result["kill"] = run_kill(net, obs, config)
        dead = (result["kill"]["node"],)
        since = int(net.get_slot(time.time()))
        wait_steady(net, obs, since, config.setup_timeout_s, dead)
        result["pause"] = run_pause(net, obs, config, dead)
        wait_steady(net, obs, 0, config.setup_timeout_s, dead)
        result["final"] = check_final(net, obs, dead)
    except LiveError as exc:
        result["error"] = str(exc)
        config.log(f"error: {exc}")
    finally:
        result.update(net.stop_and_record(started))
    result["copies"] = obs.to_json() if obs is not None else None
    result["bounds"] = Bounds.for_params(result.get("params")).to_json()
    result["violations"] = check_result(result)
    result["ok"] = not result["violations"]
    return result
