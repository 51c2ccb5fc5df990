"""A MOVE of an app with a large, changing state goes by pre-copy on real nodes.

On a 4-node ``edgechain testnet``: a counter with a 20 MB incompressible pad, of which
it rewrites 64 KiB every 50 ms, is submitted and then moved to a named node through
the CLI. The origin's migration record (``GET /migrations``, shown by ``apps
history``) must say that rounds were sent while the app ran and that the frozen final
round carried far less than the state; the app must run once, on the target, its
counter going on from where it stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgechain.runtime.samples import get_apps_dir

from .test_cli_live import SETUP_TIMEOUT_S, STEP_TIMEOUT_S, LiveNet, _placed

pytestmark = pytest.mark.xdist_group("testnet-light")

PAD_BYTES = 20_000_000


def test_a_move_of_a_large_changing_state_goes_by_precopy(run_dir: Path) -> None:
    tag = f"precopy-live-{os.getpid()}-{time.monotonic_ns()}"
    script = get_apps_dir() / "counter" / "counter.sh"
    spec = run_dir.parent / "app.yaml"
    spec.write_text(
        "name: lifecycle\n"
        "runtime: process\n"
        f'command: ["/bin/sh", "{script}", "{PAD_BYTES}", "0.05", "{tag}", "64"]\n'
        "cpu_bp: 10\n"
        "ram_bp: 10\n"
        "stateful: true\n"
    )
    net = LiveNet(run_dir, tag)
    net.start()
    try:
        net.wait_for(net.client.exists, "client.toml (genesis and the grant)", SETUP_TIMEOUT_S)
        app = net.app = net.cli("apps", "submit", str(spec))["app_id"]
        net.wait_for(lambda: _placed(net, app), "the app to run", STEP_TIMEOUT_S)

        def has_pad() -> bool:
            view = net.cli("apps", "show", app)
            pad = run_dir / net.names()[view["node"]] / "apps" / app / "state" / "pad"
            return bool(pad.exists() and pad.stat().st_size == PAD_BYTES)

        net.wait_for(has_pad, "the pad to be written", STEP_TIMEOUT_S)
        origin = net.cli("apps", "show", app)["node"]
        name = net.names()[origin]
        target = sorted(n for n in net.names() if n != origin)[0]
        count_before = net.read_count(name, app)
        assert net.cli("apps", "move", app, target[:12])["applied"]
        net.wait_for(lambda: _placed(net, app, target), "the move", STEP_TIMEOUT_S)
        assert net.read_count(net.names()[target], app) >= count_before

        def completed() -> list[dict[str, object]]:
            history = net.cli("apps", "history", app)
            return [m for m in history["migrations"] if m.get("outcome") == "completed"]

        net.wait_for(lambda: bool(completed()), "the origin's migration record", STEP_TIMEOUT_S)
        (record,) = completed()
        assert isinstance(record["precopy_rounds"], int) and record["precopy_rounds"] >= 1
        assert isinstance(record["precopy_bytes"], int) and record["precopy_bytes"] > PAD_BYTES
        # The frozen round: what changed while the rounds ran, not the 20 MB.
        assert isinstance(record["raw_bytes"], int) and record["raw_bytes"] < PAD_BYTES // 4
        assert net.max_copies == 1
    finally:
        net.stop()
