"""OTLP trace payloads -> ``ReadableSpan`` objects, as the in-process SDK would hand them on.

The receiver's promise is "the same file as in-process", so a received span is rebuilt as the
very kind of object the SDK gives its processors (``ReadableSpan``) with the very value types
the SDK keeps (str, bool, int, float, tuples of those): masking and the fold then run the same
code on it. What the SDK cannot hold is made into something masking can still read, never
dropped silently: bytes become text, key-value lists and mixed arrays become JSON text.

Size limits are enforced while reading and while decompressing, so neither a huge body nor a
gzip bomb is ever held in memory; every refusal is a :class:`PayloadError` with the HTTP status
and a message for the sender.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from ..values import integer
from ..values import text as _valid_text

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_UNSET = Status(StatusCode.UNSET)
_OK = Status(StatusCode.OK)
#: OTLP span flags: bit 8 says whether bit 9 (the parent is remote) is known.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_MAX_JSON_DEPTH = 32


class PayloadError(Exception):
    """A request the receiver refuses as a whole; nothing of it is written."""

    def __init__(self, status: int, message: str) -> None:
        # The message may quote the sender's bytes (a parser's complaint about a value, a
        # header): each protocol masks it where it leaves (senders log refusals).
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its ``Content-Encoding``, refusing to produce more than ``limit`` bytes."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ("gzip", "x-gzip"):
        raise PayloadError(415, f"unsupported Content-Encoding {encoding!r}: send gzip or none")
    out = bytearray()
    data = body
    while data:  # a gzip stream may hold several members, one after the other
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise PayloadError(400, f"the gzip body is corrupt: {exc}") from None
        if len(out) > limit:
            raise PayloadError(413, f"the decompressed body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            if inflater.unconsumed_tail:  # stopped by the limit with more to come
                raise PayloadError(413, f"the decompressed body exceeds the limit of {limit} bytes")
            raise PayloadError(400, "the gzip body is truncated")
        data = inflater.unused_data
    return bytes(out)


# -- OTLP/JSON ---------------------------------------------------------------------------------
def _hex_to_b64(value: Any, size: int, what: str) -> str:
    """OTLP/JSON writes ids as hex where protobuf JSON expects base64 (the spec's one quirk)."""
    if not isinstance(value, str):
        raise PayloadError(400, f"{what} must be a hex string, not {type(value).__name__}")
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise PayloadError(400, f"{what} {value[:40]!r} is not hex") from None
    if len(raw) != size:
        raise PayloadError(
            400, f"{what} must be {size} bytes ({2 * size} hex digits), not {len(raw)}"
        )
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(node: dict[str, Any], names: Iterable[tuple[str, int]]) -> None:
    for key, size in names:
        for spelling in (key, _snake(key)):
            if spelling in node:
                if node[spelling] is None:  # protobuf JSON: null is the default (no id)
                    del node[spelling]
                    continue
                node[spelling] = _hex_to_b64(node[spelling], size, spelling)


def _snake(name: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name)


def _items(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key, node.get(_snake(key)))
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(400, f"{key} must be a list")
    return value


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: protobuf JSON mapping, except hex trace and span ids; unknown fields ignored."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        doc = _loads_lenient(body)
        if doc is None:
            raise PayloadError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError(400, "the body must be a JSON object (ExportTraceServiceRequest)")
    for rs in _items(doc, "resourceSpans"):
        if not isinstance(rs, dict):
            raise PayloadError(400, "resourceSpans entries must be objects")
        for ss in _items(rs, "scopeSpans"):
            if not isinstance(ss, dict):
                raise PayloadError(400, "scopeSpans entries must be objects")
            for span in _items(ss, "spans"):
                if not isinstance(span, dict):
                    raise PayloadError(400, "spans entries must be objects")
                _fix_ids(span, (("traceId", 16), ("spanId", 8), ("parentSpanId", 8)))
                for link in _items(span, "links"):
                    if isinstance(link, dict):
                        _fix_ids(link, (("traceId", 16), ("spanId", 8)))
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        try:
            if not _big_ints_as_text(doc):
                raise
            request = ExportTraceServiceRequest()
            json_format.ParseDict(doc, request, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, RecursionError):
            raise PayloadError(
                400, f"the body is not an OTLP ExportTraceServiceRequest: {exc}"
            ) from None
    return request


_INT64 = range(-(2**63), 2**63)


def _big_ints_as_text(node: Any) -> bool:
    """Each ``intValue`` past int64 made the decimal string the in-process writer makes of such
    an integer (see :func:`aura_otel.values.integer`); whether there was one.

    The JavaScript SDK sends every integral number as ``intValue``, ``1e20`` included: one
    odd value must not cost the request (a refusal is not retried: every span would be lost).
    """
    found = False
    if isinstance(node, list):
        for item in node:
            found = _big_ints_as_text(item) or found
    elif isinstance(node, dict):
        for key in ("intValue", "int_value"):
            number = node.get(key)
            if isinstance(number, float) and number.is_integer():
                number = int(number)
            elif isinstance(number, str):
                try:
                    number = int(number)
                except ValueError:
                    continue
            if isinstance(number, int) and not isinstance(number, bool) and number not in _INT64:
                del node[key]
                node["stringValue"] = integer(number)
                found = True
        for item in node.values():
            if isinstance(item, dict | list):
                found = _big_ints_as_text(item) or found
    return found


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        repaired = _repair_utf8(body)
        if repaired is None:
            raise PayloadError(
                400, f"the body is not an OTLP ExportTraceServiceRequest: {exc}"
            ) from None
        return repaired
    return request


# -- text that is not valid UTF-8 ----------------------------------------------------------------
# In-process, a lone surrogate (a JavaScript string cut in the middle of an emoji, a
# file name os.fsdecode could not decode) costs only itself: it is written as U+FFFD. On the
# wire it arrives as invalid UTF-8 (protobufjs writes a surrogate's three bytes) or as a JSON
# escape with no partner (JSON.stringify), which strict parsers refuse, and a refused request
# is not retried: one odd character would cost every span of the batch. Both are repaired
# here, on the refused path only, to the text the in-process writer would have made.
def _utf8(data: bytes) -> str:
    """``data`` as text, each lone surrogate (and anything else undecodable) as U+FFFD."""
    try:
        decoded = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        decoded = data.decode("utf-8", "replace")
    return _valid_text(decoded)


#: An escape of a UTF-16 surrogate (paired or not: orjson refused the body, it may be lone).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _loads_lenient(body: bytes) -> Any:
    """The JSON document orjson refused for a lone surrogate or invalid UTF-8, or None when
    it is not JSON for another reason (then no second parse is tried)."""
    if _SURROGATE_ESCAPE.search(body) is None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return None
    try:
        doc = json.loads(_utf8(body))
        return _valid_strings(doc)
    except (ValueError, RecursionError):
        return None


def _valid_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, dict):
        return {_valid_text(key): _valid_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_valid_strings(item) for item in value]
    return value


