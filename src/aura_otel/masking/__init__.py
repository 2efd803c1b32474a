"""Masking: no secret or PII leaves the process unmasked, on any path.

:class:`MaskingSpanProcessor` masks a copy of each finished span in ``on_end`` and hands only
the copy to its targets (the v1 exporter, the OTLP exporter, whatever a user adds through
aura-otel). Speed comes from one RE2 scan (linear time, no backtracking) over all of a span's
strings joined together; per-value work happens only where something matched. Everything fails
closed: a value whose masking raises is replaced by ``[REDACTED]`` and counted.

The package, by seam:

- :mod:`.settings`: :class:`MaskingRules` and the environment;
- :mod:`.keys`: the key-word rule;
- :mod:`.formats`: the secret-format rule table (reviewable alone);
- :mod:`.checks`: validity checks run on candidates (Luhn, mod-97, SSN area rules, entropy);
- :mod:`.scanner`: the combined RE2 expression and the per-rule handlers;
- :mod:`.masker`: :class:`Masker` (strings, attributes, JSON metadata, representable values);
- :mod:`.span`: :class:`MaskedSpan` and the per-span masking;
- :mod:`.processor`: :class:`MaskingSpanProcessor` and its worker;
- :mod:`.logs`: the log filter.

Importing compiles no RE2 program: expressions are compiled on first use, once per set of
rules, and shared.
"""

from __future__ import annotations

from .formats import VENDOR_TOKENS, Action, Rule, builtin_rules
from .keys import (
    DESCRIPTOR_WORDS,
    GLUED_SUFFIXES,
    QUANTITY_WORDS,
    QUERY_KEY_WORDS,
    QUERY_KEYS,
    SENSITIVE_KEY_PHRASES,
    SENSITIVE_KEY_WORDS,
    WEAK_KEY_WORDS,
    key_words,
)
from .logs import MaskingLogFilter, install_log_filter
from .masker import INT64_MAX, INT64_MIN, KeyKind, Masker, MaskingStats, Rebuild, representable
from .processor import DEFAULT_MAX_QUEUE_SIZE, MaskingSpanProcessor, Target
from .settings import (
    DEFAULT_MAX_VALUE_LENGTH,
    MAX_JSON_DEPTH,
    MAX_JSON_NODES,
    MIN_MAX_VALUE_LENGTH,
    PII_CATEGORIES,
    REDACTED,
    TRUNCATION_MARK,
    MaskingRules,
)
from .span import MaskedSpan

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_MAX_VALUE_LENGTH",
    "DESCRIPTOR_WORDS",
    "GLUED_SUFFIXES",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "MAX_JSON_NODES",
    "MIN_MAX_VALUE_LENGTH",
    "PII_CATEGORIES",
    "QUANTITY_WORDS",
    "QUERY_KEYS",
    "QUERY_KEY_WORDS",
    "REDACTED",
    "SENSITIVE_KEY_PHRASES",
    "SENSITIVE_KEY_WORDS",
    "TRUNCATION_MARK",
    "VENDOR_TOKENS",
    "WEAK_KEY_WORDS",
    "Action",
    "KeyKind",
    "MaskedSpan",
    "Masker",
    "MaskingLogFilter",
    "MaskingRules",
    "MaskingSpanProcessor",
    "MaskingStats",
    "Rebuild",
    "Rule",
    "Target",
    "builtin_rules",
    "install_log_filter",
    "key_words",
    "representable",
]

# aura-otel's own logs are masked from import on (the rules compile at the first record).
install_log_filter()
