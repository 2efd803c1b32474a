"""Masking rules, configuration, fail-closed behaviour, the span processor and the log filter."""

from __future__ import annotations

import io
import logging
import threading

import orjson
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.errors import ConfigurationError
from aura_otel.masking import (
    DEFAULT_MAX_VALUE_LENGTH,
    MAX_JSON_DEPTH,
    REDACTED,
    TRUNCATION_MARK,
    MaskedSpan,
    Masker,
    MaskingLogFilter,
    MaskingRules,
    MaskingSpanProcessor,
    install_log_filter,
    key_words,
)

from .corpus import BENIGN, secrets

SECRETS = secrets()


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker(MaskingRules())


def _pipeline(rules: MaskingRules | None = None, resource: Resource | None = None):
    exporter = InMemorySpanExporter()
    # background=False: masking runs in on_end itself, so the spans are there when the test
    # looks (the background worker has tests of its own below)
    processor = MaskingSpanProcessor(
        SimpleSpanProcessor(exporter),
        rules=rules or MaskingRules(),
        mask_logs=False,
        background=False,
    )
    # no shutdown at interpreter exit: tests that provoke failures would log their counters then
    provider = TracerProvider(resource=resource or Resource.get_empty(), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor, exporter


# -- the spec's old case and old rules ------------------------------------------------------------
def test_spec_old_message_case_gives_its_old_result(masker: Masker) -> None:
    assert (
        masker.mask_text("API error: sk-1234567890abcdef1234567890abcdef failed")
        == "API error: [REDACTED] failed"
    )


def test_spec_old_metadata_case_gives_its_old_result() -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("aura.meta.api_key", "sk-secret123")
        span.set_attribute("aura.meta.model", "gpt-4")
        span.set_attribute(
            "aura.meta_json.request", '{"api_key": "sk-secret123", "model": "gpt-4"}'
        )
    (out,) = exporter.get_finished_spans()
    assert out.attributes["aura.meta.api_key"] == REDACTED
    assert out.attributes["aura.meta.model"] == "gpt-4"
    assert orjson.loads(out.attributes["aura.meta_json.request"]) == {
        "api_key": REDACTED,
        "model": "gpt-4",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bearer abcdef0123456789xyz", REDACTED),
        ("id 0123456789abcdef0123456789abcdef end", "id [REDACTED] end"),
        ("api_key=abc123", "api_key=[REDACTED]"),
        ("api-key: abc123", "api-key: [REDACTED]"),
        ("token=abc123", "token=[REDACTED]"),
        ("secret: abc123", "secret: [REDACTED]"),
        ("sk-1234567890abcdef", REDACTED),  # the hole the old rule left (16 characters)
    ],
)
def test_old_rules_and_the_closed_short_key_hole(masker: Masker, text: str, expected: str) -> None:
    assert masker.mask_text(text) == expected


# -- the corpus -------------------------------------------------------------------------------------
def test_corpus_is_large_and_covers_every_rule() -> None:
    assert len(SECRETS) >= 200
    rules = {s.rule for s in SECRETS}
    assert rules >= {
        "openai",
        "anthropic",
        "google",
        "aws_access_key_id",
        "aws_secret",
        "github",
        "slack",
        "stripe",
        "jwt",
        "bearer",
        "basic",
        "pem",
        "url_credentials",
        "query",
        "long_hex",
        "key_value",
        "cookie",
        "email",
        "card",
        "phone",
    }


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s.rule)
def test_every_corpus_secret_is_masked_in_text(masker: Masker, secret) -> None:
    out = masker.mask_text(f"before {secret.text}\nafter")
    for needle in secret.needles:
        assert needle not in out
    assert REDACTED in out
    assert out.startswith("before ") and out.endswith("\nafter")  # a cookie runs to the line end


def test_benign_corpus_survives_untouched(masker: Masker) -> None:
    false_positives = [(b, masker.mask_text(b)) for b in BENIGN if masker.mask_text(b) != b]
    print(f"\nbenign corpus: {len(BENIGN)} items, {len(false_positives)} false positives")
    assert false_positives == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:Xk9?q#7Lm2@db.internal:5432/app",  # libpq reads it as written
        "redis://default:Zq#4vT9?pW@cache:6379/0",
    ],
)
def test_url_passwords_holding_question_marks_or_hashes_are_masked(
    masker: Masker, url: str
) -> None:
    # Generated passwords often hold ? and #; libpq takes everything up to the @ as the
    # user and password, so such a DSN works and is logged as it was written.
    scheme, rest = url.split("://")
    host = rest.split("@")[1]
    assert masker.mask_text(f"connect to {url} failed") == (
        f"connect to {scheme}://{REDACTED}@{host} failed"
    )


