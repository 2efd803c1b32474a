"""A JSON Schema (2020-12) checker for the keywords ``/api/openapi.json`` uses.

Small on purpose: the test environment has no ``jsonschema`` package, and what the document
uses is a handful of keywords. A keyword it does not know is an error, never ignored, so a new
construct in the document cannot pass unchecked.
"""

from __future__ import annotations

import re
from typing import Any

_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}
_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly"}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def errors(
    value: Any, schema: dict[str, Any], document: dict[str, Any], path: str = "$"
) -> list[str]:
    """Every way ``value`` breaks ``schema`` (``$ref``s resolved in ``document``)."""
    found: list[str] = []
    for key, rule in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref":
            target: Any = document
            for part in rule.removeprefix("#/").split("/"):
                target = target[part]
            found += errors(value, target, document, path)
        elif key == "type":
            names = rule if isinstance(rule, list) else [rule]
            if not any(_is_type(value, n) for n in names):
                found.append(f"{path}: {value!r} is not of type {rule}")
        elif key == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        found += errors(value[name], sub, document, f"{path}.{name}")
        elif key == "required":
            if isinstance(value, dict):
                found += [f"{path}: {name} is required" for name in rule if name not in value]
        elif key == "additionalProperties":
            if isinstance(value, dict):
                extra = [k for k in value if k not in schema.get("properties", {})]
                for name in extra:
                    if rule is False:
                        found.append(f"{path}: {name} is not allowed")
                    elif isinstance(rule, dict):
                        found += errors(value[name], rule, document, f"{path}.{name}")
        elif key == "propertyNames":
            if isinstance(value, dict):
                for name in value:
                    found += errors(name, rule, document, f"{path}[key {name!r}]")
        elif key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    found += errors(item, rule, document, f"{path}[{i}]")
        elif key == "anyOf":
            if all(errors(value, sub, document, path) for sub in rule):
                found.append(f"{path}: {value!r} matches none of {rule}")
        elif key == "allOf":
            for sub in rule:
                found += errors(value, sub, document, path)
        elif key == "enum":
            if value not in rule:
                found.append(f"{path}: {value!r} not in {rule}")
        elif key == "const":
            if value != rule:
                found.append(f"{path}: {value!r} != {rule!r}")
        elif key == "format":
            if rule == "date-time" and isinstance(value, str) and not _DATE_TIME.match(value):
                found.append(f"{path}: {value!r} is not a date-time")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _is_type(value, "number"):
                ok = {
                    "minimum": value >= rule,
                    "maximum": value <= rule,
                    "exclusiveMinimum": value > rule,
                    "exclusiveMaximum": value < rule,
                }[key]
                if not ok:
                    found.append(f"{path}: {value!r} breaks {key} {rule}")
        elif key in ("minLength", "maxLength"):
            if isinstance(value, str) and not (
                len(value) >= rule if key == "minLength" else len(value) <= rule
            ):
                found.append(f"{path}: length {len(value)} breaks {key} {rule}")
        else:
            raise AssertionError(f"{path}: the checker does not know the keyword {key!r}")
    return found
