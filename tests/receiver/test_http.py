"""OTLP/HTTP answers, as the OTLP specification defines them, with a real receiver on 127.0.0.1.

Every refusal: a clear status and message, nothing written, and the receiver still serving.
"""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .support import (
    demo_job_spans,
    encode,
    journal_span_ids,
    otlp_json,
    running_receiver,
    telemetry,
    telemetry_bytes,
)

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def post(receiver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        receiver.url("http") + "/v1/traces", content=body, headers=headers, timeout=30
    )


def assert_still_serving(receiver, tmp_path, job_id: str = "after-1") -> None:
    response = post(receiver, encode(demo_job_spans(job_id)).SerializeToString(), PROTO)
    assert response.status_code == 200
    receiver.flush()
    assert telemetry(tmp_path / "jobs", job_id)["collection_ended_at"] is not None


def nothing_written(tmp_path) -> bool:
    jobs = tmp_path / "jobs"
    return not jobs.exists() or not [p for p in jobs.iterdir() if p.is_dir()]


@pytest.fixture
def receiver(tmp_path):
    with running_receiver(
        tmp_path / "jobs", grpc=None, max_request_bytes=64 * 1024, max_decompressed_bytes=256 * 1024
    ) as r:
        yield r


def test_protobuf_json_and_gzip_give_the_same_file(tmp_path, receiver):
    spans = demo_job_spans("same-1")
    ok = post(receiver, encode(spans).SerializeToString(), PROTO)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(ok.content)
    assert not answer.HasField("partial_success")
    receiver.flush()
    reference = telemetry_bytes(tmp_path / "jobs", "same-1")

    with running_receiver(tmp_path / "json", grpc=None) as other:
        as_json = post(other, otlp_json(spans), JSON)
        assert as_json.status_code == 200
        assert as_json.headers["content-type"] == "application/json"
        assert orjson.loads(as_json.content) == {}
        other.flush()
        assert telemetry_bytes(tmp_path / "json", "same-1") == reference

    with running_receiver(tmp_path / "gzip", grpc=None) as other:
        zipped = gzip.compress(otlp_json(spans))
        assert post(other, zipped, {**JSON, "Content-Encoding": "gzip"}).status_code == 200
        other.flush()
        assert telemetry_bytes(tmp_path / "gzip", "same-1") == reference


def test_json_with_int64_as_strings_and_enums_as_ints(tmp_path, receiver):
    body = orjson.loads(otlp_json(demo_job_spans("json-1")))
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                assert isinstance(span["startTimeUnixNano"], str)  # int64 travels as a string
                span["kind"] = 1  # SPAN_KIND_INTERNAL as an int
                span["traceId"] = span["traceId"].upper()  # hex in any case
    assert post(receiver, orjson.dumps(body), JSON).status_code == 200
    receiver.flush()
    assert len(telemetry(tmp_path / "jobs", "json-1")["records"]) == 3


def test_json_null_is_the_default_value_for_ids_too(tmp_path, receiver):
    """Protobuf's JSON mapping takes null as a field's default; a root's parent id is one."""
    spans = demo_job_spans("json-null-1")
    body = orjson.loads(otlp_json(spans))
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                span.setdefault("parentSpanId", None)  # the root: no parent
                span["links"] = None
    assert post(receiver, orjson.dumps(body), JSON).status_code == 200
    receiver.flush()
    with running_receiver(tmp_path / "reference", grpc=None) as other:
        assert post(other, otlp_json(spans), JSON).status_code == 200
        other.flush()
    assert telemetry_bytes(tmp_path / "jobs", "json-null-1") == telemetry_bytes(
        tmp_path / "reference", "json-null-1"
    )


