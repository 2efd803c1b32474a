"""The masked-span snapshot: what targets receive instead of the SDK's span.

A span with nothing to mask (and nothing to make representable) is handed on as the SDK's own
read-only snapshot; anything else yields a :class:`MaskedSpan` copy with the same context,
parent, kind, times and dropped counts, and a masked resource and instrumentation scope.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status

from .. import conventions as c
from .._util import sdk_attributes
from .keys import keeps_under_sensitive_key
from .masker import (
    _CACHE_LIMIT,
    _ID,
    _JSON,
    _PASS,
    _PRIMITIVES,
    _RENAMED,
    _SCAN,
    _SENSITIVE,
    INT64_MAX,
    INT64_MIN,
    Batch,
    Masker,
)


class MaskedSpan(ReadableSpan):
    """A masked copy of a finished span. Keeps the original's dropped counts (the SDK reads them
    from its bounded containers, which a copy does not have)."""

    def __init__(self, *, dropped: tuple[int, int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


class _MaskedEvent(Event):
    def __init__(
        self, name: str, attributes: Mapping[str, Any] | None, timestamp: int, dropped: int
    ) -> None:
        super().__init__(name, attributes, timestamp)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


class _MaskedLink(trace_api.Link):
    def __init__(
        self, context: trace_api.SpanContext, attributes: Mapping[str, Any] | None, dropped: int
    ) -> None:
        super().__init__(context, attributes)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped


def _dropped(item: Any) -> int:
    return int(getattr(item, "dropped_attributes", 0) or 0)


def _sequence(span: ReadableSpan, private: str, public: str) -> Sequence[Any]:
    """A span's events or links without the tuple copy the public property makes each time
    (the SDK's read-only snapshot keeps them in a bounded list or a tuple).

    Of a ``BoundedList`` the deque behind it is read: iterating the list itself takes its lock
    and copies it, a fifth of the fast path's time, to guard against appends that an ended
    span no longer accepts (masking only sees ended spans).
    """
    items = getattr(span, private, None)
    if type(items) is BoundedList:
        inner = getattr(items, "_dq", None)
        return inner if type(inner) is deque else items
    if isinstance(items, (tuple, list, BoundedList)):
        return items
    return getattr(span, public)


def _span_keep(span: ReadableSpan, masker: Masker) -> frozenset[str]:
    """The span's own identifiers, which survive even where they appear inside text (the
    structural values only when they are identifiers: a token there must not shield itself)."""
    ids: set[str] = set()
    ctx = span.context
    if ctx is not None:
        ids.add(f"{ctx.trace_id:032x}")
        ids.add(f"{ctx.span_id:016x}")
    if span.parent is not None:
        ids.add(f"{span.parent.span_id:016x}")
    for link in span.links:
        ids.add(f"{link.context.trace_id:032x}")
        ids.add(f"{link.context.span_id:016x}")
    attrs = span.attributes or {}
    for key in c.STRUCTURAL_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and value and masker.is_identifier(value):
            ids.add(value)
    return frozenset(ids)


#: Values at most this long are remembered once a scan found them clean.
_CLEAN_MEMO_MAX_CHARS: Final = 256


class SpanMasking:
    """Masks one span: collects all of its strings, scans them once, rebuilds what changed."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._limit = masker.rules.max_value_length
        self._kinds: dict[str, int] = {}  # key -> plan kind, or _RENAMED: the fast path's view
        # Short strings a scan found clean (model, stage, provider names, span names): they
        # repeat across spans, and whether a string is clean depends only on it and the rules,
        # so the fast path leaves them out of the next scans. Bounded: a clear when full.
        self._clean_texts: set[str] = set()
        self._clean_max = min(_CLEAN_MEMO_MAX_CHARS, self._limit)
        self._resources: dict[int, tuple[Resource, Resource]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope, InstrumentationScope]] = {}
        self._trace_states: dict[int, tuple[trace_api.TraceState, trace_api.TraceState]] = {}
        self._lock = threading.Lock()

    def mask(self, span: ReadableSpan) -> tuple[ReadableSpan, bool]:
        """The span a target may see, and whether masking changed anything.

        A span that needs no masking is handed on as it is: it has ended, so the SDK no longer
        lets anything change it, and a copy would only cost time. Anything to mask (the span
        or its resource) yields a masked copy."""
        resource, scope, context = span.resource, span.instrumentation_scope, span.context
        masked_resource = self._resource(resource)
        masked_scope = self._scope(scope)
        masked_context = self._context(context)
        events, links = _sequence(span, "_events", "events"), _sequence(span, "_links", "links")
        try:
            clean = self._clean(span, events, links)
        except Exception:  # an odd value: the slow path handles (and contains) it value by value
            clean = False
        if (
            clean
            and masked_resource is resource
            and masked_scope is scope
            and masked_context is context
        ):
            return span, False
        shared = _Shared(masked_resource, masked_scope, masked_context)
        if clean:
            return self._copy(
                span,
                span.name,
                span.attributes,
                events=events,
                links=links,
                status=span.status,
                shared=shared,
            ), True
        return self._rebuild(span, shared, events, links)

    def _clean(
        self, span: ReadableSpan, events: Sequence[Event], links: Sequence[trace_api.Link]
    ) -> bool:
        """The fast path: True when nothing in the span needs masking. Collects every string
        (no per-value work) and asks RE2 once; any sign of work ahead (a sensitive key, a key
        that masks differently, an over-long value, JSON that must be decoded) answers False."""
        known = self._clean_texts
        name = span.name or ""
        texts = [] if name in known else [name]
        json_texts: list[str] = []
        collect = self._collect
        if not collect(sdk_attributes(span), texts, json_texts):
            return False
        for event in events:
            name = event.name or ""
            if name not in known:
                texts.append(name)
            if not collect(sdk_attributes(event), texts, json_texts):
                return False
        for link in links:
            if not collect(sdk_attributes(link), texts, json_texts):
                return False
            trace_state = link.context.trace_state
            if trace_state:
                texts.extend(trace_state.values())
        status = span.status
        if status is not None and status.description:
            texts.append(status.description)
        if texts:
            joined = "\n".join(texts)
            if len(joined) > self._limit and max(map(len, texts)) > self._limit:
                return False
            masker = self._masker
            if masker.joinable:
                # A match inside one string is a match in the joined text (the line breaks
                # between them are what the ends of a string are to a rule), so a clean joined
                # text means every string in it is clean on its own: they may be remembered.
                # Leaving remembered strings out can only miss a match spanning two strings,
                # which the slow path would not mask either (it masks each string alone).
                if masker.dirty_text(joined):
                    return False
            elif any(masker.dirty_text(t) for t in texts):  # anchored user patterns: one by one
                return False
            self._remember_clean(texts)
        return not json_texts or not any(self._masker.needs_json_walk(t) for t in json_texts)

    def _remember_clean(self, texts: list[str]) -> None:
        known = self._clean_texts
        limit = self._clean_max
        for text in texts:
            if len(text) <= limit:
                if len(known) >= _CACHE_LIMIT:
                    known.clear()
                known.add(text)

    def _collect(
        self, attributes: Mapping[str, Any] | None, texts: list[str], json_texts: list[str]
    ) -> bool:
        """Append the attributes' strings to ``texts``; False as soon as one needs work."""
        if not attributes:
            return True
        kinds = self._kinds
        known = self._clean_texts
        append = texts.append
        for key, value in attributes.items():
            kind = kinds.get(key)
            if kind is None:
                kind = self._kind_of(key)
            if kind == _SCAN or kind == _JSON:  # noqa: PLR1714, SIM109 (no tuple built per attribute)
                vtype = type(value)
                if vtype is str:
                    if kind == _JSON:
                        json_texts.append(value)
                        append(value)
                    elif value not in known:
                        append(value)
                    continue
                if vtype is int:
                    # INT64_MIN/INT64_MAX as literals: this loop runs for every attribute
                    if -9223372036854775808 <= value <= 9223372036854775807:
                        continue
                    return False  # made a decimal string on the slow path
                if vtype is bool or vtype is float:
                    continue
            elif kind == _PASS:
                continue
            elif kind == _ID:
                if self._masker.is_identifier(value):
                    continue
                return False
            elif kind == _SENSITIVE:
                if keeps_under_sensitive_key(key, value):
                    continue
                return False
            else:  # the key itself needs masking
                return False
            # the uncommon value types
            if isinstance(value, str):  # a str subclass
                append(value)
                if kind == _JSON:
                    json_texts.append(value)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, str):
                        append(item)
                    elif not isinstance(item, _PRIMITIVES) or (
                        type(item) is int and not INT64_MIN <= item <= INT64_MAX
                    ):
                        return False
            elif not isinstance(value, _PRIMITIVES):
                return False
        return True

    def _kind_of(self, key: str) -> int:
        plan = self._masker.plan(key)
        kind = plan.kind if plan.masked_key == key else _RENAMED
        if len(self._kinds) >= _CACHE_LIMIT:
            self._kinds.clear()
        self._kinds[key] = kind
        return kind

    def _copy(
        self,
        span: ReadableSpan,
        name: str,
        attributes: Any,
        *,
        events: Sequence[Event],
        links: Sequence[trace_api.Link],
        status: Status,
        shared: _Shared,
    ) -> MaskedSpan:
        return MaskedSpan(
            name=name,
            context=shared.context,
            parent=span.parent,
            resource=shared.resource,
            attributes=attributes,
            events=tuple(events),
            links=tuple(links),
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=shared.scope,
            dropped=(span.dropped_attributes, span.dropped_events, span.dropped_links),
        )

    def _rebuild(
        self,
        span: ReadableSpan,
        shared: _Shared,
        events: Sequence[Event],
        links: Sequence[trace_api.Link],
    ) -> tuple[ReadableSpan, bool]:
        masker = self._masker
        batch = Batch(masker)
        name_ref = batch.add_text(span.name or "")
        attr_entries = batch.add_attributes(sdk_attributes(span))
        event_refs = [
            (batch.add_text(e.name or ""), batch.add_attributes(sdk_attributes(e))) for e in events
        ]
        link_entries = [batch.add_attributes(sdk_attributes(link)) for link in links]
        status = span.status
        desc_ref = (
            batch.add_text(status.description)
            if status is not None and status.description
            else None
        )

        keep_cache: list[frozenset[str]] = []

        def keep() -> frozenset[str]:
            if not keep_cache:
                keep_cache.append(_span_keep(span, self._masker))
            return keep_cache[0]

        batch.resolve(keep)
        changed = False
        name = batch.text(name_ref)
        changed |= name != (span.name or "")
        attributes: Any = batch.build_attributes(attr_entries)
        if attributes is None:
            attributes = span.attributes
        else:
            changed = True
        new_events: list[Event] = []
        for event, (ref, entries) in zip(events, event_refs, strict=True):
            event_name = batch.text(ref)
            event_attrs = batch.build_attributes(entries)
            if event_attrs is None and event_name == event.name:
                new_events.append(event)
                continue
            changed = True
            new_events.append(
                _MaskedEvent(
                    event_name,
                    event.attributes if event_attrs is None else event_attrs,
                    event.timestamp,
                    _dropped(event),
                )
            )
        new_links: list[trace_api.Link] = []
        for link, entries in zip(links, link_entries, strict=True):
            link_attrs = batch.build_attributes(entries)
            context = self._context(link.context)
            if link_attrs is None and context is link.context:
                new_links.append(link)
                continue
            changed = True
            new_links.append(
                _MaskedLink(
                    context,
                    link.attributes if link_attrs is None else link_attrs,
                    _dropped(link),
                )
            )
        if desc_ref is not None and batch.text(desc_ref) != status.description:
            changed = True
            status = Status(status.status_code, batch.text(desc_ref))
        changed |= (
            shared.resource is not span.resource
            or shared.scope is not span.instrumentation_scope
            or shared.context is not span.context
        )
        return self._copy(
            span, name, attributes, events=new_events, links=new_links, status=status, shared=shared
        ), changed

    def _resource(self, resource: Resource | None) -> Resource | None:
        """Resources are shared by every span of a provider: masked once, then cached."""
        if resource is None:
            return None
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        result = masked_resource(self._masker, resource)
        with self._lock:
            if len(self._resources) >= 64:
                self._resources.clear()
            self._resources[id(resource)] = (resource, result)
        return result

    def _scope(self, scope: InstrumentationScope | None) -> InstrumentationScope | None:
        """Instrumentation scopes (``get_tracer(name, version, schema_url, attributes=...)``)
        go out with every span over OTLP: masked like resources, once per scope object."""
        if scope is None:
            return None
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1]
        masker = self._masker
        attrs = getattr(scope, "attributes", None)
        masked = masker.mask_attributes(attrs) if attrs else attrs
        fields = [scope.name, scope.version, scope.schema_url]
        texts = [masker.mask_text(v) if v else v for v in fields]
        result = scope
        if masked is not attrs or texts != fields:
            result = InstrumentationScope(
                texts[0] or "",
                texts[1],
                texts[2],
                dict(masked) if masked else None,
            )
        with self._lock:
            if len(self._scopes) >= 64:
                self._scopes.clear()
            self._scopes[id(scope)] = (scope, result)
        return result

    def _context(self, context: trace_api.SpanContext | None) -> Any:
        """A ``tracestate`` is text that leaves the process too: its values are masked (an
        entry whose masked value is not a valid tracestate value is dropped). Every span of a
        trace usually shares one TraceState object: it is masked once, then cached."""
        if context is None:
            return context
        trace_state = context.trace_state
        if not getattr(trace_state, "_dict", trace_state):  # the common, empty case: cheap
            return context
        cached = self._trace_states.get(id(trace_state))
        if cached is not None and cached[0] is trace_state:
            masked = cached[1]
        else:
            masked = self._mask_trace_state(trace_state)
            with self._lock:
                if len(self._trace_states) >= _CACHE_LIMIT:
                    self._trace_states.clear()
                self._trace_states[id(trace_state)] = (trace_state, masked)
        if masked is trace_state:
            return context
        return trace_api.SpanContext(
            context.trace_id,
            context.span_id,
            context.is_remote,
            context.trace_flags,
            masked,
        )

    def _mask_trace_state(self, trace_state: trace_api.TraceState) -> trace_api.TraceState:
        mask = self._masker.mask_text
        entries = [(k, mask(k), v, mask(v)) for k, v in trace_state.items()]
        if all(k == mk and v == mv for k, mk, v, mv in entries):
            return trace_state
        return trace_api.TraceState(
            [
                (mk, mv)
                for _, mk, _, mv in entries
                if _TRACESTATE_KEY.fullmatch(mk) and _TRACESTATE_VALUE.fullmatch(mv)
            ]
        )


class _Shared(NamedTuple):
    """What a span shares with others and is masked once per object: resource, scope, context."""

    resource: Resource | None
    scope: InstrumentationScope | None
    context: Any


_TRACESTATE_KEY = re.compile(r"[a-z0-9][_0-9a-z\-*/]{0,255}(?:@[a-z0-9][_0-9a-z\-*/]{0,13})?")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


def masked_resource(masker: Masker, resource: Resource) -> Resource:
    """``resource`` with its attributes and schema URL masked (the same object when nothing
    changed). A resource goes out with every span and every metric point: both masked alike."""
    attrs = resource.attributes
    masked = masker.mask_attributes(attrs)
    schema_url = (
        masker.mask_text(resource.schema_url) if resource.schema_url else resource.schema_url
    )
    if masked is attrs and schema_url == resource.schema_url:
        return resource
    return Resource(dict(masked or {}), schema_url)