def test_a_yaml_block_value_under_a_sensitive_key_is_masked_whole(masker: Masker) -> None:
    # A Kubernetes Secret or Helm values file quoted in an error: the value is the block.
    text = (
        "stringData:\n  password: |\n    Hunter2pass\n    second line\n"
        "  private_key: >-\n    Zq4vT9pWx\n\n    Lm2Xk9\n  user: bob\n"
    )
    assert masker.mask_text(text) == (
        f"stringData:\n  password: {REDACTED}\n  private_key: {REDACTED}\n  user: bob\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        # a URL inside a URL (OAuth redirects, a login's next=), a form body logged encoded
        "https://auth.example.com/login?next=%2Fcb%3Faccess_token%3DXk9f2LmQ8vR3tYp1ZwB7nC4h",
        "body=grant_type%3Dpassword%26username%3Dbob%26password%3DXk9f2LmQ8vR3tYp1ZwB7nC4h",
        "token%3DXk9f2LmQ8vR3tYp1ZwB7nC4h",
        "q=%7B%22api_key%22%3A%22Xk9f2LmQ8vR3tYp1ZwB7nC4h%22%7D",
    ],
)
def test_url_encoded_key_values_are_masked(masker: Masker, text: str) -> None:
    masked = masker.mask_text(text)
    assert "Xk9f2LmQ8vR3tYp1ZwB7nC4h" not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Ruby's Hash#inspect (an exception message from a Ruby service), Ruby 3.4's, PHP arrays
        ('{"password"=>"hunter2x", "user"=>"bob"}', '{"password"=>"[REDACTED]", "user"=>"bob"}'),
        ('{:api_key=>"hunter2x"}', '{:api_key=>"[REDACTED]"}'),
        ('{"password" => "hunter2x"}', '{"password" => "[REDACTED]"}'),
        ("'db_password' => 'hunter2x',", "'db_password' => '[REDACTED]',"),
        ("token=>hunter2x", "token=>[REDACTED]"),
    ],
)
def test_hash_arrows_separate_a_key_from_its_value(
    masker: Masker, text: str, expected: str
) -> None:
    assert masker.mask_text(text) == expected


# -- key words --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("apiKey", ("api", "key")),
        ("X-API-Key", ("x", "api", "key")),
        ("OPENAI_API_KEY", ("openai", "api", "key")),
        ("APIKeyHeader", ("api", "key", "header")),
        ("max_tokens", ("max", "tokens")),
        ("keyframe_count", ("keyframe", "count")),
        ("oauth2Token", ("oauth", "2", "token")),
    ],
)
def test_key_words_split_on_separators_and_camel_case(key: str, words: tuple[str, ...]) -> None:
    assert key_words(key) == words


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "x-api-key",
        "APIKEY",
        "access_token",
        "refreshToken",
        "client_secret",
        "db.password",
        "PASSWD",
        "user_pwd",
        "Authorization",
        "set-cookie",
        "aws_credentials",
        "credential",
        "private_key",
        "aura.meta.github_token",
    ],
)
def test_sensitive_keys_lose_their_whole_value(key: str) -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(key, "innocuous-looking-value")
        span.set_attribute(key + "_list", ["a", "b"])
    (out,) = exporter.get_finished_spans()
    assert out.attributes[key] == REDACTED


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "keyframe_count",
        "monkey",
        "author",
        "tokens_per_second",
        "aura.meta.max_tokens",
        "keynote",
        "primary",
        "gen_ai.usage.input_tokens",
        "llm.token_count.prompt",
    ],
)
def test_harmless_keys_keep_their_values(key: str) -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(key, "plain value")
        span.set_attribute(key + ".n", 4096)
    (out,) = exporter.get_finished_spans()
    assert out.attributes[key] == "plain value"
    assert out.attributes[key + ".n"] == 4096


def test_contract_keys_are_never_masked_by_key_but_their_strings_are_scanned() -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("llm.token_count.completion", 12)
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        span.set_attribute("gen_ai.response.model", "leaked sk-1234567890abcdef")
    (out,) = exporter.get_finished_spans()
    assert out.attributes["llm.token_count.completion"] == 12
    assert out.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert out.attributes["gen_ai.response.model"] == "leaked [REDACTED]"


def test_numbers_under_sensitive_quantity_keys_and_booleans_are_kept() -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("llm.token_count.total", 900)
        span.set_attribute("has_api_key", True)
        span.set_attribute("pin_password", 1234)
    (out,) = exporter.get_finished_spans()
    assert out.attributes["llm.token_count.total"] == 900
    assert out.attributes["has_api_key"] is True
    assert out.attributes["pin_password"] == REDACTED


