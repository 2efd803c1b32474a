"""A secret in every field of a received span never reaches a file, a log line or a forward.

The requests are built as protobuf messages (every OTLP field, including those the Python SDK
cannot produce: bytes, key-value lists, mixed arrays, scope names, trace state) and sent over
OTLP/HTTP (protobuf and JSON) and OTLP/gRPC; the masked spans are forwarded to a real OTLP
receiver, whose decoded requests are searched as well.
"""

from __future__ import annotations

import json
import logging

import grpc
import httpx
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aura_otel import conventions as c
from aura_otel.receiver.grpc import SERVICE

from ..masking.corpus import secrets
from ..otlp_receivers import http_receiver
from .support import running_receiver, wait_for

#: One secret of every rule (the whole corpus is covered in-process by test_masking_e2e).
SAMPLE = list({s.rule: s for s in secrets()}.values())


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _key_only_secret(i: int) -> str:
    return f"plainval{i:03d}x"


def _creds(i: int) -> AnyValue:
    creds = AnyValue()
    creds.kvlist_value.values.extend(
        [_kv("pgpassword", _s(_key_only_secret(i))), _kv("userPin", _s(_key_only_secret(i)))]
    )
    return creds


def build_request(job_id: str, texts: list[str]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(
        [_kv("service.name", _s("svc")), *[_kv(f"res.{i}", _s(t)) for i, t in enumerate(texts)]]
    )
    ss = rs.scope_spans.add()
    ss.scope.name = texts[0]
    ss.scope.version = texts[1 % len(texts)]
    ss.scope.attributes.extend([_kv("scope.note", _s(t)) for t in texts])
    trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    root = ss.spans.add(
        trace_id=trace_id,
        span_id=bytes.fromhex("eee19b7ec3c1b174"),
        name=c.JOB_SPAN_NAME,
        start_time_unix_nano=1_000,
        end_time_unix_nano=9_000_000_000,
    )
    root.attributes.extend([_kv(c.JOB_ID, _s(job_id))])
    for i, text in enumerate(texts):
        span = ss.spans.add(
            trace_id=trace_id,
            span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=root.span_id,
            name=f"aura.stage.script {text}",
            trace_state=f"vendor={text[:8]}",
            kind=3,
            start_time_unix_nano=1_000_000 * (i + 1),
            end_time_unix_nano=1_000_000 * (i + 2),
        )
        array = AnyValue()
        array.array_value.values.extend([_s("plain"), _s(text)])
        mixed = AnyValue()
        mixed.array_value.values.extend([_s(text), AnyValue(int_value=3)])
        kvlist = AnyValue()
        kvlist.kvlist_value.values.extend(
            [_kv("inner", _s(text)), _kv(text, _s("under a secret key"))]
        )
        span.attributes.extend(
            [
                _kv(c.JOB_ID, _s(job_id)),
                _kv(c.STAGE, _s("script")),
                _kv("aura.meta.note", _s(text)),
                _kv(f"aura.meta.{text}", _s("value under a secret key")),
                _kv("aura.meta.list", array),
                _kv("aura.meta.mixed", mixed),
                _kv("aura.meta.map", kvlist),
                # Values known secret only by their key, inside a key-value list: masked as
                # JSON, not as one string (where "pgpassword" glued is no key-word match).
                _kv("aura.meta.creds", _creds(i)),
                _kv("db.settings", _creds(i)),
                _kv("aura.meta.bytes", AnyValue(bytes_value=text.encode())),
                _kv("aura.meta_json.nested", _s(json.dumps({"a": [text], text: "x"}))),
                _kv(c.RESULT_MESSAGE, _s(text)),
                _kv(c.GEN_AI_REQUEST_MODEL, _s(text)),
                _kv(c.FALLBACK_REASON, _s(text)),
                _kv("custom.attribute", _s(text)),
            ]
        )
        event = span.events.add(name=text, time_unix_nano=1_000_000 * (i + 1))
        event.attributes.extend(
            [
                _kv("exception.message", _s(f"refused: {text}")),
                _kv("exception.stacktrace", _s(f"Traceback: {text}")),
                _kv("exception.type", _s("RuntimeError")),
            ]
        )
        link = span.links.add(trace_id=trace_id, span_id=root.span_id)
        link.attributes.extend([_kv("link.note", _s(text)), _kv(f"link.{text}", _s("k"))])
        span.status.code = 2
        span.status.message = f"failed: {text}"
    return request


def _json_body(request: ExportTraceServiceRequest) -> bytes:
    import base64

    doc = json_format.MessageToDict(request)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        link[key] = base64.b64decode(link[key]).hex()
    return orjson.dumps(doc)


def _send(receiver, how: str, request: ExportTraceServiceRequest) -> None:
    if how == "grpc":
        with grpc.insecure_channel(receiver.url("grpc")) as channel:
            call = channel.unary_unary(
                f"/{SERVICE}/Export",
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            answer = call(request.SerializeToString(), timeout=30)
    else:
        body, kind = (
            (_json_body(request), "application/json")
            if how == "json"
            else (request.SerializeToString(), "application/x-protobuf")
        )
        response = httpx.post(
            receiver.url("http") + "/v1/traces",
            content=body,
            headers={"Content-Type": kind},
            timeout=30,
        )
        assert response.status_code == 200, response.content
        answer = (
            json_format.ParseDict(orjson.loads(response.content), ExportTraceServiceResponse())
            if how == "json"
            else ExportTraceServiceResponse.FromString(response.content)
        )
    assert answer.partial_success.rejected_spans == 0


def _forwarded_strings(received) -> str:
    out: list[str] = []
    for span in received.spans:
        out += [
            span.name,
            span.status_message,
            span.scope,
            json.dumps(span.attributes),
            json.dumps(span.resource),
        ]
    return "\n".join(out)


@pytest.mark.parametrize("how", ["protobuf", "json", "grpc"])
def test_no_secret_reaches_a_file_a_log_or_a_forward(tmp_path, caplog, how):
    texts = [s.text for s in SAMPLE]
    caplog.set_level(logging.DEBUG, logger="aura_otel")
    with http_receiver() as (endpoint, forwarded):
        with running_receiver(tmp_path / "jobs", forward_endpoint=endpoint) as receiver:
            _send(receiver, how, build_request("secret-job", texts))
            receiver.flush()
            assert receiver.forward is not None
            receiver.forward.force_flush()
            wait_for(lambda: len(forwarded.spans) == len(texts) + 1, "the forwarded spans")
        files = [p for p in (tmp_path / "jobs").rglob("*") if p.is_file()]
        written = b"".join(p.read_bytes() for p in files)
        # JSON escapes (\u00e9, \/) would hide a needle from a byte search: compare decoded too.
        decoded = "\n".join(
            json.dumps(orjson.loads(line), ensure_ascii=False)
            for p in files
            for line in p.read_bytes().splitlines()
            if line.strip().startswith((b"[", b"{")) and _loads(line)
        )
        doc = orjson.loads((tmp_path / "jobs" / "secret-job" / "telemetry.json").read_bytes())
        forward_text = _forwarded_strings(forwarded)
        forward_raw = b"".join(forwarded_bodies(forwarded))
    logs = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    leaks = []
    for secret in SAMPLE:
        for needle in secret.needles:
            for where, haystack in (
                ("file", written.decode("utf-8", "replace")),
                ("file", decoded),
                ("forward", forward_text),
                ("forward", forward_raw.decode("utf-8", "replace")),
                ("log", logs),
            ):
                if needle in haystack:
                    leaks.append((where, secret.rule, needle))
    for i in range(len(texts)):
        for where, haystack in (("file", decoded), ("forward", forward_text), ("log", logs)):
            if _key_only_secret(i) in haystack:
                leaks.append((where, "key-value list", _key_only_secret(i)))
    assert leaks == []
    assert "[REDACTED]" in decoded and "[REDACTED]" in forward_text  # the search saw the fields
    assert len(doc["records"]) == len(texts)  # masked, not lost
    assert all(r["result_status"] == "error" for r in doc["records"])


def _loads(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def forwarded_bodies(received) -> list[bytes]:
    return [
        json.dumps([s.attributes, s.resource, s.name, s.status_message, s.scope]).encode()
        for s in received.spans
    ]
