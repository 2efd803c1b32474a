"""The key-word rule: a key whose words name a credential has its whole value replaced.

Keys are split into words (on punctuation, digits and camelCase, in any case), so the decision
is about words, not substrings: ``api_key`` and ``X-API-Key`` are sensitive, ``max_tokens``,
``keyframe_count`` and ``monkey`` are not. Glued words that people write as one (``PGPASSWORD``,
``clientsecret``, ``JSESSIONID``) are recognised by their ending.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from .. import conventions as c

if TYPE_CHECKING:
    from .settings import MaskingRules

#: Key words whose presence makes a key sensitive (its whole value is replaced). Whole words,
#: so ``max_tokens`` and ``keyframe_count`` keep their values. Plurals of the obvious ones are
#: included; ``tokens`` is not (it names counts far more often than credentials). The words
#: people glue together (``secretkey``, ``authtoken``) are words of their own here.
SENSITIVE_KEY_WORDS: Final = frozenset(
    {
        "key",
        "keys",
        "apikey",
        "token",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "pwd",
        "authorization",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "private",
        "pass",
        "passphrase",
        "passcode",
        "pin",
        "otp",
        "auth",
        "hmac",
        "bearer",
        "secretkey",
        "accesskey",
        "privatekey",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "clientsecret",
        "sessionid",
        "sessiontoken",
        "apitoken",
        "ssn",
    }
)
#: Words that are credentials only most of the time: ``auth_method = "oauth2"``,
#: ``pass_rate``, ``pin_mode`` describe one. A key holding one of these and a word of
#: :data:`DESCRIPTOR_WORDS` keeps its value.
WEAK_KEY_WORDS: Final = frozenset({"pass", "pin", "otp", "auth", "hmac", "bearer"})
DESCRIPTOR_WORDS: Final = frozenset(
    {
        "type",
        "types",
        "method",
        "methods",
        "scheme",
        "schemes",
        "mode",
        "kind",
        "provider",
        "providers",
        "enabled",
        "required",
        "status",
        "state",
        "url",
        "uri",
        "endpoint",
        "host",
        "domain",
        "server",
        "name",
        "names",
        "rate",
        "ratio",
        "index",
        "algorithm",
        "algo",
        "count",
        "number",
        "num",
        "time",
        "duration",
        "ms",
        "seconds",
        "version",
        "level",
        "strategy",
        "result",
        "results",
        "error",
        "errors",
        "policy",
    }
)
#: Runs of words that are sensitive together though neither word is alone.
#: Client and access ids are half of a credential pair (gitleaks reports them with the secret).
SENSITIVE_KEY_PHRASES: Final = (
    ("session", "id"),
    ("session", "key"),
    ("client", "id"),
    ("access", "id"),
    ("api", "id"),
    ("sonar", "login"),
)
#: Endings that make a glued word sensitive: ``PGPASSWORD``, ``MYSQL_ROOTPWD``,
#: ``clientsecret``, ``JSESSIONID``, ``xsrftoken``.
GLUED_SUFFIXES: Final = (
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "secretkey",
    "accesskey",
    "privatekey",
    "sessionid",
)
#: Extra words that make a URL query parameter sensitive (``?sig=``, ``&X-Amz-Signature=``).
QUERY_KEY_WORDS: Final = frozenset({"sig", "signature", "auth"})
#: Query parameters that are sensitive as a whole key only: an OAuth ``?code=`` is a one-time
#: credential, ``?error_code=`` is not.
QUERY_KEYS: Final = frozenset({"code"})
#: Words that end the name of a credential they are (``pin_number``), not a quantity.
_NAMING_WORDS: Final = frozenset({"number", "num"})
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
    return tuple(word.lower() for part in _KEY_PARTS.split(key) for word in _KEY_WORD.findall(part))


class KeyRule:
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
            if lowered.startswith(prefix) and lowered[len(prefix) :] in self._allow:
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
        if words_sensitive(words):
            return True
        if query and (not QUERY_KEY_WORDS.isdisjoint(words) or key.lower() in QUERY_KEYS):
            return True
        return any(_contains_run(words, extra) for extra in self._extra)

    @staticmethod
    def names_quantity(key: str) -> bool:
        return not QUANTITY_WORDS.isdisjoint(_describing(key_words(key)))

    def text_words(self) -> tuple[str, ...]:
        """Words a sensitive key contains (the first word of each extra key stands for it):
        what the key-value pre-filter looks for; the exact decision is made afterwards."""
        return tuple(
            sorted(
                SENSITIVE_KEY_WORDS
                | {words[0] for words in self._extra}
                | {run[0] for run in SENSITIVE_KEY_PHRASES}
            )
        )


def words_sensitive(words: tuple[str, ...]) -> bool:
    """The built-in decision on a key's words (extra keys and allow-lists aside)."""
    found = SENSITIVE_KEY_WORDS.intersection(words)
    if found and (not found <= WEAK_KEY_WORDS or DESCRIPTOR_WORDS.isdisjoint(_describing(words))):
        return True
    if any(_contains_run(words, run) for run in SENSITIVE_KEY_PHRASES):
        return True
    return any(
        len(word) > len(suffix) and word.endswith(suffix)
        for word in words
        for suffix in GLUED_SUFFIXES
    )


def _describing(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words that may describe or count a credential: a last ``number`` (or ``num``)
    names the credential itself, as in ``pin_number`` and ``ssn_number``, while ``num_keys``
    counts keys."""
    if words and words[-1] in _NAMING_WORDS:
        return words[:-1]
    return words


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    n = len(run)
    return any(words[i : i + n] == run for i in range(len(words) - n + 1))


def keeps_under_sensitive_key(key: str, value: Any) -> bool:
    """Booleans say nothing secret; numbers under a key that names a quantity are counts."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if items and all(isinstance(v, bool) for v in items):
        return True
    if items and all(isinstance(v, (int, float)) for v in items):
        return KeyRule.names_quantity(key)
    return False
