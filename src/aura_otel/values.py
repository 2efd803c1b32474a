"""Values any sink can write: what a span may carry that JSON (or orjson) cannot.

OpenTelemetry accepts integers of any size, strings holding lone surrogates (what
``os.fsdecode`` gives for a file name that is not UTF-8), NaN and infinities. orjson refuses
the first two outright and a refusal would cost the whole job's file, so the v1 writer runs
what it is about to write through :func:`representable` when (and only when) serialising it
failed. Each odd value costs only itself:

* an integer outside the 64-bit range becomes its decimal string (``2**70`` is written
  ``"1180591620717411303424"``), or a short note when it has more digits than Python will print;
* lone surrogates become U+FFFD, one per surrogate; the rest of the string is kept;
* NaN and infinities become ``null`` (what orjson writes for them anyway);
* a file that would be larger than the server reads by default has its strings over 64 KiB
  cut (with `` [TRUNCATED]``), so one huge attribute cannot make its job unreadable;
* nesting deeper than JSON readers accept is cut (the v1 reader takes about 200 levels):
  metadata values decoded from JSON keep :data:`MAX_META_DEPTH` levels, the level below is
  the string ``"[nested too deeply]"``; anything else unknown becomes its ``str``.
"""

from __future__ import annotations

import math
import re
from typing import Any

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1  # orjson writes signed and unsigned 64-bit integers
#: orjson refuses to write deeper than 254 levels, pydantic to read deeper than ~200.
MAX_DEPTH = 128
#: Levels a metadata value keeps (it sits four levels down in a file).
MAX_META_DEPTH = 64
TOO_DEEP = "[nested too deeply]"
_SURROGATES = re.compile("[\ud800-\udfff]")


def text(value: str) -> str:
    """``value`` with each lone surrogate replaced by U+FFFD (unchanged when it has none)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return value


def integer(value: int) -> int | str:
    """``value``, or its decimal string when JSON writers cannot hold it as a number."""
    if INT_MIN <= value <= INT_MAX:
        return value
    try:
        return str(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return f"[integer of {value.bit_length()} bits]"


def cap_depth(value: Any, limit: int = MAX_META_DEPTH) -> Any:
    """``value`` with containers below ``limit`` levels replaced by :data:`TOO_DEEP`.

    Returns ``value`` itself when it is shallow enough; callers check cheaply first (a string
    with fewer brackets than ``limit`` cannot nest deeper).
    """
    if not isinstance(value, dict | list):
        return value
    if limit <= 0:
        return TOO_DEEP
    if isinstance(value, dict):
        return {key: cap_depth(item, limit - 1) for key, item in value.items()}
    return [cap_depth(item, limit - 1) for item in value]


#: Appended to a string cut by :func:`shorten` (the mark masking uses for its own cut).
TRUNCATION_MARK = " [TRUNCATED]"


def shorten(value: Any, limit: int) -> Any:
    """``value`` with every string longer than ``limit`` characters cut to ``limit`` (mark
    included); containers are copied only where something was cut."""
    if isinstance(value, str):
        return (
            value
            if len(value) <= limit
            else value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
        )
    if isinstance(value, dict):
        items = {key: shorten(item, limit) for key, item in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, list):
        copied = [shorten(item, limit) for item in value]
        return value if all(a is b for a, b in zip(copied, value, strict=True)) else copied
    return value


def representable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that orjson can always write (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return text(value)
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            (text(key) if isinstance(key, str) else text(str(key))): representable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [representable(item, depth + 1) for item in value]
    try:
        return text(str(value))
    except Exception:
        return f"[{type(value).__name__}]"
