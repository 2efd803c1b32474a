"""Issue 11's masking coverage: the reference token formats, PII beyond ASCII and US formats,
key words by segment, every string field of the OTLP span model, the benign corpus, and values
made representable so that one bad value never costs a span or its batch neighbours."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.exporter import RunTelemetryExporter
from aura_otel.masking import REDACTED, Masker, MaskingRules, MaskingSpanProcessor

from ..otlp_receivers import http_receiver
from .corpus import BENIGN
from .formats import _PREFIXED, DETECT_SECRETS, FORMATS, GITLEAKS
from .test_masking_e2e import _json_strings, _proto_strings, _Receiver, _run


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker(MaskingRules())


def _pipeline(rules: MaskingRules | None = None):
    exporter = InMemorySpanExporter()
    processor = MaskingSpanProcessor(
        SimpleSpanProcessor(exporter),
        rules=rules or MaskingRules(),
        mask_logs=False,
        background=False,
    )
    provider = TracerProvider(resource=Resource.get_empty(), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor, exporter


# -- 1. reference token formats ------------------------------------------------------------------
def test_the_table_covers_every_reference_rule() -> None:
    # gitleaks' default config/gitleaks.toml has 222 rule ids; detect-secrets 26 plugins with
    # a secret format (IPPublicDetector finds addresses, not secrets: see docs/masking.md).
    assert len(GITLEAKS) == 222
    assert len(DETECT_SECRETS) == 26
    assert all(secret and secret in text for text, secret in FORMATS.values())


@pytest.mark.parametrize("rule", sorted(FORMATS))
def test_each_reference_format_is_masked(masker: Masker, rule: str) -> None:
    text, secret = FORMATS[rule]
    masked = masker.mask_text(text)
    assert secret not in masked, masked
    assert REDACTED in masked


#: Escapes that text written as JSON, a repr or a URL puts right before a token: their last
#: character is a letter or digit, so no word boundary is left in front of the token.
ESCAPES = ["said:\\n", "a\\t", "row\\r", "k\\u00e9", "a=b%3D", "x%2B"]


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_token_right_after_an_escape_is_masked(masker: Masker, escape: str) -> None:
    leaked = [
        rule
        for rule, secret in _PREFIXED.items()
        if secret in masker.mask_text(f"{escape}{secret} (retrying)")
    ]
    assert leaked == []
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    assert jwt not in masker.mask_text(f"{escape}{jwt}")
    bearer = "Zx9QaB3dE5fG7hJ9kL1mN3pQ"
    assert bearer not in masker.mask_text(f"{escape}Bearer {bearer}")
    phrase = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9"
    assert phrase not in masker.mask_text(f"{escape}secret {phrase}")


def test_a_hex_key_after_0x_is_masked(masker: Masker) -> None:
    key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    assert key not in masker.mask_text(f"wallet key 0x{key} imported")
    assert masker.mask_text("the 0x1f flag and risk-assessment-document-v2") == (
        "the 0x1f flag and risk-assessment-document-v2"
    )


def test_every_reference_format_is_masked_on_both_sinks(tmp_path: Path) -> None:
    texts = [text for text, _ in FORMATS.values()]
    with _Receiver() as receiver:
        jobs_dir, processor, _, _ = _run(tmp_path, receiver, texts, texts[:60])
    assert processor.stats()["spans_dropped"] == 0
    v1_raw = b"".join(p.read_bytes() for p in jobs_dir.rglob("*") if p.is_file())
    v1_text = "\n".join(
        _json_strings(orjson.loads((jobs_dir / "job-e2e-0001" / "telemetry.json").read_bytes()))
    )
    proto_text = "\n".join(s for r in receiver.requests for s in _proto_strings(r))
    proto_raw = b"".join(receiver.bodies)
    leaks = [
        (rule, sink)
        for rule, (_, secret) in FORMATS.items()
        for sink, text, raw in (("v1", v1_text, v1_raw), ("otlp", proto_text, proto_raw))
        if secret in text or secret.encode() in raw
    ]
    assert leaks == []


# -- 2. PII beyond ASCII and US formats ----------------------------------------------------------
PII_POSITIVE = [
    ("email", "jürgen.müller@beispiel.de"),
    ("email", "用户@例子.广告"),
    ("email", "josé@xn--exmple-cua.com"),
    ("email", "maria%40example.com"),
    ("email", "first.last+tag@sub.example.co.uk"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("ssn", "123-45-6789"),
    ("ssn", "123 45 6789"),
    ("ssn", "social security number 123456789"),
    ("nino", "AB 12 34 56 C"),
    ("nino", "JG103759A"),
    ("card", "4111.1111.1111.1111"),
    ("card", "5555 5555 5555 4444"),
    ("phone", "(415) 215-0283"),
    ("phone", "415-215-0283"),
    ("phone", "0044 20 7946 0958"),
    ("phone", "020 7946 0958"),
    ("phone", "07700 900123"),
    ("phone", "+44 20 7946 0958"),
]
PII_NEGATIVE = [
    "GB82 WEST 1234 5698 7654 33",  # mod-97 fails
    "000-12-3456",
    "666-12-3456",
    "912-12-3456",
    "123-00-4567",
    "123-45-0000",  # SSN area rules
    "order 123456789",  # a compact 9-digit number without an SSN label
    "QQ 12 34 56 C",
    "GB 12 34 56 A",  # not allocated NINO prefixes
    "4111.1111.1111.1112",  # Luhn fails
    "(115) 215-0283",
    "415-115-0283",  # no such area code / exchange
    "thumbnail@2x.png",
]


@pytest.mark.parametrize(("category", "text"), PII_POSITIVE)
def test_pii_beyond_ascii_and_us_formats_is_masked(
    masker: Masker, category: str, text: str
) -> None:
    assert masker.mask_text(
        f"contact: {text}."
    ) == f"contact: {REDACTED}." or text not in masker.mask_text(text)
    assert masker.mask_text(text) != text


@pytest.mark.parametrize("text", PII_NEGATIVE)
def test_validity_checks_keep_look_alikes(masker: Masker, text: str) -> None:
    assert masker.mask_text(text) == text


@pytest.mark.parametrize("category", ["email", "iban", "ssn", "nino", "card", "phone"])
def test_each_pii_category_is_switchable_through_the_environment(category: str) -> None:
    examples = [t for cat, t in PII_POSITIVE if cat == category]
    others = ",".join(sorted({cat for cat, _ in PII_POSITIVE} - {category}))
    off = Masker(MaskingRules.from_env({c.ENV_MASK_PII: others}))
    on = Masker(MaskingRules.from_env({c.ENV_MASK_PII: category}))
    for text in examples:
        assert on.mask_text(text) != text
        assert off.mask_text(text) == text


# -- 3. key words by segment ---------------------------------------------------------------------
SENSITIVE_KEYS = [
    "pass",
    "passphrase",
    "pin",
    "otp",
    "auth",
    "hmac",
    "session_id",
    "sessionId",
    "JSESSIONID",
    "secretkey",
    "SECRETKEY",
    "accesskey",
    "authtoken",
    "authToken",
    "clientsecret",
    "clientSecret",
    "bearer",
    "SMTP_PASS",
    "PGPASSWORD",
    "DB_PWD",
    "MYSQL_ROOT_PASSWORD",
    "db.pass",
    "user-pin",
    "x-auth",
    "otp_code",
    "app.hmac",
    "client_id",
    "aws.access-id",
    "ssn",
]
BENIGN_KEYS = [
    "max_tokens",
    "keyframe_count",
    "pinned_model",
    "passport",
    "compass",
    "bypass_cache",
    "auth_method",
    "auth_type",
    "pin_mode",
    "pass_rate",
    "author",
    "tokenizer",
    "spinner",
    "gen_ai.usage.input_tokens",
    "keynote",
    "session",
    "session_count",
    "otp_enabled_count",
]


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_key_words_match_by_segment_in_any_case_style(key: str) -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(key, "innocuous-looking-value")
        span.set_attribute(f"aura.meta.{key}", "another-value")
    (out,) = exporter.get_finished_spans()
    assert out.attributes[key] == REDACTED
    assert out.attributes[f"aura.meta.{key}"] == REDACTED


@pytest.mark.parametrize("key", BENIGN_KEYS)
def test_benign_look_alike_keys_keep_their_values(key: str) -> None:
    provider, _, exporter = _pipeline()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute(key, "plain value")
    (out,) = exporter.get_finished_spans()
    assert out.attributes[key] == "plain value"


@pytest.mark.parametrize(
    "text",
    [
        "SMTP_PASS=hunter22",
        'config {"pass": "hunter22"}',
        "pin: hunter22",
        "export PGPASSWORD=hunter22",
        "x-auth-token: hunter22",
    ],
)
def test_key_words_apply_in_text_too(masker: Masker, text: str) -> None:
    assert "hunter22" not in masker.mask_text(text)


# -- 4. every string that leaves the process -----------------------------------------------------
SECRET = "sk-live9Xq2Lm7Rt4Vw1Zy8Kp3Hd6"


def _string_paths(
    descriptor: Descriptor, prefix: str = "", seen: tuple[str, ...] = ()
) -> Iterator[str]:
    """Every string field reachable from ``descriptor``, as a dotted path (a message type is
    not entered twice on one path: AnyValue nests)."""
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in seen
        ):
            yield from _string_paths(field.message_type, path + ".", (*seen, descriptor.full_name))


def _string_values(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:
            repeated = field.label == FieldDescriptor.LABEL_REPEATED
        for item in value if repeated else [value]:
            path = f"{prefix}{field.name}"
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _string_values(item, path + ".")
            elif field.type == FieldDescriptor.TYPE_STRING:
                yield _normal(path), item


def _normal(path: str) -> str:
    """AnyValue nesting (array_value.values.…) folds onto the first level, as in _string_paths."""
    parts = path.split(".")
    out: list[str] = []
    for part in parts:
        out.append(part)
        joined = ".".join(out)
        if joined.endswith("value.array_value.values.array_value.values"):
            out = out[:-2]
    return ".".join(out)


#: String fields the Python SDK has no way to fill: it produces no entity references, attribute
#: values cannot be key-value lists or nested arrays, and its OTLP encoder does not send a
#: link's tracestate (masked anyway).
UNREACHABLE = (
    "resource.entity_refs",
    "kvlist_value",
    "array_value.values.array_value",
    "links.trace_state",
)


def test_every_string_field_of_the_otlp_span_model_is_masked() -> None:
    expected = {
        p for p in _string_paths(ResourceSpans.DESCRIPTOR) if not any(u in p for u in UNREACHABLE)
    }
    with _Receiver() as receiver:
        resource = Resource({SECRET: SECRET, "list": [SECRET]}, schema_url=f"https://x/{SECRET}")
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        exporter = OTLPSpanExporter(endpoint=receiver.endpoint, timeout=10)
        provider.add_span_processor(
            MaskingSpanProcessor(
                SimpleSpanProcessor(exporter),
                mask_logs=False,
                rules=MaskingRules(),
                background=False,
            )
        )
        tracer = provider.get_tracer(
            f"scope {SECRET}",
            f"1.0 {SECRET}",
            schema_url=f"https://s/{SECRET}",
            attributes={SECRET: SECRET, "scope.list": [SECRET]},
        )
        parent = trace_api.SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=trace_api.TraceFlags(1),
            trace_state=trace_api.TraceState([("vendor", SECRET)]),
        )
        link = trace_api.Link(parent, {SECRET: SECRET, "link.list": [SECRET]})
        ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))
        with tracer.start_as_current_span(f"name {SECRET}", context=ctx, links=[link]) as span:
            span.set_attributes({SECRET: SECRET, "list": [SECRET, "x"]})
            span.add_event(f"event {SECRET}", {SECRET: SECRET, "event.list": [SECRET]})
            span.set_status(Status(StatusCode.ERROR, f"status {SECRET}"))
        provider.shutdown()  # SimpleSpanProcessor: the request was sent when the span ended
    (request,) = receiver.requests
    (resource_spans,) = request.resource_spans
    values = list(_string_values(resource_spans))
    seen = {path for path, _ in values}
    assert expected <= seen, f"a string field had nothing planted: {sorted(expected - seen)}"
    assert [(p, v) for p, v in values if SECRET in v] == []
    assert SECRET.encode() not in receiver.bodies[0]


# -- 5. false positives --------------------------------------------------------------------------
def test_benign_corpus_has_at_least_100_look_alikes_and_none_is_masked(masker: Masker) -> None:
    assert len(BENIGN) >= 100
    assert [b for b in BENIGN if masker.mask_text(b) != b] == []


# -- 7. values made representable ----------------------------------------------------------------
def test_a_surrogate_and_a_huge_integer_cost_nothing_in_a_batch_of_21_jobs(tmp_path: Path) -> None:
    """One span with a lone surrogate (what os.fsdecode gives for a non-UTF-8 file name) in
    every string and 2**70 in an attribute, exported over real OTLP/HTTP in one batch with 20
    other jobs' spans: all 21 arrive, and every job's v1 file is written."""
    bad = os.fsdecode(b"scene_\xff.png")
    with http_receiver() as (endpoint, received):
        otlp = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10),
            schedule_delay_millis=600_000,
            max_export_batch_size=512,
        )
        v1 = RunTelemetryExporter(tmp_path / "jobs", write_interval=0.05)
        processor = MaskingSpanProcessor(
            otlp, v1, rules=MaskingRules(), mask_logs=False, background=False
        )
        provider = TracerProvider(resource=Resource({"service.name": bad}), shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(f"scope {bad}")
        for i in range(21):
            job_id = f"job-batch-{i:02d}"
            name = f"aura.job {bad}" if i == 7 else c.JOB_SPAN_NAME
            with tracer.start_as_current_span(name, attributes={c.JOB_ID: job_id}) as span:
                if i == 7:
                    span.set_attributes(
                        {
                            "aura.meta.file": bad,
                            "aura.meta.big": 2**70,
                            bad: "key",
                            "aura.meta.list": [1, -(2**80)],
                        }
                    )
                    span.add_event(f"event {bad}", {"path": bad})
                    span.set_status(Status(StatusCode.ERROR, f"cannot open {bad}"))
        assert provider.force_flush(30_000)
        v1.force_flush()
        provider.shutdown()
        assert received.requests == 1  # one batch, all neighbours in it
        assert len(received.spans) == 21
        (odd,) = [s for s in received.spans if s.attributes.get(c.JOB_ID) == "job-batch-07"]
    assert odd.name == "aura.job scene_\ufffd.png"
    assert odd.attributes["aura.meta.big"] == str(2**70)
    assert odd.attributes["aura.meta.file"] == "scene_\ufffd.png"
    assert odd.attributes["aura.meta.list"] == ["1", str(-(2**80))]
    assert processor.stats()["spans_dropped"] == 0
    assert processor.stats()["values_made_representable"] >= 3
    written = sorted(p.parent.name for p in (tmp_path / "jobs").glob("*/telemetry.json"))
    assert written == [f"job-batch-{i:02d}" for i in range(21)]


class _Unreadable(tuple):
    """A value whose handling raises (its iteration fails)."""

    def __iter__(self):  # type: ignore[override]
        raise RuntimeError("unreadable")


def test_a_value_whose_handling_raises_costs_only_that_value() -> None:
    exporter = InMemorySpanExporter()
    processor = MaskingSpanProcessor(
        SimpleSpanProcessor(exporter), rules=MaskingRules(), mask_logs=False, background=False
    )
    context = trace_api.SpanContext(1, 2, is_remote=False, trace_flags=trace_api.TraceFlags(1))
    span = ReadableSpan(
        name="s",
        context=context,
        resource=Resource.get_empty(),
        attributes={"note": f"key {SECRET}", "bad": _Unreadable(), "fine": "hello"},
    )
    processor.on_end(span)
    (out,) = exporter.get_finished_spans()
    assert out.attributes["bad"] == REDACTED
    assert out.attributes["fine"] == "hello"
    assert SECRET not in out.attributes["note"]
    stats = processor.stats()
    assert stats["spans_dropped"] == 0 and stats["values_failed_closed"] == 1


# Any Unicode, lone surrogates (what os.fsdecode gives for bytes that are not UTF-8) drawn
# often on purpose, and integers on both sides of the signed 64-bit range.
_surrogate = st.characters(categories=["Cs"])
_any_text = st.one_of(
    st.text(st.characters(), max_size=40),
    st.tuples(st.text(max_size=10), _surrogate, st.text(max_size=10)).map("".join),
)
_integer = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=2**63, max_value=2**100),
    st.integers(min_value=-(2**100), max_value=-(2**63) - 1),
)
_scalar = st.one_of(
    _any_text, st.booleans(), _integer, st.floats(allow_nan=True, allow_infinity=True)
)
_value = st.one_of(_scalar, st.lists(_any_text, max_size=4), st.lists(_integer, max_size=4))


@pytest.fixture(scope="module")
def fuzz_sink():
    with http_receiver() as (endpoint, received):
        provider = TracerProvider(
            resource=Resource({"service.name": "fuzz"}), shutdown_on_exit=False
        )
        provider.add_span_processor(
            MaskingSpanProcessor(
                SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)),
                rules=MaskingRules(),
                mask_logs=False,
                background=False,
            )
        )
        yield provider, received
        provider.shutdown()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=_any_text,
    attributes=st.dictionaries(_any_text.filter(bool), _value, max_size=5),
    events=st.lists(
        st.tuples(_any_text, st.dictionaries(_any_text.filter(bool), _value, max_size=3)),
        max_size=3,
    ),
)
def test_fuzz_any_attribute_name_value_or_event_reaches_a_real_otlp_receiver(
    fuzz_sink, name, attributes, events
) -> None:
    provider, received = fuzz_sink
    before = len(received.spans)
    with provider.get_tracer("fuzz").start_as_current_span(name, attributes=attributes) as span:
        for event_name, event_attributes in events:
            span.add_event(event_name, event_attributes)
    # SimpleSpanProcessor exports as the span ends: the receiver has it (or never will)
    assert len(received.spans) == before + 1


def test_every_built_in_rule_has_a_positive_example(masker: Masker) -> None:
    """The reference table is keyed by gitleaks and detect-secrets ids; this checks the other
    way round: each rule of our own table matches at least one generated or corpus example
    (first, or at the same place as an earlier rule that also covers it)."""
    from .corpus import secrets

    scanner = masker._scanner
    examples = (
        [text for text, _ in FORMATS.values()]
        + [s.text for s in secrets()]
        + [text for _, text in PII_POSITIVE]
        + BENIGN
    )
    fired: set[str] = set()
    for text in examples:
        data = text.encode()
        pos = 0
        while (found := scanner._match(data, pos)) is not None:
            index, spans = found
            fired.add(scanner.rules[index].name)
            fired.update(
                scanner.rules[i].name for i, _ in scanner._others_at(data, spans[0][0], index)
            )
            pos = max(spans[0][1], spans[0][0] + 1)
    assert {rule.name for rule in scanner.rules} - fired == set()
