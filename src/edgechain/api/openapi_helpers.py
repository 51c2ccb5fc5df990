"""Small builders of JSON Schema objects for the API's OpenAPI document
(``api/openapi.py``, ``api/openapi_schemas.py``, ``api/openapi_node_schemas.py``,
``api/openapi_app_schemas.py``, ``api/openapi_snapshot.py``)."""

from __future__ import annotations

from typing import Any

from edgechain.chain.encoding_limits import Limits
from edgechain.chain.model import BASIS_POINTS, COORD_LIMIT_US

Schema = dict[str, Any]

APP_STATES = ("running", "queued", "stopped")
"""An app's state as the API writes it (``orchestrator/fleet.get_app_state_name``)."""


# --- schema helpers ------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (OpenAPI 3.1: a type list, or anyOf for a reference)."""
    kind = schema.get("type")
    if isinstance(kind, str) and "$ref" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def hex_string(size: int, description: str = "") -> Schema:
    """Lower-case hex of ``size`` bytes, as the API writes it."""
    out: Schema = {"type": "string", "pattern": f"^[0-9a-f]{{{2 * size}}}$"}
    if description:
        out["description"] = description
    return out


def count(description: str = "") -> Schema:
    out: Schema = {"type": "integer", "minimum": 0}
    if description:
        out["description"] = description
    return out


def share(description: str = "") -> Schema:
    out: Schema = {"type": "integer", "minimum": 0, "maximum": BASIS_POINTS}
    if description:
        out["description"] = description
    return out


def coordinate(description: str = "") -> Schema:
    """A network coordinate ``[x, y]`` in microseconds of RTT (``cluster/vivaldi.py``)."""
    axis: Schema = {"type": "integer", "minimum": -COORD_LIMIT_US, "maximum": COORD_LIMIT_US}
    out: Schema = {"type": "array", "items": axis, "minItems": 2, "maxItems": 2}
    if description:
        out["description"] = description
    return out


def closed_object(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A closed object: every property required but ``optional``, no other key."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def counters(description: str) -> Schema:
    """An open table of counters by name (reasons, kinds)."""
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "integer", "minimum": 0},
    }


def limit(low: int, high: int, what: str) -> Schema:
    """A resource limit: 0 (none) or within [low, high] (``chain/validation.py``)."""
    return {
        "description": f"{what}; 0: no limit, else within [{low}, {high}]",
        "default": 0,
        "anyOf": [
            {"type": "integer", "const": 0},
            {"type": "integer", "minimum": low, "maximum": high},
        ],
    }


END = r"(?![\s\S])"
"""The end of the string, for patterns: ``$`` is that in ECMA-262 (JSON Schema's
dialect), but Python's ``re.search``, which validators such as ``jsonschema`` use, also
lets it match before a final newline, so a name ending in one passed the schema and
failed the parser. A look-ahead for no character means the end in both."""
NO_CONTROL = rf"^[^\x00-\x1f\x7f-\x9f]*{END}"
"""No control character (Unicode category Cc): names and labels (``name_like``)."""
NO_NUL = r"^[^\x00]*$"


def short_text(description: str, *, required: bool = False) -> Schema:
    """A name-like string of at most ``MAX_SHORT_STR`` UTF-8 bytes (the schema can only
    bound characters; a longer UTF-8 encoding is a 400)."""
    out: Schema = {
        "type": "string",
        "maxLength": Limits.MAX_SHORT_STR,
        "pattern": NO_CONTROL,
        "description": f"{description} (at most {Limits.MAX_SHORT_STR} UTF-8 bytes, "
        "no control characters)",
    }
    if required:
        out["minLength"] = 1
    return out
