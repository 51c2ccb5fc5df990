"""The process runtime on real processes: lifecycle, stats, save/restore, no orphans."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.archive import ArchiveError, extract_state_archive
from edgechain.runtime.base import AppNotFoundError, AppRuntime, AppRuntimeError, AppStatus
from edgechain.runtime.checkpoint import checkpoint_and_freeze
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.process_group import signal_group
from edgechain.runtime.samples import get_counter_spec, get_cpu_load_spec

from .helpers import (
    HERE,
    assert_instances,
    assert_single_instance,
    get_app,
    get_counter,
    get_tagged_processes,
    read_count,
    wait_count_above,
    wait_until,
)


def _group_members(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["status"]):
        try:
            if (
                proc.info["status"] != psutil.STATUS_ZOMBIE
                and __import__("os").getpgid(proc.pid) == pgid
            ):
                out.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return out


def test_is_an_app_runtime(process_pair: tuple[ProcessRuntime, ProcessRuntime]) -> None:
    runtime: AppRuntime = process_pair[0]
    assert isinstance(runtime, AppRuntime)
    assert runtime.kind is RuntimeKind.PROCESS


def test_start_runs_the_app_in_its_own_state_dir(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    spec, tag = get_counter()
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    assert state == runtime.root / bytes(app).hex() / "state"
    wait_count_above(state, 2)
    assert_single_instance(tag)
    assert [(i.app, i.name, i.status) for i in runtime.list()] == [
        (app, "counter", AppStatus.RUNNING)
    ]
    assert runtime.is_running(app)
    with pytest.raises(AppRuntimeError):
        runtime.start(app, spec)  # never a second instance


def test_stop_keeps_state_and_resume_continues_from_it(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    spec, tag = get_counter()
    app = get_app(spec)
    runtime.start(app, spec)
    wait_count_above(runtime.get_state_dir(app), 3)
    runtime.stop(app)
    assert get_tagged_processes(tag) == []
    assert runtime.stats(app).status is AppStatus.STOPPED
    stopped_at = read_count(runtime.get_state_dir(app))
    time.sleep(0.2)
    assert read_count(runtime.get_state_dir(app)) == stopped_at
    runtime.resume(app)
    # Continues from the persisted value: never from zero, never backwards.
    assert wait_count_above(runtime.get_state_dir(app), stopped_at) > stopped_at
    log = (runtime.get_app_dir(app) / "app.log").read_text()
    assert f"starting from {stopped_at}" in log


def test_pause_freezes_and_resume_continues(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    spec, _ = get_counter()
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_count_above(state, 2)
    runtime.pause(app)
    assert runtime.stats(app).status is AppStatus.PAUSED
    frozen = read_count(state)
    time.sleep(0.3)
    assert read_count(state) == frozen
    runtime.resume(app)
    assert wait_count_above(state, frozen) > frozen


def test_stats_reports_cpu_ram_and_state_size(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    spec = get_cpu_load_spec(RuntimeKind.PROCESS, share_percent=60, tag=secrets.token_hex(4))
    app = get_app(spec)
    runtime.start(app, spec)
    runtime.stats(app)  # first sample: the baseline
    time.sleep(1.0)
    stats = runtime.stats(app)
    cores = psutil.cpu_count() or 1
    # 60 % of one core is 6000 / cores basis points of the host; the machine is shared,
    # so only require a clearly busy but bounded share.
    assert BASIS_POINTS // (cores * 20) < stats.cpu_bp <= BASIS_POINTS
    assert stats.rss_bytes > 0
    assert 0 <= stats.ram_bp < 100
    counter, _ = get_counter(pad=200_000)
    counter_app = get_app(counter)
    runtime.start(counter_app, counter)
    wait_until(lambda: runtime.stats(counter_app).disk_bytes >= 200_000)


def test_a_start_withdraws_the_hook_its_state_advertised_until_the_app_does(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    """The hook's marker travels with the state (a replica, a migration); a snapshot
    that signalled the new process before it installed its handler would kill it."""
    runtime, _ = process_pair
    spec, tag = get_counter()
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_until((state / ".checkpoint-hook").exists)
    runtime.stop(app)
    # Restarted as a command without the hook (e.g. an update): the old marker goes.
    command = ("/bin/sh", "-c", "exec sleep 30", tag)
    quiet = AppSpec(name=spec.name, runtime=spec.runtime, command=command)
    runtime.start(app, quiet)
    assert not (state / ".checkpoint-hook").exists()
    runtime.snapshot(app).archive.unlink()  # frozen and thawed, never signalled
    assert runtime.is_running(app)
    runtime.stop(app)
    runtime.start(app, spec)  # the counter advertises it again, once it can answer
    wait_until((state / ".checkpoint-hook").exists)
    assert runtime.save(app).live
    runtime.remove(app)
    assert get_tagged_processes(tag) == []


def test_save_uses_the_checkpoint_hook_and_keeps_the_app_frozen(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, tag = process_pair[0], ""
    spec, tag = get_counter(pad=100_000)
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_until(lambda: (state / ".checkpoint-hook").exists() and (state / "pad").exists())
    saved = runtime.save(app)
    assert saved.live  # the hook answered: frozen in memory, not stopped
    assert runtime.stats(app).status is AppStatus.PAUSED
    assert len(get_tagged_processes(tag)) == 1
    frozen = read_count(state)
    with tarfile.open(saved.archive) as tar:
        names = tar.getnames()
        member = tar.extractfile("state/count")
        assert member is not None
        assert int(member.read()) == frozen
    assert "state/pad" in names
    assert saved.raw_bytes == saved.archive.stat().st_size > 100_000
    time.sleep(0.2)
    assert read_count(state) == frozen
    runtime.resume(app)  # the migration failed: continue in memory
    assert not saved.archive.exists()
    assert wait_count_above(state, frozen) > frozen


def test_the_counter_answers_its_checkpoint_mid_sleep_without_noise(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    """The checkpoint signal reaches the counter while it sleeps between steps: it
    answers within the runtime's 1 s timeout though a step lasts 30 s, and its log
    holds no "User defined signal 1" line per checkpoint (the shell's report of a
    sleep the signal killed), which pushed "starting from" out of a log's tail."""
    runtime, _ = process_pair
    tag = f"t-{secrets.token_hex(4)}"
    spec = get_counter_spec(RuntimeKind.PROCESS, interval_s=30, tag=tag)
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_until(lambda: (state / ".checkpoint-hook").exists() and (state / "count").exists())
    for _ in range(3):
        saved = runtime.save(app)
        assert saved.live  # the hook answered, though the app was asleep
        saved.archive.unlink()
        runtime.resume(app)
    tail = runtime.get_log_tail(app, 20)
    assert tail is not None
    text = "\n".join(tail.lines)
    assert "counter: starting from 0" in text
    assert "signal" not in text.lower()
    runtime.remove(app)
    assert get_tagged_processes(tag) == []