@pytest.mark.parametrize(
    "body, headers, status, words",
    [
        (b"\xff\xff\xff\xff not protobuf", PROTO, 400, "not an OTLP"),
        (b"{not json", JSON, 400, "not valid JSON"),
        (b"[]", JSON, 400, "JSON object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}',
            JSON,
            400,
            "not hex",
        ),
        (b'{"resourceSpans": "nope"}', JSON, 400, "must be a list"),
        (b"", JSON, 400, "not valid JSON"),
        (b"x", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (b"x", {}, 415, "unsupported Content-Type"),
        (b"x", {**PROTO, "Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"not gzip at all", {**PROTO, "Content-Encoding": "gzip"}, 400, "gzip"),
        (gzip.compress(b"x" * 100)[:20], {**PROTO, "Content-Encoding": "gzip"}, 400, "truncated"),
    ],
)
def test_bad_payloads_get_a_clear_status_and_nothing_is_written(
    tmp_path, receiver, body, headers, status, words
):
    response = post(receiver, body, headers)
    assert response.status_code == status
    if response.headers["content-type"] == "application/x-protobuf":
        message = status_pb2.Status.FromString(response.content).message
    else:
        message = orjson.loads(response.content)["message"]
    assert words in message
    assert nothing_written(tmp_path)
    assert_still_serving(receiver, tmp_path)


AWS_KEY = "AKIAZ3X7Q2LMNP4RT6WK"
OPENAI_KEY = "sk-proj-Tq8vXz2LmN4pR6sU8wY0aC2eG4iK6mO8"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "%s", "spanId": "00"}]}]}]}'
            % AWS_KEY.encode(),
            JSON,
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": '
            b'[{"key": "n", "value": {"intValue": "%s"}}]}]}]}]}' % OPENAI_KEY.encode(),
            JSON,
        ),
        (b"x", {**PROTO, "Content-Encoding": OPENAI_KEY}),
        (b"x", {"Content-Type": f"text/{OPENAI_KEY}"}),
    ],
)
def test_a_refusal_never_quotes_a_secret_back(tmp_path, receiver, body, headers):
    """Senders log refusals: a value quoted in one is masked like any other output."""
    response = post(receiver, body, headers)
    assert response.status_code in (400, 415)
    assert AWS_KEY.encode() not in response.content
    assert OPENAI_KEY.encode() not in response.content
    assert b"[REDACTED]" in response.content
    assert nothing_written(tmp_path)


def test_a_refusal_is_masked_with_the_receivers_own_rules(tmp_path):
    from aura_otel.masking import MaskingRules

    rules = MaskingRules(extra_patterns=("acme_live_[A-Za-z0-9]+",))
    with running_receiver(tmp_path / "jobs", grpc=None, masking=rules) as receiver:
        body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "acme_live_Zx9Qw8Er7"}]}]}]}'
        response = post(receiver, body, JSON)
    assert response.status_code == 400
    assert b"acme_live_Zx9Qw8Er7" not in response.content


def test_an_empty_protobuf_request_is_valid_and_writes_nothing(tmp_path, receiver):
    response = post(receiver, b"", PROTO)
    assert response.status_code == 200
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()
    receiver.flush()
    assert nothing_written(tmp_path)


def test_oversized_bodies_are_refused_before_they_are_held(tmp_path, receiver):
    big = encode(demo_job_spans("big-1", secret="x" * 100_000)).SerializeToString()
    assert len(big) > 64 * 1024
    declared = post(receiver, big, PROTO)
    assert declared.status_code == 413
    assert "limit of 65536 bytes" in status_pb2.Status.FromString(declared.content).message

    def chunks():  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = httpx.post(
        receiver.url("http") + "/v1/traces", content=chunks(), headers=PROTO, timeout=30
    )
    assert streamed.status_code == 413
    assert nothing_written(tmp_path)
    assert receiver.counters()["requests_too_large"] == 2
    assert_still_serving(receiver, tmp_path)


