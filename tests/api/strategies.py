"""hypothesis strategies for app specs and their JSON, valid and hostile."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import AppPolicy, AppSpec, RuntimeKind

# Printable names without control characters (what the API accepts for names).
_NAME_CHARS = st.characters(exclude_categories=["Cc", "Cs"])
_ARG_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _bounded_text(chars: st.SearchStrategy[str], max_bytes: int, min_size: int = 0) -> Any:
    return st.text(chars, min_size=min_size, max_size=max_bytes // 4).filter(
        lambda s: len(s.encode()) <= max_bytes
    )


def app_policies() -> st.SearchStrategy[AppPolicy]:
    return st.builds(
        AppPolicy,
        pinned=st.booleans(),
        pin_node=st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
        allowed_labels=st.lists(
            _bounded_text(_NAME_CHARS, Limits.MAX_SHORT_STR, 1), max_size=Limits.MAX_LABELS
        ).map(tuple),
        anti_affinity=_bounded_text(_NAME_CHARS, Limits.MAX_SHORT_STR),
        min_interval_slots=st.integers(0, 2**32 - 1),
        wait_for_state=st.booleans(),
    )


@st.composite
def app_specs(draw: st.DrawFn) -> AppSpec:
    runtime = draw(st.sampled_from(RuntimeKind))
    name = draw(_bounded_text(_NAME_CHARS, Limits.MAX_SHORT_STR, 1).filter(str.strip))
    image = draw(_bounded_text(_NAME_CHARS, Limits.MAX_SHORT_STR, 1 if runtime == 2 else 0))
    command = draw(
        st.lists(_bounded_text(_ARG_CHARS, 64, 0), max_size=8, min_size=1).filter(
            lambda c: runtime is not RuntimeKind.PROCESS or bool(c[0])
        )
    )
    stateful, policy = draw(st.booleans()), draw(app_policies())
    return AppSpec(
        name=name,
        runtime=runtime,
        image=image,
        command=tuple(command),
        cpu_bp=draw(st.integers(0, 10_000)),
        ram_bp=draw(st.integers(0, 10_000)),
        stateful=stateful,
        policy=replace(policy, wait_for_state=stateful and policy.wait_for_state),
        cpu_limit_millicores=draw(st.one_of(st.just(0), st.integers(10, 1_024_000))),
        memory_limit_bytes=draw(st.one_of(st.just(0), st.integers(6 * 2**20, 2**48))),
        state_limit_bytes=draw(st.one_of(st.just(0), st.integers(2**20, 2**40))),
        run_as_root=runtime is RuntimeKind.CONTAINER and draw(st.booleans()),
    )


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Any JSON value, with the odd huge string or number."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(["x" * 5000, "\ud800", "é" * 200, "", "process", "container"]),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


_SPEC_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.text(max_size=10), st.just("n" * 5000), json_values(3)),
    "runtime": st.one_of(st.sampled_from(["process", "container", "vm", ""]), json_values(2)),
    "image": st.one_of(st.text(max_size=10), st.just("i" * 300), json_values(2)),
    "command": st.one_of(
        st.lists(st.text(max_size=8).map(lambda s: "/nonexistent/fuzz-" + s), max_size=4),
        st.just(["a"] * 65),
        st.just(["a" * 4097]),
        json_values(4),
    ),
    "cpu_bp": st.one_of(st.integers(-5, 20_000), json_values(1)),
    "ram_bp": st.one_of(st.integers(-5, 20_000), json_values(1)),
    "stateful": st.one_of(st.booleans(), json_values(1)),
    "cpu_limit_millicores": st.one_of(st.integers(-5, 2_000_000), json_values(1)),
    "memory_limit_bytes": st.one_of(st.integers(-5, 2**65), json_values(1)),
    "state_limit_bytes": st.one_of(st.integers(-5, 2**65), json_values(1)),
    "run_as_root": st.one_of(st.booleans(), json_values(1)),
}
_POLICY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "pinned": st.one_of(st.booleans(), json_values(1)),
    "pin_node": st.one_of(st.just(""), st.binary(max_size=40).map(bytes.hex), json_values(1)),
    "allowed_labels": st.one_of(st.lists(st.text(max_size=5), max_size=18), json_values(3)),
    "anti_affinity": st.one_of(st.text(max_size=5), st.just("a" * 300), json_values(1)),
    "min_interval_slots": st.one_of(st.integers(-(2**33), 2**33), json_values(1)),
}


def spec_json() -> st.SearchStrategy[Any]:
    """Spec-shaped JSON objects: mostly known keys with plausible or hostile values."""
    policy = st.one_of(
        st.fixed_dictionaries({}, optional=_POLICY_VALUES),
        json_values(3),
    )
    return st.fixed_dictionaries(
        {},
        optional={
            **_SPEC_VALUES,
            "policy": policy,
            "unknown": json_values(1),
        },
    )
