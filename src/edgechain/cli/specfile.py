"""App spec files: YAML or JSON, the same document either way (see ``api/schema.py``).

On top of the API's JSON form, a spec file may write the resource limits for people:

* ``cpu_limit``: cores, a number (``0.5``, ``2``) or a string (``"500m"``: millicores,
  ``"1.5"``: cores); becomes ``cpu_limit_millicores``.
* ``memory_limit`` and ``state_limit``: bytes, an integer or a string with a binary
  (``Ki``, ``Mi``, ``Gi``, ``Ti``) or decimal (``k``/``K``, ``M``, ``G``, ``T``) suffix,
  as Kubernetes writes quantities (``"64Mi"``, ``"1Gi"``, ``"500M"``); become
  ``memory_limit_bytes`` and ``state_limit_bytes``.
* ``run_as_root: true`` as in the API form.

A lower-case ``m`` suffix on a byte quantity is refused: Kubernetes reads it as milli
(thousandths of a byte), Docker as MiB; a spec must not mean one thing to half its
readers. The same field in both forms is refused too.

PyYAML is imported here only: the node and the protocol never parse YAML.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from edgechain.chain.model import AppSpec
from edgechain.cli.common import EXIT_USAGE, CliError

MAX_SPEC_FILE_BYTES = 1024 * 1024


def read_spec_document(path: str) -> Any:
    """The parsed document of ``path`` (``-``: standard input); JSON for ``.json``,
    else YAML (which also reads JSON)."""
    import yaml

    try:
        if path == "-":
            text = sys.stdin.read(MAX_SPEC_FILE_BYTES + 1)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_SPEC_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read spec file {path}: {exc}", EXIT_USAGE) from None
    if len(text) > MAX_SPEC_FILE_BYTES:
        raise CliError(f"{path}: larger than {MAX_SPEC_FILE_BYTES} bytes", EXIT_USAGE)
    try:
        if Path(path).suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: not valid {_format_name(path)}: {exc}", EXIT_USAGE) from None


def _format_name(path: str) -> str:
    return "JSON" if Path(path).suffix.lower() == ".json" else "YAML"


MILLICORES_PER_CORE = 1000

BYTE_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}

HUMAN_KEYS: dict[str, str] = {
    "cpu_limit": "cpu_limit_millicores",
    "memory_limit": "memory_limit_bytes",
    "state_limit": "state_limit_bytes",
}
"""Spec-file key -> the API form's key it is written to."""

MAX_QUANTITY_CHARS = 32

_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)")


class QuantityError(ValueError):
    """A limit written in a form this loader does not read; the message says why."""


def _get_exact_decimal(value: object) -> Decimal:
    """A JSON/YAML number as an exact decimal (0.1 stays 0.1, not its binary double)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QuantityError(f"expected a number or a string, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise QuantityError(f"{value} is not a finite number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _get_whole(amount: Decimal, unit: str, written: object) -> int:
    if amount < 0:
        raise QuantityError(f"{written!r} is negative")
    if amount != amount.to_integral_value():
        raise QuantityError(f"{written!r} is not a whole number of {unit}")
    return int(amount)


def _match_quantity(text: str) -> re.Match[str] | None:
    # Longer than any sane limit: refused before Decimal sees it.
    return _QUANTITY.fullmatch(text.strip()) if len(text) <= MAX_QUANTITY_CHARS else None


def parse_cpu_limit(value: object) -> int:
    """Millicores from ``0.5``, ``2``, ``"1.5"`` (cores) or ``"500m"`` (millicores)."""
    fine = "millicores (1m = 0.001 cores)"
    if isinstance(value, str):
        match = _match_quantity(value)
        if match is None or match.group(2) not in ("", "m"):
            raise QuantityError(f"{value[:32]!r}: expected cores (0.5) or millicores (500m)")
        number = Decimal(match.group(1))
        if match.group(2) == "m":
            return _get_whole(number, "millicores", value)
        return _get_whole(number * MILLICORES_PER_CORE, fine, value)
    return _get_whole(_get_exact_decimal(value) * MILLICORES_PER_CORE, fine, value)


def parse_byte_quantity(value: object) -> int:
    """Bytes from an integer or ``"64Mi"``, ``"1Gi"``, ``"500M"``, ``"1.5Gi"``."""
    if not isinstance(value, str):
        return _get_whole(_get_exact_decimal(value), "bytes", value)
    match = _match_quantity(value)
    if match is None:
        raise QuantityError(f"{value[:32]!r}: expected bytes, e.g. 67108864, 64Mi, 1Gi or 500M")
    number, suffix = match.groups()
    if suffix == "m":
        raise QuantityError(f"{value!r}: ambiguous suffix m; write Mi (MiB) or M (MB)")
    if suffix not in BYTE_SUFFIXES:
        known = ", ".join(s for s in BYTE_SUFFIXES if s)
        raise QuantityError(f"{value!r}: unknown suffix {suffix!r} (known: {known})")
    return _get_whole(Decimal(number) * BYTE_SUFFIXES[suffix], "bytes", value)


def get_api_document(document: object) -> object:
    """The API's JSON form of a spec-file document: the people's keys (``cpu_limit``,
    ``memory_limit``, ``state_limit``) converted; anything else left for the API's
    parser to check. Raises ``SchemaError`` naming the spec-file key."""
    from edgechain.api.schema import SchemaError

    if not isinstance(document, Mapping):
        return document
    converted = dict(document)
    for human, api_key in HUMAN_KEYS.items():
        if human not in converted:
            continue
        if api_key in converted:
            raise SchemaError(human, f"given twice, as {human} and as {api_key}")
        parse = parse_cpu_limit if human == "cpu_limit" else parse_byte_quantity
        try:
            converted[api_key] = parse(converted.pop(human))
        except QuantityError as exc:
            raise SchemaError(human, str(exc)) from None
    return converted


def parse_spec_document(document: object) -> AppSpec:
    """The spec of a parsed spec-file document (``SchemaError`` names the field as the
    file wrote it: ``cpu_limit``, not ``cpu_limit_millicores``)."""
    from edgechain.api.schema import SchemaError, parse_app_spec

    api_document = get_api_document(document)
    try:
        return parse_app_spec(api_document)
    except SchemaError as exc:
        written = {api_key: human for human, api_key in HUMAN_KEYS.items()}
        if isinstance(document, Mapping) and exc.field in written:
            human = written[exc.field]
            if human in document:
                raise SchemaError(human, f"{exc.message} (as {exc.field})") from None
        raise


def load_spec(path: str) -> AppSpec:
    """The app spec in ``path``, checked like the API checks it (field-named errors)."""
    from edgechain.api.schema import SchemaError

    document = read_spec_document(path)
    try:
        return parse_spec_document(document)
    except SchemaError as exc:
        raise CliError(f"{path}: {exc}", EXIT_USAGE) from None
