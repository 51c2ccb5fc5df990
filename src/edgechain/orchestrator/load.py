"""Integer load scores, and the planner's load model built from a block's reports.

Paper §3.2: a node's state is the vector {app, cpu, ram, disk, network, timestamp} per
application; Algorithm 1 (§3.3) compares node and app "scores" without defining them.
Our score is an integer combination of basis points (Rule 2: no floats):

    score = CPU_WEIGHT * cpu_bp + RAM_WEIGHT * ram_bp        (each share clamped to 0..10 000)

CPU counts twice: it is the resource the paper balances (its evaluation, Fig. 9-11,
plots CPU load) and the one every co-located app contends for at once. RAM is included
so that a node whose memory is full does not look free, at half weight because a RAM
share says less about the slowdown of the other apps. Disk is left out (mostly images
and state that the migration moves anyway, and disk shares are not comparable across
devices); network is in bytes per second, a different unit. A reported total scores at
most 30 000.

The load model (:func:`compute_load_model`) is where the planner's inputs meet:

* **Which listings count.** A report may name an app only if the registry places the
  app on the reporter, or moved it within the last ``HANDOVER_LISTING_SLOTS`` slots
  (the reporter may be a migration's origin still running it, or a node that has not
  stopped a stale copy yet). Any other listing is ignored everywhere below: a node
  naming apps it does not run (issue 12's hostile ``announce-apps``) would otherwise
  lower its own background by their claimed usage and look free to every placement,
  or set the demand of an app whose own node has not listed it yet. Honest reports
  are unaffected (``get_unclaimed_apps`` is what the nodes count as a peer error).
* ``app_score``: an app's measured usage, taken from the report of the node the
  registry places it on if that report lists it, else the lowest usage among the other
  reports that may list it (the app is still running at a migration's origin; a liar
  can only lower it there, for the few slots until its node reports it), else the
  spec's ``cpu_bp``/``ram_bp`` hints (queued apps, apps not started yet; an app that
  declares no CPU counts at ``DEFAULT_CPU_REQUEST_BP``).
* **Saturation.** A node at capacity (report ``cpu_bp >= SATURATED_CPU_BP``) or under
  CPU pressure (``pressure_bp >= SATURATED_PRESSURE_BP``: some runnable task waited that
  share of the time, Linux PSI) shares its CPU among its apps, so each app's measured
  usage is a starved share, not its demand (200 apps wanting 880 % of a CPU each show
  about a ninth of their demand). An app measured on a saturated node counts at
  max(measured CPU, the spec's declared ``cpu_bp`` request): the request is the app's
  own statement of demand, the usage a lower bound. An app without a request counts at
  least at ``DEFAULT_CPU_REQUEST_BP`` there (2000 such apps sharing one CPU each show
  0.05 %, too little to be worth a move); the next reports, from unsaturated nodes,
  show its demand.
* ``background``: a reported node's total minus the measured usage of the apps it
  may list (the OS and anything not orchestrated), never negative.
* ``node load = background + sum of app_score over the apps the registry places on it``,
  which can exceed a saturated node's measured total: that excess is the load it could
  not show.
* ``app_state_bytes``: the state size the app's report gives (0 if none), the transfer
  cost the planner weighs moves against.
* ``state_room``: the app state each reported node can still take in, its report's
  ``state_room_bytes`` less the transfers of the apps the registry places on it that it
  has not listed since their move (not ``confirmed``: their state may still be on its
  way, so the free space it measured does not count it yet), each at
  ``TRANSFER_ROOM_FACTOR`` times its state. A node that does not measure
  it (``UNMEASURED_STATE_ROOM``) and an unreported node have no entry: no limit. The
  planner sends no app to a node whose room its state fills (``plan_state.py``).
* ``confirmed``: the apps whose registry node has listed them in a report made after
  their last move (report slot > ``last_move_slot``): the node runs them. Only those
  may be moved again (``planner.py``): the chain does not record a transfer's end, and
  an app balanced on before its last MIGRATE arrived was lost in a live run. Its
  origin was paused mid-handover; four slots later balancing moved it from the
  destination, which never had it, to a third node, which waited for a transfer that
  never came, while the paused origin, back, found it placed elsewhere and deleted its
  copy. A PLACE that has not started yet is the same case.

Charging each app to its *registry* node, not to wherever a report last saw it, is what
keeps a migration in flight from being counted twice: once the plan that moves an app
is in a block, its load is at the destination in every later plan, even if the origin's
next report still lists it (reports lag a slot behind; transfers take seconds to
minutes, paper Table 3).

A node with no report in the parent block (it just joined, or its report was lost in
the overlay) has an unknown background. We estimate it as the median background of the
reported nodes (the lower median; 0 when nobody reported, e.g. right after genesis), so
such a node is neither the favourite target of every placement, as a background of 0
would make it (a representative dropping reports could then steer apps), nor shunned.
It may receive PLACEs (otherwise nothing could be placed before the first reports
arrive), but the planner never migrates to or from it: an estimate is not comparable
with a measurement, and §3.2 accepts that a report lost in the overlay "only delays
potential migrations for a subset of applications". A report whose node is not a validator is
ignored. If a node appears in several reports, the one with the highest
(slot, timestamp_ms, canonical encoding) counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgechain.chain.model import (
    BASIS_POINTS,
    UNMEASURED_STATE_ROOM,
    AppSpec,
    AppUsage,
    ResourceReport,
)
from edgechain.chain.report_encoding import encode_report
from edgechain.orchestrator.registry import AppRecord, AppState, Registry, get_record
from edgechain.types import AppId, NodeId, Slot

CPU_WEIGHT = 2
RAM_WEIGHT = 1
MAX_SCORE = (CPU_WEIGHT + RAM_WEIGHT) * BASIS_POINTS

SATURATED_CPU_BP = 9_500
"""A node reporting at least this CPU share is at capacity: its apps are starved."""

SATURATED_PRESSURE_BP = 2_500
"""A node whose runnable tasks waited at least this share of the time (PSI "some avg10")
is saturated even below 95 % CPU (a few CPU-bound apps can leave a core idle while
the others queue)."""


def compute_load_score(cpu_bp: int, ram_bp: int) -> int:
    """The integer load of a (cpu, ram) pair in basis points; shares are clamped to
    [0, BASIS_POINTS] so that one absurd report cannot dominate the plan."""
    return CPU_WEIGHT * _clamp_share(cpu_bp) + RAM_WEIGHT * _clamp_share(ram_bp)


DEFAULT_CPU_REQUEST_BP = 100
"""The CPU an app that declares no request is expected to use before it is measured
(1 %). Counting it as 0 would stack every such app submitted in one block on the same
least-loaded node, as each placement would leave the loads unchanged."""


def get_cpu_request_bp(spec: AppSpec) -> int:
    """The CPU an app declares it wants, DEFAULT_CPU_REQUEST_BP when it declares none."""
    return spec.cpu_bp or DEFAULT_CPU_REQUEST_BP


def compute_hint_score(spec: AppSpec) -> int:
    """The load an app is expected to add before it has ever been measured: its
    declared request (``get_cpu_request_bp``)."""
    return compute_load_score(get_cpu_request_bp(spec), spec.ram_bp)


def compute_usage_score(usage: AppUsage) -> int:
    return compute_load_score(usage.cpu_bp, usage.ram_bp)


@dataclass(frozen=True)
class LoadModel:
    """Loads of the validators as the planner sees them at the start of a plan.

    ``node_load``: every validator (an unreported one with the median background);
    ``app_score``: every app in the registry; ``reported``: the validators with a
    report, the only ones that take part in migrations.
    """

    node_load: Mapping[NodeId, int]
    app_score: Mapping[AppId, int]
    reported: frozenset[NodeId]
    app_state_bytes: Mapping[AppId, int]
    saturated: frozenset[NodeId] = frozenset()
    confirmed: frozenset[AppId] = frozenset()
    state_room: Mapping[NodeId, int] = field(default_factory=dict)


def select_reports(
    reports: Sequence[ResourceReport], validators: frozenset[NodeId]
) -> dict[NodeId, ResourceReport]:
    """One report per validator: the highest (slot, timestamp_ms, canonical encoding),
    a total order on distinct reports, so the choice never depends on the order of the
    block's report list (block validation should already refuse duplicates)."""
    chosen: dict[NodeId, ResourceReport] = {}
    for report in reports:
        if report.node not in validators:
            continue
        current = chosen.get(report.node)
        if current is None or _report_rank(report) > _report_rank(current):
            chosen[report.node] = report
    return chosen


