"""Randomly generated jobs: the receiver's file is byte for byte the in-process file.

Each example is a job built with plain OpenTelemetry API calls (stages with usage, costs,
metadata of every type, GenAI child spans, HTTP-like link spans, errors and exceptions, a
failing root) on one real TracerProvider whose spans go both into the in-process pipeline and,
through real OTLP exporters (HTTP and gRPC), to one receiver.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import Status, StatusCode

from aura_otel import conventions as c
from aura_otel.schema import STAGES

from .support import otlp_exporter, running_receiver, telemetry_bytes, two_ways

_ids = itertools.count()

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
meta_value = st.one_of(
    text,
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.lists(text, max_size=3),
)
child = st.fixed_dictionaries(
    {
        "provider": st.sampled_from(["openai", "anthropic", "mistral", "nobody-knows"]),
        "model": st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "unknown-model"]),
        "tin": st.integers(0, 100_000),
        "tout": st.integers(0, 10_000),
        "cost": st.none() | st.floats(0, 5, allow_nan=False).map(lambda v: round(v, 6)),
    }
)
stage = st.fixed_dictionaries(
    {
        "stage": st.sampled_from(STAGES),
        "provider": st.none()
        | st.sampled_from(["openai", "elevenlabs", "stability", "ffmpeg", "local"]),
        "model": st.none()
        | st.sampled_from(["gpt-4o", "eleven_multilingual_v2", "stable-image-core", "libx264"]),
        "tokens": st.none() | st.tuples(st.integers(0, 50_000), st.integers(0, 5_000)),
        "characters": st.none() | st.integers(0, 20_000),
        "images": st.none() | st.integers(0, 4),
        "seconds": st.none() | st.floats(0, 600, allow_nan=False).map(lambda v: round(v, 3)),
        "cost": st.none() | st.floats(0, 10, allow_nan=False).map(lambda v: round(v, 6)),
        "cache_hit": st.none() | st.booleans(),
        "retries": st.none() | st.integers(0, 5),
        "scene": st.none() | st.integers(0, 20),
        "status": st.none() | st.sampled_from(["ok", "warn", "error"]),
        "message": st.none() | text,
        "error": st.booleans(),
        "meta": st.dictionaries(
            st.sampled_from(["a", "b", "topic", "voice", "fps"]), meta_value, max_size=3
        ),
        "children": st.lists(child, max_size=2),
        "link_span": st.booleans(),
    }
)
job = st.fixed_dictionaries(
    {
        "stages": st.lists(stage, min_size=0, max_size=6),
        "root_error": st.booleans(),
        "project": st.none() | text,
    }
)


def build_job(tracer: Any, job_id: str, plan: dict[str, Any]) -> None:
    attrs = {c.JOB_ID: job_id, c.CORRELATION_ID: f"corr-{job_id}"}
    if plan["project"]:
        attrs[c.PROJECT_ID] = plan["project"]
    with tracer.start_as_current_span(
        c.JOB_SPAN_NAME, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as root:
        for spec in plan["stages"]:
            a: dict[str, Any] = {c.STAGE: spec["stage"]}
            for key, name in (
                (c.GEN_AI_PROVIDER_NAME, "provider"),
                (c.GEN_AI_REQUEST_MODEL, "model"),
                (c.USAGE_CHARACTERS, "characters"),
                (c.USAGE_IMAGES, "images"),
                (c.USAGE_OUTPUT_SECONDS, "seconds"),
                (c.CACHE_HIT, "cache_hit"),
                (c.RETRY_COUNT, "retries"),
                (c.SCENE_INDEX, "scene"),
                (c.RESULT_STATUS, "status"),
                (c.RESULT_MESSAGE, "message"),
            ):
                if spec[name] is not None:
                    a[key] = spec[name]
            if spec["tokens"] is not None:
                a[c.GEN_AI_USAGE_INPUT_TOKENS], a[c.GEN_AI_USAGE_OUTPUT_TOKENS] = spec["tokens"]
            if spec["cost"] is not None:
                a[c.COST_KEYS[0]] = spec["cost"]
            for key, value in spec["meta"].items():
                a[f"aura.meta.{key}"] = value
            with tracer.start_as_current_span(f"aura.stage.{spec['stage']}", attributes=a) as span:
                if spec["link_span"]:
                    with tracer.start_as_current_span(
                        "HTTP POST", attributes={"http.method": "POST"}
                    ):
                        pass
                for ch in spec["children"]:
                    ca = {
                        c.GEN_AI_PROVIDER_NAME: ch["provider"],
                        c.GEN_AI_REQUEST_MODEL: ch["model"],
                        c.GEN_AI_USAGE_INPUT_TOKENS: ch["tin"],
                        c.GEN_AI_USAGE_OUTPUT_TOKENS: ch["tout"],
                    }
                    if ch["cost"] is not None:
                        ca[c.COST_KEYS[0]] = ch["cost"]
                    with tracer.start_as_current_span(f"chat {ch['model']}", attributes=ca):
                        pass
                if spec["error"]:
                    span.record_exception(TimeoutError("provider timed out"))
                    span.set_status(Status(StatusCode.ERROR, "provider timed out"))
        if plan["root_error"]:
            root.record_exception(RuntimeError("job failed"))
            root.set_status(Status(StatusCode.ERROR, "job failed"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("random")
    with running_receiver(base / "received") as receiver:
        senders = {
            p: two_ways(base / f"local-{p}", otlp_exporter(receiver, p)) for p in ("http", "grpc")
        }
        yield receiver, senders, base
        for sender in senders.values():
            sender.shutdown()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=job, protocol=st.sampled_from(["http", "grpc"]))
def test_random_jobs_are_byte_identical(setup, plan, protocol):
    receiver, senders, base = setup
    sender = senders[protocol]
    job_id = f"rnd-{next(_ids)}"
    build_job(sender.provider.get_tracer("tests.random"), job_id, plan)
    sender.flush()
    receiver.flush()
    local = telemetry_bytes(sender.local_dir, job_id)
    assert telemetry_bytes(base / "received", job_id) == local