def test_a_number_named_after_its_credential_is_the_credential_not_a_quantity(
    masker: Masker,
) -> None:
    # "PIN number", "SSN number": the number is the secret itself; "num_keys" counts keys.
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("customer.ssn_number", 123456789)
        span.set_attribute("card.pin_number", 4821)
        span.set_attribute("card.pin_num", "4821")
        span.set_attribute("otp_number", 482193)
        span.set_attribute("num_keys", 3)
        span.set_attribute("number_of_tokens", 12)
        span.set_attribute("pin_count", 2)
    (out,) = exporter.get_finished_spans()
    for key in ("customer.ssn_number", "card.pin_number", "card.pin_num", "otp_number"):
        assert out.attributes[key] == REDACTED, key
    assert out.attributes["num_keys"] == 3
    assert out.attributes["number_of_tokens"] == 12
    assert out.attributes["pin_count"] == 2
    assert masker.mask_text("ssn_number: 123456789, pin_number=4821") == (
        f"ssn_number: {REDACTED}, pin_number={REDACTED}"
    )
    assert masker.mask_text("num_keys=3") == "num_keys=3"


def test_a_token_split_by_a_space_is_no_identifier(masker: Masker) -> None:
    # Spaces make an id of words (promo off); they must not make a token two harmless words.
    for value in (
        "job ghp_aB3dE5fG7hJ9kL1m N2pQ4rS6tU8vW0xYz1234",
        "sk-proj-Tq8vLr2X w9ZmN4bPc7YhK1sJd3FgA6eR",
        "AKIAIOSF ODNN7EXAMPLE",
    ):
        assert not masker.is_identifier(value), value
    for value in ("promo off", "Promo video 12", "a1b2c3d4e5f60718 29304a5b6c7d8e9f"):
        assert masker.is_identifier(value), value


def test_structural_identifiers_are_never_masked_even_when_they_look_like_hex() -> None:
    provider, _, exporter = _pipeline()
    hex_id = "0123456789abcdef0123456789abcdef"
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(c.JOB_ID, hex_id)
        span.set_attribute(c.CORRELATION_ID, "fedcba9876543210fedcba9876543210")
        trace_id = f"{span.get_span_context().trace_id:032x}"
        span.set_attribute("note", f"job {hex_id} in trace {trace_id} failed")
        span.set_status(Status(StatusCode.ERROR, f"trace {trace_id}"))
    (out,) = exporter.get_finished_spans()
    assert out.attributes[c.JOB_ID] == hex_id
    assert out.attributes[c.CORRELATION_ID] == "fedcba9876543210fedcba9876543210"
    assert out.attributes["note"] == f"job {hex_id} in trace {trace_id} failed"
    assert out.status.description == f"trace {trace_id}"
    assert f"{out.context.trace_id:032x}" == trace_id


GITHUB_TOKEN = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (c.PROJECT_ID, GITHUB_TOKEN),
        (c.CORRELATION_ID, '{"password": "hunter2zz"}'),
        (c.CORRELATION_ID, "postgres://app:hunter2zz@db/jobs"),
        (c.PROJECT_ID, ("ok", GITHUB_TOKEN)),
    ],
)
def test_a_structural_value_that_is_no_identifier_is_masked_and_shields_nothing(
    key: str, value: object
) -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(c.JOB_ID, "job-2026-11-28-0001")
        span.set_attribute(key, value)  # type: ignore[arg-type]
        span.set_attribute("exception.message", f"token {GITHUB_TOKEN} refused")
    (out,) = exporter.get_finished_spans()
    text = orjson.dumps(dict(out.attributes or {})).decode()
    for secret in (GITHUB_TOKEN, "hunter2zz"):
        assert secret not in text
    assert out.attributes[key] == "[REDACTED]"  # replaced whole, never in part
    assert out.attributes[c.JOB_ID] == "job-2026-11-28-0001"  # an identifier: untouched


# -- configuration ----------------------------------------------------------------------------------
def test_invalid_pattern_is_a_configuration_error_when_rules_are_built() -> None:
    with pytest.raises(ConfigurationError, match="not valid RE2"):
        MaskingRules(extra_patterns=("acme_(",))
    with pytest.raises(ConfigurationError, match="empty string"):
        MaskingRules(extra_patterns=("x*",))


def test_invalid_environment_is_an_error_at_start_up_not_at_the_first_span() -> None:
    with pytest.raises(ConfigurationError, match="RE2"):
        MaskingRules.from_env({c.ENV_MASK_EXTRA_PATTERNS: '["(unclosed"]'})
    with pytest.raises(ConfigurationError, match="JSON"):
        MaskingRules.from_env({c.ENV_MASK_EXTRA_PATTERNS: '["a", '})
    with pytest.raises(ConfigurationError, match="unknown PII"):
        MaskingRules.from_env({c.ENV_MASK_PII: "email,passport"})
    with pytest.raises(ConfigurationError, match="integer"):
        MaskingRules.from_env({c.ENV_MASK_MAX_VALUE_LENGTH: "lots"})
    with pytest.raises(ConfigurationError, match=">= 256"):
        MaskingRules(max_value_length=10)


