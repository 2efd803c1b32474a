"""Property-based tests: a secret anywhere in random text is masked; masking is idempotent."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aura_otel.masking import Masker, MaskingRules

from .corpus import BENIGN, secrets

SECRETS = secrets()
MASKER = Masker(MaskingRules(max_value_length=4096))

#: Random text: printable ASCII and some non-ASCII (accents, CJK, emoji) and white space.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126),
        st.sampled_from("éüñ漢字🙂\t\n"),
    ),
    max_size=200,
)
#: What separates a secret from the text around it in real logs and messages.
DELIMITER = st.sampled_from([" ", "\n", "\t", ", ", "; ", " (", ") ", ": ", " | "])


#: Text that often stands right before a secret: a key-value rule must not swallow only the
#: secret's first word and let the rest through.
CONTEXT = st.sampled_from(
    [
        "",
        "Password: ",
        "token=",
        "Cookie: ",
        "Authorization: ",
        "api_key=",
        "error: ",
        "https://x.example/a?b=1&sig=",
        '"secret": "',
        "+1 ",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=TEXT,
    before=DELIMITER,
    context=CONTEXT,
    secret=st.sampled_from(SECRETS),
    after=DELIMITER,
    suffix=TEXT,
)
@example(prefix="", before=" ", context="", secret=SECRETS[0], after=" ", suffix="")
@example(
    prefix="+0",
    before=" ",
    context="",
    secret=next(s for s in SECRETS if s.rule == "card"),
    after=" ",
    suffix="",
)
@example(
    prefix="",
    before=" ",
    context="Password: ",
    secret=next(s for s in SECRETS if s.rule == "pem"),
    after=" ",
    suffix="",
)
def test_a_secret_at_any_position_of_random_text_is_masked(
    prefix, before, context, secret, after, suffix
) -> None:
    out = MASKER.mask_text(prefix + before + context + secret.text + after + suffix)
    for needle in secret.needles:
        assert needle not in out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(
        st.one_of(TEXT, st.sampled_from([s.text for s in SECRETS]), st.sampled_from(BENIGN)),
        max_size=6,
    ),
    joiner=DELIMITER,
)
@example(
    parts=["373001111123334", "373001111123334", "5005000000004"], joiner=" "
)  # found by hypothesis
def test_masking_is_idempotent(parts, joiner) -> None:
    once = MASKER.mask_text(joiner.join(parts))
    assert MASKER.mask_text(once) == once


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_masking_arbitrary_unicode_never_raises_and_is_idempotent(text) -> None:
    once = MASKER.mask_text(text)
    assert isinstance(once, str)
    assert MASKER.mask_text(once) == once
    assert MASKER.stats.snapshot()["values_failed_closed"] == 0


WORD = st.sampled_from(
    [
        "api",
        "key",
        "keys",
        "token",
        "tokens",
        "secret",
        "password",
        "pwd",
        "max",
        "frame",
        "keyframe",
        "monkey",
        "author",
        "count",
        "private",
        "cookie",
        "credentials",
        "user",
        "id",
        "x",
        "2",
        "auth",
    ]
)


def _render(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    if style == "upper":
        return "_".join(w.upper() for w in words)
    return style.join(words)


@settings(max_examples=600, deadline=None)
@given(
    words=st.lists(WORD, min_size=1, max_size=4),
    style=st.sampled_from(["_", ".", "-", "camel", "upper"]),
    sep=st.sampled_from(["=", ": ", " = ", '": "']),
)
def test_key_value_text_rule_agrees_with_the_key_word_rule(words, style, sep) -> None:
    """The RE2 pre-filter for ``key=value`` in text and the whole-word decision on keys never
    disagree: a value is hidden exactly when its key is sensitive."""
    key = _render(words, style)
    out = MASKER.mask_text(f"{key}{sep}v4lue9x")
    assert ("v4lue9x" not in out) == MASKER.keys.sensitive(key), (key, out)