def is_saturated(report: ResourceReport) -> bool:
    """Whether the node's apps got less CPU than they wanted (module docstring)."""
    return report.cpu_bp >= SATURATED_CPU_BP or report.pressure_bp >= SATURATED_PRESSURE_BP


TRANSFER_ROOM_FACTOR = 2
"""A node takes an app whose state, this many times over, fits its room: a transfer
lands the whole payload on its disk before restoring the state from it (the archive and
the state, or pre-copy's round file and staging tree), and an origin writes the payload
out before sending it. Session 47: a 150 MB state could not leave a node with 80 MB
free; every attempt failed with ENOSPC while the chain placed the app elsewhere."""


START_ROOM_FACTOR = 1
"""A node takes an app it starts (PLACE, RECOVER) when its state, once, fits its room: the
app starts from nothing, or from the replica the node already holds, extracted once."""

KEPT_ROOM_FACTOR = 0
"""A RECOVER back to the origin of a handover that never landed (``placement.py``): the
origin kept the app's state dir, so it needs no room beyond some (a node with none at
all takes nothing, ``is_room_enough``)."""


def is_room_enough(room: int | None, state_bytes: int, factor: int) -> bool:
    """Whether a node with ``room`` for app state (None: not measured, no limit) takes
    an app whose state lands ``factor`` times: more than that, so a node with no room
    at all takes no app, not even one without state yet."""
    return room is None or factor * state_bytes < room


