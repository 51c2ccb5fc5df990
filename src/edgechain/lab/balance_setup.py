"""How the balance lab (``lab/balance.py``) changes the fleet: through the CLI only, as
an operator would (``edgechain admin drain``, ``edgechain apps submit``).

Commands go out with ``--no-wait``, a few CLI processes at a time
(:func:`apply_commands`): waiting for each block in turn would take a slot per command,
and on a loaded host one CLI call takes a second or two. Sent at once, commands of one
key may reach a block producer out of their sequence order, and the chain then refuses
the lower ones as replays; so a command is sent again once it can no longer apply: its
CLI call failed (and ``FAILED_RESEND_S`` passed: the node may have had it anyway), or a
later command of the same key is on chain and its own is not (its sequence number is
spent, ``cli/commands.py``). A command still in flight is never sent twice, and a
submission counts as done once an app of its name is on chain.

Submissions avoid the race: many spec files go in one ``apps submit`` call, which
signs consecutive seqs (:func:`submit_specs`); the calls run one after another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain.lab.exactly_once_watch import Observer, get_fleet
from edgechain.lab.faults_live import CLI_TIMEOUT_S, LiveError, LiveTestnet, wait_until

CLI_WORKERS = 4
"""CLI processes at a time (each mostly imports; the host has other work to do)."""
POLL_S = 0.5
SUBMIT_BATCH = 50
"""Spec files per ``apps submit`` call (its seqs are consecutive; under the pool's
per-signer limit of 256 pending)."""
SUBMIT_S_PER_FILE = 5.0
"""Added to a submission call's time limit per file (100 nodes on 2 cores: a batch of 50
outlived the plain 120 s)."""
FAILED_RESEND_S = 30.0
"""A CLI call that failed may still have reached its node (the answer was lost, or came
after the CLI gave up on a loaded host): it is sent again only after this long, when the
chain would hold it by now, so an app is not submitted twice."""


@dataclass(frozen=True)
class Sent:
    """One command as the CLI answered it (``--json``); ``answer`` None: it failed."""

    argv: tuple[str, ...]
    answer: Any
    """The CLI's JSON: an object, or a list for a submission of several files."""
    error: str | None = None
    at: float = 0.0
    """When the CLI call ended (monotonic seconds)."""


def send(
    net: LiveTestnet, argv: Sequence[str], client: Path | None, timeout_s: float = CLI_TIMEOUT_S
) -> Sent:
    try:
        answer = net.cli(*argv, "--no-wait", client=client, timeout_s=timeout_s)
    except LiveError as exc:  # a collision of two sequence numbers, a busy node
        return Sent(tuple(argv), None, str(exc), time.monotonic())
    return Sent(tuple(argv), answer, None, time.monotonic())


def is_spent(net: LiveTestnet, sent: Sent) -> bool:
    """The command can never apply (module docstring); a failed call only once the
    chain would hold it had it reached its node (``FAILED_RESEND_S``). Ask it before
    asking whether the command is done (see :func:`get_last_seq`)."""
    return is_batch_spent(sent, (), get_last_seq(net, sent))


def get_last_seq(net: LiveTestnet, sent: Sent) -> int | None:
    """The chain's last seq of the key that signed ``sent`` (None: the call failed).

    Read it *before* what is on chain: the node's state only moves forward, so what
    it then shows on chain is at least as new, and a command still missing there with
    a seq at or below this one can no longer apply. Read after, a block landing between
    the two reads made a submission it had just applied look spent, and it was sent
    again: the same apps twice (session 46, ``test_fleet_claim_live``: 16 apps for 8;
    since session 51 the chain refuses a second app of a name,
    ``orchestrator.commands.check_name_free``, and such a resend is refused instead)."""
    answer = sent.answer
    if answer is None:
        return None
    signer = answer[0]["signer"] if isinstance(answer, list) else answer["signer"]
    return int(net.get(f"/operators/{signer}")["last_seq"])


def apply_commands(
    net: LiveTestnet,
    commands: Mapping[str, Sequence[str]],
    get_done: Callable[[Mapping[str, Sent]], set[str]],
    what: str,
    timeout_s: float,
    log: Callable[[str], None],
    client: Path | None = None,
) -> dict[str, Sent]:
    """Send every command (``edgechain ARGV --no-wait``) and wait until ``get_done``
    (given what each command's CLI call answered) names them all; returns the answers
    (of the last sending). LiveError after ``timeout_s``."""
    with ThreadPoolExecutor(max_workers=CLI_WORKERS) as pool:
        futures = {key: pool.submit(send, net, argv, client) for key, argv in commands.items()}
        sent = {key: future.result() for key, future in futures.items()}
    deadline = time.monotonic() + timeout_s
    while True:
        net.check_alive()
        # Before what is done: get_last_seq says why.
        spent = {key for key in commands if is_spent(net, sent[key])}
        missing = sorted(set(commands) - get_done(sent))
        if not missing:
            return sent
        if time.monotonic() > deadline:
            errors = {k: sent[k].error for k in missing if sent[k].error}
            raise LiveError(f"timed out after {timeout_s:.0f}s: {what}: {missing} {errors}")
        for key in missing:
            if key in spent:
                log(f"{what}: {key} sent again ({sent[key].error or 'its seq was spent'})")
                sent[key] = send(net, commands[key], client)
        time.sleep(POLL_S)


