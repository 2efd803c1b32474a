"""Masking: no secret or PII leaves the process unmasked, on any path.

OpenTelemetry hands ``on_end`` a read-only span, and attributes may be set long after
``on_start``; so the one place that sees a span's final state and still decides what exporters
get is ``on_end``. :class:`MaskingSpanProcessor` builds a masked copy there and hands *only* the
copy to its targets (the v1 exporter, the OTLP exporter, whatever a user adds through
aura-otel); a span with nothing to mask goes on as the SDK's own read-only snapshot. Targets are
owned by the processor, so an unmasked span cannot reach them.

Speed comes from one RE2 scan (linear time, no backtracking) over all of a span's strings joined
together: a clean span costs one call into RE2; per-value work happens only where something
matched. Post-filters (Luhn for cards, digit counts for phones, whole-word checks for key-value
forms) run only on candidates, so the expression can stay broad and cheap.

Everything here fails closed: a value whose masking raises, or that exceeds a size cap, is
replaced by ``[REDACTED]`` and counted, never passed through.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import re2
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Status

from . import conventions as c
from .errors import ConfigurationError
from .exporter import ExporterStats

logger = logging.getLogger("aura_otel")

REDACTED: Final = "[REDACTED]"
#: Appended to a value cut at ``max_value_length``; the cut value plus this mark fits the limit,
#: so masking a masked value changes nothing (masking is idempotent).
TRUNCATION_MARK: Final = " [TRUNCATED]"
DEFAULT_MAX_VALUE_LENGTH: Final = 64 * 1024
MIN_MAX_VALUE_LENGTH: Final = 256
#: Decoded ``aura.meta_json.*`` documents deeper or larger than this are replaced whole.
MAX_JSON_DEPTH: Final = 32
MAX_JSON_NODES: Final = 10_000
#: Masking passes over one value before giving up on reaching a fixed point (then: replaced).
_MAX_PASSES: Final = 3
#: How far back from a truncation cut the partial last word is dropped (a secret cut in half
#: must not leave its first half behind).
_CUT_BACKTRACK: Final = 1024

PII_CATEGORIES: Final = ("email", "card", "phone")

#: Key words whose presence makes a key sensitive (its whole value is replaced). Whole words,
#: so ``max_tokens`` and ``keyframe_count`` keep their values. Plurals of the obvious ones are
#: included; ``tokens`` is not (it names counts far more often than credentials).
SENSITIVE_KEY_WORDS: Final = frozenset(
    {
        "key", "keys", "apikey", "token", "secret", "secrets", "password", "passwords",
        "passwd", "pwd", "authorization", "cookie", "cookies", "credential", "credentials",
        "private",
    }
)
#: Extra words that make a URL query parameter sensitive (``?sig=``, ``&X-Amz-Signature=``).
QUERY_KEY_WORDS: Final = frozenset({"sig", "signature", "auth"})
#: A number under a sensitive key whose words also name a quantity is a quantity, not a
#: credential (``llm.token_count.total``): it is kept.
QUANTITY_WORDS: Final = frozenset(
    {"count", "counts", "total", "num", "number", "max", "min", "limit", "length", "len", "size"}
)

_KEY_PARTS = re.compile(r"[^A-Za-z0-9]+")
_KEY_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_CACHE_LIMIT = 4096


def key_words(key: str) -> tuple[str, ...]:
    """Lower-case words of a key: split on any non-alphanumeric and on camelCase."""
    return tuple(
        word.lower() for part in _KEY_PARTS.split(key) for word in _KEY_WORD.findall(part)
    )


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 64 << 20  # room for the DFA of one large alternation: stays in the fast path
    return options


def _check_pattern(index: int, pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigurationError(f"masking pattern #{index + 1} must be a non-empty string")
    try:
        compiled = re2.compile(pattern, _re2_options())
    except re2.error as exc:
        raise ConfigurationError(
            f"masking pattern #{index + 1} {pattern!r} is not valid RE2 syntax: {exc}"
        ) from None
    if compiled.search("") is not None:
        raise ConfigurationError(
            f"masking pattern #{index + 1} {pattern!r} matches the empty string"
        )
    return pattern


def _string_tuple(name: str, values: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigurationError(f"{name} must be a list of strings, not one string")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigurationError(f"{name} must hold non-empty strings, got {item!r}")
    return tuple(item.strip() for item in items)


@dataclass(frozen=True, slots=True)
class MaskingRules:
    """What to mask beyond the built-in rules. Validated when built: a bad pattern is a start-up
    error, never a surprise at the first span.

    ``allow_keys`` are exact keys (any case) that are never masked at all: neither by the
    key-word rule nor by the value scan. They match a full attribute key, a metadata key (the
    part after ``aura.meta.`` / ``aura.meta_json.``) or a key inside JSON metadata.
    """

    extra_patterns: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()
    allow_keys: tuple[str, ...] = ()
    mask_email: bool = True
    mask_card: bool = True
    mask_phone: bool = True
    max_value_length: int = DEFAULT_MAX_VALUE_LENGTH

    def __post_init__(self) -> None:
        patterns = _string_tuple("extra_patterns", self.extra_patterns)
        object.__setattr__(self, "extra_patterns", tuple(
            _check_pattern(i, p) for i, p in enumerate(patterns)
        ))
        object.__setattr__(self, "extra_keys", _string_tuple("extra_keys", self.extra_keys))
        object.__setattr__(self, "allow_keys", _string_tuple("allow_keys", self.allow_keys))
        for key in self.extra_keys:
            if not key_words(key):
                raise ConfigurationError(f"extra sensitive key {key!r} has no letters or digits")
        for flag in ("mask_email", "mask_card", "mask_phone"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(f"{flag} must be a bool")
        limit = self.max_value_length
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_MAX_VALUE_LENGTH:
            raise ConfigurationError(
                f"max_value_length must be an integer >= {MIN_MAX_VALUE_LENGTH}, got {limit!r}"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        extra_patterns: Iterable[str] = (),
        extra_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        pii: Iterable[str] | str | None = None,
        max_value_length: int | None = None,
    ) -> MaskingRules:
        """Rules from the environment, extended by explicit arguments.

        Lists from arguments are added to the lists from the environment; ``pii`` and
        ``max_value_length`` given as arguments replace the environment's.
        """
        env = os.environ if environ is None else environ
        patterns = _parse_patterns(env.get(c.ENV_MASK_EXTRA_PATTERNS, ""))
        keys = _parse_list(env.get(c.ENV_MASK_EXTRA_KEYS, ""))
        allow = _parse_list(env.get(c.ENV_MASK_ALLOW_KEYS, ""))
        if pii is None:
            categories = _parse_pii(env.get(c.ENV_MASK_PII, ""), c.ENV_MASK_PII)
        else:
            categories = _parse_pii(pii if isinstance(pii, str) else ",".join(pii), "pii")
        if max_value_length is None:
            raw = env.get(c.ENV_MASK_MAX_VALUE_LENGTH, "").strip()
            try:
                max_value_length = int(raw) if raw else DEFAULT_MAX_VALUE_LENGTH
            except ValueError:
                raise ConfigurationError(
                    f"{c.ENV_MASK_MAX_VALUE_LENGTH} must be an integer, not {raw!r}"
                ) from None
        return cls(
            extra_patterns=patterns + _string_tuple("extra_patterns", extra_patterns),
            extra_keys=keys + _string_tuple("extra_keys", extra_keys),
            allow_keys=allow + _string_tuple("allow_keys", allow_keys),
            mask_email="email" in categories,
            mask_card="card" in categories,
            mask_phone="phone" in categories,
            max_value_length=max_value_length,
        )


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_patterns(raw: str) -> tuple[str, ...]:
    """A JSON array of strings (commas are common in regexes), or one pattern per line."""
    text = raw.strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{c.ENV_MASK_EXTRA_PATTERNS} looks like JSON but does not parse: {exc}"
            ) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f"{c.ENV_MASK_EXTRA_PATTERNS} must be a JSON array of strings")
        return tuple(value)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _parse_pii(raw: str, source: str) -> frozenset[str]:
    """``all`` (the default), ``none``, or a comma list of the categories to mask."""
    items = {item.strip().lower() for item in raw.split(",") if item.strip()}
    if not items or items == {"all"}:
        return frozenset(PII_CATEGORIES)
    if items == {"none"}:
        return frozenset()
    unknown = items - set(PII_CATEGORIES)
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown PII categor{'ies' if len(unknown) > 1 else 'y'} "
            f"{sorted(unknown)}; use 'all', 'none' or a comma list of {list(PII_CATEGORIES)}"
        )
    return frozenset(items)


# ------------------------------------------------------------------------------------------------
# keys
# ------------------------------------------------------------------------------------------------
class _KeyRule:
    """Decides, per key, whether its whole value is replaced (the key-word rule)."""

    def __init__(self, rules: MaskingRules) -> None:
        self._extra = tuple(key_words(k) for k in rules.extra_keys)
        self._allow = frozenset(k.lower() for k in rules.allow_keys)
        self._cache: dict[tuple[str, bool], bool] = {}

    def allowed(self, key: str) -> bool:
        if not self._allow:
            return False
        lowered = key.lower()
        if lowered in self._allow:
            return True
        for prefix in (c.META_PREFIX, c.META_JSON_PREFIX):
            if lowered.startswith(prefix) and lowered[len(prefix):] in self._allow:
                return True
        return False

    def sensitive(self, key: str, *, query: bool = False) -> bool:
        cached = self._cache.get((key, query))
        if cached is None:
            cached = self._decide(key, query)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[(key, query)] = cached
        return cached

    def _decide(self, key: str, query: bool) -> bool:
        if key in c.CONTRACT_KEYS or key in c.STRUCTURAL_KEYS or self.allowed(key):
            return False
        words = key_words(key)
        if not SENSITIVE_KEY_WORDS.isdisjoint(words):
            return True
        if query and not QUERY_KEY_WORDS.isdisjoint(words):
            return True
        return any(_contains_run(words, extra) for extra in self._extra)

    @staticmethod
    def names_quantity(key: str) -> bool:
        return not QUANTITY_WORDS.isdisjoint(key_words(key))

    def text_words(self) -> tuple[str, ...]:
        """Words a sensitive key contains (the first word of each extra key stands for it):
        what the key-value pre-filter looks for; the exact decision is made afterwards."""
        return tuple(sorted(SENSITIVE_KEY_WORDS | {words[0] for words in self._extra}))


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    n = len(run)
    return any(words[i : i + n] == run for i in range(len(words) - n + 1))


def _keeps_under_sensitive_key(key: str, value: Any) -> bool:
    """Booleans say nothing secret; numbers under a key that names a quantity are counts."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if items and all(isinstance(v, bool) for v in items):
        return True
    if items and all(isinstance(v, (int, float)) for v in items):
        return _KeyRule.names_quantity(key)
    return False


