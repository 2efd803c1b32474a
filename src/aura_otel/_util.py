"""Small internal helpers that several modules need exactly alike.

- :class:`Counters`: named, thread-safe counters a host can read (``add``/``snapshot``);
  every ``*Stats`` class is one, so nothing is dropped or replaced without a count.
- :func:`throttled`: whether the n-th occurrence of a repeated problem is logged (the first
  few, then one in many), so a flood of one fault cannot flood the log.
- :class:`BoundedCache`: a dict that empties itself when full; keys that come from spans
  (model names, attribute keys) must never grow memory without bound.
- :func:`sdk_attributes` and :func:`re2_matcher`: the two places aura-otel reads a
  dependency's private state for speed. Each checks that the private shape is what it expects
  and otherwise falls back to the public API, which gives the same answer more slowly
  (``tests/test_util.py`` checks both the fast path and the fallback with the pinned versions).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")

#: Log the first this many occurrences of a repeated problem...
LOG_FIRST = 20
#: ...then one in this many.
LOG_EVERY = 1000


class Counters:
    """Thread-safe named counters; subclasses list their names in ``_names``."""

    _names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._names, 0)

    def add(self, name: str, amount: int = 1) -> int:
        """Add to a counter and return its new value (what :func:`throttled` is given)."""
        with self._lock:
            self._counts[name] += amount
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def throttled(count: int, *, first: int = LOG_FIRST, every: int = LOG_EVERY) -> bool:
    """Whether the ``count``-th occurrence is logged: the first ``first``, then every
    ``every``-th, so the log shows a problem started and that it goes on, at bounded cost."""
    return count <= first or count % every == 0


class BoundedCache(dict[_K, _V]):
    """A memo that forgets everything when it reaches ``limit`` entries.

    Lookups are plain ``dict.get`` (no Python code on a hit, which is the hot path); only a
    miss pays for :meth:`put`. Clearing, rather than evicting one entry, keeps a miss O(1)
    and is right for what is cached here: a small working set of keys that repeat.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: _K, value: _V) -> _V:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def sdk_attributes(item: Any) -> Mapping[str, Any]:
    """The attributes of a span (or event, or link) as a plain mapping, read-only by convention.

    The SDK hands out attributes as a read-only proxy over ``BoundedAttributes``, whose every
    lookup runs Python code; the plain dict behind it is read when there is one, else the
    public ``attributes`` (a non-recording span has none: an empty mapping).
    """
    raw = getattr(item, "_attributes", None)
    inner = getattr(raw, "_dict", raw)
    if type(inner) is dict:
        return inner
    return sdk_attributes_public(item)


def sdk_attributes_public(item: Any) -> Mapping[str, Any]:
    """:func:`sdk_attributes` through the public API only."""
    return getattr(item, "attributes", None) or {}


def re2_matcher(regex: Any) -> Callable[[bytes, int, int], tuple[int, int] | None] | None:
    """``match(data, start, end) -> (start, end) | None`` of the leftmost match of a compiled
    google-re2 expression, straight from its C++ binding; None when the binding's private
    shape is not the expected one (then the caller uses ``regex.search``).

    google-re2's ``search`` wraps each C++ match in a generator and a match object; when
    most texts do not match, that wrapping is most of the cost.
    """
    import re2

    raw = getattr(getattr(regex, "_regexp", None), "Match", None)
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    if raw is None or anchor is None:
        return None
    unanchored = anchor.UNANCHORED

    def match(data: bytes, start: int, end: int) -> tuple[int, int] | None:
        found = raw(unanchored, data, start, end)[0]
        return None if found == (-1, -1) else (found[0], found[1])

    return match


def re2_matcher_public(regex: Any) -> Callable[[bytes, int, int], tuple[int, int] | None]:
    """:func:`re2_matcher` through the public API only."""

    def match(data: bytes, start: int, end: int) -> tuple[int, int] | None:
        found = regex.search(data, start, end)
        return None if found is None else found.span()

    return match


_N = TypeVar("_N", int, float)


def number_argument(
    convert: Callable[[str], _N], noun: str, low: _N, high: _N | None, out_of_range: str
) -> Callable[[str], _N]:
    """An argparse ``type`` for a number from ``low`` to ``high`` (None: no bound): bad text
    and out-of-range values are usage errors, never a traceback where the value is used
    (NaN is out of every range)."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (low <= value and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text} {out_of_range}")
        return value

    return parse
