"""Spec files: the resource limits as people write them, and the errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgechain.api.schema import app_spec_to_json
from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.cli.apps_format import format_app, format_bytes
from edgechain.cli.common import CliError
from edgechain.cli.specfile import load_spec, parse_byte_quantity, parse_cpu_limit

BASE = "name: cache\nruntime: container\nimage: localhost/edgechain-apps:latest\n"


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(CliError) as info:
        load_spec(write(tmp_path, BASE + text))
    return str(info.value)


def test_a_yaml_spec_with_every_limit(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            BASE + "cpu_limit: 0.5\nmemory_limit: 64Mi\nstate_limit: 1Gi\nrun_as_root: true\n",
        )
    )
    assert spec.cpu_limit_millicores == 500
    assert spec.memory_limit_bytes == 64 * 1024 * 1024
    assert spec.state_limit_bytes == 1024**3
    assert spec.run_as_root


def test_a_json_spec_and_the_api_form(tmp_path: Path) -> None:
    document = {
        "name": "cache",
        "runtime": "container",
        "image": "i",
        "cpu_limit": "250m",
        "memory_limit": 100_000_000,
        "state_limit": "500M",
    }
    spec = load_spec(write(tmp_path, json.dumps(document), "spec.json"))
    assert (spec.cpu_limit_millicores, spec.memory_limit_bytes) == (250, 100_000_000)
    assert spec.state_limit_bytes == 500_000_000
    # What `apps show --json` prints loads back to the same spec.
    again = load_spec(write(tmp_path, json.dumps(app_spec_to_json(spec)), "again.json"))
    assert again == spec


def test_no_limits_is_the_default(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec == AppSpec("cache", RuntimeKind.CONTAINER, image="localhost/edgechain-apps:latest")


@pytest.mark.parametrize(
    ("value", "millicores"),
    [(0.5, 500), (2, 2_000), (0.001, 1), ("500m", 500), ("1.5", 1_500), (" 2 ", 2_000), (0, 0)],
)
def test_cpu_limits(value: object, millicores: int) -> None:
    assert parse_cpu_limit(value) == millicores


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("64Mi", 64 * 2**20),
        ("1Gi", 2**30),
        ("1.5Gi", 3 * 2**29),
        ("500M", 500_000_000),
        ("2k", 2_000),
        ("2K", 2_000),
        ("1Ti", 2**40),
        ("123", 123),
    ],
)
def test_byte_quantities(value: object, size: int) -> None:
    assert parse_byte_quantity(value) == size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu_limit: 0.0001\n", "cpu_limit: 0.0001 is not a whole number of millicores"),
        ("cpu_limit: -1\n", "cpu_limit: -1 is negative"),
        ("cpu_limit: 2 cores\n", "cpu_limit: '2 cores': expected cores (0.5) or millicores"),
        ("cpu_limit: true\n", "cpu_limit: expected a number or a string, got bool"),
        ("cpu_limit: 5m\n", "cpu_limit: 5 outside [10, 1024000] (0: no limit) (as cpu_limit"),
        ("cpu_limit: 2000\n", "cpu_limit: 2000000 outside [0, 1024000] (as cpu_limit_"),
        ("memory_limit: 64m\n", "ambiguous suffix m; write Mi (MiB) or M (MB)"),
        ("memory_limit: 64MB\n", "memory_limit: '64MB': unknown suffix 'MB'"),
        ("memory_limit: 1Mi\n", "memory_limit: 1048576 outside [6291456, "),
        ("memory_limit: 0.5\n", "memory_limit: 0.5 is not a whole number of bytes"),
        ("memory_limit: [64]\n", "memory_limit: expected a number or a string, got list"),
        ("memory_limit: .nan\n", "memory_limit: nan is not a finite number"),
        ("state_limit: 2Ti\n", "state_limit: 2199023255552 outside [0, 1099511627776]"),
        ("state_limit: 1k\n", "state_limit: 1000 outside [1048576, "),
        ("state_limit: '" + "9" * 40 + "'\n", "state_limit: '999"),
        ("run_as_root: yes please\n", "run_as_root: expected true or false"),
        ("memory_limit: 64Mi\nmemory_limit_bytes: 67108864\n", "memory_limit: given twice"),
    ],
)
def test_bad_limits_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in load_error(tmp_path, text)


def test_root_is_refused_for_a_process(tmp_path: Path) -> None:
    text = "name: w\ncommand: [sleep, '1']\nrun_as_root: true\n"
    with pytest.raises(CliError, match="run_as_root: only a container app may run as root"):
        load_spec(write(tmp_path, text))


def test_apps_show_prints_the_limits() -> None:
    spec = AppSpec(
        "cache",
        RuntimeKind.CONTAINER,
        image="i",
        cpu_limit_millicores=1_500,
        memory_limit_bytes=64 * 2**20,
        state_limit_bytes=1_000_000,
        run_as_root=True,
    )
    text = format_app({"app_id": "ab" * 32, "name": "cache", "spec": app_spec_to_json(spec)})
    assert "1.5 cores (1500m)" in text
    assert "64 MiB" in text and "1000000 bytes" in text
    assert "spec.run_as_root" in text
    plain = format_app({"app_id": "ab" * 32, "spec": app_spec_to_json(dataclass_plain())})
    assert "limit" not in plain and "run_as_root" not in plain
    assert format_bytes(2**30) == "1 GiB"


def dataclass_plain() -> AppSpec:
    return AppSpec("cache", RuntimeKind.CONTAINER, image="i")
