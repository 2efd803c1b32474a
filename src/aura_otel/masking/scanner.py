"""The scanner: one combined RE2 expression over UTF-8 bytes, and what to do with each match.

A clean text costs one call into RE2 (the group-free detector, DFA only). Where something
matched, the capturing expression explains those few bytes and the rule's :class:`Action`
handler decides: replace, keep, or (a candidate that fails its validity check) give the bytes
back to the other rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import re2

from .._util import re2_matcher, re2_matcher_public
from ..errors import ConfigurationError
from . import checks
from .formats import Action, Rule, builtin_rules
from .keys import GLUED_SUFFIXES, KeyRule, key_words
from .settings import REDACTED, re2_options

if TYPE_CHECKING:
    from .settings import MaskingRules

REDACTED_B: Final = REDACTED.encode()
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>")


_DIGIT_RUN = re.compile(rb"[0-9]+")
_NUMBER = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?")
#: How far past a rejected candidate the start-anchored set looks for another rule's match.
_FALLTHROUGH_WINDOW: Final = 8192
_CRED_SYMBOLS = frozenset(b"._~+/-=")


def _credential_like(token: bytes) -> bool:
    """``Basic understanding`` is prose; ``Basic dXNlcjpwYXNz`` is a credential."""
    if any(48 <= b <= 57 or b in _CRED_SYMBOLS for b in token):
        return True
    upper_inside = any(65 <= b <= 90 for b in token[1:])
    return upper_inside and any(97 <= b <= 122 for b in token)


_LITERALS: Final = frozenset(
    {b"true", b"false", b"null", b"none", b"yes", b"no", b"", REDACTED_B.lower()}
)


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


#: A YAML block scalar's indicator (``|``, ``>-``, ``|2+``): the value is on the lines below.
_BLOCK_SCALAR = re.compile(rb"[|>](?:[1-9]?[+-]?|[+-][1-9])")


def _block_end(data: bytes, key_start: int, end: int) -> int:
    """Where a YAML block scalar ends: before the first non-blank line indented no deeper
    than its key's line."""
    line_start = data.rfind(b"\n", 0, key_start) + 1
    head = data[line_start:key_start]
    indent = len(head) - len(head.lstrip(b" \t"))
    while True:
        newline = data.find(b"\n", end)
        if newline < 0:
            return end
        following = data.find(b"\n", newline + 1)
        line_end = len(data) if following < 0 else following
        line = data[newline + 1 : line_end]
        content = line.lstrip(b" \t")
        if content and len(line) - len(content) <= indent:
            return end
        end = line_end


def _redact_quoted(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] in (b'"', b"'") and value[-1:] == value[:1]:
        return value[:1] + REDACTED_B + value[:1]
    return REDACTED_B


class Keep:
    """Identifiers that survive even inside text (the span's own ids), as UTF-8, built on
    first use: most masked values never ask."""

    __slots__ = ("_items", "_source")

    def __init__(self, source: Callable[[], frozenset[str]] | frozenset[str]) -> None:
        self._source = source
        self._items: frozenset[bytes] | None = None

    def __contains__(self, item: bytes) -> bool:
        if self._items is None:
            source = self._source() if callable(self._source) else self._source
            self._items = frozenset(k.encode("utf-8", "surrogatepass") for k in source)
        return item in self._items


