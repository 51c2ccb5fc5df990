"""The pure parts of the testnet launcher: ports, addresses, command lines, summaries,
and the post-run election of producers."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import shutil
from pathlib import Path

import pytest

from edgechain.chain.encoding import (
    compute_block_hash,
    compute_genesis_hash,
    encode_block,
    encode_genesis,
)
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.roles import compute_roles
from edgechain.consensus.state import apply_block, compute_genesis_state
from edgechain.crypto.hashing import compute_node_id
from edgechain.lab.cluster import (
    NodePorts,
    NodeSpec,
    Seeds,
    allocate_ports,
    build_node_argv,
    build_node_env,
    parse_ready,
)
from edgechain.lab.elections import ElectionError, compute_producers, load_chain
from edgechain.lab.netns import (
    LAB_NETWORK,
    NeighbourLimits,
    NetnsError,
    build_exec_prefix,
    build_namespace_batch,
    build_setup_batch,
    compute_neighbour_limits,
    find_leftovers,
    plan_netns,
    read_neighbour_limits,
    write_neighbour_limits,
)
from edgechain.lab.summary import Collected, build_chain_summary, pick_reference
from edgechain.lab.summary_records import BlockRecord, ChainEntry, Interval, KillRecord
from edgechain.lab.testnet import (
    add_testnet_arguments,
    config_from_args,
    get_shown_after_join_table,
)
from edgechain.lab.testnet_config import DEFAULT_CPU_CAPACITY, LaunchConfig, LaunchError
from edgechain.lab.testnet_progress import Progress, format_progress
from edgechain.lab.testnet_summary import get_report_interval
from edgechain.telemetry.cpu import Component, SlotCpuLog, merge_node_summaries
from edgechain.testing import build_skip_block, make_genesis
from edgechain.types import PublicKey, Slot

PK = PublicKey(bytes(range(48)))


def make_config(**overrides: object) -> LaunchConfig:
    values: dict[str, object] = {
        "nodes": 5,
        "committee": 3,
        "slot_duration": 1.0,
        "slots": 10,
        "run_dir": Path("/tmp/run"),
        "node_command": ("edgechain", "node"),
    }
    values.update(overrides)
    return LaunchConfig(**values)  # type: ignore[arg-type]


def make_spec(index: int = 1, **overrides: object) -> NodeSpec:
    values: dict[str, object] = {
        "index": index,
        "data_dir": Path(f"/tmp/run/node-{index:03d}"),
        "public_key": PK,
        "ticket": b"\x01\x02",
        "host": "127.0.0.1",
        "ports": NodePorts(0, 0),
    }
    values.update(overrides)
    return NodeSpec(**values)  # type: ignore[arg-type]


# --- configuration, ports, command lines ------------------------------------------------


def test_allocate_ports() -> None:
    assert allocate_ports(2, None) == [NodePorts(0, 0), NodePorts(0, 0)]
    assert allocate_ports(3, 7000) == [
        NodePorts(7000, 7001),
        NodePorts(7002, 7003),
        NodePorts(7004, 7005),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nodes": 3}, "committee \\+ 1"),
        ({"slots": -1}, "negative"),
        ({"committee": 0}, "positive"),
        ({"join_interval": -1.0}, "join-interval"),
        ({"kill": 5}, "--kill must be"),
        ({"kill": 1}, "--kill-at"),
        ({"kill": 1, "kill_at": 10}, "--kill-at"),
        ({"base_port": 65530}, "--base-port"),
        ({"cpu_capacity": 0.0}, "--cpu-capacity"),
        ({"cpu_capacity": float("nan")}, "--cpu-capacity"),
    ],
)
def test_config_check_rejects_networks_that_cannot_work(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(LaunchError, match=message):
        make_config(**overrides).check()


def test_config_check_accepts_a_kill_plan() -> None:
    make_config(kill=2, kill_at=4).check()
    make_config(slots=0, kill=1, kill_at=40).check()  # --forever


def test_genesis_node_argv_creates_genesis() -> None:
    options = make_config(slot_duration=1.5).get_node_options()
    guard = ("setpriv", "--pdeathsig", "KILL")
    argv = build_node_argv(make_spec(0), options, admin_key=PK, seeds=None, guard=guard)
    assert argv[:5] == ["setpriv", "--pdeathsig", "KILL", "edgechain", "node"]
    text = " ".join(argv)
    assert "--genesis --committee 3 --slot-duration 1.5" in text
    assert f"--admin-key {PK.hex()} --ticket 0102" in text
    assert "--ready-file /tmp/run/node-000/ready.json" in text
    assert "--seeds" not in text
    # One slot from the genesis to its first, within [1 s, the node's 3 s].
    assert "--genesis-delay 1.5" in text
    for slot, delay in ((0.5, 1.0), (2.0, 2.0), (5.0, 3.0)):
        options = make_config(slot_duration=slot).get_node_options()
        assert options.genesis_delay == delay


def test_the_genesis_node_alone_gets_the_down_after_and_epoch_length() -> None:
    """``testnet --epoch-length --down-after-slots`` reach the genesis node (they are
    genesis parameters, the others take them from the chain), and the summary says
    how often the nodes report."""
    config = make_config(epoch_length=40, down_after_slots=60, vdf_fraction=0.05)
    options = config.get_node_options()
    genesis = " ".join(build_node_argv(make_spec(0), options, admin_key=PK, seeds=None))
    assert "--epoch-length 40 --down-after-slots 60" in genesis
    assert "--vdf-fraction 0.05" in genesis
    seeds = Seeds(("127.0.0.1:7000",), PK)
    joiner = build_node_argv(make_spec(1), options, admin_key=PK, seeds=seeds)
    assert "--epoch-length" not in joiner and "--down-after-slots" not in joiner
    assert "--genesis-delay" not in joiner and "--vdf-fraction" not in joiner
    default = " ".join(
        build_node_argv(make_spec(0), make_config().get_node_options(), admin_key=PK, seeds=None)
    )
    assert "--epoch-length" not in default and "--vdf-fraction" not in default
    assert get_report_interval(config) == 20
    assert get_report_interval(make_config()) == 4
    assert get_report_interval(make_config(down_after_slots=24)) == 4  # epoch 8: 8 // 2
    with pytest.raises(LaunchError, match="--down-after-slots must be at least 1 slot"):
        make_config(down_after_slots=0).check()
    for fraction in (0.0, 1.5):
        with pytest.raises(LaunchError, match=r"--vdf-fraction .*above 0, at most 1"):
            make_config(vdf_fraction=fraction).check()


def test_joining_node_argv_names_the_seeds_and_the_genesis_key() -> None:
    spec = make_spec(
        2,
        host="10.213.0.4",
        ports=NodePorts(7004, 7005),
        exec_prefix=("ip", "netns", "exec", "ec-2"),
    )
    seeds = Seeds(("10.213.0.2:7000", "10.213.0.3:7002"), PK)
    options = make_config(open_admission=True).get_node_options()
    argv = build_node_argv(spec, options, admin_key=PK, seeds=seeds)
    assert argv[:6] == ["ip", "netns", "exec", "ec-2", "edgechain", "node"]
    text = " ".join(argv)
    assert "--listen 10.213.0.4:7004 --http 10.213.0.4:7005" in text
    assert f"--seeds 10.213.0.2:7000,10.213.0.3:7002 --genesis-key {PK.hex()}" in text
    assert "--genesis" not in argv
    assert f"--admin-key {PK.hex()} --open-admission" in text
    assert "--ticket" not in text  # open admission


def test_every_node_gets_the_declared_cpu_capacity() -> None:
    options = make_config(cpu_capacity=0.25).get_node_options()
    seeds = Seeds(("127.0.0.1:7000",), PK)
    for index, boot in ((0, None), (3, seeds)):
        argv = build_node_argv(make_spec(index), options, admin_key=PK, seeds=boot)
        assert argv[argv.index("--cpu-capacity") + 1] == "0.25"
    # By default every node offers one core: host-wide shares are one noisy figure that
    # all the nodes of a host share. "host" asks for them anyway.
    argv = build_node_argv(make_spec(1), make_config().get_node_options(), admin_key=PK,
                           seeds=seeds)  # fmt: skip
    assert argv[argv.index("--cpu-capacity") + 1] == "1"
    argv = build_node_argv(make_spec(1), make_config(cpu_capacity=None).get_node_options(),
                           admin_key=PK, seeds=seeds)  # fmt: skip
    assert "--cpu-capacity" not in argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_testnet_arguments(parser)
    return parser


@pytest.mark.parametrize(("text", "expected"), [("host", None), ("0.5", 0.5), ("2", 2.0)])
def test_testnet_cpu_capacity_flag(text: str, expected: float | None) -> None:
    args = build_parser().parse_args(["--cpu-capacity", text])
    assert args.cpu_capacity == expected
    assert build_parser().parse_args([]).cpu_capacity == DEFAULT_CPU_CAPACITY


def test_testnet_cpu_capacity_flag_rejects_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--cpu-capacity", "lots"])
    assert "expected a number of CPU cores or 'host'" in capsys.readouterr().err


def test_node_env_drops_edgechain_settings() -> None:
    env = build_node_env({"PATH": "/bin", "EDGECHAIN_LISTEN": "0.0.0.0:1"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}


def test_parse_ready() -> None:
    ready = parse_ready(
        {
            "node_id": "ab",
            "public_key": "cd",
            "udp_port": 1,
            "tcp_port": 1,
            "http_port": 2,
            "pid": 3,
        }
    )
    assert (ready.udp_port, ready.http_port, ready.pid) == (1, 2, 3)
    with pytest.raises(ValueError):
        parse_ready({"node_id": "ab"})


def test_format_progress() -> None:
    waiting = format_progress(Progress(elapsed_s=2.0, nodes=5, up=2, target_slots=10))
    assert "waiting for genesis" in waiting
    assert "up 2/5" in waiting
    line = format_progress(
        Progress(
            elapsed_s=9.5,
            nodes=5,
            up=4,
            target_slots=10,
            genesis=True,
            slot=7,
            head_slot=6,
            validators=5,
            skip_blocks=1,
            down=1,
        )
    )
    assert "slot 7/10  head 6" in line
    assert "up 4/5 (1 down)" in line
    assert "validators 5" in line
    assert "skip blocks 1" in line
    forever = format_progress(
        Progress(elapsed_s=1.0, nodes=5, up=5, target_slots=0, genesis=True, slot=3)
    )
    assert "slot 3 (Ctrl-C stops)" in forever


# --- network namespaces ---------------------------------------------------------------


def test_plan_netns_addresses_stay_in_the_lab_network() -> None:
    plan = plan_netns(50, subnet_index=3)
    assert plan.subnet == ipaddress.IPv4Network("10.213.3.0/24")
    assert plan.gateway == "10.213.3.1"
    assert plan.addresses[0] == "10.213.3.2"
    assert plan.addresses[49] == "10.213.3.51"
    assert len(set(plan.addresses)) == 50
    assert all(ipaddress.IPv4Address(a) in LAB_NETWORK for a in plan.addresses)
    assert plan.namespaces[7] == "ec-7"
    assert plan.bridge == "ecbr0"
    assert build_exec_prefix(plan, 7) == ["ip", "netns", "exec", "ec-7"]


def test_plan_netns_limits() -> None:
    assert plan_netns(253).addresses[-1] == "10.213.0.254"
    assert all(len(name) <= 15 for name in plan_netns(253, prefix="abcdef").host_interfaces)
    with pytest.raises(NetnsError):
        plan_netns(254)
    with pytest.raises(NetnsError):
        plan_netns(2, subnet_index=256)
    with pytest.raises(NetnsError):
        plan_netns(2, prefix="Bad-Name")


def test_setup_batches() -> None:
    plan = plan_netns(2, subnet_index=9, prefix="ect")
    assert build_setup_batch(plan) == [
        "link add ectbr0 type bridge",
        "addr add 10.213.9.1/24 dev ectbr0",
        "link set ectbr0 up",
        "netns add ect-0",
        "link add ectv0 type veth peer name eth0 netns ect-0",
        "link set ectv0 master ectbr0 up",
        "netns add ect-1",
        "link add ectv1 type veth peer name eth0 netns ect-1",
        "link set ectv1 master ectbr0 up",
    ]
    assert build_namespace_batch(plan, 1) == [
        "addr add 10.213.9.3/24 dev eth0",
        "link set eth0 up",
        "link set lo up",
    ]


def test_find_leftovers_matches_only_the_prefix() -> None:
    plan = plan_netns(2, prefix="ec")
    found = find_leftovers(
        plan,
        namespaces=["ec-0", "ec-17", "ecx-1", "other", "ec-"],
        links=["lo", "eth0", "ecbr0", "ecv3", "ecbr1", "ecxv1"],
    )
    assert found.namespaces == ("ec-0", "ec-17")
    assert found.links == ("ecbr0", "ecv3")
    assert not find_leftovers(plan, namespaces=["other"], links=["lo"])


# --- chain summary --------------------------------------------------------------------


def test_chain_summary_from_collected_answers() -> None:
    def blocks(*times: int) -> list[BlockRecord]:
        return [
            BlockRecord("h1", 1, False, 3, "p1", None, times[0]),
            BlockRecord("h2", 2, True, 2, None, "dead", times[1]),
            BlockRecord("h3", 3, False, 3, "p3", None, times[2]),
        ]

    full = [ChainEntry("h1", 1, False), ChainEntry("h2", 2, True), ChainEntry("h3", 3, False)]
    behind = full[:2]
    collected = Collected(
        statuses={
            0: {"head": "h3", "genesis": True},
            1: {"head": "h3", "genesis": True},
            2: {"head": "h2", "genesis": True},
            3: None,
            4: {"head": None, "genesis": False},
        },
        chains={0: full, 1: full, 2: behind, 3: None, 4: []},
        blocks={0: blocks(1000, 2000, 3000), 1: blocks(1010, 2010, 3020), 2: None, 3: None, 4: []},
    )
    names = {i: f"node-{i:03d}" for i in range(5)}
    kill = KillRecord("node-002", "dead", kill_slot=1, kill_ms=0, restart_slot=3, restart_ms=0)
    runs = {name: (Interval(0, None),) for name in names.values()}
    summary = build_chain_summary(
        nodes=names,
        collected=collected,
        runs=runs,
        end_slot=3,
        join_slot=1,
        kills=[kill],
        producers={2: "dead"},
    )
    assert summary["nodes_answering"] == 4
    assert summary["nodes_without_genesis"] == ["node-004"]
    assert summary["reference_node"] == "node-000"
    assert summary["distinct_heads"] == 2
    assert summary["live_heads"] == 2
    assert (summary["blocks"], summary["skip_blocks"], summary["skip_slots"]) == (2, 1, [2])
    assert summary["skip_blocks_after_join"] == 1
    assert summary["unexplained_skip_slots"] == []
    assert summary["missing_slots"] == 0
    assert summary["block_propagation_ms"]["samples"] == 6
    assert summary["block_propagation_ms"]["max"] == 20.0
    assert summary["signers_per_block"]["p50"] == 3.0
    (report,) = summary["kills"]
    assert report["elected_while_down"] == {2: "skip_excluding_it"}
    assert report["resynced"] is False  # node-002 stayed at h2


def test_chain_summary_of_chains_without_block_records() -> None:
    """Nodes stopped while the launcher asked them (one ``pkill`` for the whole run
    directory): one answered ``/chain`` and not ``/blocks``, the others nothing. The
    summary still counts the chain, without signer counts; it used to raise KeyError,
    losing the whole summary."""
    chain = [ChainEntry("h1", 1, False), ChainEntry("h2", 2, True), ChainEntry("h3", 3, False)]
    collected = Collected(
        statuses={0: None, 1: {"head": "h3", "genesis": True}, 2: None},
        chains={0: None, 1: chain, 2: None},
        blocks={0: None, 1: None, 2: None},
    )
    names = {i: f"node-{i:03d}" for i in range(3)}
    summary = build_chain_summary(
        nodes=names,
        collected=collected,
        runs={name: (Interval(0, None),) for name in names.values()},
        end_slot=3,
        join_slot=1,
        kills=[],
        producers={},
    )
    assert (summary["blocks"], summary["skip_blocks"]) == (2, 1)
    assert summary["signers_per_block"] is None
    assert summary["reference_node"] == "node-001"


def test_pick_reference_needs_a_chain() -> None:
    assert pick_reference({}, 5) is None
    chain = [ChainEntry("h1", 1, False)]
    assert pick_reference({"node-001": chain, "node-000": []}, 1) == "node-000"


# --- elections ------------------------------------------------------------------------


def test_elected_producers_follow_the_chain(tmp_path: Path) -> None:
    genesis, idents = make_genesis(6, committee_size=3)
    state0 = compute_genesis_state(genesis)
    roles1 = compute_roles(state0.validators.get_public_keys(), state0.seed, Slot(1), 3)
    by_key = {bytes(i.pk): i for i in idents}
    producer1 = by_key[bytes(roles1.producer)]
    committee1 = [by_key[bytes(pk)] for pk in roles1.committee]
    skip = build_skip_block(
        parent=state0.block_hash, slot=Slot(1), excluded=producer1.node, committee=committee1
    )
    skip_hash = compute_block_hash(skip)
    state1 = apply_block(state0, skip, skip_hash, genesis.params)

    producers = compute_producers(genesis, [(skip_hash, skip)], [1, 2, 3])

    assert producers[1] == producer1.node.hex()
    for slot in (2, 3):
        roles = compute_roles(state1.validators.get_public_keys(), state1.seed, Slot(slot), 3)
        assert producers[slot] == compute_node_id(roles.producer).hex()
        assert producers[slot] != producer1.node.hex()  # excluded by the skip block

    store_path = tmp_path / "chain.db"
    with BlockStore(store_path) as store:
        store.put_genesis(compute_genesis_hash(genesis), encode_genesis(genesis))
        store.put_block(skip_hash, skip.parent, skip.slot, 2, encode_block(skip))
    loaded_genesis, loaded = load_chain(store_path, [skip_hash.hex()])
    assert loaded_genesis == genesis
    assert loaded == [(skip_hash, skip)]
    with pytest.raises(ElectionError):
        load_chain(store_path, ["00" * 32])


def test_neighbour_limits_fit_a_full_mesh_and_never_shrink() -> None:
    defaults = NeighbourLimits(soft_floor=128, soft=512, hard=1024)
    limits = compute_neighbour_limits(50, defaults)
    # 50 namespaces each learning 49 peers and the bridge, the root learning all 50.
    assert limits.soft >= 50 * 51 + defaults.soft
    assert limits.hard >= limits.soft
    assert limits.soft_floor == defaults.soft_floor
    generous = NeighbourLimits(soft_floor=1, soft=100_000, hard=200_000)
    assert compute_neighbour_limits(50, generous) == generous
    # The 24-node runs that worked with the defaults still fit well inside the result.
    assert compute_neighbour_limits(24, defaults).soft >= 24 * 25


def test_neighbour_limits_round_trip(tmp_path: Path) -> None:
    for i, value in ((1, 128), (2, 512), (3, 1024)):
        (tmp_path / f"gc_thresh{i}").write_text(f"{value}\n")
    assert read_neighbour_limits(tmp_path) == NeighbourLimits(128, 512, 1024)
    raised = NeighbourLimits(128, 3062, 6124)
    write_neighbour_limits(raised, tmp_path)
    assert read_neighbour_limits(tmp_path) == raised


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root node drops apps to another user")
def test_default_run_dir_is_reachable_for_the_app_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgechain.lab.testnet_config import default_run_dir
    from edgechain.runtime.appuser import is_open_to_others

    monkeypatch.chdir(tmp_path)  # pytest's tmp dirs are 0700: a closed checkout
    run_dir = default_run_dir()
    assert run_dir.is_absolute() and is_open_to_others(run_dir.parent)
    shutil.rmtree(run_dir.parent)


def test_nodes_with_a_container_engine_get_its_url() -> None:
    options = make_config().get_node_options()
    url = "unix:///tmp/x/podman.sock"
    spec = dataclasses.replace(make_spec(2), container_engine=url)
    argv = build_node_argv(spec, options, admin_key=PK, seeds=None)
    assert argv[argv.index("--container-engine") + 1] == url
    assert "--container-engine" not in build_node_argv(
        make_spec(3), options, admin_key=PK, seeds=None
    )


@pytest.mark.parametrize(
    ("argv", "expected"), [([], 0), (["--containers"], 5), (["--containers", "2"], 2)]
)
def test_testnet_containers_flag(argv: list[str], expected: int) -> None:
    config = config_from_args(build_parser().parse_args(["--nodes", "5", *argv]))
    assert config.containers == expected


def test_more_container_nodes_than_nodes_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"--containers must be 0\.\.5"):
        make_config(containers=6).check()


def _cpu_table(slots: range) -> dict[str, object]:
    """Three nodes' merged CPU tables over ``slots`` (all off duty)."""
    logs = []
    for _ in range(3):
        log = SlotCpuLog()
        totals = dict.fromkeys(Component, 0)
        log.record(slots.start - 1, False, dict(totals), 0)
        for slot in slots:
            totals[Component.GOSSIP] += 1_000_000
            log.record(slot, False, dict(totals), totals[Component.GOSSIP])
        logs.append(log.summarize())
    return merge_node_summaries(logs)


def test_the_table_after_the_join_is_printed_only_when_the_join_took_slots() -> None:
    whole = _cpu_table(range(1, 151))
    long_join = {"cpu_per_slot": whole, "cpu_per_slot_after_join": _cpu_table(range(97, 151))}
    assert get_shown_after_join_table(long_join) is long_join["cpu_per_slot_after_join"]
    short_join = {"cpu_per_slot": whole, "cpu_per_slot_after_join": _cpu_table(range(3, 151))}
    assert get_shown_after_join_table(short_join) is None  # nearly the same table
    assert get_shown_after_join_table({"cpu_per_slot": whole}) is None  # never joined
    never = {"cpu_per_slot": whole, "cpu_per_slot_after_join": None}
    assert get_shown_after_join_table(never) is None
