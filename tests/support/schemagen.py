"""Hypothesis strategies for the JSON Schema our API description uses
(types, enum, anyOf, arrays, objects with properties): values a route
declares it accepts. Only that subset: the description is generated
(portal.api.openapi), so nothing else appears in it; anything else is a
TypeError here, not a silent miss."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.integers(-2**31, 2**31) | st.sampled_from([0, 1, 2, 128, 1024]),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000),
    "string": st.text(max_size=24) | st.sampled_from(["", "demo", "10.0.0.0/24", "true"]),
}
_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid against ``schema`` (its references already inlined)."""
    if not schema:
        return _ANY
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([strategy(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return st.lists(strategy(schema.get("items", {})), max_size=3)
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {key: strategy(value) for key, value in schema["properties"].items()
             if key in required},
            optional={key: strategy(value) for key, value in schema["properties"].items()
                      if key not in required})
    if kind == "object":
        return st.dictionaries(st.text(max_size=8),
                               strategy(schema.get("additionalProperties") or {}), max_size=3)
    raise TypeError(f"no strategy for schema {schema!r}")
