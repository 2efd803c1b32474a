"""job()/stage() helpers: concurrency, exceptions, decorators, propagation, real GenAI spans."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aura_otel import (
    JobValidationError,
    bind_context,
    current_stage,
    inject_context,
    job,
    stage,
)

from .conftest import Pipeline, make_pipeline

STAGES = ["brief", "plan", "script", "ssml", "tts", "visuals", "render", "post"]


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Pipeline, InMemorySpanExporter]]:
    pipeline = make_pipeline(tmp_path / "jobs")
    memory = InMemorySpanExporter()
    pipeline.provider.add_span_processor(SimpleSpanProcessor(memory))
    yield pipeline, memory
    pipeline.provider.shutdown()


def check_parentage(memory: InMemorySpanExporter, job_ids: list[str]) -> None:
    spans = memory.get_finished_spans()
    roots = {s.attributes["aura.job.id"]: s for s in spans if s.name == "aura.job"}
    assert sorted(roots) == sorted(job_ids)
    for span in spans:
        if span.name.startswith("aura.stage."):
            root = roots[span.attributes["aura.job.id"]]
            assert span.parent is not None and span.parent.span_id == root.context.span_id
            assert span.context.trace_id == root.context.trace_id


def test_thread_pool_50_jobs_x_8_stages(traced) -> None:
    pipeline, memory = traced

    def one(job_id: str) -> None:
        with job(job_id, tracer_provider=pipeline.provider):
            for name in STAGES:
                with stage(name, provider=job_id):
                    pass

    ids = [f"pool-{i}" for i in range(50)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, ids))
    pipeline.flush()
    for job_id in ids:
        doc = pipeline.read(job_id)
        assert [r["stage"] for r in doc["records"]] == STAGES
        assert {r["provider"] for r in doc["records"]} == {job_id}
    check_parentage(memory, ids)


def test_stages_submitted_to_a_thread_pool_stay_in_their_job(traced) -> None:
    """Fan-out inside one job: the pool's threads must see the job's context."""
    pipeline, memory = traced
    from aura_otel.pipeline import _propagate_into_threads

    _propagate_into_threads()  # what configure() does by default

    def scene(i: int) -> None:
        with stage("visuals", scene_index=i):
            pass

    ids = [f"fan-{i}" for i in range(5)]
    for job_id in ids:
        with job(job_id, tracer_provider=pipeline.provider):
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(scene, range(6)))
            # bind_context works without the instrumentation too
            t = threading.Thread(target=bind_context(lambda: scene(99)))
            t.start()
            t.join()
    pipeline.flush()
    for job_id in ids:
        records = pipeline.read(job_id)["records"]
        assert sorted(r["scene_index"] for r in records) == [0, 1, 2, 3, 4, 5, 99]
    check_parentage(memory, ids)


def test_asyncio_50_concurrent_jobs_with_task_group_fan_out(traced) -> None:
    pipeline, memory = traced

    async def one(job_id: str) -> None:
        async with job(job_id, tracer_provider=pipeline.provider):
            for name in STAGES[:5]:
                async with stage(name):
                    await asyncio.sleep(0.001)

            async def scene(i: int) -> None:
                async with stage("visuals", scene_index=i):
                    await asyncio.sleep(0.001)

            async with asyncio.TaskGroup() as tg:
                for i in range(3):
                    tg.create_task(scene(i))
            for name in STAGES[6:]:
                async with stage(name):
                    await asyncio.sleep(0)

    ids = [f"aio-{i}" for i in range(50)]

    async def main() -> None:
        await asyncio.gather(*(one(j) for j in ids))

    asyncio.run(main())
    pipeline.flush()
    for job_id in ids:
        records = pipeline.read(job_id)["records"]
        assert [r["stage"] for r in records if r["stage"] != "visuals"] == STAGES[:5] + STAGES[6:]
        assert sorted(r.get("scene_index") for r in records if r["stage"] == "visuals") == [0, 1, 2]
        assert {r["job_id"] for r in records} == {job_id}
    check_parentage(memory, ids)


class Timeout(Exception):
    error_code = "TIMEOUT"


def test_exception_in_stage_is_recorded_and_reraised_unchanged(traced) -> None:
    pipeline, _ = traced
    boom = ValueError("bad frame 7")
    with pytest.raises(ValueError) as caught:
        with job("exc", tracer_provider=pipeline.provider):
            with stage("render"):
                raise boom
    assert caught.value is boom
    with pytest.raises(Timeout):
        with job("exc-code", tracer_provider=pipeline.provider):
            with stage("visuals"):
                raise Timeout("image generation timed out")
    with pytest.raises(RuntimeError):
        with job("exc-explicit", tracer_provider=pipeline.provider):
            with stage("tts", error_code="PROVIDER_DOWN"):
                raise RuntimeError("503 from provider")
    pipeline.flush()
    rec = pipeline.read("exc")["records"]
    assert len(rec) == 1  # the stage carries the error: no extra post record
    assert (rec[0]["result_status"], rec[0]["error_code"], rec[0]["message"]) == (
        "error",
        "ValueError",
        "bad frame 7",
    )
    rec = pipeline.read("exc-code")["records"][0]
    assert (rec["error_code"], rec["message"]) == ("TIMEOUT", "image generation timed out")
    assert pipeline.read("exc-explicit")["records"][0]["error_code"] == "PROVIDER_DOWN"


def _real_timeouts() -> list[BaseException]:
    """Timeouts as the studio's HTTP and LLM clients really raise them."""

    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return [
        TimeoutError("provider took too long"),
        TimeoutError(),
        TimeoutError("timed out"),
        httpx.ReadTimeout("read timed out", request=request),
        httpx.ConnectTimeout("connect timed out", request=request),
        openai.APITimeoutError(request=request),
    ]