def can_write_out(room: int | None, state_bytes: int) -> bool:
    """Whether a node with ``room`` (None: no limit) can write an app's state out once,
    as a transfer's origin does before it sends it."""
    return room is None or state_bytes <= room


HANDOVER_LISTING_SLOTS = 16
"""How long after the registry moved an app (a MIGRATE, RECOVER or PLACE: its
``last_move_slot``) a node it does not place the app on may still list it: a
migration's origin runs the app until the destination has it (its retries end when the
destination is down, K = 12 slots), and a stale copy stops within a slot or two."""


def is_listing_allowed(record: AppRecord | None, reporter: NodeId, slot: Slot) -> bool:
    """May ``reporter`` list the app of ``record`` in the report planned at ``slot``?
    (module docstring, "Which listings count")."""
    if record is None:
        return False
    if record.node == reporter:
        return True
    moved = record.last_move_slot
    return moved is not None and slot - moved <= HANDOVER_LISTING_SLOTS


def get_unclaimed_apps(registry: Registry, report: ResourceReport, slot: Slot) -> list[AppId]:
    """The apps ``report`` lists that its node may not list (``is_listing_allowed``):
    what the planner ignores, and the nodes count as ``report_names_app_not_run``."""
    return [
        u.app
        for u in report.apps
        if not is_listing_allowed(get_record(registry, u.app), report.node, slot)
    ]


def compute_load_model(
    registry: Registry,
    reports: Sequence[ResourceReport],
    validators: frozenset[NodeId],
    slot: Slot,
) -> LoadModel:
    """Build the load model of the plan of ``slot`` (see the module docstring for every
    rule)."""
    chosen = select_reports(reports, validators)
    records = {r.app: r for r in registry.records}
    # Most reports list no app (issue 13: this runs over every validator each block).
    listed = {
        node: {
            app: usage
            for app, usage in _get_report_usages(report).items()
            if is_listing_allowed(records.get(app), node, slot)
        }
        if report.apps
        else {}
        for node, report in chosen.items()
    }
    saturated = frozenset(node for node, report in chosen.items() if is_saturated(report))
    own_usage, any_usage = _collect_usages(records, listed)
    app_score: dict[AppId, int] = {}
    state_bytes: dict[AppId, int] = {}
    node_load: dict[NodeId, int] = dict.fromkeys(validators, 0)
    for record in registry.records:
        found = own_usage.get(record.app) or any_usage.get(record.app)
        if found is None:
            score = compute_hint_score(record.spec)
        else:
            reporter, usage = found
            score = compute_demand_score(usage, record.spec, saturated=reporter in saturated)
            state_bytes[record.app] = usage.state_bytes
        app_score[record.app] = score
        # A stopped app runs nowhere: it keeps its node (and state) but weighs nothing.
        if (
            record.node is not None
            and record.node in node_load
            and record.state is AppState.RUNNING
        ):
            node_load[record.node] += score
    backgrounds = {
        node: compute_background(report, listed[node]) for node, report in chosen.items()
    }
    estimate = compute_median_background(list(backgrounds.values()))
    for node in node_load:
        node_load[node] += backgrounds.get(node, estimate)
    confirmed = compute_confirmed_apps(records, own_usage, chosen)
    return LoadModel(
        node_load=node_load,
        app_score=app_score,
        reported=frozenset(chosen),
        app_state_bytes=state_bytes,
        saturated=saturated,
        confirmed=confirmed,
        state_room=compute_state_room(records, chosen, state_bytes, confirmed),
    )


def compute_state_room(
    records: Mapping[AppId, AppRecord],
    chosen: Mapping[NodeId, ResourceReport],
    state_bytes: Mapping[AppId, int],
    confirmed: frozenset[AppId],
) -> dict[NodeId, int]:
    """Each reported node's room for app state (module docstring, ``state_room``): what
    it reported, less the apps placed on it whose state its measure may not count yet."""
    room = {
        node: report.state_room_bytes
        for node, report in chosen.items()
        if report.state_room_bytes < UNMEASURED_STATE_ROOM
    }
    for record in records.values():
        node = record.node
        if node is not None and node in room and record.app not in confirmed:
            room[node] -= TRANSFER_ROOM_FACTOR * state_bytes.get(record.app, 0)
    return room


