"""``make demo``'s script, small: sample apps submitted and one moved through the CLI,
and the testnet summary says where each app ran and how it moved."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.api.schema import app_spec_to_json
from edgechain.cli.specfile import load_spec
from edgechain.lab.demo import get_sample_specs, write_specs

pytestmark = pytest.mark.xdist_group("testnet-light")


def test_sample_spec_files_read_back_as_the_specs(tmp_path: Path) -> None:
    paths = write_specs(tmp_path)
    specs = get_sample_specs()
    assert [p.stem for p in paths] == list(specs)
    for path in paths:
        assert load_spec(str(path)) == specs[path.stem]
        assert path.read_text().startswith(f"name: {json.dumps(specs[path.stem].name)}\n")
    assert app_spec_to_json(specs["counter"])["stateful"]


@pytest.fixture
def base() -> Iterator[Path]:
    # Reachable by the unprivileged app user of a root node (pytest's tmp dirs are not).
    path = Path(tempfile.mkdtemp(prefix="edgechain-demo-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_demo_moves_an_app_and_the_summary_shows_it(base: Path) -> None:
    run_dir = base / "run"
    argv = [sys.executable, "-m", "edgechain.lab.demo", "--nodes", "4", "--committee", "2"]
    argv += ["--slot-duration", "1", "--linger-slots", "1", "--run-dir", str(run_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/ ", output)
    for command in ("apps submit", "apps list", "nodes", "apps move counter", "apps history"):
        assert f"edgechain --client {run_dir}/client.toml {command}" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    apps = {a["name"]: a for a in summary["apps"]}
    assert set(apps) == {"counter", "counter-b", "cpu-load"}
    counter = apps["counter"]
    kinds = [e["kind"] for e in counter["events"]]
    assert kinds[:2] == ["submit", "place"] and "move" in kinds and "migrate" in kinds
    # It moved; the planner may balance it on afterwards, even back to where it started.
    assert counter["node"] == counter["path"][-1] and len(set(counter["path"])) > 1
    assert any(m["outcome"] == "completed" for m in counter["migrations"])
    assert all(a["node"] is not None for a in apps.values())
    assert re.search(r"counter +\w{12}  running on node-\d{3} v1: node-\d{3} @\d+ -> ", output)
    assert summary["ok"] and summary["leftover_process_groups"] == []