class Scanner:
    """One combined RE2 expression and what to do with each rule's matches.

    Works on UTF-8 bytes: offsets come straight from RE2 (no per-match decoding), and every
    match boundary falls on a character boundary, so the output decodes cleanly.
    """

    def __init__(self, rules: MaskingRules, keys: KeyRule) -> None:
        self._keys = keys
        extra = [
            Rule(f"extra_{i + 1}", p, Action.REDACT) for i, p in enumerate(rules.extra_patterns)
        ]
        # User patterns first: what a user declares secret wins over our "keep" rules.
        self.rules = extra + builtin_rules(keys.text_words(), GLUED_SUFFIXES, rules)
        n_extra = len(extra)
        # The detector answers "where is the next match" without groups: RE2 then needs only
        # its DFAs, no submatch pass. (User patterns keep any groups of their own.)
        plain = [
            rule.pattern if i < n_extra else _NAMED_GROUP.sub("(?:", rule.pattern)
            for i, rule in enumerate(self.rules)
        ]
        try:
            self.detector = re2.compile("|".join(f"(?:{p})" for p in plain), re2_options())
            # Which rule made a match: an RE2 set over the rules (one DFA pass over the
            # matched bytes), then that rule's own small expression for its groups. One
            # capturing expression over every rule would be too large for RE2's fast
            # submatch engines and cost several times more per match.
            self._which = re2.Set.FullMatchSet(re2_options())
            for pattern in plain:
                self._which.Add(pattern)
            self._which.Compile()
            self._own = [re2.compile(rule.pattern, re2_options()) for rule in self.rules]
        except re2.error as exc:
            raise ConfigurationError(f"masking patterns do not combine: {exc}") from None
        handlers: dict[Action, Handler] = {
            Action.KEEP: self._h_keep,
            Action.REDACT: self._h_redact,
            Action.RANDOM: self._h_random,
            Action.VALUE: self._h_value,
            Action.FLAG: self._h_flag,
            Action.URL: self._h_url,
            Action.COOKIE: self._h_cookie,
            Action.KEY_VALUE: self._h_key_value,
            Action.QUERY_PARAMETER: self._h_query_parameter,
            Action.AUTH_SCHEME: self._h_auth_scheme,
            Action.ENTROPY: self._h_entropy,
            Action.EMAIL: self._h_email,
            Action.CARD: self._h_card,
            Action.PHONE: self._h_phone,
            Action.PHONE_NATIONAL: self._h_phone_national,
            Action.IBAN: self._h_iban,
            Action.SSN: self._h_ssn,
            Action.NINO: self._h_nino,
        }
        self._handlers: list[tuple[Handler, dict[str, int]]] = [
            (handlers[rule.action], dict(regex.groupindex))
            for rule, regex in zip(self.rules, self._own, strict=True)
        ]
        # Anchors would need each value scanned alone (the joined scan sees one long text).
        self.joinable = not any(_has_anchor(p) for p in rules.extra_patterns)
        self._detect = _yes_no(self.detector)
        self._find = _finder(self.detector)
        self._explain = _explainer(self._own)
        self._explain_start = _explainer(self._own, anchor_end=False)
        # Rules whose rejection may hide another rule at the same place (not the identifiers
        # that must survive, nor plain redactions, which reject only the span's own ids).
        self._fallthrough = [rule.action not in (Action.KEEP, Action.REDACT) for rule in self.rules]
        self._plain = plain
        self._starts: Any = None  # an RE2 set anchored at the start, built on first need

    # -- scanning ----------------------------------------------------------------------------
    def dirty(self, data: bytes) -> bool:
        return self._detect(data)

    def dirty_spans(self, data: bytes) -> list[tuple[int, int]]:
        return [m.span() for m in self.detector.finditer(data)]

    def _match(self, data: bytes, pos: int) -> tuple[int, Spans] | None:
        """The first match at or after ``pos``: (rule index, group spans of that rule)."""
        found = self._find(data, pos)
        if found is None:
            return None
        start, end = found
        if start == end:
            return -1, [found]
        # The rule that made it is the first one (in priority order) that matches exactly
        # these bytes in context; the set may also name rules that match only out of context
        # (a \b at the cut), which the in-context check rejects.
        for index in sorted(self._which.Match(data[start:end]) or ()):
            spans = self._explain(index, data, start, end)
            if spans is not None:
                return index, spans
        # A rule ending in \b after a non-word character matches only in context: ask each.
        for index in range(len(self._own)):
            spans = self._explain(index, data, start, end)
            if spans is not None:
                return index, spans
        raise RuntimeError("no rule explains a detector match")  # fails closed: value replaced

    def _others_at(self, data: bytes, start: int, after: int) -> Iterator[tuple[int, Spans]]:
        """Rules after ``after`` (in priority order) that also match at ``start``."""
        if self._starts is None:
            starts = re2.Set.MatchSet(re2_options())
            for pattern in self._plain:
                starts.Add(pattern)
            starts.Compile()
            self._starts = starts
        for index in sorted(self._starts.Match(data[start : start + _FALLTHROUGH_WINDOW]) or ()):
            if index > after:
                spans = self._explain_start(index, data, start, len(data))
                if spans is not None and spans[0][0] == start and spans[0][1] > start:
                    yield index, spans

    def mask_pass(self, data: bytes, keep: Keep) -> bytes:
        out: list[bytes] = []
        pos = copied = 0
        size = len(data)
        match = self._match
        handlers = self._handlers
        while pos <= size:
            found = match(data, pos)
            if found is None:
                break
            index, spans = found
            start, end = spans[0]
            if start == end:  # an empty match (a user pattern): nothing to replace
                pos = _next_char(data, end)
                continue
            handler, own = handlers[index]
            replacement, resume = handler(spans, data, keep, own)
            if replacement is None and self._fallthrough[index]:
                # A candidate its check rejected (a key that is not sensitive, a number that
                # fails Luhn) must not hide a later rule that matches at the same place:
                # ``_gitlab_session=<token>`` is no sensitive key, but it is a GitLab cookie.
                for other, other_spans in self._others_at(data, start, index):
                    other_handler, other_own = handlers[other]
                    found_replacement, found_resume = other_handler(
                        other_spans, data, keep, other_own
                    )
                    if found_replacement is not None:
                        replacement, resume = found_replacement, found_resume
                        break
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
    # ``g`` maps the rule's own group names to their indexes in ``spans``.
    def _h_keep(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        return None, spans[0][1]

    def _h_redact(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        if data[start:end] in keep:
            return None, end
        return REDACTED_B, end

    def _h_random(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        if checks.random_like(data[start:end].decode("utf-8", "surrogatepass")):
            return REDACTED_B, end
        return None, end

    def _h_value(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        """Only the ``val`` group is secret; the text before it (a command line) is masked
        like any other text, so a header earlier on the line is not skipped."""
        start = spans[0][0]
        value_start, value_end = spans[g["val"]]
        value = data[value_start:value_end]
        if value.strip(b"\"'") in (REDACTED_B, b""):
            return None, max(value_end, spans[0][1])
        # The prefix is strictly shorter and holds no complete match of this rule.
        head = (
            self.mask_pass(data[start:value_start], Keep(frozenset()))
            if value_start > start
            else b""
        )
        return head + _redact_quoted(value), value_end

    def _h_flag(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        key_start, key_end = spans[g["fl_key"]]
        value_start, value_end = spans[g["fl_val"]]
        key = data[key_start:key_end].decode("ascii")
        value = data[value_start:value_end]
        if not self._keys.sensitive(key) or value.strip(b"\"'").lower() in _LITERALS:
            return None, key_end
        if _NUMBER.fullmatch(value) and KeyRule.names_quantity(key):
            return None, value_end  # --token-count 5 is a quantity
        return data[spans[0][0] : value_start] + _redact_quoted(value), value_end

    def _h_url(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        scheme = data[spans[g["url_scheme"]][0] : spans[g["url_scheme"]][1]]
        return scheme + REDACTED_B + b"@", spans[0][1]

    def _h_cookie(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        head = data[spans[g["ck_key"]][0] : spans[g["ck_sep"]][1]]
        value_start = spans[g["ck_val"]][0]
        end = self._extent(data, value_start, spans[0][1])
        return head + _redact_quoted(data[value_start:end]), end

    def _h_key_value(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        return self._key_value(spans, data, g, "kv", query=False)

    def _h_query_parameter(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        return self._key_value(spans, data, g, "qp", query=True)

    def _key_value(
        self, spans: Spans, data: bytes, g: Groups, prefix: str, *, query: bool
    ) -> Result:
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
        if _NUMBER.fullmatch(value) and KeyRule.names_quantity(key):
            return None, end  # token_count: 812 is a quantity, as it is in an attribute
        if key_words(key)[-1] in _COOKIE_WORDS and value[:1] not in (b'"', b"'"):
            end = _line_value_end(data, value_start)  # "a=1; b=2": every pair is secret
        elif _BLOCK_SCALAR.fullmatch(value):
            end = _block_end(data, key_start, end)  # YAML "password: |": the lines below
        end = self._extent(data, value_start, end)
        return data[spans[0][0] : sep_end] + _redact_quoted(data[value_start:end]), end

    def _extent(self, data: bytes, value_start: int, end: int) -> int:
        """A value hides more than its own bytes when another rule's match starts inside it and
        runs on (``password: -----BEGIN PRIVATE KEY----- ...``): the value then ends where
        that match does, or the rest of the secret would survive the replaced first word."""
        pos = value_start
        for _ in range(_MAX_EXTENT_STEPS):
            found = self._find(data, pos)
            if found is None or found[0] >= end:
                return end
            start, stop = found
            end = max(end, stop)  # chains too: "Key: Password: API_KEY: <secret>"
            pos = _next_char(data, start)
        return _line_value_end(data, end)  # a pathological chain: the rest of the line goes

    def _h_auth_scheme(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        cred_start = spans[g["cred"]][0]
        if _credential_like(data[cred_start : spans[0][1]]):
            return REDACTED_B, spans[0][1]
        return None, cred_start

    def _h_entropy(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        value_start, value_end = spans[g["ent_val"]]
        value = data[value_start:value_end]
        if value in keep or not checks.random_like(value.decode("ascii")):
            return None, value_start
        return data[spans[0][0] : value_start] + REDACTED_B, value_end

    def _h_email(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        text = data[start:end].decode("utf-8")
        at = text.find("@")
        if at < 0:
            at = text.lower().find("%40")
            domain = text[at + 3 :]
        else:
            domain = text[at + 1 :]
        local = checks.email_local_start(text[:at])
        if local is not None and checks.email_like(domain):
            return data[start : start + len(text[:local].encode())] + REDACTED_B, end
        return None, start + len(text[: at + 1].encode())

    def _h_card(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        groups = [
            (start + m.start(), start + m.end()) for m in _DIGIT_RUN.finditer(data[start:end])
        ]
        windows = _card_windows(data, groups)
        if not windows:  # give back all but the first group: other rules may start there
            return None, groups[0][1] if groups else end
        out, copied = [], start
        for ws, we in windows:
            out += [data[copied:ws], REDACTED_B]
            copied = we
        return b"".join(out), copied

    def _h_phone(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        """E.164: 8 to 15 digits. Longer runs keep the longest prefix that fits; a rejected
        candidate gives back everything after its ``+digits`` (a card may follow)."""
        start, end = spans[0]
        count = 0
        first_end = last_end = None
        for m in _DIGIT_RUN.finditer(data[start:end]):
            if first_end is None:
                first_end = start + m.end()
            if count + (m.end() - m.start()) > 15:
                break
            count += m.end() - m.start()
            last_end = start + m.end()
        if last_end is None or count < 8:
            return None, first_end if first_end is not None else end
        return REDACTED_B, last_end

    def _h_phone_national(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        """National forms: North American numbers need a valid area code and exchange and one
        separator style; ``00`` + country code needs 9-15 digits; a trunk ``0`` 10-11."""
        start, end = spans[0]
        text = data[start:end].decode("ascii")
        runs = _DIGIT_RUN.findall(data[start:end])
        digits = b"".join(runs)
        first_end = start + text.find(runs[0].decode()) + len(runs[0])
        if text.startswith("("):
            ok = checks.nanp_valid([r.decode() for r in runs])
        elif text.startswith("00"):
            ok = 9 <= len(digits) - 2 <= 15
        elif text.startswith("0"):
            ok = 10 <= len(digits) <= 11
        else:
            separators = set(text[3]) | set(text[7])
            ok = len(separators) == 1 and checks.nanp_valid([r.decode() for r in runs])
        return (REDACTED_B, end) if ok else (None, first_end)

    def _h_iban(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        """The country's IBAN length is taken from the candidate (it may run on into the next
        word) and checked with mod-97; the rest is scanned again."""
        start, end = spans[0]
        text = data[start:end].decode("ascii")
        length = checks.IBAN_LENGTHS.get(text[:2])
        if length is not None:
            taken = 0
            for i, ch in enumerate(text):
                if ch.isalnum():
                    taken += 1
                    if taken == length:
                        compact = "".join(c for c in text[: i + 1] if c.isalnum())
                        if checks.iban_valid(compact) and (
                            i + 1 == len(text) or not text[i + 1].isalnum()
                        ):
                            return REDACTED_B, start + i + 1
                        break
        return None, start + 4

    def _h_ssn(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        runs = list(_DIGIT_RUN.finditer(data, start, end))
        if not runs:
            return None, end
        first = runs[0].start() if len(runs) == 3 else runs[-1].start()
        digits = b"".join(m.group() for m in runs[-3:] if m.start() >= first).decode()
        if checks.ssn_valid(digits):
            return data[start:first] + REDACTED_B, end
        return None, runs[0].end()

    def _h_nino(self, spans: Spans, data: bytes, keep: Keep, g: Groups) -> Result:
        start, end = spans[0]
        compact = data[start:end].decode("ascii").replace(" ", "")
        if checks.nino_valid(compact):
            return REDACTED_B, end
        return None, start + 2


Spans = Sequence[tuple[int, int]]
Groups = dict[str, int]
Result = tuple[bytes | None, int]
Handler = Callable[[Spans, bytes, "Keep", Groups], Result]


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
            if checks.card_like(digits):
                best_j = j
        if best_j is None:
            i += 1
            continue
        windows.append((groups[i][0], groups[best_j][1]))
        i = best_j + 1
    return windows


def _finder(detector: Any) -> Callable[[bytes, int], tuple[int, int] | None]:
    """Where the first match at or after ``pos`` is (None: no match), with RE2's DFAs only.
    google-re2's ``search`` wraps the C++ match in a match object; its internals are used
    when present, with the public API as the fallback."""
    find = getattr(getattr(detector, "_regexp", None), "Match", None)
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    if find is None or anchor is None:

        def public(data: bytes, pos: int) -> tuple[int, int] | None:
            m = detector.search(data, pos)
            return None if m is None else m.span()

        return public
    unanchored = anchor.UNANCHORED

    def direct(data: bytes, pos: int) -> tuple[int, int] | None:
        start, end = find(unanchored, data, pos, len(data))[0]
        return None if start == -1 else (start, end)

    return direct


def _explainer(
    regexes: list[Any], *, anchor_end: bool = True
) -> Callable[[int, bytes, int, int], Spans | None]:
    """Group spans of rule ``index`` matching exactly ``data[start:end]`` in context (or, with
    ``anchor_end=False``, starting at ``start``), or None."""
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    raws: list[Any] = [getattr(getattr(r, "_regexp", None), "Match", None) for r in regexes]
    if anchor is None or any(raw is None for raw in raws):

        def public(index: int, data: bytes, start: int, end: int) -> Spans | None:
            regex = regexes[index]
            m = regex.fullmatch(data, start, end) if anchor_end else regex.match(data, start, end)
            return None if m is None else [m.span(i) for i in range(regex.groups + 1)]

        return public
    both = anchor.ANCHOR_BOTH if anchor_end else anchor.ANCHOR_START
    null = (-1, -1)

    def direct(index: int, data: bytes, start: int, end: int) -> Spans | None:
        spans = raws[index](both, data, start, end)
        return None if spans[0] == null else spans

    return direct


def _yes_no(regex: Any) -> Callable[[bytes], bool]:
    """The cheapest "does it match anywhere" call RE2 offers: clean spans pay only this."""
    match = re2_matcher(regex) or re2_matcher_public(regex)
    return lambda data: match(data, 0, len(data)) is not None


def _has_anchor(pattern: str) -> bool:
    stripped = pattern.replace("\\\\", "").replace("[^", "[").replace("\\^", "").replace("\\$", "")
    return any(a in stripped for a in ("^", "$", "\\A", "\\z"))
