"""One operation in full: its v1 record joined with what its span left in the job's journal.

The v1 file is a fixed format that legacy consumers read byte for byte, so it cannot grow the
exception's stack trace or the calls folded into a stage. The journal already holds one unit
per span, keyed by span id: the drill-down reads both and never changes either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import figures
from ..fold import CHILD, LINK, STAGE, Unit, stage_of
from ..pricing import PriceTable, Unpriced, describe_rates
from ..schema import format_timestamp_ns

#: Record fields the drill-down lists itself; every other metadata key is shown as given.
_USAGE_METADATA = (
    "characters",
    "images",
    "image_size",
    "image_quality",
    "duration_seconds",
    "cached_input_tokens",
)


@dataclass(frozen=True)
class Call:
    """A span folded into the stage (an LLM or HTTP call, or any span below it)."""

    name: str
    kind: str
    offset_ms: float
    duration_ms: float
    provider: str | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "offsetMs": self.offset_ms,
            "durationMs": self.duration_ms,
            "provider": self.provider,
            "model": self.model,
            "tokensIn": self.tokens_in,
            "tokensOut": self.tokens_out,
            "cost": self.cost,
        }


@dataclass
class Operation:
    job_id: str
    position: int
    count: int
    label: str
    status: str
    fields: list[tuple[str, str]]
    pricing: list[str]
    metadata: list[tuple[str, str]]
    error: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    span_found: bool = False

    @property
    def status_word(self) -> str:
        return figures.STATUS_WORDS.get(self.status, self.status)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "position": self.position,
            "label": self.label,
            "status": self.status,
            "fields": dict(self.fields),
            "pricing": self.pricing,
            "metadata": dict(self.metadata),
            "error": self.error or None,
            "calls": [c.to_json() for c in self.calls],
            "spanFound": self.span_found,
        }


def _key(stage: Any, started: Any, ended: Any, scene: Any) -> tuple[str, str, str, Any]:
    return (figures.lower(stage), str(started), str(ended), scene)


def _opt(value: Any) -> str:
    return figures.NOT_AVAILABLE if value is None or value == "" else str(value)


def _pricing(rec: Mapping[str, Any], prices: PriceTable | None) -> list[str]:
    """How the cost came about, in words: who set it, which table and rates, or why none."""
    how = figures.pricing_of(rec)
    metadata = rec.get("metadata") or {}
    provider, model = rec.get("provider"), rec.get("model_id")
    if how == figures.PRICING_EXPLICIT:
        return [
            "Explicit cost reported by the span (set_cost or gen_ai.usage.cost); the "
            "price table was not consulted."
        ]
    if how == figures.PRICING_CACHE_HIT:
        saved = figures.cost_saved(rec)
        return [
            "Cache hit: no provider was paid, so the cost is $0.",
            f"Saved {figures.money(saved)} (what the price table would have charged)."
            if saved
            else "The saving is unknown (the usage could not be priced).",
        ]
    if how == figures.PRICING_UNPRICED:
        lines = ["Unpriced: the cost is unknown, not zero."]
        if metadata.get("pricing_error"):
            lines.append(f"The pricer failed ({metadata['pricing_error']}).")
        elif prices is not None:
            usage = {k: metadata[k] for k in _USAGE_METADATA if k in metadata}
            usage.update(tokens_in=rec.get("tokens_in"), tokens_out=rec.get("tokens_out"))
            result = prices.price(provider, model, usage)
            if isinstance(result, Unpriced):
                lines.append(f"Reason (table {prices.version}): {result.reason}.")
            else:
                lines.append(
                    f"The server's table {prices.version} prices it now; the job was "
                    "folded with a table that could not."
                )
        return lines
    if rec.get("cost_estimate") is None:
        return ["No cost: nothing priced was used (no tokens, characters, images or seconds)."]
    version = rec.get("pricing_version")
    if version is None:
        return [
            "Cost as the file states it: no price table version is recorded, so the "
            "producer (or an older writer) set it."
        ]
    lines = [f"Priced by table {version} at fold time ({rec.get('currency') or 'USD'})."]
    if prices is not None:
        found = prices.find(provider, model)
        if not isinstance(found, str):
            prov, entry, how_matched = found
            note = "" if prices.version == version else f" (the server's table {prices.version})"
            lines.append(
                f"Rate used{note}: {prov.name}/{entry.id}, matched by {how_matched}: "
                + "; ".join(describe_rates(entry))
                + "."
            )
    return lines


def _metadata(rec: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in sorted((rec.get("metadata") or {}).items()):
        if key in (figures.PRICING_KEY, figures.SAVED_KEY, "pricing_error"):
            continue
        out.append((key, value if isinstance(value, str) else _json_text(value)))
    return out


def _json_text(value: Any) -> str:
    """A metadata value as JSON text; an integer beyond 64 bits (valid JSON, which orjson
    will not write) in the standard library's spelling."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, default=repr)