# ------------------------------------------------------------------------------------------------
# value rules
# ------------------------------------------------------------------------------------------------
REDACTED_B: Final = REDACTED.encode()


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: str
    handler: str  # name of a _Scanner method: how a match of this rule is replaced


_KV_VALUE = r"""(?:"[^"\n]*"?|'[^'\n]*'?|(?i:bearer|basic|token)[ \t]+[^\s"'&,;]+|[^\s"'&,;]+)"""


_KEY_CHAR = r"[A-Za-z0-9_.\-]"


def _key_pattern(words: Sequence[str]) -> str:
    """A key holding one of ``words`` as a whole word, approximately, in RE2 (no look-around):
    the word starts the key or follows a separator or digit (or is Capitalised, camelCase) and
    is not followed by a lower-case letter. So ``max_tokens``, ``keyframe`` and ``monkey`` are
    not even candidates; :func:`key_words` makes the exact decision on what is."""
    ordered = sorted(set(words), key=len, reverse=True)
    lower = "|".join(re2.escape(w) for w in ordered)
    capital = "|".join(
        f"{re2.escape(w[0].upper())}(?i:{re2.escape(w[1:])})" if len(w) > 1 else re2.escape(w.upper())
        for w in ordered if w[0].isalpha()
    )
    start = rf"(?:{_KEY_CHAR}*[0-9_.\-]|\b)(?i:{lower})"
    if capital:
        start = rf"(?:{start}|{_KEY_CHAR}*(?:{capital}))"
    return rf"{start}(?:[A-Z0-9_.\-]{_KEY_CHAR}*)?"