def get_statuses(net: LiveTestnet) -> dict[str, str]:
    """Node name -> its status on the chain (``GET /nodes``)."""
    names = net.get_names()
    return {names[str(n["node_id"])]: str(n["status"]) for n in net.get("/nodes")}


def set_draining(
    net: LiveTestnet,
    nodes: Sequence[str],
    draining: bool,
    timeout_s: float,
    log: Callable[[str], None],
) -> None:
    """``edgechain admin drain NODE [--undo]`` for each of ``nodes``; returns once the
    chain shows them all draining (or all active)."""
    ids = {name: node_id for node_id, name in net.get_names().items()}
    undo = () if draining else ("--undo",)
    want = "draining" if draining else "active"
    commands = {node: ("admin", "drain", ids[node], *undo) for node in nodes}

    def done(_: Mapping[str, Sent]) -> set[str]:
        statuses = get_statuses(net)
        return {node for node in nodes if statuses.get(node) == want}

    apply_commands(net, commands, done, f"{want} on chain", timeout_s, log)


def submit_specs(
    net: LiveTestnet,
    specs: Mapping[str, Path],
    client: Path,
    timeout_s: float,
    log: Callable[[str], None],
) -> dict[str, str]:
    """``edgechain apps submit FILE...`` for the spec files (by app name), ``SUBMIT_BATCH``
    files per CLI call, one call at a time (each signs consecutive seqs, which the chain
    applies in order); returns once the chain holds every app: app name -> app id (hex).

    A batch is sent again, without what is on chain by then, once it can no longer
    apply (:func:`is_batch_spent`): its call failed and ``FAILED_RESEND_S`` passed, or
    the chain's ``last_seq`` reached the lowest seq of what is missing (spent)."""
    deadline = time.monotonic() + timeout_s

    def send_batch(names: list[str]) -> tuple[list[str], Sent]:
        argv = ("apps", "submit", *(str(specs[name]) for name in names))
        # One POST per file: on a saturated host each can take seconds.
        return names, send(net, argv, client, CLI_TIMEOUT_S + SUBMIT_S_PER_FILE * len(names))

    names = list(specs)
    batches = [send_batch(names[i : i + SUBMIT_BATCH]) for i in range(0, len(names), SUBMIT_BATCH)]
    while True:
        net.check_alive()
        # Before what is on chain: get_last_seq says why.
        last_seqs = [get_last_seq(net, sent) for _, sent in batches]
        # By name: a submission whose CLI call failed may be on chain all the same.
        on_chain = {str(view["name"]) for view in net.get("/apps")}
        missing = [name for name in specs if name not in on_chain]
        if not missing:
            break
        if time.monotonic() > deadline:
            errors = [sent.error for _, sent in batches if sent.error]
            raise LiveError(f"timed out after {timeout_s:.0f}s: submissions {missing} {errors}")
        for index, ((batch, sent), last_seq) in enumerate(zip(batches, last_seqs, strict=True)):
            left = [name for name in batch if name not in on_chain]
            if left and is_batch_spent(sent, left, last_seq):
                log(f"submissions: {len(left)} sent again ({sent.error or 'their seq was spent'})")
                batches[index] = send_batch(left)
        time.sleep(POLL_S)
    views = net.get("/apps")  # one app a name: the chain refuses a second submission
    return {str(view["name"]): str(view["app_id"]) for view in views if view["name"] in specs}


def is_batch_spent(sent: Sent, missing: Collection[str], last_seq: int | None) -> bool:
    """Whether the ``missing`` names of one ``apps submit`` call can no longer land: its
    call failed and ``FAILED_RESEND_S`` passed, or ``last_seq`` (the signer's, read
    before the apps: :func:`get_last_seq`) reached the lowest seq among them (a later
    or the same seq applied while they are not on chain: a producer without them
    included the ones after). An answer of one file is an object, of several a list
    with each file's ``name`` and ``seq``."""
    if sent.answer is None:
        return time.monotonic() - sent.at > FAILED_RESEND_S
    if last_seq is None:
        return False
    if not isinstance(sent.answer, list):
        return int(sent.answer["seq"]) < last_seq
    seqs = [int(entry["seq"]) for entry in sent.answer if entry.get("name") in missing]
    return bool(seqs) and min(seqs) <= last_seq


def wait_all_on(net: LiveTestnet, obs: Observer, node: str, timeout_s: float) -> None:
    """Every app runs exactly once, on ``node``, where the chain places it."""

    def placed() -> bool:
        _, instances = obs.scan()
        once = obs.get_running_once(instances)
        if set(once) != set(obs.apps) or any(i.node != node for i in once.values()):
            return False
        fleet = get_fleet(net)
        return all(fleet.get(app, {}).get("node_name") == node for app in obs.apps)

    wait_until(placed, f"every app running on {node}", timeout_s, net.check_alive)