def test_environment_formats() -> None:
    rules = MaskingRules.from_env(
        {
            c.ENV_MASK_EXTRA_PATTERNS: '["ACME-[0-9]{6}", "int_[a-z]{8},x"]',
            c.ENV_MASK_EXTRA_KEYS: "ssn, session_id",
            c.ENV_MASK_ALLOW_KEYS: "content_hash",
            c.ENV_MASK_PII: "email,card",
            c.ENV_MASK_MAX_VALUE_LENGTH: "4096",
        },
        extra_keys=["tax_id"],
    )
    assert rules.extra_patterns == ("ACME-[0-9]{6}", "int_[a-z]{8},x")
    assert rules.extra_keys == ("ssn", "session_id", "tax_id")
    assert rules.allow_keys == ("content_hash",)
    assert (rules.mask_email, rules.mask_card, rules.mask_phone) == (True, True, False)
    assert rules.max_value_length == 4096
    lines = MaskingRules.from_env({c.ENV_MASK_EXTRA_PATTERNS: "ACME-[0-9]{6}\nZZ[0-9]{4}\n"})
    assert lines.extra_patterns == ("ACME-[0-9]{6}", "ZZ[0-9]{4}")
    none = MaskingRules.from_env({c.ENV_MASK_PII: "none"})
    assert (none.mask_email, none.mask_card, none.mask_phone) == (False, False, False)
    default = MaskingRules.from_env({})
    assert default == MaskingRules()
    assert default.max_value_length == DEFAULT_MAX_VALUE_LENGTH


def test_processor_reads_the_environment_when_no_rules_are_given(monkeypatch) -> None:
    monkeypatch.setenv(c.ENV_MASK_EXTRA_PATTERNS, "[unclosed")
    with pytest.raises(ConfigurationError):
        MaskingSpanProcessor(mask_logs=False)


def test_extra_patterns_keys_and_allow_list_apply() -> None:
    rules = MaskingRules(
        extra_patterns=("ACME-[0-9]{6}",),
        extra_keys=("ssn", "session_id"),
        allow_keys=("content_hash", "build_token"),
    )
    provider, _, exporter = _pipeline(rules)
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("note", "customer ACME-123456 called")
        span.set_attribute("user.ssn", "078-05-1120")
        span.set_attribute("http.session_id", "abc")
        span.set_attribute("session", "kept")
        span.set_attribute("content_hash", sha)
        span.set_attribute("aura.meta.build_token", "ci-7")
        span.set_attribute(
            "aura.meta_json.doc", orjson.dumps({"ssn": "1", "content_hash": sha}).decode()
        )
    (out,) = exporter.get_finished_spans()
    attrs = out.attributes
    assert attrs["note"] == "customer [REDACTED] called"
    assert attrs["user.ssn"] == REDACTED
    assert attrs["http.session_id"] == REDACTED
    assert attrs["session"] == "kept"
    assert attrs["content_hash"] == sha
    assert attrs["aura.meta.build_token"] == "ci-7"
    assert orjson.loads(attrs["aura.meta_json.doc"]) == {"ssn": REDACTED, "content_hash": sha}


def test_anchored_user_patterns_apply_to_every_value_not_just_the_first() -> None:
    provider, _, exporter = _pipeline(MaskingRules(extra_patterns=(r"^INTERNAL-[0-9]+$",)))
    with provider.get_tracer("t").start_as_current_span("first") as span:
        span.set_attribute("a", "plain")
        span.set_attribute("b", "INTERNAL-4711")
        span.set_attribute("c", "not INTERNAL-4711")
    (out,) = exporter.get_finished_spans()
    assert out.attributes["b"] == REDACTED
    assert out.attributes["c"] == "not INTERNAL-4711"


def test_user_patterns_may_match_non_ascii_and_empty_matches_are_skipped() -> None:
    masker = Masker(MaskingRules(extra_patterns=(r"\bx|€[0-9]+",)))
    assert (
        masker.mask_text("préface €123 et x, puis 漢字")
        == "préface [REDACTED] et [REDACTED], puis 漢字"
    )


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        ("mask_email", "mail jane.doe@example.com"),
        ("mask_card", "card 4111 1111 1111 1111"),
        ("mask_phone", "call +44 20 7946 0958"),
    ],
)
def test_each_pii_category_can_be_switched_off(flag: str, text: str) -> None:
    assert Masker(MaskingRules()).mask_text(text) != text
    assert Masker(MaskingRules(**{flag: False})).mask_text(text) == text


def test_cards_need_a_valid_luhn_check(masker: Masker) -> None:
    assert masker.mask_text("4111 1111 1111 1111") == REDACTED
    assert masker.mask_text("4111 1111 1111 1112") == "4111 1111 1111 1112"
    # a card followed by another number is still found
    assert masker.mask_text("4111 1111 1111 1111 7") == "[REDACTED] 7"
    # a rejected phone or card candidate gives its digits back to the other rules
    assert masker.mask_text("+0 4111111111111111") == "+0 [REDACTED]"
    assert masker.mask_text("1 12345678901234567890123456789012345") == "1 [REDACTED]"
    # several cards in one run of digits are all found in one pass
    assert (
        masker.mask_text("373001111123334 378282246310005 4111111111111111")
        == "[REDACTED] [REDACTED] [REDACTED]"
    )