def test_timeouts_of_every_common_client_record_the_legacy_timeout_code(traced) -> None:
    pipeline, _ = traced
    timeouts = _real_timeouts()
    for i, exc in enumerate(timeouts):
        with pytest.raises(type(exc)):
            with job(f"timeout-{i}", tracer_provider=pipeline.provider):
                with stage("script"):
                    raise exc
    with pytest.raises(LookupError):  # not a timeout: keeps its class name
        with job("not-a-timeout", tracer_provider=pipeline.provider):
            with stage("script"):
                raise LookupError("no such voice")
    pipeline.flush()
    codes = [
        pipeline.read(f"timeout-{i}")["records"][0]["error_code"] for i in range(len(timeouts))
    ]
    assert codes == ["TIMEOUT"] * len(timeouts)
    assert pipeline.read("not-a-timeout")["records"][0]["error_code"] == "LookupError"


def test_keyboard_interrupt_and_cancellation_are_errors_and_propagate(traced) -> None:
    pipeline, _ = traced
    with pytest.raises(KeyboardInterrupt):
        with job("kbd", tracer_provider=pipeline.provider):
            with stage("render"):
                raise KeyboardInterrupt

    async def cancelled() -> None:
        async with job("cancel", tracer_provider=pipeline.provider):
            async with stage("tts"):
                task = asyncio.current_task()
                assert task is not None
                asyncio.get_running_loop().call_soon(task.cancel)
                await asyncio.sleep(10)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    pipeline.flush()
    assert pipeline.read("kbd")["records"][0]["error_code"] == "KeyboardInterrupt"
    rec = pipeline.read("cancel")["records"][0]
    assert (rec["result_status"], rec["error_code"]) == ("error", "CancelledError")


def test_job_failures_outside_stages_get_the_legacy_post_record(traced) -> None:
    pipeline, _ = traced
    with pytest.raises(JobValidationError):
        with job("invalid", tracer_provider=pipeline.provider):
            raise JobValidationError("topic must not be empty")
    with pytest.raises(OSError):
        with job("crashed", tracer_provider=pipeline.provider):
            with stage("brief"):
                pass
            raise OSError("disk full")
    with job("soft", tracer_provider=pipeline.provider) as handle:
        handle.fail_validation("duration over limit")
    pipeline.flush()
    for job_id, code, message in (
        ("invalid", "VALIDATION_ERROR", "topic must not be empty"),
        ("crashed", "GENERATION_ERROR", "disk full"),
        ("soft", "VALIDATION_ERROR", "duration over limit"),
    ):
        last = pipeline.read(job_id)["records"][-1]
        assert (last["stage"], last["result_status"], last["error_code"], last["message"]) == (
            "post",
            "error",
            code,
            message,
        )


