"""Tool input schemas as a model reads them, cut to what it needs: every token of a tool list is
sent with every request a host makes.

pydantic writes a title on every field and model, the request examples and the REST schema's
regular expressions (which say "not blank, no control characters" in descriptions already), and
spells an optional field as ``anyOf [T, null]``. The published schema drops those; the arguments
are still validated by the tool's full pydantic model, so the rules themselves do not change.
"""

from __future__ import annotations

from typing import Any

DROPPED = frozenset({"title", "examples", "pattern"})


def slim(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without titles, examples and patterns, with optional ``anyOf [T, null]`` as T."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROPPED:
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: slim(sub) for name, sub in value.items()}
        elif key == "anyOf" and schema.get("default", ...) is None:
            kinds = [slim(v) for v in value if v != {"type": "null"}]
            if len(kinds) == 1:
                out |= kinds[0]
            else:
                out[key] = kinds
        elif isinstance(value, dict):
            out[key] = slim(value)
        elif isinstance(value, list):
            out[key] = [slim(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    if out.get("default", ...) is None and "anyOf" not in out:
        del out["default"]  # an optional field left out of `required` already says "may be absent"
    return out
