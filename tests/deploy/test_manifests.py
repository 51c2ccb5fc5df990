"""The deployment files (issue 16, item 6), checked offline in ``make test``: yamllint,
Kubernetes schemas (``kubernetes-validate``), the Containerfile linter (hadolint), and
what no linter knows: every ``EDGECHAIN_*`` variable and TOML key is a real node option,
and every grace period outlasts a drain."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from edgechain.cli.node import NODE_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
DEFAULT_LEAVE_TIMEOUT_S = 600


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_yaml_passes_yamllint() -> None:
    done = _run(str(BIN / "yamllint"), "-s", "-c", ".yamllint.yaml", "deploy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    assert {p.name for p in K8S} >= {"daemonset.yaml", "service.yaml", "configmap.yaml"}
    done = _run(str(BIN / "kubernetes-validate"), "--strict", *map(str, K8S))
    assert done.returncode == 0, done.stdout + done.stderr


def test_containerfile_passes_hadolint() -> None:
    done = _run(str(BIN / "hadolint"), "deploy/Containerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_containerfile_runs_as_a_user_with_a_volume_and_a_health_check() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    user = re.search(r"^USER (\S+)", text, re.MULTILINE)
    assert user is not None and not user.group(1).startswith(("0", "root"))
    assert re.search(r"^VOLUME .*/var/lib/edgechain", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*edgechain\", \"node\", \"health\"", text, re.MULTILINE)


def _env_names(node: Any) -> set[str]:
    """Every EDGECHAIN_* variable named anywhere in a loaded YAML document."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("EDGECHAIN_"):
                found.add(key)
            if key == "name" and isinstance(value, str) and value.startswith("EDGECHAIN_"):
                found.add(value)
            found |= _env_names(value)
    elif isinstance(node, list):
        for item in node:
            found |= _env_names(item)
    return found


def test_every_variable_and_config_key_is_a_node_option() -> None:
    names = set()
    for path in [DEPLOY / "compose.yaml", *K8S]:
        for document in yaml.safe_load_all(path.read_text()):
            names |= _env_names(document)
    options = {"EDGECHAIN_" + name.upper() for name in NODE_OPTIONS}
    assert names and names <= options, names - options
    config = _load(DEPLOY / "k8s" / "configmap.yaml")["data"]["node.toml"]
    for text in (config, (DEPLOY / "node.toml").read_text()):
        keys = {key.replace("-", "_") for key in tomllib.loads(text)}
        assert keys <= set(NODE_OPTIONS), keys - set(NODE_OPTIONS)


def test_the_swarm_stack_has_a_seed_a_scalable_node_service_and_an_overlay() -> None:
    stack = _load(DEPLOY / "compose.yaml")
    services = stack["services"]
    assert set(services) == {"seed", "node"}
    assert services["seed"]["environment"]["EDGECHAIN_GENESIS"] == "1"
    assert "tasks.seed" in services["node"]["environment"]["EDGECHAIN_SEEDS"]
    assert services["node"]["deploy"]["replicas"] >= 3
    assert stack["networks"]["edgechain"]["driver"] == "overlay"
    assert stack["secrets"]["edgechain-token"]["external"] is True
    grace = re.fullmatch(r"(\d+)m", stack["x-node"]["stop_grace_period"])
    assert grace is not None and int(grace.group(1)) * 60 > DEFAULT_LEAVE_TIMEOUT_S


def test_pods_outlast_a_drain_and_read_the_token_from_a_secret() -> None:
    config = tomllib.loads(_load(DEPLOY / "k8s" / "configmap.yaml")["data"]["node.toml"])
    leave_timeout = config.get("leave_timeout", DEFAULT_LEAVE_TIMEOUT_S)
    assert config.get("leave_on_sigterm") is True
    for name in ("daemonset.yaml", "genesis.yaml"):
        spec = _load(DEPLOY / "k8s" / name)["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > leave_timeout
        assert spec["securityContext"]["runAsNonRoot"] is True
        secrets = [v for v in spec["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secrets] == ["edgechain-token"]