def test_decorators_on_sync_and_async_functions(traced) -> None:
    pipeline, _ = traced

    @stage("script", provider="openai", model="gpt-4o-mini")
    def write_script(topic: str) -> str:
        handle = current_stage()
        assert handle is not None
        handle.record_usage(tokens_in=10, tokens_out=len(topic))
        handle.add_retry()
        return topic.upper()

    @stage("tts", provider="elevenlabs")
    async def speak(text: str) -> int:
        handle = current_stage()
        assert handle is not None
        handle.record_usage(characters=len(text), output_seconds=1.5)
        handle.set_cache_hit()
        handle.warn("voice fell back to default")
        return len(text)

    @job("decorated", tracer_provider=pipeline.provider)
    def pipeline_fn() -> int:
        text = write_script("solar")
        return asyncio.run(speak(text))

    assert pipeline_fn() == 5
    assert pipeline_fn.__name__ == "pipeline_fn" and write_script.__name__ == "write_script"
    pipeline.flush()
    script, tts = pipeline.read("decorated")["records"]
    assert (script["tokens_in"], script["tokens_out"], script["retries"], script["model_id"]) == (
        10,
        5,
        1,
        "gpt-4o-mini",
    )
    assert (tts["cache_hit"], tts["result_status"], tts["message"]) == (
        True,
        "warn",
        "voice fell back to default",
    )
    # A cache hit paid no provider: free, and marked why.
    assert tts["metadata"] == {"characters": 5, "duration_seconds": 1.5, "pricing": "cache_hit"}
    assert tts["cost_estimate"] == 0


def test_third_party_spans_under_a_stage_carry_the_job_id(traced) -> None:
    pipeline, memory = traced
    other = pipeline.provider.get_tracer("some.http.client")
    with job(
        "stamped", correlation_id="corr-9", project_id="p-1", tracer_provider=pipeline.provider
    ):
        with stage("script"):
            with other.start_as_current_span("POST /v1/chat"):
                with other.start_as_current_span("dns"):
                    pass
    spans = {s.name: s for s in memory.get_finished_spans()}
    for name in ("POST /v1/chat", "dns", "aura.stage.script"):
        attrs = spans[name].attributes
        assert (attrs["aura.job.id"], attrs["aura.correlation.id"], attrs["aura.project.id"]) == (
            "stamped",
            "corr-9",
            "p-1",
        )


def test_stage_spans_use_current_genai_names(traced) -> None:
    pipeline, memory = traced
    with job("names", tracer_provider=pipeline.provider):
        with stage("script", provider="openai", model="gpt-4o") as s:
            s.record_usage(tokens_in=3, tokens_out=4, cached_input_tokens=1)
    attrs = next(s for s in memory.get_finished_spans() if s.name == "aura.stage.script").attributes
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (3, 4)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1
    assert attrs["aura.stage"] == "script"


def test_correlation_id_is_generated_when_absent(traced) -> None:
    pipeline, _ = traced
    with job("gen-corr", tracer_provider=pipeline.provider) as handle:
        with stage("brief"):
            pass
    pipeline.flush()
    doc = pipeline.read("gen-corr")
    assert doc["correlation_id"] == handle.correlation_id == doc["records"][0]["correlation_id"]
    assert len(handle.correlation_id) == 36


def test_a_job_id_that_is_no_string_writes_nothing_and_merges_no_jobs(
    traced, caplog: pytest.LogCaptureFixture
) -> None:
    """``str(None)`` is a valid id: jobs whose id is missing must not all share one file."""
    pipeline, _ = traced
    for job_id in [None, None, 12, b"bytes"]:
        with job(job_id, tracer_provider=pipeline.provider):  # type: ignore[arg-type]
            with stage("brief"):
                pass
    pipeline.flush()
    assert not pipeline.jobs_dir.exists() or list(pipeline.jobs_dir.iterdir()) == []
    assert pipeline.exporter.stats.snapshot()["spans_without_job"] == 8
    assert caplog.text.count("will not be written") == 4