def test_the_counter_logs_nothing_through_hundreds_of_checkpoints(tmp_path: Path) -> None:
    """The runtime's own checkpoint (``checkpoint.checkpoint_and_freeze``: SIGUSR1 to
    the group, the ack, SIGSTOP), then SIGCONT, 300 times in a row against the counter
    script: every one acknowledged, its output opens with "starting from" and says
    nothing of a signal. The group signal ends whatever command the script is running;
    the shell logged "User defined signal 1" for 11 to 47 of 300 with those commands
    waited in the background, 145 with them in the foreground. Steps of 0.01 s, so
    that signals land mid-step: a trap's rename of the loop's ``count.tmp``, and the
    loop's next rename while the last one still ran, made "mv: cannot stat" 7 times in
    300 (the count was whole); once more in make test, a trap that ran between the
    loop's ``cmd &`` and ``job=$!`` (its own background job then was ``$!``)."""
    state, ack = tmp_path / "state", tmp_path / "ack"
    state.mkdir()
    env = {"PATH": "/usr/bin:/bin", "EDGECHAIN_STATE_DIR": str(state),
           "EDGECHAIN_CHECKPOINT_ACK": str(ack)}  # fmt: skip
    argv = get_counter_spec(RuntimeKind.PROCESS, interval_s=0.01).command
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: (state / ".checkpoint-hook").exists() and (state / "count").exists())
        for _ in range(300):
            assert checkpoint_and_freeze(proc, ack, timeout_s=10.0)
            signal_group(proc.pid, signal.SIGCONT)
    finally:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    text = (tmp_path / "log").read_text()
    assert text.startswith("counter: starting from 0\n"), text[:300]
    assert "signal" not in text.lower(), text[:300]
    assert "cannot" not in text, text[:300]