class SpanIndex:
    """A job's units indexed once: which stage span made which record, and which spans ran
    below each stage. A page shows every operation of a job; looking each up by a scan of the
    journal would cost the square of its size."""

    def __init__(self, units: Mapping[str, Unit]) -> None:
        self.units = units
        self.by_key: dict[tuple[str, str, str, Any], str] = {}
        self.below: dict[str, list[str]] = {}
        for span_id, unit in units.items():
            kind = unit.get("k")
            if kind == STAGE:
                r = unit.get("r") or {}
                key = _key(
                    r.get("stage"), r.get("started_at"), r.get("ended_at"), r.get("scene_index")
                )
                self.by_key.setdefault(key, span_id)
            elif kind in (CHILD, LINK):
                owner = stage_of(span_id, units)
                if owner is not None:
                    self.below.setdefault(owner, []).append(span_id)

    def stage_span(self, rec: Mapping[str, Any]) -> str | None:
        """The span id whose unit made ``rec``: a record is its span's stage, start, end and
        scene (the fold writes all four from the span and never changes them)."""
        return self.by_key.get(
            _key(
                rec.get("stage"), rec.get("started_at"), rec.get("ended_at"), rec.get("scene_index")
            )
        )

    def calls(self, stage_span: str) -> list[Call]:
        start = self.units[stage_span].get("s", 0)
        calls = []
        for span_id in self.below.get(stage_span, ()):
            unit = self.units[span_id]
            calls.append(
                Call(
                    name=str(unit.get("n") or "(unnamed span)"),
                    kind="call with usage" if unit.get("k") == CHILD else "span",
                    offset_ms=round((unit.get("s", start) - start) / 1e6, 3),
                    duration_ms=round((unit.get("e", 0) - unit.get("s", 0)) / 1e6, 3),
                    provider=unit.get("provider"),
                    model=unit.get("model"),
                    tokens_in=unit.get("tin"),
                    tokens_out=unit.get("tout"),
                    cost=unit.get("cost"),
                )
            )
        calls.sort(key=lambda call: (call.offset_ms, call.name))
        return calls


def operation(
    doc: Mapping[str, Any],
    units: Mapping[str, Unit],
    position: int,
    prices: PriceTable | None = None,
    index: SpanIndex | None = None,
) -> Operation:
    """Operation ``position`` (its index in the file's records); IndexError when none.
    ``index`` (of the same ``units``) saves re-indexing when a page shows every operation."""
    records: Sequence[Mapping[str, Any]] = doc.get("records") or []
    if not 0 <= position < len(records):
        raise IndexError(position)
    rec = records[position]
    stage = figures.lower(rec.get("stage"))
    scene = rec.get("scene_index")
    metadata = rec.get("metadata") or {}
    cached = metadata.get("cached_input_tokens")
    fields = [
        ("Stage", stage if scene is None else f"{stage} #{scene}"),
        (
            "Status",
            figures.STATUS_WORDS.get(figures.record_status(rec), _opt(rec.get("result_status"))),
        ),
        ("Started", _opt(rec.get("started_at"))),
        ("Ended", _opt(rec.get("ended_at"))),
        ("Latency", f"{int(rec.get('latency_ms') or 0):,} ms"),
        ("Provider", _opt(rec.get("provider"))),
        ("Model", _opt(rec.get("model_id"))),
        ("Requested model", figures.NOT_AVAILABLE),
        ("Response model", figures.NOT_AVAILABLE),
        ("Tokens in", figures.count(rec.get("tokens_in"))),
        ("Tokens out", figures.count(rec.get("tokens_out"))),
        ("Cached input tokens", figures.count(cached if isinstance(cached, int) else None)),
        ("Cost", figures.record_cost(rec)),
        ("Price version", _opt(rec.get("pricing_version"))),
        ("Retries", str(rec.get("retries") or 0)),
        ("Cache hit", "yes" if rec.get("cache_hit") else "no"),
        ("Selection source", _opt(rec.get("selection_source"))),
        ("Fallback reason", _opt(rec.get("fallback_reason"))),
        ("Error code", _opt(rec.get("error_code"))),
        ("Message", _opt(rec.get("message"))),
    ]
    op = Operation(
        job_id=str(doc.get("job_id")),
        position=position,
        count=len(records),
        label=fields[0][1],
        status=figures.record_status(rec),
        fields=fields,
        pricing=_pricing(rec, prices),
        metadata=_metadata(rec),
    )
    index = index if index is not None else SpanIndex(units)
    span_id = index.stage_span(rec)
    if span_id is not None:
        op.span_found = True
        unit = units[span_id]
        requested = unit.get("qm") or (rec.get("model_id") if "rm" not in unit else None)
        op.fields[7] = ("Requested model", _opt(requested))
        op.fields[8] = ("Response model", _opt(unit.get("rm")))
        op.error = dict(units[span_id].get("x") or {})
        op.calls = index.calls(span_id)
        op.fields.append(("Span", span_id))
        op.fields.append(("Span start", format_timestamp_ns(units[span_id].get("s", 0))))
    return op