def test_a_gzip_bomb_is_cut_off_at_the_decompressed_limit(tmp_path, receiver):
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 64 * 1024  # small on the wire, 64 MiB once inflated
    response = post(receiver, bomb, {**PROTO, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "decompressed" in status_pb2.Status.FromString(response.content).message
    assert nothing_written(tmp_path)
    assert_still_serving(receiver, tmp_path)


def test_partial_success_names_the_rejected_spans(tmp_path, receiver):
    good = demo_job_spans("good-1")
    unsafe = demo_job_spans("../escape")
    request = encode(good + unsafe)
    bad_id = request.resource_spans[0].scope_spans[0].spans.add()
    bad_id.CopyFrom(request.resource_spans[0].scope_spans[0].spans[0])
    bad_id.span_id = b"\0" * 8
    response = post(receiver, request.SerializeToString(), PROTO)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == len(unsafe) + 1
    assert "4 spans with an unsafe aura.job.id" in partial.error_message
    assert "1 span with an invalid trace or span id" in partial.error_message
    receiver.flush()
    assert len(journal_span_ids(tmp_path / "jobs", "good-1")) == len(good)
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir() if p.is_dir()) == ["good-1"]

    as_json = post(receiver, otlp_json(unsafe), JSON)
    assert orjson.loads(as_json.content)["partialSuccess"]["rejectedSpans"] == str(len(unsafe))


def test_other_methods_and_paths(receiver):
    base = receiver.url("http")
    assert httpx.get(base + "/v1/traces").status_code == 405
    assert httpx.post(base + "/v1/metrics", content=b"", headers=PROTO).status_code == 404


def test_a_job_folder_taken_by_a_file_rejects_that_job_only(tmp_path, receiver):
    """A permanent problem with one job's folder is answered as rejected spans (a retry would
    fail the same way); the request's other jobs are stored. A full disk would be a 503."""
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "taken-1").write_text("not a folder")
    spans = demo_job_spans("taken-1") + demo_job_spans("fine-1")
    response = post(receiver, encode(spans).SerializeToString(), PROTO)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 4 and "job folder cannot be written" in partial.error_message
    receiver.flush()
    assert telemetry(jobs, "fine-1")["summary"]["total_operations"] == 3
    assert (jobs / "taken-1").read_text() == "not a folder"


def test_a_full_disk_is_retry_later_and_nothing_is_acknowledged(tmp_path, receiver, monkeypatch):
    """Fault injection at the one place a disk error surfaces before the answer: the
    write-ahead log's append. The units never reach the writer either."""
    import errno

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(receiver.book._wal, "append", full)
    response = post(receiver, encode(demo_job_spans("full-1")).SerializeToString(), PROTO)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "No space left on device" in status_pb2.Status.FromString(response.content).message
    receiver.flush()
    assert not (tmp_path / "jobs" / "full-1").exists()
    monkeypatch.undo()
    assert_still_serving(receiver, tmp_path)


def test_a_bug_is_a_retryable_answer_logged_masked(tmp_path, receiver, monkeypatch, caplog):
    """Fault injection: the fold raising. The answer says retry, nothing is stored, the secret
    in the exception's message reaches no log unmasked (aura-otel's logger masks it)."""
    import logging

    secret = "sk-proj-Q7vW2xK9pL4mN8rT1yU6zB3cD5fG0hJ"

    def broken(request):
        raise RuntimeError(f"bug while holding {secret}")

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(receiver.ingestor, "ingest", broken)
    response = post(receiver, encode(demo_job_spans("bug-1")).SerializeToString(), PROTO)
    assert response.status_code == 503
    assert nothing_written(tmp_path)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "the receiver failed on a request" in logged
    assert secret not in logged
    monkeypatch.undo()
    assert_still_serving(receiver, tmp_path)


def test_a_stop_is_noticed_at_once_not_at_the_next_tick(tmp_path, monkeypatch):
    # With an hour between uvicorn's ticks, only the wake-up can end the serving loop: a stop
    # that waited for the tick would leave the server thread running past the join's bound.
    from aura_otel.receiver.http import PromptServer

    monkeypatch.setattr(PromptServer, "tick_seconds", 3600.0)
    with running_receiver(tmp_path, grpc=None) as receiver:
        assert (
            post(receiver, encode(demo_job_spans("tick-1")).SerializeToString(), PROTO).status_code
            == 200
        )
        thread = receiver._http_thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
    assert telemetry(tmp_path, "tick-1")["job_id"] == "tick-1"
