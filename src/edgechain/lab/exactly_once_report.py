"""The bounds a run of ``lab/exactly_once.py`` must meet, its readable report, and the
paused node's log after SIGCONT (where the stale copies' stop time goes).

Bounds, in slots (issue 9, "Must show"):

* **recover** ``K + 3``: after the kill (the fault ends at once) and after the pause's
  start, each app runs exactly once again, elsewhere.
* **freeze** ``F + 1``: the paused node's apps are frozen within F slots of the
  node's last contribution on the chain it holds, which is in the pause's slot at the
  latest: its lease (``min(own last_seen, quorum slot) + F``) ends at a slot *start*
  at most F slots after the pause's instant. On top come the watchdog's 100 ms poll,
  the sampler's 100 ms, and on a loaded 2-core host a few hundred ms of scheduling for
  either; a pause that begins just after a slot starts leaves no room for those within
  F. One slot of slack covers them without hiding a freeze a whole slot late
  (``frozen_vs_lease_end_s`` is the figure without any slack: freeze minus lease end).
* **stale** ``2``: after SIGCONT the node's stale copies are gone (negative: gone
  before it, retired by the watchdog during the pause). The issue says one slot; a node
  that stops them itself first validates the blocks it missed, so the check allows two
  and the report says which copies took more than one (``stale_over_one_slot``).

And always: at most one unfrozen copy of an app at any sampled moment, counters never
below the newest replica, every app running exactly once where the chain places it at
the end, and nothing of the testnet left running after it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgechain.orchestrator.liveness import get_fence_slots

ISSUE_STALE_SLOTS = 1
LOG_MESSAGES = frozenset(
    {"block accepted", "reorg", "stale app stopped", "app started", "app stopped",
     "migration order", "replica sent", "replica dropped", "node started"}
)  # fmt: skip
"""Node log lines kept in the timeline after SIGCONT (plus any warning or error)."""
TIMELINE_LINES = 40


@dataclass(frozen=True)
class Bounds:
    recover_slots: float
    freeze_slots: float
    stale_slots: float

    @classmethod
    def for_params(cls, params: Mapping[str, Any] | None) -> Bounds:
        k = int(params["K"]) if params else 12
        return cls(recover_slots=k + 3, freeze_slots=get_fence_slots(k) + 1, stale_slots=2)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def read_node_log(
    path: Path,
    offset: int,
    t_cont: float,
    get_slot: Callable[[float], float],
    slot_s: float,
    recover_slots: Collection[int] = (),
) -> dict[str, Any]:
    """What the node logged from ``offset`` (its size at SIGCONT): the first line, the
    first block accepted, the blocks of ``recover_slots`` (those whose plan recovered
    its apps elsewhere), the first block of the current slot (caught up), and each
    ``stale app stopped``, in seconds after SIGCONT; and a short timeline."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except OSError:
        return {"error": f"cannot read {path}"}
    lines = []
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("t"), int | float):
            lines.append(line)

    def after(line: Mapping[str, Any]) -> float:
        return round(float(line["t"]) - t_cont, 3)

    blocks = [x for x in lines if x.get("msg") == "block accepted"]
    caught_up = next((x for x in blocks if x["slot"] >= int(get_slot(float(x["t"])))), None)
    stale = {str(x.get("app")): after(x) for x in lines if x.get("msg") == "stale app stopped"}
    timeline = [
        {"after_s": after(x), "slot": round(get_slot(float(x["t"])), 2), "msg": x.get("msg"),
         **{k: x[k] for k in ("app", "why", "skip") if k in x},
         **({"block_slot": x["slot"]} if "slot" in x else {})}
        for x in lines
        if x.get("msg") in LOG_MESSAGES or x.get("level") in ("warning", "error")
    ][:TIMELINE_LINES]  # fmt: skip
    return {
        "first_line_after_s": after(lines[0]) if lines else None,
        "first_block_after_s": after(blocks[0]) if blocks else None,
        "first_block_slot": blocks[0]["slot"] if blocks else None,
        "blocks_in_first_slot": sum(1 for x in blocks if after(x) < slot_s),
        "recover_blocks_after_s": {
            str(x["slot"]): after(x) for x in blocks if x["slot"] in recover_slots
        },
        "caught_up_after_s": after(caught_up) if caught_up else None,
        "stale_stopped_after_s": stale,
        "timeline": timeline,
    }