# -- size cap and fail closed ------------------------------------------------------------------------
def test_large_values_are_truncated_before_matching_and_a_cut_secret_does_not_survive() -> None:
    rules = MaskingRules(max_value_length=1024)
    masker = Masker(rules)
    secret = "sk-" + "A1b2C3d4" * 4
    cut_at = 1024 - len(TRUNCATION_MARK) - 10
    text = "x " * (cut_at // 2) + secret + " tail" * 1000
    out = masker.mask_text(text)
    assert len(out) <= 1024
    assert out.endswith(TRUNCATION_MARK)
    assert secret[:8] not in out  # the half of the key before the cut is dropped too
    assert masker.stats.snapshot()["values_truncated"] == 1
    assert masker.mask_text(out) == out


@pytest.mark.parametrize("separator", [",", ";", "|", "\n", '"'])
def test_a_secret_cut_after_any_separator_does_not_survive(separator: str) -> None:
    masker = Masker(MaskingRules(max_value_length=8192))  # more than the cut looks back
    secret = "sk-proj-Tq8vXz2LmN4pR6sU8wY0aC2eG4iK6mO8"
    head = 8192 - len(TRUNCATION_MARK)
    for start in (head - 12, head - 1024 - 12):  # the key across the cut, or 1 KiB before it
        text = separator * start + secret + separator * 9000
        out = masker.mask_text(text)
        assert out.endswith(TRUNCATION_MARK)
        assert "sk-proj" not in out and secret[:12] not in out
    assert secret not in masker.mask_text(separator * 10 + secret + separator * 9000)


def test_ten_megabyte_attribute_is_cut_to_the_limit() -> None:
    provider, processor, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("blob", "lorem ipsum " * 900_000)
    (out,) = exporter.get_finished_spans()
    assert len(out.attributes["blob"]) <= DEFAULT_MAX_VALUE_LENGTH
    assert processor.stats()["values_truncated"] == 1


def test_json_metadata_past_the_depth_cap_is_replaced() -> None:
    provider, processor, exporter = _pipeline()
    deep: object = "token=abc"
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = {"level": deep}
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("aura.meta_json.deep", orjson.dumps(deep).decode())
    (out,) = exporter.get_finished_spans()
    assert out.attributes["aura.meta_json.deep"] == REDACTED
    assert processor.stats()["values_failed_closed"] == 1


class _ExplodingStr(str):
    """A string whose encoding fails: stands in for any bug inside masking one value."""

    def encode(self, *args, **kwargs):  # type: ignore[override]
        raise RuntimeError("boom")


def test_a_value_whose_masking_raises_is_replaced_not_passed_through() -> None:
    provider, processor, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("note", _ExplodingStr("key sk-1234567890abcdef"))
        span.set_attribute("other", "fine")
    (out,) = exporter.get_finished_spans()
    assert out.attributes["note"] == REDACTED
    assert out.attributes["other"] == "fine"
    assert processor.stats()["values_failed_closed"] == 1


class _BrokenSpan(ReadableSpan):
    @property
    def attributes(self):  # type: ignore[override]
        raise RuntimeError("corrupt span")


def test_a_span_that_cannot_be_masked_is_dropped_counted_and_never_raises(caplog) -> None:
    exporter = InMemorySpanExporter()
    processor = MaskingSpanProcessor(
        SimpleSpanProcessor(exporter), rules=MaskingRules(), mask_logs=False, background=False
    )
    with caplog.at_level(logging.ERROR, logger="aura_otel"):
        processor.on_end(_BrokenSpan(name="secret sk-1234567890abcdef", attributes={"a": "b"}))
    assert exporter.get_finished_spans() == ()
    assert processor.stats()["spans_dropped"] == 1
    assert "dropped" in caplog.text


class _FailingTarget(SpanProcessor):
    def on_end(self, span) -> None:
        raise RuntimeError("exporter bug")


def test_a_failing_target_does_not_stop_the_others() -> None:
    exporter = InMemorySpanExporter()
    processor = MaskingSpanProcessor(
        _FailingTarget(),
        SimpleSpanProcessor(exporter),
        rules=MaskingRules(),
        mask_logs=False,
        background=False,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert len(exporter.get_finished_spans()) == 1
    assert processor.stats()["target_errors"] == 1


# -- the span processor ------------------------------------------------------------------------------
def test_targets_receive_only_masked_copies_with_every_location_masked() -> None:
    resource = Resource(
        {"service.name": "studio", "process.command_args": ("run", "--api-key=abcdef123456")}
    )
    provider, _, exporter = _pipeline(resource=resource)
    tracer = provider.get_tracer("t")
    key = "sk-proj-AbCdEf0123456789_GhIjKl"
    with tracer.start_as_current_span("linked") as other:
        pass
    link = trace_api.Link(other.get_span_context(), {"why": f"retry of {key}"})
    with tracer.start_as_current_span(f"call {key}", links=[link]) as span:
        span.set_attribute("aura.meta.list", ["ok", f"x {key}"])
        span.add_event(f"event {key}", {"detail": key})
        try:
            raise ValueError(f"provider said {key}")
        except ValueError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"failed with {key}"))
        span.set_attribute("late", key)  # set long after on_start
    out = exporter.get_finished_spans()[-1]
    assert isinstance(out, MaskedSpan)
    blob = repr(
        (
            out.name,
            dict(out.attributes),
            [(e.name, dict(e.attributes)) for e in out.events],
            [dict(link.attributes) for link in out.links],
            out.status.description,
            dict(out.resource.attributes),
        )
    )
    assert key not in blob and "abcdef123456" not in blob
    assert out.name == "call [REDACTED]"
    assert out.attributes["aura.meta.list"] == ("ok", "x [REDACTED]")
    assert out.attributes["late"] == REDACTED
    exception = out.events[1].attributes
    assert exception["exception.message"] == "provider said [REDACTED]"
    assert key not in exception["exception.stacktrace"]
    assert out.resource.attributes["process.command_args"] == ("run", "--api-key=[REDACTED]")
    assert out.resource.attributes["service.name"] == "studio"
    # what is not content is preserved
    assert out.context == span.get_span_context()
    assert out.status.status_code is StatusCode.ERROR
    assert out.links[0].context == other.get_span_context()