def test_metadata_json_cannot_hold_is_written_representable_never_raised(traced) -> None:
    """Metadata is the host's runtime data (a dict keyed by scene number, a 128-bit id, a file
    name from ``os.fsdecode``): no value of it may raise into the stage it describes."""
    pipeline, _ = traced
    deep: list = []
    for _ in range(300):
        deep = [deep]
    odd = {
        "by_scene": {1: "a", 2: "b"},
        "ids": [2**70, "x"],
        "names": {"file": "bad-\udcff.wav"},
        "deep": deep,
    }
    with job("odd-metadata", tracer_provider=pipeline.provider, metadata={"keys": {None: 1}}):
        with stage("script", metadata={"scenes": {3: "c"}}) as s:
            s.set_metadata(**odd)
    pipeline.flush()
    meta = pipeline.read("odd-metadata")["records"][0]["metadata"]
    assert meta["by_scene"] == {"1": "a", "2": "b"} and meta["scenes"] == {"3": "c"}
    assert meta["ids"] == [str(2**70), "x"]
    assert meta["names"] == {"file": "bad-\ufffd.wav"}
    assert "deep" in meta


def test_continue_job_takes_byte_headers_and_never_raises_on_a_bad_carrier(traced) -> None:
    """Kafka and AMQP clients hand headers over as bytes, and a message may carry no context
    at all: the worker's own code must run either way."""
    from aura_otel import continue_job

    pipeline, _ = traced
    with job("carried", tracer_provider=pipeline.provider):
        headers = inject_context({})
    as_bytes = {key: value.encode() for key, value in headers.items()}
    with continue_job(as_bytes) as job_id:
        with stage("tts", tracer_provider=pipeline.provider):
            pass
    assert job_id == "carried"
    for bad in [None, {"traceparent": 7}, {"traceparent": b"\xff\xfe"}, [("a", "b")]]:
        with continue_job(bad) as job_id:  # type: ignore[arg-type]
            with stage("tts", tracer_provider=pipeline.provider):
                pass
        assert job_id is None
    pipeline.flush()
    assert [r["stage"] for r in pipeline.read("carried")["records"]] == ["tts"]


def test_an_id_holding_a_secret_is_not_propagated_in_baggage(traced) -> None:
    """The span replaces such an id whole; the baggage header, sent with every outgoing
    request, must not carry it either."""
    pipeline, _ = traced
    token = "ghp_aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz1234"
    with job("carried", correlation_id=f"corr {token}", tracer_provider=pipeline.provider):
        headers = inject_context({})
    assert "aB3dE5fG7hJ9kL1m" not in json.dumps(headers)
    assert "carried" in headers["baggage"]


def test_unknown_stage_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'editing'"):
        stage("editing")


WORKER = textwrap.dedent(
    """
    import json, sys
    import aura_otel
    from aura_otel import continue_job, stage
    telemetry = aura_otel.configure(sys.argv[1], service_name="tts-worker")
    headers = json.loads(sys.argv[2])
    with continue_job(headers):          # the one line a worker needs
        with stage("tts", provider="elevenlabs") as s:
            s.record_usage(characters=1200)
    telemetry.shutdown()
    """
)


def test_two_process_job_yields_one_file_with_all_stages(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "jobs")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with job("two-proc", tracer_provider=pipeline.provider) as handle:
        with stage("script"):
            pass
        headers = inject_context({})
        assert "traceparent" in headers and "two-proc" in headers["baggage"]
        subprocess.run(
            [sys.executable, str(script), str(tmp_path / "jobs"), json.dumps(headers)],
            check=True,
            timeout=60,
        )
        with stage("render"):
            pass
    pipeline.flush()
    doc = pipeline.read("two-proc")
    assert [r["stage"] for r in doc["records"]] == ["script", "tts", "render"]
    assert doc["records"][1]["metadata"] == {"characters": 1200}
    assert {r["correlation_id"] for r in doc["records"]} == {handle.correlation_id}
    assert doc["summary"]["total_operations"] == 3
    from aura_otel.exporter import job_trace_ids

    assert job_trace_ids(pipeline.exporter.store, "two-proc") == [handle.trace_id]
    pipeline.provider.shutdown()


class _FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length))
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body["model"] + "-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "A script about the sun."},
                }
            ],
            "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return None


def test_real_openai_client_instrumented_folds_into_its_stage(traced) -> None:
    pytest.importorskip("openai")
    from openai import OpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    pipeline, memory = traced
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.provider)
    try:
        client = OpenAI(
            base_url=f"http://127.0.0.1:{server.server_port}/v1",
            api_key="sk-test-not-real",
            max_retries=0,
        )
        with job("llm", tracer_provider=pipeline.provider):
            with stage("script"):
                for _ in range(2):
                    client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                    )
    finally:
        instrumentor.uninstrument()
        server.shutdown()
        server.server_close()
    pipeline.flush()
    llm_spans = [s for s in memory.get_finished_spans() if not s.name.startswith("aura.")]
    assert len(llm_spans) == 2 and all(s.attributes["aura.job.id"] == "llm" for s in llm_spans)
    (rec,) = pipeline.read("llm")["records"]
    assert (rec["stage"], rec["tokens_in"], rec["tokens_out"]) == ("script", 84, 34)
    assert rec["model_id"] == "gpt-4o-2024-08-06"
    assert rec["provider"] == "openai"