def read_watchdog_log(path: Path, t_from: float) -> list[dict[str, Any]]:
    """The watchdog's freezes, thaws and kills from ``t_from`` on (its JSON lines carry
    ``ms``, ``event``, ``app``), in seconds after ``t_from``."""
    events = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("ms"), int):
            continue
        if line["ms"] / 1000 >= t_from:
            events.append(
                {
                    "after_s": round(line["ms"] / 1000 - t_from, 3),
                    "event": line.get("event"),
                    "app": str(line.get("app", ""))[:16] or None,
                }
            )
    return events[:TIMELINE_LINES]


def check_result(result: Mapping[str, Any]) -> list[str]:
    """Every way the run missed the issue's bounds (empty: it met them all)."""
    bounds = Bounds.for_params(result.get("params"))
    problems = []
    if result.get("error"):
        problems.append(f"run error: {result['error']}")
    copies = result.get("copies") or {}
    if copies.get("max_unfrozen_copies", 0) > 1:
        problems.append(f"two unfrozen copies: {copies['doubles'][:5]}")
    kill, pause = result.get("kill"), result.get("pause")
    for entry in kill["apps"] if kill else ():
        name = f"kill: {entry['name']}"
        if entry["recovered_on"] is None:
            problems.append(f"{name}: never ran exactly once again{_where(entry)}")
            continue
        if entry["recovered_after_slots"] > bounds.recover_slots:
            problems.append(f"{name}: ran again after {entry['recovered_after_slots']} slots")
        problems += _check_counter(name, entry)
    for entry in pause["apps"] if pause else ():
        name = f"pause: {entry['name']}"
        frozen = entry["frozen_after_slots"]
        if frozen is None:
            problems.append(f"{name}: its copy on the paused node was not frozen")
        elif frozen > bounds.freeze_slots:
            problems.append(f"{name}: frozen after {frozen} slots")
        if entry["recovered_on"] is None:
            problems.append(f"{name}: never ran elsewhere{_where(entry)}")
        else:
            if entry["ran_elsewhere_after_slots"] > bounds.recover_slots:
                problems.append(f"{name}: ran elsewhere after {entry['ran_elsewhere_after_slots']}")
            problems += _check_counter(name, entry)
        stale = entry["stale_gone_after_cont_slots"]
        if stale is None:
            problems.append(f"{name}: the stale copy never went")
        elif stale > bounds.stale_slots:
            problems.append(f"{name}: the stale copy went {stale} slots after SIGCONT")
    problems += list(result.get("final") or ())
    if result.get("leftover_processes"):
        problems.append(f"left running after the stop: {result['leftover_processes']}")
    return problems


def _where(entry: Mapping[str, Any]) -> str:
    return f" (chain: {entry['chain_node']}; copies at the end: {entry['copies_at_end']})"


def _check_counter(name: str, entry: Mapping[str, Any]) -> list[str]:
    if entry["started_from"] is None:
        return [f"{name}: no 'starting from' line in its new log"]
    if entry["below_replica"]:
        started, replica = entry["started_from"], entry["replica_count"]
        return [f"{name}: resumed from {started}, below its replica's {replica}"]
    return []


def get_stale_over_one_slot(result: Mapping[str, Any]) -> list[str]:
    """The paused node's stale copies that took more than the issue's one slot."""
    pause = result.get("pause") or {}
    return [
        e["name"]
        for e in pause.get("apps", ())
        if (e["stale_gone_after_cont_slots"] or 0) > ISSUE_STALE_SLOTS
    ]