@functools.cache
def _lenient_request() -> tuple[type[Message], frozenset[str]]:
    """``ExportTraceServiceRequest`` with every string field read as bytes (the same wire
    format, never validated), and the full names of those fields."""
    pool = descriptor_pool.DescriptorPool()
    strings: set[str] = set()
    added: set[str] = set()

    def add(file: Any) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pending = [(f"{proto.package}.{m.name}", m) for m in proto.message_type]
        while pending:
            name, message = pending.pop()
            pending.extend((f"{name}.{m.name}", m) for m in message.nested_type)
            for fld in message.field:
                if fld.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                    fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    strings.add(f"{name}.{fld.name}")
        pool.Add(proto)
        added.add(file.name)

    add(ExportTraceServiceRequest.DESCRIPTOR.file)
    descriptor = pool.FindMessageTypeByName(ExportTraceServiceRequest.DESCRIPTOR.full_name)
    return message_factory.GetMessageClass(descriptor), frozenset(strings)


def _repair_utf8(body: bytes) -> ExportTraceServiceRequest | None:
    """The request a strict parse refused for invalid UTF-8, its text repaired; None when it
    does not decode for another reason."""
    lenient, strings = _lenient_request()
    message = lenient()
    try:
        message.ParseFromString(body)
        _repair_strings(message, strings)
        request = ExportTraceServiceRequest()
        request.ParseFromString(message.SerializeToString())
    except (DecodeError, RecursionError, ValueError):
        return None
    return request


def _is_repeated(fld: Any) -> bool:
    """protobuf 7 has ``is_repeated`` and no ``label``; older releases, which the supported
    OpenTelemetry versions allow, may have only ``label``."""
    repeated = getattr(fld, "is_repeated", None)
    if repeated is None:
        return bool(fld.label == fld.LABEL_REPEATED)
    return bool(repeated)


