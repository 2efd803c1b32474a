"""The masker: every string of a value, attribute mapping or span, masked with one scan.

Values are also made representable here, since every span reaches both sinks through this
pass: lone surrogates (what ``os.fsdecode`` gives for a file name that is not UTF-8) become
U+FFFD, integers outside signed 64 bits become decimal strings. A value whose handling raises
is replaced and counted; it never costs its span or the span's batch neighbours.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
import re2

from .. import conventions as c
from .._util import Counters, throttled
from .keys import KeyRule, keeps_under_sensitive_key
from .scanner import Keep, Scanner, _yes_no
from .settings import (
    MAX_JSON_DEPTH,
    MAX_JSON_NODES,
    PII_CATEGORIES,
    REDACTED,
    TRUNCATION_MARK,
    MaskingRules,
    re2_options,
)

logger = logging.getLogger("aura_otel")

#: Masking passes over one value before giving up on reaching a fixed point (then: replaced).
_MAX_PASSES: Final = 3
#: How far back from a truncation cut the partial last word is dropped (a secret cut in half
#: must not leave its first half behind).
_CUT_BACKTRACK: Final = 1024
_CACHE_LIMIT: Final = 4096
#: OTLP and the v1 files hold signed 64-bit integers; anything wider becomes a decimal string.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def representable(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD: protobuf, orjson and UTF-8 files
    all refuse them, and one such string would fail a whole OTLP batch."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


class MaskingStats(Counters):
    """Counters a host can read: nothing is replaced, cut or dropped silently."""

    _names = (
        "spans_changed",
        "spans_dropped",
        "spans_masked_inline",
        "values_truncated",
        "values_failed_closed",
        "target_errors",
        "log_records_failed",
        "values_made_representable",
        "job_ids_left_out",
    )


class _TooLarge(Exception):
    """A JSON document past the depth or size cap: the whole value is replaced."""


class KeyKind:
    """How an attribute key's value is treated (decided once per key, then cached).

    Plain ``int`` constants, not an ``IntEnum``: the span fast path compares them for every
    attribute, and enum members made that loop measurably slower (about 1.7 us of a 3.5 us
    attribute walk). The values do not overlap :class:`Rebuild`'s."""

    PASS: Final = 1  # allow-listed: untouched
    SENSITIVE: Final = 2  # the key-word rule: the value is replaced
    JSON: Final = 3  # aura.meta_json.*: decoded and walked when needed
    SCAN: Final = 4  # scanned like any text
    RENAMED: Final = 5  # the key itself needs masking (the span fast path's view)
    ID: Final = 6  # structural (job, correlation, project id): untouched if an identifier


_PASS, _SENSITIVE, _JSON, _SCAN, _RENAMED, _ID = (
    KeyKind.PASS,
    KeyKind.SENSITIVE,
    KeyKind.JSON,
    KeyKind.SCAN,
    KeyKind.RENAMED,
    KeyKind.ID,
)
#: Characters tokens are made of besides letters and digits (base64, URL-safe, JWT, hex ids).
_TOKEN_PUNCTUATION: Final = frozenset("_-+/=.~%:")
#: What an identifier looks like: one word (letters of any script), not too long.
_MAX_ID_CHARS: Final = 256
_ID_SHAPE: Final = re.compile(r"\S+(?: \S+)*")  # words of any script, single spaces between
#: Hex and UUID identifiers, which the long-hex rule would take for keys.
_HEX_ID: Final = re.compile(r"[0-9a-fA-F\-]{32,}")
#: Attribute values that carry no text (``str`` is scanned, anything else unknown is replaced).
_PRIMITIVES = (bool, int, float, type(None))
_SCALARS = (str, bool, int, float, type(None))


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    masked_key: str
    kind: int  # a KeyKind constant