def test_set_result_with_an_unknown_status_leaves_the_result_and_never_raises(
    traced, caplog: pytest.LogCaptureFixture
) -> None:
    """ "Every setter never raises into the pipeline": a status that is not ok/warn/error is
    logged and left out; a valid call after it still counts."""
    pipeline, _ = traced
    with job("odd-result", tracer_provider=pipeline.provider):
        with stage("tts") as s:
            s.set_result("bogus", "half done")
        with stage("render") as s:
            s.set_result("bogus")
            s.set_result("WARN", "degraded")
    pipeline.flush()
    tts, render = pipeline.read("odd-result")["records"]
    assert tts["result_status"] == "ok" and tts.get("message") is None
    assert render["result_status"] == "warn" and render["message"] == "degraded"
    assert caplog.text.count("is not ok, warn or error") == 2


def _spans_by_name(memory: InMemorySpanExporter) -> dict[str, list]:
    named: dict[str, list] = {}
    for span in memory.get_finished_spans():
        named.setdefault(span.name, []).append(span)
    return named


def test_a_decorated_generator_is_one_stage_for_as_long_as_it_is_iterated(traced) -> None:
    """A streaming stage (TTS chunks): its span covers the iteration, what its body does is
    inside it, what the consumer does between chunks is not; a failure inside is the stage's
    error, a consumer stopping early is no failure."""
    pipeline, memory = traced
    tracer = pipeline.provider.get_tracer("test")

    @stage("tts")
    def chunks(n: int):
        for i in range(n):
            with tracer.start_as_current_span("synthesize"):
                pass
            reply = yield f"chunk-{i}"
            if reply == "boom":
                raise RuntimeError("voice lost")
        return "done"

    with job("streamed", tracer_provider=pipeline.provider):
        received = []
        for chunk in chunks(3):
            with tracer.start_as_current_span("consume"):
                received.append(chunk)
        stream = chunks(5)
        assert next(stream) == "chunk-0"
        stream.close()  # stopped early
        failing = chunks(5)
        next(failing)
        with pytest.raises(RuntimeError, match="voice lost"):
            failing.send("boom")
    pipeline.flush()
    assert received == ["chunk-0", "chunk-1", "chunk-2"]
    named = _spans_by_name(memory)
    first, _early, _failed = sorted(named["aura.stage.tts"], key=lambda s: s.start_time)
    synthesized = [s for s in named["synthesize"] if s.parent.span_id == first.context.span_id]
    assert len(synthesized) == 3
    assert all(s.parent.span_id != first.context.span_id for s in named["consume"])
    assert all(first.start_time <= s.start_time <= first.end_time for s in synthesized)
    records = pipeline.read("streamed")["records"]
    assert [r["result_status"] for r in records] == ["ok", "ok", "error"]
    assert records[2]["message"] == "voice lost"


def test_a_decorated_async_generator_is_one_stage_too(traced) -> None:
    pipeline, memory = traced
    tracer = pipeline.provider.get_tracer("test")

    @stage("visuals")
    async def frames(n: int):
        for i in range(n):
            with tracer.start_as_current_span("draw"):
                await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        with job("drawn", tracer_provider=pipeline.provider):
            out = []
            async for frame in frames(3):
                with tracer.start_as_current_span("show"):
                    out.append(frame)
            early = frames(4)
            await early.__anext__()
            await early.aclose()
            return out

    assert asyncio.run(main()) == [0, 1, 2]
    pipeline.flush()
    named = _spans_by_name(memory)
    whole, _early = sorted(named["aura.stage.visuals"], key=lambda s: s.start_time)
    assert sum(s.parent.span_id == whole.context.span_id for s in named["draw"]) == 3
    assert all(s.parent.span_id != whole.context.span_id for s in named["show"])
    assert [r["result_status"] for r in pipeline.read("drawn")["records"]] == ["ok", "ok"]