def test_save_without_hook_stops_gracefully(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    spec = get_cpu_load_spec(RuntimeKind.PROCESS, share_percent=10, tag=secrets.token_hex(4))
    app = get_app(spec)
    runtime.start(app, spec)
    pid = runtime.get_pid(app)
    assert pid is not None
    saved = runtime.save(app)
    assert not saved.live
    assert runtime.stats(app).status is AppStatus.STOPPED
    wait_until(lambda: _group_members(pid) == [])
    runtime.resume(app)
    assert runtime.is_running(app)


def test_stop_kills_an_app_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    tag = f"stubborn-{secrets.token_hex(4)}"
    script = "trap '' TERM; sleep 300 & sleep 300 & while :; do sleep 0.05; done"
    spec = AppSpec("stubborn", RuntimeKind.PROCESS, command=("/bin/sh", "-c", script, tag))
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "rt", stop_grace_s=0.3) as runtime:
        runtime.start(app, spec)
        pid = runtime.get_pid(app)
        assert pid is not None
        wait_until(lambda: len(_group_members(pid)) >= 3)
        start = time.monotonic()
        runtime.stop(app)
        assert time.monotonic() - start < 3.0
        wait_until(lambda: _group_members(pid) == [], timeout_s=3)


def test_restore_on_another_runtime_continues_the_count(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    a, b = process_pair
    spec, tag = get_counter(pad=50_000)
    app = get_app(spec)
    a.start(app, spec)
    wait_count_above(a.get_state_dir(app), 5)
    saved = a.save(app)
    saved_count = read_count(a.get_state_dir(app))
    b.restore(app, spec, saved.archive)
    a.remove(app)
    assert not a.get_app_dir(app).exists()
    assert_single_instance(tag)
    first = read_count(b.get_state_dir(app))
    assert first >= saved_count  # never backwards, never from zero
    assert wait_count_above(b.get_state_dir(app), first) > saved_count
    assert (b.get_state_dir(app) / "pad").stat().st_size == 50_000


def test_restore_refuses_when_already_running(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    a, b = process_pair
    spec, tag = get_counter()
    app = get_app(spec)
    a.start(app, spec)
    b.start(app, spec)
    saved = a.save(app)
    with pytest.raises(AppRuntimeError):
        b.restore(app, spec, saved.archive)
    a.resume(app)
    assert_instances(tag, 2)  # the two we started, no third


def test_unknown_app_raises(process_pair: tuple[ProcessRuntime, ProcessRuntime]) -> None:
    runtime, _ = process_pair
    spec, _ = get_counter()
    with pytest.raises(AppNotFoundError):
        runtime.stats(get_app(spec))
    assert not runtime.is_running(get_app(spec))


def test_close_leaves_no_process(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "rt")
    tags = []
    for _ in range(3):
        spec, tag = get_counter()
        runtime.start(get_app(spec), spec)
        tags.append(tag)
    wait_until(lambda: all(len(get_tagged_processes(t)) == 1 for t in tags))
    runtime.close()
    for tag in tags:
        assert get_tagged_processes(tag) == []
    with pytest.raises(AppRuntimeError):
        spec, _ = get_counter()
        runtime.start(get_app(spec), spec)


def test_apps_die_with_their_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL takes its apps along (parent-death signal)."""
    tag = f"t-{secrets.token_hex(4)}"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edgechain.chain.model import RuntimeKind\n"
        "from edgechain.runtime.process import ProcessRuntime\n"
        "from edgechain.runtime.samples import get_counter_spec\n"
        "from edgechain.types import AppId\n"
        "spec = get_counter_spec(RuntimeKind.PROCESS, tag=sys.argv[1])\n"
        "runtime = ProcessRuntime(Path(sys.argv[2]))  # kept alive: it owns the spawner\n"
        "runtime.start(AppId(bytes(32)), spec)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    node = subprocess.Popen(
        # The tag first: only the app's argv may end with it.
        [sys.executable, "-c", code, tag, str(tmp_path / "rt")],
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline().strip() == b"started"
        assert_single_instance(tag)
        node.kill()
        node.wait(10)
        wait_until(lambda: get_tagged_processes(tag) == [], timeout_s=5)
    finally:
        node.kill()
        node.wait(10)
        for proc in get_tagged_processes(tag):
            proc.kill()


def test_reap_orphans_of_an_earlier_incarnation(tmp_path: Path) -> None:
    spec, tag = get_counter()
    app = get_app(spec)
    old = ProcessRuntime(tmp_path / "rt", die_with_node=False)
    old.start(app, spec)
    wait_count_above(old.get_state_dir(app), 1)
    # The old runtime "crashes": it is never closed. A new one on the same root reaps.
    new = ProcessRuntime(tmp_path / "rt")
    try:
        wait_until(lambda: get_tagged_processes(tag) == [], timeout_s=5)
        assert read_count(new.get_state_dir(app)) > 0  # its state is kept
    finally:
        new.close()
        old.close()


def test_a_copy_of_the_root_on_the_same_host_leaves_the_originals_apps_alone(
    tmp_path: Path,
) -> None:
    """An operator copies a live node's data directory on the same host: the copy's pid
    files name the original's app, pid and start time alike. The copy's runtime reaps
    its orphans, and must not kill the original's running app (it did)."""
    spec, tag = get_counter()
    app = get_app(spec)
    original = ProcessRuntime(tmp_path / "rt")
    try:
        original.start(app, spec)
        wait_count_above(original.get_state_dir(app), 1)
        before = [p.pid for p in get_tagged_processes(tag)]
        shutil.copytree(tmp_path / "rt", tmp_path / "copy", symlinks=True)
        ProcessRuntime(tmp_path / "copy").close()
        count = read_count(original.get_state_dir(app))
        wait_count_above(original.get_state_dir(app), count + 1)  # it still counts
        assert [p.pid for p in get_tagged_processes(tag)] == before
    finally:
        original.close()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape", tarfile.REGTYPE),
        ("/etc/evil", tarfile.REGTYPE),
        ("state/../../escape", tarfile.REGTYPE),
        ("state/link", tarfile.SYMTYPE),
        ("other/file", tarfile.REGTYPE),
        ("image.tar", tarfile.REGTYPE),
        ("state/dev", tarfile.CHRTYPE),
    ],
)
def test_hostile_archives_are_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("state")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info)
    target = tmp_path / "app" / "state"
    target.mkdir(parents=True)
    (target / "count").write_text("41\n")
    with pytest.raises(ArchiveError):
        extract_state_archive(archive, target)
    # Nothing escaped, and the previous state is untouched.
    assert not (tmp_path / "escape").exists()
    assert (target / "count").read_text() == "41\n"
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == ["state"]


def test_garbage_and_stateless_archives_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(secrets.token_bytes(4096))
    with pytest.raises(ArchiveError):
        extract_state_archive(garbage, tmp_path / "s1")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(ArchiveError):
        extract_state_archive(empty, tmp_path / "s2")