class Masker:
    """Compiled once from :class:`MaskingRules`; thread-safe; never raises from ``mask_*``."""

    def __init__(
        self, rules: MaskingRules | None = None, stats: MaskingStats | None = None
    ) -> None:
        self.rules = rules if rules is not None else MaskingRules()
        self.stats = stats if stats is not None else MaskingStats()
        self.keys, self._scanner, self._key_substring = _compiled(self.rules)
        self._limit = self.rules.max_value_length
        self._plans: dict[str, _KeyPlan] = {}
        self._ids: dict[str, bool] = {}
        self._secret_masker: Masker | None = None

    # -- text ----------------------------------------------------------------------------------
    def truncate(self, text: str) -> str:
        """Cut a value to ``max_value_length`` before matching, so a 10 MB attribute costs what
        a 64 KiB one does. The partial token at the cut is dropped too (back to the last
        character no token contains, a comma as well as a space): half a secret must not
        survive because its other half was cut off."""
        if len(text) <= self._limit:
            return text
        self.stats.add("values_truncated")
        head = text[: self._limit - len(TRUNCATION_MARK)]
        stop = max(0, len(head) - _CUT_BACKTRACK)
        i = len(head) - 1
        while i >= stop and (head[i].isalnum() or head[i] in _TOKEN_PUNCTUATION):
            i -= 1
        return head[: i + 1 if i >= stop else stop] + TRUNCATION_MARK

    def mask_text(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """``text`` with every secret and (enabled) PII replaced; fail closed."""
        try:
            text = representable(self.truncate(text))
            data = text.encode("utf-8")
            if not self._scanner.dirty(data):
                return text
            return self._mask_dirty(data, Keep(keep))
        except Exception:
            return self._failed("masking a string failed; it was replaced")

    def _mask_dirty(self, data: bytes, keep: Keep) -> str:
        for _ in range(_MAX_PASSES):
            masked = self._scanner.mask_pass(data, keep)
            if masked == data:
                return data.decode("utf-8")
            data = masked
        return self._failed("masking a string did not settle; it was replaced")

    def _failed(self, message: str) -> str:
        count = self.stats.add("values_failed_closed")
        if throttled(count):
            logger.warning(
                "aura-otel: %s (values_failed_closed #%d)",
                message,
                count,
                exc_info=sys.exc_info()[0] is not None,
            )
        return REDACTED

    @property
    def joinable(self) -> bool:
        """Whether strings may be scanned joined by line breaks (no user pattern is anchored)."""
        return self._scanner.joinable

    def dirty_text(self, text: str) -> bool:
        """Whether any rule matches anywhere in ``text`` (no replacement made), or it holds a
        lone surrogate (it must be rebuilt to be representable)."""
        try:
            return self._scanner.dirty(text.encode("utf-8"))
        except UnicodeEncodeError:
            return True

    def mask_texts(
        self, texts: list[str], keep: Callable[[], frozenset[str]]
    ) -> tuple[list[str], set[int]]:
        """Mask many (already truncated) strings; a clean batch costs one RE2 call.

        Returns the masked strings and the indexes that a match touched (candidates for deeper
        work such as JSON decoding). ``keep`` is called only when something matched.
        """
        if not texts:
            return texts, set()
        scanner = self._scanner
        if scanner.joinable:
            encoded = "\n".join(texts).encode("utf-8")
            spans = scanner.dirty_spans(encoded)
            if not spans:
                return texts, set()
            try:
                touched = _touched(texts, spans)
            except Exception:  # each value then masks (and fails closed) on its own
                touched = set(range(len(texts)))
        else:
            touched = set(range(len(texts)))
        out = list(texts)
        kept = Keep(keep)
        for i in touched:
            try:  # already truncated and known to be touched: straight to the replacing pass
                out[i] = self._mask_dirty(texts[i].encode("utf-8"), kept)
            except Exception:
                out[i] = self._failed("masking a string failed; it was replaced")
        return out, touched

    # -- keys and values -----------------------------------------------------------------------
    def is_identifier(self, value: Any) -> bool:
        """Whether a structural value (job, correlation or project id) goes out untouched and
        keeps its occurrences elsewhere in the span: a string shaped like an identifier in
        which no secret rule finds anything (or a hex or UUID id, which the long-hex rule
        would take). The PII rules do not judge ids: ``job-415-215-0283`` is a job's name,
        not a phone number, and masking part of it would merge jobs. Anything else there (a
        token, JSON, a list) is replaced whole (see :class:`Batch`)."""
        if type(value) is not str or not 0 < len(value) <= _MAX_ID_CHARS:
            return False  # checked before the cache: a huge value is never kept in it
        known = self._ids.get(value)
        if known is None:
            known = _ID_SHAPE.fullmatch(value) is not None and (
                _HEX_ID.fullmatch(value) is not None
                or (self._secrets_only().mask_text(value) == value and not self._split(value))
            )
            if len(self._ids) >= _CACHE_LIMIT:
                self._ids.clear()
            self._ids[value] = known
        return known

    def _split(self, value: str) -> bool:
        """Whether a space splits a secret in two (``ghp_aB3dE5 fG7hJ9...``): each half is
        harmless alone, the id is not. Two hex halves make a hex id, which is one."""
        words = value.split(" ")
        if len(words) < 2:
            return False
        secrets = self._secrets_only()
        for joined in ("".join(words), *(a + b for a, b in itertools.pairwise(words))):
            if _HEX_ID.fullmatch(joined) is None and secrets.mask_text(joined) != joined:
                return True
        return False

    def _secrets_only(self) -> Masker:
        """This masker's rules without the PII categories (compiled once, then shared)."""
        if self._secret_masker is None:
            off: dict[str, Any] = {f"mask_{category}": False for category in PII_CATEGORIES}
            rules = dataclasses.replace(self.rules, **off)
            self._secret_masker = self if rules == self.rules else Masker(rules, self.stats)
        return self._secret_masker

    def plan(self, key: str) -> _KeyPlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(key)
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _make_plan(self, key: str) -> _KeyPlan:
        if key in c.STRUCTURAL_KEYS:
            return _KeyPlan(key, _ID)
        if self.keys.allowed(key):
            return _KeyPlan(key, _PASS)
        masked_key = self.mask_text(key)
        if self.keys.sensitive(key):
            return _KeyPlan(masked_key, _SENSITIVE)
        if key.startswith(c.META_JSON_PREFIX):
            return _KeyPlan(masked_key, _JSON)
        return _KeyPlan(masked_key, _SCAN)

    def needs_json_walk(self, text: str) -> bool:
        """Whether a JSON text may hide a sensitive key or an escaped secret: only then is it
        decoded. Without a backslash every JSON string is a literal piece of the text, so the
        joined scan already saw every value."""
        return "\\" in text or self._key_substring(text.encode("utf-8", "surrogatepass"))

    def mask_json_text(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """JSON metadata: decoded, keys and strings masked recursively, re-encoded. A text that
        does not decode is masked as a plain string (the fold keeps it as one)."""
        try:
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                return self.mask_text(text, keep)
            budget = [MAX_JSON_NODES]
            return orjson.dumps(self._mask_json(doc, keep, 0, budget)).decode()
        except _TooLarge:
            return self._failed("JSON metadata past the depth or size cap was replaced")
        except Exception:
            return self._failed("masking JSON metadata failed; it was replaced")

    def _mask_json(self, node: Any, keep: frozenset[str], depth: int, budget: list[int]) -> Any:
        budget[0] -= 1
        if depth > MAX_JSON_DEPTH or budget[0] < 0:
            raise _TooLarge
        if isinstance(node, str):
            return self.mask_text(node, keep)
        if type(node) is int:
            # A number is text of the document too: a card number written as one was found
            # by the scan of the text, and must not come back out of the decoded document.
            digits = str(node)
            return node if self.mask_text(digits, keep) == digits else REDACTED
        if isinstance(node, list):
            return [self._mask_json(item, keep, depth + 1, budget) for item in node]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if self.keys.allowed(key):
                    out[key] = value
                elif self.keys.sensitive(key) and not keeps_under_sensitive_key(key, value):
                    out[self.mask_text(key, keep)] = REDACTED
                else:
                    out[self.mask_text(key, keep)] = self._mask_json(value, keep, depth + 1, budget)
            return out
        return node

    def mask_attributes(
        self, attributes: Mapping[str, Any] | None, keep: frozenset[str] = frozenset()
    ) -> Mapping[str, Any] | None:
        """A masked copy of one attribute mapping (the same object when nothing changed)."""
        batch = Batch(self)
        entries = batch.add_attributes(attributes)
        batch.resolve(lambda: keep)
        built = batch.build_attributes(entries)
        return attributes if built is None else built


@functools.lru_cache(maxsize=8)
def _compiled(rules: MaskingRules) -> tuple[KeyRule, Scanner, Callable[[bytes], bool]]:
    """The compiled expressions for one set of rules, built on first use and shared: importing
    the package compiles nothing, and the log filter's default masker and a processor built
    with the same rules share one compilation (MaskingRules is a frozen, hashable value)."""
    keys = KeyRule(rules)
    scanner = Scanner(rules, keys)
    key_substring = _yes_no(
        re2.compile(
            "(?i:" + "|".join(re2.escape(s) for s in keys.text_words()) + ")", re2_options()
        )
    )
    return keys, scanner, key_substring


def _touched(texts: list[str], spans: list[tuple[int, int]]) -> set[int]:
    """Indexes of the texts (joined by one-byte separators) that any byte span overlaps."""
    touched: set[int] = set()
    bounds = []
    offset = 0
    for text in texts:
        size = len(text.encode("utf-8"))
        bounds.append((offset, offset + size))
        offset += size + 1
    i = 0
    for start, end in spans:
        while i < len(bounds) and bounds[i][1] < start:
            i += 1
        j = i
        while j < len(bounds) and bounds[j][0] <= max(start, end - 1):
            touched.add(j)
            j += 1
    return touched


class Rebuild:
    """How one attribute entry is rebuilt after the scan (plain ints, like :class:`KeyKind`)."""

    FIXED: Final = 11  # replaced by [REDACTED]
    TEXT: Final = 12  # the masked text
    JSONTEXT: Final = 13  # masked JSON metadata
    SEQ: Final = 14  # a sequence: its strings masked
    UNCHANGED: Final = 15  # the input value
    TEXTFIX: Final = 16  # a structural value, only made representable
    DROPPED: Final = 17  # left out (a job id that is no identifier)


_FIXED, _TEXT, _JSONTEXT, _SEQ, _UNCHANGED, _TEXTFIX, _DROPPED = (
    Rebuild.FIXED,
    Rebuild.TEXT,
    Rebuild.JSONTEXT,
    Rebuild.SEQ,
    Rebuild.UNCHANGED,
    Rebuild.TEXTFIX,
    Rebuild.DROPPED,
)
# An attribute entry: (input key, output key, input value, how to rebuild, what it needs).
_Entry = tuple[str, str, Any, int, Any]


class Batch:
    """Every string of one span, collected so that a clean span costs one scan."""

    __slots__ = ("_keep", "masked", "masker", "originals", "texts", "touched")

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.texts: list[str] = []
        self.originals: list[str] = []
        self.masked: list[str] = []
        self.touched: set[int] = set()
        self._keep: Callable[[], frozenset[str]] = frozenset

    def add_text(self, text: str) -> int:
        self.originals.append(text)
        fixed = representable(text)
        if fixed is not text:
            self.masker.stats.add("values_made_representable")
        self.texts.append(self.masker.truncate(fixed))
        return len(self.texts) - 1

    def add_attributes(self, attributes: Mapping[str, Any] | None) -> list[_Entry]:
        entries: list[_Entry] = []
        if not attributes:
            return entries
        for key, value in attributes.items():
            try:
                entries.append(self._entry(key, value))
            except Exception:  # this value only: replaced, counted; the span goes on
                self.masker._failed("masking an attribute failed; it was replaced")
                entries.append((key, self.masker.mask_text(key), value, _FIXED, None))
        return entries

    def _entry(self, key: str, value: Any) -> _Entry:
        plan = self.masker.plan(key)
        kind = plan.kind
        vtype = type(value)
        if kind == _ID:
            if self.masker.is_identifier(value):
                return (key, key, value, _UNCHANGED, None)
            # Never masked in part: two job ids masked in part could become one and merge two
            # jobs. A job id is left out (the span then belongs to no job: counted, in no
            # file); a correlation or project id is replaced whole.
            if key != c.JOB_ID:
                return (key, key, value, _FIXED, None)
            count = self.masker.stats.add("job_ids_left_out")
            if throttled(count):  # the id itself is not quoted: a secret rule found one in it
                logger.warning(
                    "aura-otel: a span's aura.job.id held a secret or is no identifier; it was "
                    "left out, so the span belongs to no job (job_ids_left_out #%d)",
                    count,
                )
            return (key, key, value, _DROPPED, None)
        if kind == _PASS:
            if vtype is str and not value.isascii():
                return (key, key, value, _TEXTFIX, representable(value))
            if vtype is int and not INT64_MIN <= value <= INT64_MAX:
                return (key, key, value, _TEXTFIX, str(value))
            return (key, key, value, _UNCHANGED, None)
        if kind == _SENSITIVE and not keeps_under_sensitive_key(key, value):
            return (key, plan.masked_key, value, _FIXED, None)
        if vtype is int or vtype is bool or vtype is float:
            if vtype is int and not INT64_MIN <= value <= INT64_MAX:
                self.masker.stats.add("values_made_representable")
                return (key, plan.masked_key, value, _TEXT, self.add_text(str(value)))
            return (key, plan.masked_key, value, _UNCHANGED, None)
        if isinstance(value, str):
            how = _JSONTEXT if kind == _JSON else _TEXT
            return (key, plan.masked_key, value, how, self.add_text(value))
        if isinstance(value, (tuple, list)) and all(isinstance(v, _SCALARS) for v in value):
            items = tuple(value)
            if any(type(v) is int and not INT64_MIN <= v <= INT64_MAX for v in items):
                self.masker.stats.add("values_made_representable")
                items = tuple(str(v) if type(v) is int else v for v in items)
            refs = [self.add_text(v) if isinstance(v, str) else None for v in items]
            return (key, plan.masked_key, value, _SEQ, (refs, items))
        if isinstance(value, _PRIMITIVES):
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and not INT64_MIN <= value <= INT64_MAX
            ):
                return (key, plan.masked_key, value, _TEXT, self.add_text(str(int(value))))
            return (key, plan.masked_key, value, _UNCHANGED, None)
        # not an OpenTelemetry attribute type: nothing known about it is safe
        return (key, plan.masked_key, value, _FIXED, None)

    def resolve(self, keep: Callable[[], frozenset[str]]) -> None:
        """Scan everything collected; ``keep`` (the span's own ids) is built only if needed."""
        self._keep = keep
        self.masked, self.touched = self.masker.mask_texts(self.texts, keep)

    def text(self, index: int) -> str:
        return self.masked[index]

    def _json_text(self, index: int) -> str:
        original = self.originals[index]
        if self.texts[index] is not original:
            return self.masked[index]  # truncated: no longer JSON, masked as a string
        if index in self.touched or self.masker.needs_json_walk(original):
            return self.masker.mask_json_text(original, self._keep())
        return original

    def build_attributes(self, entries: list[_Entry]) -> dict[str, Any] | None:
        """The masked attributes, or None when they equal the input (the input is reused)."""
        changed = False
        out: dict[str, Any] = {}
        for in_key, key, value, how, ref in entries:
            if how == _DROPPED:
                changed = True
                continue
            if how == _UNCHANGED:
                new = value
            elif how == _TEXTFIX:
                new = ref
            elif how == _TEXT:
                new = self.masked[ref]
            elif how == _JSONTEXT:
                new = self._json_text(ref)
            elif how == _SEQ:
                refs, items = ref
                new = tuple(
                    self.masked[r] if r is not None else v for r, v in zip(refs, items, strict=True)
                )
            else:
                new = REDACTED
            if (key is not in_key and key != in_key) or (new is not value and new != value):
                changed = True
            out[key] = new
        return out if changed else None
