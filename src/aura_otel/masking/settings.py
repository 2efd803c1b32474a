"""What to mask beyond the built-in rules, from arguments or the environment.

Everything is validated when the rules are built, so a bad pattern or an unknown PII category is
a start-up error, never a surprise at the first span.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson
import re2

from .. import conventions as c
from ..errors import ConfigurationError
from .keys import key_words

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

#: PII categories, each switchable (``AURA_OTEL_MASK_PII``); the ``mask_<category>`` field of
#: :class:`MaskingRules` holds each one's switch.
PII_CATEGORIES: Final = ("email", "card", "phone", "iban", "ssn", "nino")


def re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 64 << 20  # room for the DFA of one large alternation: stays in the fast path
    return options


def _check_pattern(index: int, pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigurationError(f"masking pattern #{index + 1} must be a non-empty string")
    try:
        compiled = re2.compile(pattern, re2_options())
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
    mask_iban: bool = True
    mask_ssn: bool = True
    mask_nino: bool = True
    max_value_length: int = DEFAULT_MAX_VALUE_LENGTH

    def __post_init__(self) -> None:
        patterns = _string_tuple("extra_patterns", self.extra_patterns)
        object.__setattr__(
            self, "extra_patterns", tuple(_check_pattern(i, p) for i, p in enumerate(patterns))
        )
        object.__setattr__(self, "extra_keys", _string_tuple("extra_keys", self.extra_keys))
        object.__setattr__(self, "allow_keys", _string_tuple("allow_keys", self.allow_keys))
        for key in self.extra_keys:
            if not key_words(key):
                raise ConfigurationError(f"extra sensitive key {key!r} has no letters or digits")
        for flag in (f"mask_{category}" for category in PII_CATEGORIES):
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
            mask_iban="iban" in categories,
            mask_ssn="ssn" in categories,
            mask_nino="nino" in categories,
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