def test_clean_span_reaches_targets_unchanged() -> None:
    provider, processor, exporter = _pipeline()
    tracer = provider.get_tracer("scope", "1.2.3")
    with tracer.start_as_current_span("aura.job") as parent:
        with tracer.start_as_current_span(
            "aura.stage.script", kind=trace_api.SpanKind.CLIENT
        ) as span:
            span.set_attributes({"aura.stage": "script", "gen_ai.usage.input_tokens": 12})
            span.add_event("done", {"n": 1})
    child = exporter.get_finished_spans()[0]
    # nothing to mask: the SDK's own read-only snapshot goes on (never the live, mutable span)
    assert isinstance(child, ReadableSpan) and not isinstance(child, trace_api.Span)
    assert child.name == "aura.stage.script"
    assert child.kind is trace_api.SpanKind.CLIENT
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.context == span.get_span_context()
    assert (
        child.instrumentation_scope.name == "scope"
        and child.instrumentation_scope.version == "1.2.3"
    )
    assert child.start_time == span.start_time and child.end_time == span.end_time
    assert dict(child.attributes) == {"aura.stage": "script", "gen_ai.usage.input_tokens": 12}
    assert child.events[0].name == "done"
    assert processor.stats()["spans_changed"] == 0


def test_strings_remembered_clean_never_let_a_secret_through() -> None:
    # Masking remembers short strings it found clean; every span carries the same clean
    # values, and each secret arrives beside them: alone, in an event, after being seen clean
    # in part, and twice (a secret is never remembered).
    provider, _, exporter = _pipeline()
    tracer = provider.get_tracer("scope")
    clean = {"gen_ai.request.model": "gpt-4o-mini", "aura.result.message": "Script generated"}
    picked = SECRETS[:: max(1, len(SECRETS) // 25)]
    for secret in picked:
        for _ in range(2):
            with tracer.start_as_current_span("aura.stage.script", attributes=clean):
                pass
            with tracer.start_as_current_span("aura.stage.script", attributes=clean) as span:
                span.set_attribute("aura.meta.note", secret.text)
                span.add_event("note", {"text": secret.text, "model": "gpt-4o-mini"})
    spans = exporter.get_finished_spans()
    assert len(spans) == 4 * len(picked)
    for span, secret in zip(spans[1::2], [s for s in picked for _ in range(2)], strict=True):
        texts = [str(v) for v in span.attributes.values()]
        texts += [str(v) for event in span.events for v in event.attributes.values()]
        for needle in secret.needles:
            assert not any(needle in text for text in texts), (secret.rule, needle)
    assert all(dict(span.attributes) == clean for span in spans[::2])


def test_dropped_counts_survive_the_copy() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    provider.add_span_processor(
        MaskingSpanProcessor(
            SimpleSpanProcessor(exporter), rules=MaskingRules(), mask_logs=False, background=False
        )
    )
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attributes({"a": "1", "b": "2", "c": "3", "api_key": "x"})
    (out,) = exporter.get_finished_spans()
    assert out.dropped_attributes == 2


def test_on_start_is_not_forwarded_to_targets() -> None:
    seen: list[str] = []

    class Recorder(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            seen.append("start")

        def on_end(self, span) -> None:
            seen.append("end")

    provider = TracerProvider()
    provider.add_span_processor(
        MaskingSpanProcessor(Recorder(), rules=MaskingRules(), mask_logs=False, background=False)
    )
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert seen == ["end"]


def test_masking_runs_off_the_application_thread_and_flush_delivers_everything() -> None:
    """The application returns from every span while the masking worker is held: proof that
    the work is not done on its thread, whatever the scheduler does. Then flush delivers all."""
    exporter = InMemorySpanExporter()
    app = threading.get_ident()
    ran_on_app_thread: list[str] = []
    release = threading.Event()

    class Held(SpanProcessor):
        def on_end(self, span) -> None:
            if threading.get_ident() == app:
                ran_on_app_thread.append(span.name)  # masking inline: what must not happen
            else:
                release.wait(60)  # the worker waits here until the application is done

    processor = MaskingSpanProcessor(
        Held(), SimpleSpanProcessor(exporter), rules=MaskingRules(), mask_logs=False
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(200):  # fewer than the queue holds: nothing falls back to inline masking
        with tracer.start_as_current_span(f"s{i}") as span:
            span.set_attribute("note", "token=abc123")
    assert ran_on_app_thread == []
    assert exporter.get_finished_spans() == ()  # the held worker has delivered nothing yet
    release.set()
    assert processor.force_flush(10_000)
    spans = exporter.get_finished_spans()
    assert len(spans) == 200
    assert {s.attributes["note"] for s in spans} == {"token=[REDACTED]"}
    provider.shutdown()
    assert processor.stats()["spans_dropped"] == 0
    assert processor.stats()["spans_masked_inline"] == 0


def test_a_full_masking_queue_masks_in_the_caller_instead_of_losing_or_growing() -> None:
    exporter = InMemorySpanExporter()
    gate = threading.Event()

    class Slow(SpanProcessor):
        def on_end(self, span) -> None:
            if threading.current_thread().name == "aura-otel-masking":
                gate.wait(10)  # the worker is stuck: the queue fills up

    processor = MaskingSpanProcessor(
        Slow(),
        SimpleSpanProcessor(exporter),
        rules=MaskingRules(),
        mask_logs=False,
        max_queue_size=5,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(300):
        with tracer.start_as_current_span(f"s{i}") as span:
            span.set_attribute("note", "sk-1234567890abcdef")
    inline = processor.stats()["spans_masked_inline"]
    assert inline > 0
    gate.set()
    assert processor.force_flush(10_000)
    spans = exporter.get_finished_spans()
    assert len(spans) == 300  # nothing lost
    assert {s.attributes["note"] for s in spans} == {REDACTED}
    provider.shutdown()
    with pytest.raises(ConfigurationError):
        MaskingSpanProcessor(max_queue_size=0, rules=MaskingRules(), mask_logs=False)


def test_exporters_are_wrapped_and_flush_and_shutdown_fan_out() -> None:
    exporter = InMemorySpanExporter()
    processor = MaskingSpanProcessor(exporter, rules=MaskingRules(), mask_logs=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("token=abc123"):
        pass
    assert processor.force_flush(5000)
    (out,) = exporter.get_finished_spans()
    assert out.name == "token=[REDACTED]"
    processor.shutdown()
    with pytest.raises(ConfigurationError):
        MaskingSpanProcessor(object(), rules=MaskingRules(), mask_logs=False)  # type: ignore[arg-type]


def test_resource_is_masked_once_per_resource_object() -> None:
    resource = Resource({"deployment.db": "postgres://app:Sup3rS3cret@db/x"})
    provider, _, exporter = _pipeline(resource=resource)
    tracer = provider.get_tracer("t")
    for _ in range(3):
        with tracer.start_as_current_span("s"):
            pass
    spans = exporter.get_finished_spans()
    assert spans[0].resource.attributes["deployment.db"] == "postgres://[REDACTED]@db/x"
    assert spans[0].resource is spans[1].resource is spans[2].resource


def test_json_metadata_is_masked_recursively_and_escapes_do_not_hide_secrets() -> None:
    provider, _, exporter = _pipeline()
    doc = {
        "headers": {"Authorization": "Bearer abcdef0123456789", "X-Trace": "ok"},
        "items": [{"password": "p1"}, "mail a.b@example.com", {"nested": ["sk-1234567890abcdef"]}],
        "max_tokens": 10,
        "sk-1234567890abcdef": "key as key",
    }
    escaped = '{"note": "sk-\\u0031234567890abcdef"}'  # the JSON escape hides nothing
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("aura.meta_json.req", orjson.dumps(doc).decode())
        span.set_attribute("aura.meta_json.esc", escaped)
        span.set_attribute("aura.meta_json.bad", "{not json token=abc}")
        span.set_attribute("aura.meta_json.clean", '{"a": 1, "b": "c"}')
    (out,) = exporter.get_finished_spans()
    assert orjson.loads(out.attributes["aura.meta_json.req"]) == {
        "headers": {"Authorization": REDACTED, "X-Trace": "ok"},
        "items": [{"password": REDACTED}, f"mail {REDACTED}", {"nested": [REDACTED]}],
        "max_tokens": 10,
        REDACTED: "key as key",
    }
    assert orjson.loads(out.attributes["aura.meta_json.esc"]) == {"note": REDACTED}
    assert (
        out.attributes["aura.meta_json.bad"] == "{not json token=[REDACTED]"
    )  # a bare value runs to white space
    assert out.attributes["aura.meta_json.clean"] == '{"a": 1, "b": "c"}'  # untouched byte for byte


def test_json_metadata_numbers_are_masked_as_the_same_text_would_be() -> None:
    # A card number written as a JSON number: the same text under any other key is masked,
    # and decoding the metadata must not hand the number back untouched.
    provider, _, exporter = _pipeline()
    text = '{"card": 4111111111111111, "n": 4, "order": 1764361234}'
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("aura.meta_json.payment", text)
        span.set_attribute("payment", text)
    (out,) = exporter.get_finished_spans()
    assert "4111111111111111" not in out.attributes["payment"]
    assert orjson.loads(out.attributes["aura.meta_json.payment"]) == {
        "card": REDACTED,
        "n": 4,
        "order": 1764361234,
    }


def test_metadata_keys_holding_secrets_are_masked() -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("aura.meta.sk-1234567890abcdef", "v")
    (out,) = exporter.get_finished_spans()
    assert dict(out.attributes) == {"aura.meta.[REDACTED]": "v"}


# -- logs --------------------------------------------------------------------------------------------
def test_log_filter_masks_message_arguments_and_tracebacks() -> None:
    log = logging.getLogger("aura_otel.test_masking")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addFilter(MaskingLogFilter(Masker(MaskingRules())))
    try:
        log.info("export to %s failed", "https://user:hunter2hunter2@collector:4318")
        try:
            raise RuntimeError("401 for token=abcdef123456")
        except RuntimeError:
            log.exception("call failed with key %s", "sk-1234567890abcdef")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2hunter2" not in text and "abcdef123456" not in text
    assert "sk-1234567890abcdef" not in text
    assert "https://[REDACTED]@collector:4318" in text
    assert "RuntimeError: 401 for token=[REDACTED]" in text  # the traceback is still there


def _records_of(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    log = logging.getLogger(name)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log, stream, handler


def test_log_filter_is_installed_on_the_aura_otel_logger_by_default() -> None:
    root = logging.getLogger("aura_otel")
    assert any(isinstance(f, MaskingLogFilter) for f in root.filters)
    new = install_log_filter(Masker(MaskingRules(extra_patterns=("ACME-[0-9]{6}",))))
    try:
        assert new in root.filters
        assert sum(isinstance(f, MaskingLogFilter) for f in root.filters) == 1
        log, stream, handler = _records_of("aura_otel.some_child")
        try:
            log.info("id %s", "ACME-123456")
        finally:
            log.removeHandler(handler)
        assert stream.getvalue() == "id [REDACTED]\n"
    finally:
        install_log_filter()  # restore the default rules for other tests


def test_loggers_created_after_configure_are_masked_too(tmp_path) -> None:
    """aura_otel.server is created when ``aura-otel serve`` starts, long after import: its
    records (message, arguments, traceback) are masked although its logger did not exist
    when the filter was installed."""
    import aura_otel

    telemetry = aura_otel.configure(tmp_path, set_global=False)
    try:
        name = "aura_otel.created_after_configure_" + str(id(telemetry))
        assert name not in logging.Logger.manager.loggerDict
        log, stream, handler = _records_of(name)
        log.propagate = False
        try:
            log.warning("upstream %s refused", "https://bob:hunter2hunter2@db:5432")
            try:
                raise ValueError("bad key sk-1234567890abcdef1234")
            except ValueError:
                log.exception("failed")
        finally:
            log.removeHandler(handler)
    finally:
        telemetry.shutdown()
    text = stream.getvalue()
    assert "hunter2hunter2" not in text and "sk-1234567890abcdef1234" not in text
    assert "https://[REDACTED]@db:5432" in text
    assert "ValueError: bad key [REDACTED]" in text


def test_importing_the_package_compiles_no_re2_program() -> None:
    """The default log filter and configure() share one compilation, made on first use."""
    code = """
import re2
compiled = []
original = re2.compile
def counting(*args, **kwargs):
    compiled.append(args[0])
    return original(*args, **kwargs)
re2.compile = counting
import aura_otel, aura_otel.masking
assert compiled == [], compiled
from aura_otel.masking import Masker, MaskingRules
first = Masker(MaskingRules())
after_first = len(compiled)
assert after_first > 0
Masker(MaskingRules())
import logging
logging.getLogger("aura_otel.x").warning("token=abcdef123456")
assert len(compiled) == after_first, (after_first, len(compiled))
print("ok")
"""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