def _figures(values: list[Any]) -> str:
    numbers = [v for v in values if isinstance(v, int | float)]
    if not numbers:
        return "-"
    return f"min {min(numbers)} max {max(numbers)}"


def format_report(result: Mapping[str, Any]) -> str:
    """A readable summary of one run."""
    p = result.get("params") or {}
    lines = [
        f"exactly once: {p.get('nodes')} nodes, {p.get('apps')} apps, slot {p.get('slot_s')} s, "
        f"K {p.get('K')}, F {p.get('F')}, R {p.get('R')}, pause {p.get('pause_s')} s "
        f"(ready after {result.get('ready_after_s')} s, "
        f"placed after {result.get('placed_after_s')} s)"
    ]
    kill = result.get("kill")
    if kill:
        lines.append(
            f"kill {kill['node']} at slot {kill['killed_at_slot']} "
            f"(last seen on chain at slot {kill['last_seen_slot']}), {len(kill['apps'])} apps:"
        )
        for e in kill["apps"]:
            lines.append(
                f"  {e['name']}: on {e['recovered_on']} after {e.get('recovered_after_s')} s = "
                f"{e.get('recovered_after_slots')} slots "
                f"(recover block {e.get('recover_block_slot')}); "
                f"replica @{e['replica_slot']} count {e.get('replica_count')}, resumed from "
                f"{e.get('started_from')}, count at kill {e['count_at_kill']} "
                f"(behind {e.get('behind_count_at_kill')})"
            )  # fmt: skip
    pause = result.get("pause")
    if pause:
        log = pause["node_log"]
        lines.append(
            f"pause {pause['node']} at slot {pause['paused_at_slot']} for {pause['pause_s']} s "
            f"(last seen {pause['last_seen_slot']}, lease end slot {pause['lease_end_slot']}), "
            f"{len(pause['apps'])} apps:"
        )
        for e in pause["apps"]:
            lines.append(
                f"  {e['name']}: frozen after {e['frozen_after_s']} s = {e['frozen_after_slots']} "
                f"slots (vs lease end {e['frozen_vs_lease_end_s']} s); on {e['recovered_on']} "
                f"after {e.get('ran_elsewhere_after_slots')} slots (recover block "
                f"{e.get('recover_block_slot')}); stale gone {e['stale_gone_after_pause_s']} s "
                f"after the pause = {e['stale_gone_after_cont_s']} s after SIGCONT; "
                f"replica @{e['replica_slot']} "
                f"count {e.get('replica_count')}, resumed from {e.get('started_from')}, frozen "
                f"at {e['frozen_count']}"
            )  # fmt: skip
        lines.append(
            f"  node after SIGCONT: first log line {log.get('first_line_after_s')} s, first "
            f"block {log.get('first_block_after_s')} s (slot {log.get('first_block_slot')}), "
            f"recover blocks {log.get('recover_blocks_after_s')} s, "
            f"caught up {log.get('caught_up_after_s')} s, stale stopped "
            f"{_figures(list((log.get('stale_stopped_after_s') or {}).values()))} s"
        )
        watchdog = [f"{w['event']} {w['app']} @{w['after_s']}s" for w in pause["watchdog_log"]]
        lines.append(f"  its watchdog after the pause: {', '.join(watchdog) or '-'}")
    copies = result.get("copies") or {}
    lines.append(
        f"max unfrozen copies {copies.get('max_unfrozen_copies')} over {copies.get('samples')} "
        f"samples (max gap {copies.get('max_sample_gap_s')} s; unconfirmed doubles "
        f"{copies.get('unconfirmed_doubles')})"
    )
    over = get_stale_over_one_slot(result)
    if over:
        lines.append(f"stale copies gone later than the issue's one slot: {over}")
    for problem in result.get("violations") or ():
        lines.append(f"VIOLATION {problem}")
    lines.append(("OK" if result.get("ok") else "FAILED") + f" ({result.get('elapsed_s')} s)")
    return "\n".join(lines)