def compute_confirmed_apps(
    records: Mapping[AppId, AppRecord],
    own_usage: Mapping[AppId, _Found],
    chosen: Mapping[NodeId, ResourceReport],
) -> frozenset[AppId]:
    """The apps listed by their registry node (``own_usage``, from
    :func:`_collect_usages`) in its report (``chosen``) made after their last move
    (module docstring, ``confirmed``). A report of slot s is built on the block of
    s - 1, so s > last_move_slot means its node knew of the move and ran the app when
    it reported."""
    return frozenset(
        app
        for app, (node, _) in own_usage.items()
        if is_reported_after_move(records[app], chosen[node].slot)
    )


def is_reported_after_move(record: AppRecord, report_slot: int) -> bool:
    """Whether a report of ``report_slot`` comes after the app's last move (or the app
    never moved): the one rule of :func:`compute_confirmed_apps` and
    :func:`is_move_landed`."""
    moved = record.last_move_slot
    return moved is None or report_slot > moved


def is_move_landed(record: AppRecord, reports: Iterable[ResourceReport]) -> bool:
    """Whether the app's registry node has reported running it since the app's last
    move: the chain's record says so (``AppRecord.move_landed``, block format 19), or
    :func:`compute_confirmed_apps`' rule for one app does, on a state's latest reports
    (``BlockState.reports``). Until then the node the app left keeps its copy
    (``runtime/lifecycle.py``, DISCARD), and a RECOVER may hand the app back there
    (``placement.get_unlanded_origin``)."""
    return record.node is not None and (
        record.move_landed
        or any(
            report.node == record.node
            and is_reported_after_move(record, report.slot)
            and any(usage.app == record.app for usage in report.apps)
            for report in reports
        )
    )


def compute_demand_score(usage: AppUsage, spec: AppSpec, *, saturated: bool) -> int:
    """An app's score from its measured usage; on a saturated node its CPU counts at
    least at its declared request (module docstring, "Saturation")."""
    request = get_cpu_request_bp(spec)
    cpu = max(usage.cpu_bp, request) if saturated else usage.cpu_bp
    return compute_load_score(cpu, usage.ram_bp)


def compute_median_background(backgrounds: Sequence[int]) -> int:
    """The lower median (an element, so an integer), 0 for none: the background
    assumed for a validator without a report."""
    if not backgrounds:
        return 0
    ordered = sorted(backgrounds)
    return ordered[(len(ordered) - 1) // 2]


def compute_background(report: ResourceReport, usages: Mapping[AppId, AppUsage]) -> int:
    """A node's load that is not one of its reported apps (``usages``, from
    :func:`_get_report_usages`) at their measured usage, never negative."""
    total = compute_load_score(report.cpu_bp, report.ram_bp)
    if not usages:
        return total
    return max(0, total - sum(compute_usage_score(u) for u in usages.values()))


_Found = tuple[NodeId, AppUsage]


def _collect_usages(
    records: Mapping[AppId, AppRecord], listed: Mapping[NodeId, Mapping[AppId, AppUsage]]
) -> tuple[dict[AppId, _Found], dict[AppId, _Found]]:
    """(usage reported by the app's registry node, the lowest usage reported by another
    node, ties to the smallest node id), each with its reporter, for every app in some
    chosen report's allowed listings."""
    own: dict[AppId, _Found] = {}
    lowest: dict[AppId, _Found] = {}
    for node in sorted(listed):
        for app, usage in listed[node].items():
            if records[app].node == node:  # listed: so the registry holds it
                own[app] = (node, usage)
                continue
            current = lowest.get(app)
            if current is None or _usage_rank(usage) < _usage_rank(current[1]):
                lowest[app] = (node, usage)
    return own, lowest


def _get_report_usages(report: ResourceReport) -> dict[AppId, AppUsage]:
    """App -> usage in one report; an app listed twice counts once, with its highest
    (score, encoding) (a malformed report must not change the result with its list
    order; validation refuses such reports anyway)."""
    usages: dict[AppId, AppUsage] = {}
    for usage in report.apps:
        current = usages.get(usage.app)
        if current is None or _usage_rank(usage) > _usage_rank(current):
            usages[usage.app] = usage
    return usages


def _usage_rank(usage: AppUsage) -> tuple[int, int, int, int, int, int]:
    return (
        compute_usage_score(usage),
        usage.cpu_bp,
        usage.disk_bp,
        usage.net_bps,
        usage.timestamp_ms,
        usage.state_bytes,
    )


def _report_rank(report: ResourceReport) -> tuple[int, int, bytes]:
    # Only evaluated when a node has two reports, so the encoding is rarely computed.
    return (report.slot, report.timestamp_ms, encode_report(report))


def _clamp_share(value: int) -> int:
    return 0 if value < 0 else BASIS_POINTS if value > BASIS_POINTS else value