def _builtin_rules(key_words_in_text: Sequence[str], rules: MaskingRules) -> list[_Rule]:
    """The built-in rules, in priority order: at one position the first rule that matches wins
    (RE2 leftmost-first), so identifiers that must survive come before the hex rule, and
    key-value forms before the bare-token rules."""
    key = _key_pattern(key_words_in_text)
    out = [
        # Structural identifiers in text: W3C traceparent and labelled ids survive.
        _Rule("traceparent", r"\b[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\b", "keep"),
        _Rule(
            "labelled_id",
            r"""\b(?i:trace|span|parent|job|correlation|request)[_. \-]?(?i:id)["']?\s*[:=]?\s*["']?[0-9a-fA-F]{16,64}\b""",
            "keep",
        ),
        _Rule(
            "pem_private_key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|[\s\S]*)",
            "redact",
        ),
        _Rule(
            "url_credentials",
            r"""(?P<url_scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<url_cred>[^\s/?#@:"'<>]*:[^\s/?#"'<>]+)@""",
            "url",
        ),
        _Rule(
            "cookie",
            r"""(?P<ck_key>\b(?i:(?:set-)?cookie))(?P<ck_sep>["']?\s*[:=]\s*)(?P<ck_val>"[^"\n]*"?|'[^'\n]*'?|[^\s"'][^\n"']*)""",
            "cookie",
        ),
        # URL query parameters: also sig/signature/auth (?sig=..., &X-Amz-Signature=...).
        _Rule(
            "query_parameter",
            rf"""[?&;](?P<qp_key>{_KEY_CHAR}*(?i:sig|auth){_KEY_CHAR}*)(?P<qp_sep>=)(?P<qp_val>[^\s&#"'<>]+)""",
            "query_parameter",
        ),
        _Rule(
            "key_value",
            rf"""(?P<kv_key>{key})(?P<kv_sep>["']?\s*[:=]\s*)(?P<kv_val>{_KV_VALUE})""",
            "key_value",
        ),
        _Rule("auth_scheme", r"\b(?i:bearer|basic)[ \t]+(?P<cred>[A-Za-z0-9._~+/\-]{8,}=*)", "auth_scheme"),
        _Rule(
            "jwt",
            r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){1,3}",
            "redact",
        ),
        # OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-...): 16+ characters.
        _Rule("sk_key", r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{15,}", "redact"),
        _Rule("stripe", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{16,}", "redact"),
        _Rule("google_api_key", r"\bAIza[0-9A-Za-z_\-]{30,}", "redact"),
        _Rule(
            "aws_access_key_id",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b",
            "redact",
        ),
        _Rule("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})", "redact"),
        _Rule("slack", r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9\-]{10,}", "redact"),
        _Rule("long_hex", r"\b[0-9a-fA-F]{32,}\b", "redact"),
    ]
    if rules.mask_email:
        out.append(_Rule(
            "email",
            r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
            "redact",
        ))
    if rules.mask_card:
        out.append(_Rule("card", r"\b[0-9](?:[ \-]?[0-9]){12,}\b", "card"))
    if rules.mask_phone:
        out.append(_Rule("phone", r"\B\+[0-9](?:[ .\-]?\(?[0-9]+\)?)+", "phone"))
    return out


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_like(digits: str) -> bool:
    """13-19 digits, an issuer prefix that card networks use, and a valid Luhn check digit."""
    if not 13 <= len(digits) <= 19:
        return False
    if digits[0] not in "3456" and not ("22" <= digits[:2] <= "27"):
        return False
    return _luhn(digits)


_DIGIT_RUN = re.compile(rb"[0-9]+")
_CRED_SYMBOLS = frozenset(b"._~+/-=")


def _credential_like(token: bytes) -> bool:
    """``Basic understanding`` is prose; ``Basic dXNlcjpwYXNz`` is a credential."""
    if any(48 <= b <= 57 or b in _CRED_SYMBOLS for b in token):
        return True
    upper_inside = any(65 <= b <= 90 for b in token[1:])
    return upper_inside and any(97 <= b <= 122 for b in token)


_LITERALS: Final = frozenset({b"true", b"false", b"null", b"none", b"yes", b"no", b"", REDACTED_B.lower()})


_COOKIE_WORDS: Final = frozenset({"cookie", "cookies"})
_MAX_EXTENT_STEPS: Final = 64
_VALUE_STOP = re.compile(rb"[\n\"']")


def _next_char(data: bytes, i: int) -> int:
    """The offset of the UTF-8 character after the one at ``i`` (never inside a character)."""
    i += 1
    while i < len(data) and data[i] & 0xC0 == 0x80:
        i += 1
    return i


def _line_value_end(data: bytes, start: int) -> int:
    """Where an unquoted header value ends: at the line end or a quote (the cookie rule's
    extent, for keys such as ``session_cookie`` that the key-value rule caught first)."""
    stop = _VALUE_STOP.search(data, start)
    return stop.start() if stop else len(data)


def _redact_quoted(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] in (b'"', b"'") and value[-1:] == value[:1]:
        return value[:1] + REDACTED_B + value[:1]
    return REDACTED_B


class _Keep:
    """Identifiers that survive even inside text (the span's own ids), as UTF-8, built on
    first use: most masked values never ask."""

    __slots__ = ("_source", "_items")

    def __init__(self, source: Callable[[], frozenset[str]] | frozenset[str]) -> None:
        self._source = source
        self._items: frozenset[bytes] | None = None

    def __contains__(self, item: bytes) -> bool:
        if self._items is None:
            source = self._source() if callable(self._source) else self._source
            self._items = frozenset(k.encode("utf-8", "surrogatepass") for k in source)
        return item in self._items


class _Scanner:
    """One combined RE2 expression and what to do with each rule's matches.

    Works on UTF-8 bytes: offsets come straight from RE2 (no per-match decoding), and every
    match boundary falls on a character boundary, so the output decodes cleanly.
    """

    def __init__(self, rules: MaskingRules, keys: _KeyRule) -> None:
        self._keys = keys
        extra = [_Rule(f"extra_{i + 1}", p, "redact") for i, p in enumerate(rules.extra_patterns)]
        # User patterns first: what a user declares secret wins over our "keep" rules.
        self.rules = extra + _builtin_rules(keys.text_words(), rules)
        parts = [f"(?P<r{i}>{rule.pattern})" for i, rule in enumerate(self.rules)]
        combined = "|".join(parts)
        # The detector answers "where is the next match" without groups: RE2 then needs only
        # its DFAs, no submatch pass. (User patterns keep any groups of their own.)
        plain = "|".join(
            f"(?:{rule.pattern if rule.name.startswith('extra_') else _NAMED_GROUP.sub('(?:', rule.pattern)})"
            for rule in self.rules
        )
        try:
            self.regex = re2.compile(combined, _re2_options())
            self.detector = re2.compile(plain, _re2_options())
        except re2.error as exc:  # e.g. a user pattern's group name clashes with ours
            raise ConfigurationError(f"masking patterns do not combine: {exc}") from None
        index = self.regex.groupindex
        self._groups = [(index[f"r{i}"], getattr(self, f"_h_{rule.handler}"))
                        for i, rule in enumerate(self.rules)]
        self._g = {name: index[name] for name in (
            "url_scheme", "kv_key", "kv_sep", "kv_val", "qp_key", "qp_sep", "qp_val",
            "ck_key", "ck_sep", "ck_val", "cred")}
        # Anchors would need each value scanned alone (the joined scan sees one long text).
        self.joinable = not any(_has_anchor(p) for p in rules.extra_patterns)
        self._detect = _yes_no(self.detector)
        self._match = _spans_at(self.regex, self.detector)

    # -- scanning ----------------------------------------------------------------------------
    def dirty(self, data: bytes) -> bool:
        return self._detect(data)

    def dirty_spans(self, data: bytes) -> list[tuple[int, int]]:
        return [m.span() for m in self.detector.finditer(data)]

    def mask_pass(self, data: bytes, keep: _Keep) -> bytes:
        out: list[bytes] = []
        pos = copied = 0
        size = len(data)
        match = self._match
        groups = self._groups
        while pos <= size:
            spans = match(data, pos)
            if spans is None:
                break
            start, end = spans[0]
            if start == end:  # an empty match (a user pattern): nothing to replace
                pos = _next_char(data, end)
                continue
            handler = next(h for g, h in groups if spans[g][0] != -1)
            replacement, resume = handler(spans, data, keep)
            if replacement is not None:
                out.append(data[copied:start])
                out.append(replacement)
                copied = resume
            pos = resume if resume > start else _next_char(data, start)
        if not out:
            return data
        out.append(data[copied:])
        return b"".join(out)

    # -- handlers: (replacement for data[start:resume] or None to keep it, resume offset) ------
    def _h_keep(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        return None, spans[0][1]

    def _h_redact(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        start, end = spans[0]
        if data[start:end] in keep:
            return None, end
        return REDACTED_B, end

    def _h_url(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        scheme = data[spans[self._g["url_scheme"]][0] : spans[self._g["url_scheme"]][1]]
        return scheme + REDACTED_B + b"@", spans[0][1]

    def _h_cookie(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        g = self._g
        head = data[spans[g["ck_key"]][0] : spans[g["ck_sep"]][1]]
        value_start = spans[g["ck_val"]][0]
        end = self._extent(data, value_start, spans[0][1])
        return head + _redact_quoted(data[value_start:end]), end

    def _h_key_value(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        return self._key_value(spans, data, "kv", query=False)

    def _h_query_parameter(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        return self._key_value(spans, data, "qp", query=True)

    def _key_value(self, spans: Spans, data: bytes, prefix: str, *, query: bool) -> tuple[bytes | None, int]:
        g = self._g
        key_start, key_end = spans[g[prefix + "_key"]]
        sep_end = spans[g[prefix + "_sep"]][1]
        value_start, end = spans[g[prefix + "_val"]][0], spans[0][1]
        key = data[key_start:key_end].decode("ascii")
        if not query and key_start:
            query = data[key_start - 1 : key_start] in (b"?", b"&", b";")
        if not self._keys.sensitive(key, query=query):
            # Not a credential key: keep "key=" and scan the value like any other text.
            return None, value_start
        value = data[value_start:end]
        if value.strip(b"\"'").lower() in _LITERALS:
            return None, end  # api_key_present=true says nothing secret
        if key_words(key)[-1] in _COOKIE_WORDS and value[:1] not in (b'"', b"'"):
            end = _line_value_end(data, value_start)  # "a=1; b=2": every pair is secret
        end = self._extent(data, value_start, end)
        return data[spans[0][0] : sep_end] + _redact_quoted(data[value_start:end]), end

    def _extent(self, data: bytes, value_start: int, end: int) -> int:
        """A value hides more than its own bytes when another rule's match starts inside it and
        runs on (``password: -----BEGIN PRIVATE KEY----- ...``): the value then ends where
        that match does, or the rest of the secret would survive the replaced first word."""
        pos = value_start
        for _ in range(_MAX_EXTENT_STEPS):
            spans = self._match(data, pos)
            if spans is None or spans[0][0] >= end:
                return end
            start, stop = spans[0]
            end = max(end, stop)  # chains too: "Key: Password: API_KEY: <secret>"
            pos = _next_char(data, start)
        return _line_value_end(data, end)  # a pathological chain: the rest of the line goes

    def _h_auth_scheme(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        cred_start = spans[self._g["cred"]][0]
        if _credential_like(data[cred_start : spans[0][1]]):
            return REDACTED_B, spans[0][1]
        return None, cred_start

    def _h_card(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        start, end = spans[0]
        groups = [(start + g.start(), start + g.end()) for g in _DIGIT_RUN.finditer(data[start:end])]
        windows = _card_windows(data, groups)
        if not windows:  # give back all but the first group: other rules may start there
            return None, groups[0][1] if groups else end
        out, copied = [], start
        for ws, we in windows:
            out += [data[copied:ws], REDACTED_B]
            copied = we
        return b"".join(out), copied

    def _h_phone(self, spans: Spans, data: bytes, keep: _Keep) -> tuple[bytes | None, int]:
        """E.164: 8 to 15 digits. Longer runs keep the longest prefix that fits; a rejected
        candidate gives back everything after its ``+digits`` (a card may follow)."""
        start, end = spans[0]
        count = 0
        first_end = last_end = None
        for g in _DIGIT_RUN.finditer(data[start:end]):
            if first_end is None:
                first_end = start + g.end()
            if count + (g.end() - g.start()) > 15:
                break
            count += g.end() - g.start()
            last_end = start + g.end()
        if last_end is None or count < 8:
            return None, first_end if first_end is not None else end
        return REDACTED_B, last_end


def _card_windows(data: bytes, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every run of digit groups that reads as a card, left to right: one 13-19 digit block, or
    groups of 3-6 digits (4-4-4-4, 4-6-5, ...) adding up to 13-19 digits."""
    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        best_j = None
        digits = ""
        for j in range(i, len(groups)):
            gs, ge = groups[j]
            if j > i and not all(3 <= groups[k][1] - groups[k][0] <= 6 for k in (i, j)):
                break
            digits += data[gs:ge].decode("ascii")
            if len(digits) > 19:
                break
            if _card_like(digits):
                best_j = j
        if best_j is None:
            i += 1
            continue
        windows.append((groups[i][0], groups[best_j][1]))
        i = best_j + 1
    return windows


Spans = Sequence[tuple[int, int]]


def _spans_at(regex: Any, detector: Any) -> Callable[[bytes, int], Spans | None]:
    """Group spans of the first match at or after ``pos`` (None: no match).

    The group-free detector finds the match with RE2's DFAs alone; the capturing expression
    then only has to explain those few bytes (anchored at both ends, it picks the same
    alternative leftmost-first search would). Asking the capturing expression to search costs
    several times more, and google-re2's match objects re-count the groups on every call."""
    raw = getattr(getattr(regex, "_regexp", None), "Match", None)
    find = getattr(getattr(detector, "_regexp", None), "Match", None)
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    if raw is None or find is None or anchor is None:
        def public(data: bytes, pos: int) -> Spans | None:
            m = regex.search(data, pos)
            return None if m is None else [m.span(i) for i in range(regex.groups + 1)]
        return public
    unanchored, both = anchor.UNANCHORED, anchor.ANCHOR_BOTH
    null = (-1, -1)

    def direct(data: bytes, pos: int) -> Spans | None:
        start, end = find(unanchored, data, pos, len(data))[0]
        if start == -1:
            return None
        spans = raw(both, data, start, end)
        if spans[0] == null:  # cannot happen (same expression); be safe anyway
            spans = raw(unanchored, data, start, len(data))
            return None if spans[0] == null else spans
        return spans
    return direct


def _yes_no(regex: Any) -> Callable[[bytes], bool]:
    """The cheapest "does it match anywhere" call RE2 offers: clean spans pay only this.
    google-re2's ``search`` wraps the C++ match in a generator and a match object; its
    internals are used when present, with the public API as the fallback."""
    raw = getattr(getattr(regex, "_regexp", None), "Match", None)
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    if raw is None or anchor is None:
        return lambda data: regex.search(data) is not None
    unanchored = anchor.UNANCHORED
    null = (-1, -1)
    return lambda data: raw(unanchored, data, 0, len(data))[0] != null


def _has_anchor(pattern: str) -> bool:
    stripped = pattern.replace("\\\\", "").replace("[^", "[").replace("\\^", "").replace("\\$", "")
    return any(a in stripped for a in ("^", "$", "\\A", "\\z"))


# ------------------------------------------------------------------------------------------------
# the masker
# ------------------------------------------------------------------------------------------------
class MaskingStats(ExporterStats):
    """Counters a host can read: nothing is replaced, cut or dropped silently."""

    _names = (
        "spans_changed",
        "spans_dropped",
        "spans_masked_inline",
        "values_truncated",
        "values_failed_closed",
        "target_errors",
        "log_records_failed",
    )


class _TooLarge(Exception):
    """A JSON document past the depth or size cap: the whole value is replaced."""


_PASS, _SENSITIVE, _JSON, _SCAN, _RENAMED = range(5)
#: Attribute values that carry no text (``str`` is scanned, anything else unknown is replaced).
_PRIMITIVES = (bool, int, float, type(None))
_SCALARS = (str, bool, int, float, type(None))


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    masked_key: str
    kind: int


class Masker:
    """Compiled once from :class:`MaskingRules`; thread-safe; never raises from ``mask_*``."""

    def __init__(self, rules: MaskingRules | None = None, stats: MaskingStats | None = None) -> None:
        self.rules = rules if rules is not None else MaskingRules()
        self.stats = stats if stats is not None else MaskingStats()
        self.keys = _KeyRule(self.rules)
        self._scanner = _Scanner(self.rules, self.keys)
        self._key_substring = _yes_no(re2.compile(
            "(?i:" + "|".join(re2.escape(s) for s in self.keys.text_words()) + ")", _re2_options()
        ))
        self._limit = self.rules.max_value_length
        self._plans: dict[str, _KeyPlan] = {}

    # -- text ----------------------------------------------------------------------------------
    def truncate(self, text: str) -> str:
        """Cut a value to ``max_value_length`` before matching, so a 10 MB attribute costs what
        a 64 KiB one does. The partial word at the cut is dropped too: half a secret must not
        survive because its other half was cut off."""
        if len(text) <= self._limit:
            return text
        self.stats.add("values_truncated")
        head = text[: self._limit - len(TRUNCATION_MARK)]
        stop = max(0, len(head) - _CUT_BACKTRACK)
        i = len(head) - 1
        while i >= stop and not head[i].isspace():
            i -= 1
        return head[: i + 1 if i >= stop else stop] + TRUNCATION_MARK

    def mask_text(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """``text`` with every secret and (enabled) PII replaced; fail closed."""
        try:
            text = self.truncate(text)
            data = text.encode("utf-8", "surrogatepass")
            if not self._scanner.dirty(data):
                return text
            return self._mask_dirty(data, _Keep(keep))
        except Exception:
            return self._failed("masking a string failed; it was replaced")

    def _mask_dirty(self, data: bytes, keep: _Keep) -> str:
        for _ in range(_MAX_PASSES):
            masked = self._scanner.mask_pass(data, keep)
            if masked == data:
                return data.decode("utf-8", "surrogatepass")
            data = masked
        return self._failed("masking a string did not settle; it was replaced")

    def _failed(self, message: str) -> str:
        count = self.stats.add("values_failed_closed")
        if count <= 20 or count % 1000 == 0:
            logger.warning("aura-otel: %s (values_failed_closed #%d)", message, count,
                           exc_info=sys.exc_info()[0] is not None)
        return REDACTED

    @property
    def joinable(self) -> bool:
        """Whether strings may be scanned joined by line breaks (no user pattern is anchored)."""
        return self._scanner.joinable

    def dirty_text(self, text: str) -> bool:
        """Whether any rule matches anywhere in ``text`` (no replacement made)."""
        return self._scanner.dirty(text.encode("utf-8", "surrogatepass"))

    def mask_texts(self, texts: list[str], keep: Callable[[], frozenset[str]]) -> tuple[list[str], set[int]]:
        """Mask many (already truncated) strings; a clean batch costs one RE2 call.

        Returns the masked strings and the indexes that a match touched (candidates for deeper
        work such as JSON decoding). ``keep`` is called only when something matched.
        """
        if not texts:
            return texts, set()
        scanner = self._scanner
        if scanner.joinable:
            encoded = "\n".join(texts).encode("utf-8", "surrogatepass")
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
        kept = _Keep(keep)
        for i in touched:
            try:  # already truncated and known to be touched: straight to the replacing pass
                out[i] = self._mask_dirty(texts[i].encode("utf-8", "surrogatepass"), kept)
            except Exception:
                out[i] = self._failed("masking a string failed; it was replaced")
        return out, touched

    # -- keys and values -----------------------------------------------------------------------
    def plan(self, key: str) -> _KeyPlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(key)
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _make_plan(self, key: str) -> _KeyPlan:
        if key in c.STRUCTURAL_KEYS or self.keys.allowed(key):
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
        if isinstance(node, list):
            return [self._mask_json(item, keep, depth + 1, budget) for item in node]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if self.keys.allowed(key):
                    out[key] = value
                elif self.keys.sensitive(key) and not _keeps_under_sensitive_key(key, value):
                    out[self.mask_text(key, keep)] = REDACTED
                else:
                    out[self.mask_text(key, keep)] = self._mask_json(value, keep, depth + 1, budget)
            return out
        return node

    def mask_attributes(
        self, attributes: Mapping[str, Any] | None, keep: frozenset[str] = frozenset()
    ) -> Mapping[str, Any] | None:
        """A masked copy of one attribute mapping (the same object when nothing changed)."""
        batch = _Batch(self)
        entries = batch.add_attributes(attributes)
        batch.resolve(lambda: keep)
        built = batch.build_attributes(entries)
        return attributes if built is None else built


def _touched(texts: list[str], spans: list[tuple[int, int]]) -> set[int]:
    """Indexes of the texts (joined by one-byte separators) that any byte span overlaps."""
    touched: set[int] = set()
    bounds = []
    offset = 0
    for text in texts:
        size = len(text.encode("utf-8", "surrogatepass"))
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


# An attribute entry: (input key, output key, input value, how to rebuild, text index/indexes).
_Entry = tuple[str, str, Any, int, Any]
_FIXED, _TEXT, _JSONTEXT, _SEQ, _UNCHANGED = range(5)


class _Batch:
    """Every string of one span, collected so that a clean span costs one scan."""

    __slots__ = ("masker", "texts", "originals", "masked", "touched", "_keep")

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.texts: list[str] = []
        self.originals: list[str] = []
        self.masked: list[str] = []
        self.touched: set[int] = set()
        self._keep: Callable[[], frozenset[str]] = frozenset

    def add_text(self, text: str) -> int:
        self.originals.append(text)
        self.texts.append(self.masker.truncate(text))
        return len(self.texts) - 1

    def add_attributes(self, attributes: Mapping[str, Any] | None) -> list[_Entry]:
        entries: list[_Entry] = []
        if not attributes:
            return entries
        plan_of = self.masker.plan
        append = entries.append
        for key, value in attributes.items():
            plan = plan_of(key)
            kind = plan.kind
            vtype = type(value)
            if kind == _PASS:
                append((key, key, value, _UNCHANGED, None))
            elif kind == _SENSITIVE and not _keeps_under_sensitive_key(key, value):
                append((key, plan.masked_key, value, _FIXED, None))
            elif vtype is int or vtype is bool or vtype is float:
                append((key, plan.masked_key, value, _UNCHANGED, None))
            elif isinstance(value, str):
                how = _JSONTEXT if kind == _JSON else _TEXT
                entries.append((key, plan.masked_key, value, how, self.add_text(value)))
            elif isinstance(value, (tuple, list)) and all(isinstance(v, _SCALARS) for v in value):
                refs = [self.add_text(v) if isinstance(v, str) else None for v in value]
                entries.append((key, plan.masked_key, value, _SEQ, refs))
            elif isinstance(value, _PRIMITIVES):
                entries.append((key, plan.masked_key, value, _UNCHANGED, None))
            else:  # not an OpenTelemetry attribute type: nothing known about it is safe
                entries.append((key, plan.masked_key, value, _FIXED, None))
        return entries

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
            if how == _UNCHANGED:
                new = value
            elif how == _TEXT:
                new = self.masked[ref]
            elif how == _JSONTEXT:
                new = self._json_text(ref)
            elif how == _SEQ:
                new = tuple(self.masked[r] if r is not None else v for r, v in zip(ref, value, strict=True))
            else:
                new = REDACTED
            if (key is not in_key and key != in_key) or (new is not value and new != value):
                changed = True
            out[key] = new
        return out if changed else None


# ------------------------------------------------------------------------------------------------
# the span processor
# ------------------------------------------------------------------------------------------------
class MaskedSpan(ReadableSpan):
    """A masked copy of a finished span. Keeps the original's dropped counts (the SDK reads them
    from its bounded containers, which a copy does not have)."""

    def __init__(self, *, dropped: tuple[int, int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


class _MaskedEvent(Event):
    def __init__(self, name: str, attributes: Mapping[str, Any] | None, timestamp: int,
                 dropped: int) -> None:
        super().__init__(name, attributes, timestamp)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


class _MaskedLink(trace_api.Link):
    def __init__(self, context: trace_api.SpanContext, attributes: Mapping[str, Any] | None,
                 dropped: int) -> None:
        super().__init__(context, attributes)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


def _dropped(item: Any) -> int:
    return int(getattr(item, "dropped_attributes", 0) or 0)


def _raw_attributes(item: Any) -> Mapping[str, Any] | None:
    """The plain dict inside the SDK's ``BoundedAttributes`` when there is one: iterating the
    bounded mapping goes through Python-level ``__iter__``/``__getitem__`` per key, which costs
    more than the masking itself. Falls back to the public mapping."""
    attributes = getattr(item, "_attributes", None)
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return item.attributes


def _sequence(span: ReadableSpan, private: str, public: str) -> Sequence[Any]:
    """A span's events or links without the tuple copy the public property makes each time
    (the SDK's read-only snapshot keeps them in a bounded list or a tuple)."""
    items = getattr(span, private, None)
    if isinstance(items, (tuple, list, BoundedList)):
        return items
    return getattr(span, public)


def _span_keep(span: ReadableSpan) -> frozenset[str]:
    """The span's own identifiers, which survive even where they appear inside text."""
    ids: set[str] = set()
    ctx = span.context
    if ctx is not None:
        ids.add(f"{ctx.trace_id:032x}")
        ids.add(f"{ctx.span_id:016x}")
    if span.parent is not None:
        ids.add(f"{span.parent.span_id:016x}")
    for link in span.links:
        ids.add(f"{link.context.trace_id:032x}")
        ids.add(f"{link.context.span_id:016x}")
    attrs = span.attributes or {}
    for key in c.STRUCTURAL_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            ids.add(value)
    return frozenset(ids)


class _SpanMasking:
    """Masks one span: collects all of its strings, scans them once, rebuilds what changed."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._limit = masker.rules.max_value_length
        self._kinds: dict[str, int] = {}  # key -> plan kind, or _RENAMED: the fast path's view
        self._resources: dict[int, tuple[Resource, Resource]] = {}
        self._lock = threading.Lock()

    def mask(self, span: ReadableSpan) -> tuple[ReadableSpan, bool]:
        """The span a target may see, and whether masking changed anything.

        A span that needs no masking is handed on as it is: it has ended, so the SDK no longer
        lets anything change it, and a copy would only cost time. Anything to mask (the span
        or its resource) yields a masked copy."""
        original_resource = span.resource
        resource = self._resource(original_resource)
        events, links = _sequence(span, "_events", "events"), _sequence(span, "_links", "links")
        if self._clean(span, events, links):
            if resource is original_resource:
                return span, False
            return self._copy(span, span.name, span.attributes, events, links, span.status,
                              resource), True
        return self._rebuild(span, resource, events, links)

    def _clean(self, span: ReadableSpan, events: Sequence[Event], links: Sequence[trace_api.Link]) -> bool:
        """The fast path: True when nothing in the span needs masking. Collects every string
        (no per-value work) and asks RE2 once; any sign of work ahead (a sensitive key, a key
        that masks differently, an over-long value, JSON that must be decoded) answers False."""
        texts = [span.name or ""]
        json_texts: list[str] = []
        collect = self._collect
        if not collect(_raw_attributes(span), texts, json_texts):
            return False
        for event in events:
            texts.append(event.name or "")
            if not collect(_raw_attributes(event), texts, json_texts):
                return False
        for link in links:
            if not collect(_raw_attributes(link), texts, json_texts):
                return False
        status = span.status
        if status is not None and status.description:
            texts.append(status.description)
        joined = "\n".join(texts)
        if len(joined) > self._limit and max(map(len, texts)) > self._limit:
            return False
        masker = self._masker
        if masker.joinable:
            if masker.dirty_text(joined):
                return False
        elif any(masker.dirty_text(t) for t in texts):  # anchored user patterns: one by one
            return False
        return not json_texts or not any(masker.needs_json_walk(t) for t in json_texts)

    def _collect(self, attributes: Mapping[str, Any] | None, texts: list[str],
                 json_texts: list[str]) -> bool:
        """Append the attributes' strings to ``texts``; False as soon as one needs work."""
        if not attributes:
            return True
        kinds = self._kinds
        append = texts.append
        for key, value in attributes.items():
            kind = kinds.get(key)
            if kind is None:
                kind = self._kind_of(key)
            if kind == _SCAN or kind == _JSON:
                vtype = type(value)
                if vtype is str:
                    append(value)
                    if kind == _JSON:
                        json_texts.append(value)
                    continue
                if vtype is int or vtype is bool or vtype is float:
                    continue
            elif kind == _PASS:
                continue
            elif kind == _SENSITIVE:
                if _keeps_under_sensitive_key(key, value):
                    continue
                return False
            else:  # the key itself needs masking
                return False
            # the uncommon value types
            if isinstance(value, str):  # a str subclass
                append(value)
                if kind == _JSON:
                    json_texts.append(value)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, str):
                        append(item)
                    elif not isinstance(item, _PRIMITIVES):
                        return False
            elif not isinstance(value, _PRIMITIVES):
                return False
        return True

    def _kind_of(self, key: str) -> int:
        plan = self._masker.plan(key)
        kind = plan.kind if plan.masked_key == key else _RENAMED
        if len(self._kinds) >= _CACHE_LIMIT:
            self._kinds.clear()
        self._kinds[key] = kind
        return kind

    def _copy(self, span: ReadableSpan, name: str, attributes: Any, events: Sequence[Event],
              links: Sequence[trace_api.Link], status: Status, resource: Resource | None) -> MaskedSpan:
        return MaskedSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=resource,
            attributes=attributes,
            events=tuple(events),
            links=tuple(links),
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
            dropped=(span.dropped_attributes, span.dropped_events, span.dropped_links),
        )

    def _rebuild(self, span: ReadableSpan, resource: Resource | None, events: Sequence[Event],
                 links: Sequence[trace_api.Link]) -> tuple[ReadableSpan, bool]:
        masker = self._masker
        batch = _Batch(masker)
        name_ref = batch.add_text(span.name or "")
        attr_entries = batch.add_attributes(_raw_attributes(span))
        event_refs = [(batch.add_text(e.name or ""), batch.add_attributes(_raw_attributes(e))) for e in events]
        link_entries = [batch.add_attributes(_raw_attributes(link)) for link in links]
        status = span.status
        desc_ref = batch.add_text(status.description) if status is not None and status.description else None

        keep_cache: list[frozenset[str]] = []

        def keep() -> frozenset[str]:
            if not keep_cache:
                keep_cache.append(_span_keep(span))
            return keep_cache[0]

        batch.resolve(keep)
        changed = False
        name = batch.text(name_ref)
        changed |= name != (span.name or "")
        attributes: Any = batch.build_attributes(attr_entries)
        if attributes is None:
            attributes = span.attributes
        else:
            changed = True
        new_events: list[Event] = []
        for event, (ref, entries) in zip(events, event_refs, strict=True):
            event_name = batch.text(ref)
            event_attrs = batch.build_attributes(entries)
            if event_attrs is None and event_name == event.name:
                new_events.append(event)
                continue
            changed = True
            new_events.append(_MaskedEvent(
                event_name, event.attributes if event_attrs is None else event_attrs,
                event.timestamp, _dropped(event),
            ))
        new_links: list[trace_api.Link] = []
        for link, entries in zip(links, link_entries, strict=True):
            link_attrs = batch.build_attributes(entries)
            if link_attrs is None:
                new_links.append(link)
                continue
            changed = True
            new_links.append(_MaskedLink(link.context, link_attrs, _dropped(link)))
        if desc_ref is not None and batch.text(desc_ref) != status.description:
            changed = True
            status = Status(status.status_code, batch.text(desc_ref))
        changed |= resource is not span.resource
        return self._copy(span, name, attributes, new_events, new_links, status, resource), changed

    def _resource(self, resource: Resource | None) -> Resource | None:
        """Resources are shared by every span of a provider: masked once, then cached."""
        if resource is None:
            return None
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        attrs = resource.attributes
        masked = self._masker.mask_attributes(attrs)
        result = resource if masked is attrs else Resource(dict(masked or {}), resource.schema_url)
        with self._lock:
            if len(self._resources) >= 64:
                self._resources.clear()
            self._resources[id(resource)] = (resource, result)
        return result


Target = SpanProcessor | SpanExporter
DEFAULT_MAX_QUEUE_SIZE: Final = 8192
#: How often the worker looks at its queue when not woken by a full batch.
_WORKER_INTERVAL_SECONDS: Final = 0.05
_WAKE_AT: Final = 256


class _Worker:
    """Masks spans off the application's threads.

    RE2 releases the GIL on every call; while another thread is busy, getting it back can take
    the interpreter's switch interval (5 ms), which would turn a 2 us scan into a 5 ms stall of
    the application. So ``on_end`` only appends to a bounded queue and this thread masks and
    forwards, the way ``BatchSpanProcessor`` exports. When the queue is full the span is masked
    in the caller's thread instead: no span is lost and memory stays bounded.
    """

    def __init__(self, process: Callable[[ReadableSpan], None], stats: MaskingStats,
                 max_queue_size: int) -> None:
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or max_queue_size < 1:
            raise ConfigurationError(f"max_queue_size must be a positive integer, got {max_queue_size!r}")
        self._process = process
        self._stats = stats
        self._max = max_queue_size
        self._queue: deque[ReadableSpan] = deque()
        self._stopped = False
        self._start()
        ref = weakref.ref(self)

        def restart_in_child() -> None:  # a forked child has the queue but not the thread
            worker = ref()
            if worker is not None:
                worker._queue.clear()  # the parent sends those
                worker._start()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=restart_in_child)

    def _start(self) -> None:
        self._wake = threading.Event()
        self._busy = threading.RLock()  # held while spans are in flight to the targets
        self._thread = threading.Thread(target=self._run, name="aura-otel-masking", daemon=True)
        self._thread.start()

    def put(self, span: ReadableSpan) -> None:
        queue = self._queue
        if self._stopped or len(queue) >= self._max:
            # Overload (or after shutdown): mask right here rather than lose the span or grow
            # without bound. The application slows down only while the worker is behind.
            self._stats.add("spans_masked_inline")
            self._process(span)
            return
        queue.append(span)
        if len(queue) == _WAKE_AT:
            self._wake.set()

    def drain(self) -> None:
        """Mask and forward everything queued, in the calling thread if need be; returns once
        nothing queued before the call is still on its way."""
        with self._busy:
            queue = self._queue
            while queue:
                try:
                    span = queue.popleft()
                except IndexError:
                    break
                self._process(span)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout)
        self.drain()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(_WORKER_INTERVAL_SECONDS)
            self._wake.clear()
            try:
                self.drain()
            except Exception:  # _process never raises; this is the last guard of the thread
                logger.exception("aura-otel: the masking worker failed; it keeps running")


class MaskingSpanProcessor(SpanProcessor):
    """Sits in front of every exporter: targets receive only masked finished spans.

    Each target is a ``SpanProcessor`` or a ``SpanExporter`` (wrapped in a
    ``BatchSpanProcessor``). A span with something to mask reaches them as a :class:`MaskedSpan`
    copy; a span with nothing to mask as the SDK's read-only snapshot (never the live span).
    ``on_start`` is deliberately not forwarded: a live span is unmasked and may still change.
    Processors that must see spans start (e.g. id stamping) belong on the provider itself, ahead
    of this one; they see unmasked spans but export nothing.

    ``rules`` defaults to :meth:`MaskingRules.from_env`; ``masker`` shares a compiled
    :class:`Masker` instead. With ``mask_logs`` (the default) aura-otel's own logs are masked
    with the same rules.
    """

    def __init__(self, *targets: Target, rules: MaskingRules | None = None,
                 masker: Masker | None = None, mask_logs: bool = True, background: bool = True,
                 max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> None:
        self._targets: list[SpanProcessor] = []
        for target in targets:
            if isinstance(target, SpanProcessor):
                self._targets.append(target)
            elif isinstance(target, SpanExporter):
                self._targets.append(BatchSpanProcessor(target))
            else:
                raise ConfigurationError(
                    f"masking target must be a SpanProcessor or SpanExporter, "
                    f"not {type(target).__name__}"
                )
        if masker is None:
            masker = Masker(rules if rules is not None else MaskingRules.from_env())
        self.masker = masker
        if mask_logs:  # aura-otel's own logs follow the same rules (extra patterns included)
            install_log_filter(masker)
        self._stats = masker.stats
        self._span_masking = _SpanMasking(masker)
        self._worker = _Worker(self._mask_and_forward, self._stats, max_queue_size) if background else None

    @property
    def targets(self) -> tuple[SpanProcessor, ...]:
        return tuple(self._targets)

    def stats(self) -> dict[str, int]:
        return self._stats.snapshot()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._worker is not None:
            self._worker.put(span)  # the application thread only queues
        else:
            self._mask_and_forward(span)

    def _mask_and_forward(self, span: ReadableSpan) -> None:
        try:
            copy, changed = self._span_masking.mask(span)
        except Exception:
            # Last resort: a span we could not mask is never sent.
            count = self._stats.add("spans_dropped")
            if count <= 20 or count % 1000 == 0:
                logger.exception("aura-otel: masking a span failed; the span was dropped (#%d)", count)
            return
        if changed:
            self._stats.add("spans_changed")
        for target in self._targets:
            try:
                target.on_end(copy)
            except Exception:
                count = self._stats.add("target_errors")
                if count <= 20 or count % 1000 == 0:
                    logger.exception("aura-otel: a span processor behind masking failed (#%d)", count)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        if self._worker is not None:
            self._worker.drain()  # every span queued so far reaches the targets first
        ok = True
        for target in self._targets:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                ok = bool(target.force_flush(remaining)) and ok
            except Exception:
                ok = False
                self._stats.add("target_errors")
                logger.exception("aura-otel: flushing a span processor behind masking failed")
        return ok

    def shutdown(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        for target in self._targets:
            try:
                target.shutdown()
            except Exception:
                self._stats.add("target_errors")
                logger.exception("aura-otel: shutting down a span processor behind masking failed")
        stats = self._stats.snapshot()
        if any(stats[k] for k in ("spans_dropped", "values_failed_closed", "target_errors")):
            logger.warning("aura-otel: masking stopped: %s", stats)


# ------------------------------------------------------------------------------------------------
# logs
# ------------------------------------------------------------------------------------------------
class MaskingLogFilter(logging.Filter):
    """Masks aura-otel's own log records (message, arguments, traceback) before any handler
    formats them. Never drops a record and never raises."""

    def __init__(self, masker: Masker | None = None) -> None:
        super().__init__()
        self.masker = masker if masker is not None else Masker(MaskingRules())

    def filter(self, record: logging.LogRecord) -> bool:
        masker = self.masker
        try:
            record.msg = masker.mask_text(record.getMessage())
            record.args = None
            if record.exc_info:
                formatter = logging.Formatter()
                text = record.exc_text or formatter.formatException(record.exc_info)
                record.exc_text = masker.mask_text(text)
                record.exc_info = None  # other handlers must not re-render the raw exception
            elif record.exc_text:
                record.exc_text = masker.mask_text(record.exc_text)
            if record.stack_info:
                record.stack_info = masker.mask_text(record.stack_info)
        except Exception:
            masker.stats.add("log_records_failed")
            record.msg = "aura-otel: a log record could not be masked and was replaced"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def install_log_filter(masker: Masker | None = None, logger_name: str = "aura_otel") -> MaskingLogFilter:
    """Attach (or replace) the masking filter on aura-otel's logger and its existing children.

    Logger filters do not apply to records of child loggers, so children that exist now get
    the filter too; aura-otel itself logs through ``logging.getLogger("aura_otel")``.
    """
    new = MaskingLogFilter(masker)
    names = [logger_name] + [
        name for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(logger_name + ".")
    ]
    for name in names:
        target = logging.getLogger(name)
        for old in [f for f in target.filters if isinstance(f, MaskingLogFilter)]:
            target.removeFilter(old)
        target.addFilter(new)
    return new


install_log_filter()