def _repair_strings(message: Message, strings: frozenset[str]) -> None:
    for fld, value in message.ListFields():
        repeated = _is_repeated(fld)
        if fld.message_type is not None:
            for item in value if repeated else (value,):
                _repair_strings(item, strings)
        elif fld.full_name in strings:
            if repeated:
                value[:] = [_utf8(item).encode() for item in value]
            else:
                setattr(message, fld.name, _utf8(value).encode())


def parse(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type == PROTOBUF:
        return parse_protobuf(body)
    if content_type == JSON:
        return parse_json(body)
    raise PayloadError(415, f"unsupported Content-Type {content_type!r}: send {PROTOBUF} or {JSON}")


# -- proto -> ReadableSpan ---------------------------------------------------------------------
def _plain(value: AnyValue, depth: int = 0) -> Any:
    """A JSON-able form of any AnyValue (for values the SDK's attribute types cannot hold)."""
    kind = value.WhichOneof("value")
    if kind is None or depth > _MAX_JSON_DEPTH:
        return None
    if kind == "array_value":
        return [_plain(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.decode("utf-8", "replace")
    return getattr(value, kind)


def attribute_value(value: AnyValue, clean_json: Callable[[str], str] | None = None) -> Any:
    """The value the Python SDK would hold for this attribute, or None to leave it out.

    Key-value lists and mixed arrays become JSON text, which ``clean_json`` masks as JSON (a
    key-word rule on every key, every string unescaped) before anything else sees it: masked
    later as one plain string, ``{"pgpassword": "..."}`` would keep its value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind is None:
        return None
    if kind == "bytes_value":
        # The SDK keeps bytes as text when they are UTF-8; otherwise the text is lossy but
        # still readable by masking, so a secret in bytes is masked rather than passed on.
        return value.bytes_value.decode("utf-8", "replace")
    if kind == "array_value":
        items = [attribute_value(v, clean_json) for v in value.array_value.values]
        types = {type(v) for v in items if v is not None}
        nested = any(
            v.WhichOneof("value") in ("array_value", "kvlist_value")
            for v in value.array_value.values
        )
        if not nested and len(types) <= 1:
            return tuple(items)
    # Key-value lists and mixed arrays: JSON text, masked key by key.
    text = orjson.dumps(_plain(value), option=orjson.OPT_NON_STR_KEYS).decode()
    return clean_json(text) if clean_json is not None else text


def attributes(
    pairs: Iterable[KeyValue], clean_json: Callable[[str], str] | None = None
) -> dict[str, Any]:
    # The hot loop of decoding (a span's every attribute, ~40% of a request's CPU): most
    # values are non-empty strings, read without asking which field is set; every upb
    # accessor call creates a wrapper object, so each one saved counts.
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        text = value.string_value
        if text:
            out[kv.key] = text
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":
            out[kv.key] = value.int_value
        elif kind == "double_value":
            out[kv.key] = value.double_value
        elif kind == "bool_value":
            out[kv.key] = value.bool_value
        elif kind == "string_value":
            out[kv.key] = text
        elif kind is not None:
            converted = attribute_value(value, clean_json)
            if converted is not None:
                out[kv.key] = converted
    return out


@dataclass
class Decoded:
    """The spans of one request, and what was refused (by reason) with a count."""

    spans: list[ReadableSpan] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count


INVALID_IDS = "with an invalid trace or span id"


def _same(text: str) -> str:
    return text


def to_spans(
    request: ExportTraceServiceRequest,
    clean: Callable[[str], str] = _same,
    clean_json: Callable[[str], str] | None = None,
) -> Decoded:
    """Rebuild the request's spans; a span with unusable ids is counted as rejected, not raised.

    ``clean`` masks the few strings span masking does not look at because the SDK sets them
    itself in-process (scope name and version, trace state); here a sender chose them. A trace
    state that needed masking is dropped (a masked one would not be valid W3C syntax); scope
    attributes are not carried at all. ``clean_json`` masks the values that become JSON text
    (see :func:`attribute_value`).
    """
    out = Decoded()
    append = out.spans.append
    # Spans of a request share traces, parents and flags: each is built once per request
    # (SpanContext and TraceFlags are immutable, as the SDK's own sharing of them relies on).
    trace_ids: dict[bytes, int] = {}
    all_flags: dict[int, TraceFlags] = {}
    parents: dict[tuple[bytes, bytes, bool, int], SpanContext] = {}
    for rs in request.resource_spans:
        resource = Resource(attributes(rs.resource.attributes, clean_json), rs.schema_url or None)
        for ss in rs.scope_spans:
            scope = InstrumentationScope(
                clean(ss.scope.name), clean(ss.scope.version) or None, ss.schema_url or None
            )
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                tid = trace_ids.get(trace_id)
                if tid is None:
                    if len(trace_id) != 16 or not any(trace_id):
                        out.reject(INVALID_IDS)
                        continue
                    tid = trace_ids[trace_id] = int.from_bytes(trace_id, "big")
                if len(span_id) != 8 or not any(span_id):
                    out.reject(INVALID_IDS)
                    continue
                raw_flags = span.flags
                # A span that was exported was sampled: many SDKs leave the low byte of
                # ``flags`` empty, and a span marked unsampled would never be forwarded.
                flags = all_flags.get(raw_flags & 0xFF)
                if flags is None:
                    flags = all_flags[raw_flags & 0xFF] = TraceFlags(
                        (raw_flags & 0xFF) | TraceFlags.SAMPLED
                    )
                header = span.trace_state
                state = _trace_state(header, clean) if header else None
                context = SpanContext(tid, int.from_bytes(span_id, "big"), False, flags, state)
                parent = None
                parent_id = span.parent_span_id
                if parent_id:
                    if len(parent_id) != 8:
                        out.reject(INVALID_IDS)
                        continue
                    if any(parent_id):
                        remote = bool(raw_flags & _HAS_IS_REMOTE and raw_flags & _IS_REMOTE)
                        key = (trace_id, parent_id, remote, raw_flags & 0xFF)
                        parent = parents.get(key)
                        if parent is None:
                            parent = parents[key] = SpanContext(
                                tid, int.from_bytes(parent_id, "big"), remote, flags
                            )
                status_message = span.status
                code = status_message.code
                if code == 2:
                    status = Status(StatusCode.ERROR, status_message.message or None)
                else:
                    status = _OK if code == 1 else _UNSET
                events = span.events
                links = span.links
                start = span.start_time_unix_nano
                append(
                    ReadableSpan(
                        name=span.name,
                        context=context,
                        parent=parent,
                        resource=resource,
                        attributes=attributes(span.attributes, clean_json),
                        events=[
                            Event(
                                ev.name,
                                attributes(ev.attributes, clean_json),
                                ev.time_unix_nano or None,
                            )
                            for ev in events
                        ]
                        if events
                        else [],
                        links=[
                            link
                            for link in (_link(ln, clean_json) for ln in links)
                            if link is not None
                        ]
                        if links
                        else [],
                        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
                        status=status,
                        start_time=start,
                        end_time=span.end_time_unix_nano or start,
                        instrumentation_scope=scope,
                    )
                )
    return out


#: A W3C trace state member (https://www.w3.org/TR/trace-context/#tracestate-header).
_MEMBER = re.compile(
    r"([a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])"
)
_MAX_MEMBERS = 32


def _trace_state(header: str, clean: Callable[[str], str] = _same) -> TraceState | None:
    """The span's trace state, or None (the span kept without it) when it needs masking or is
    not valid W3C syntax. Parsed here, not by ``TraceState.from_header``: that one logs an
    invalid member as it is, unmasked, through a logger of its own."""
    if not header or clean(header) != header:
        return None
    pairs: dict[str, str] = {}
    for member in header.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _MEMBER.fullmatch(member)
        if match is None or match.group(1) in pairs or len(pairs) == _MAX_MEMBERS:
            return None
        pairs[match.group(1)] = match.group(2)
    try:
        return TraceState(list(pairs.items()))
    except Exception:  # an unusable trace state is dropped, the span kept
        return None


def _link(link: Any, clean_json: Callable[[str], str] | None = None) -> Link | None:
    if len(link.trace_id) != 16 or len(link.span_id) != 8:
        return None
    context = SpanContext(
        int.from_bytes(link.trace_id, "big"),
        int.from_bytes(link.span_id, "big"),
        True,
        TraceFlags(link.flags & 0xFF),
        None,
    )
    return Link(context, attributes(link.attributes, clean_json))
