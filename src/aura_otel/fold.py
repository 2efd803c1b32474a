"""Spans -> v1 records. Pure functions: no I/O, no clocks, no globals.

The fold has two steps so that spans of one job may arrive in any order, in any number of
batches, from any number of processes:

1. :func:`fold_span` turns one finished span into a small JSON-able *unit* keyed by its span
   id. Units from different exporters (or hosts) merge by dict union: nothing is counted twice.
2. :func:`assemble` turns a job's units into the v1 collection: stage records, GenAI child
   spans folded into their stage, the job-level failure record, the summary.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson
from opentelemetry.trace import StatusCode

from . import conventions as c
from ._util import BoundedCache, sdk_attributes
from .figures import PRICING_CACHE_HIT, PRICING_EXPLICIT, PRICING_KEY, PRICING_UNPRICED, SAVED_KEY
from .schema import (
    DEFAULT_CURRENCY,
    MAX_INT,
    RESULT_STATUSES,
    SELECTION_SOURCES,
    STAGES,
    STATUS_ERROR,
    STATUS_OK,
    Record,
    collection_dict,
    finite_number,
    format_timestamp_ns,
    in_summary_currency,
    load_collection,
    record_dict,
    record_from,
    sum_money,
    summarize,
    to_dict,
)
from .values import MAX_META_DEPTH, cap_depth

Unit = dict[str, Any]

ROOT, STAGE, CHILD, LINK = "root", "stage", "child", "link"
_STAGE_SET = frozenset(STAGES)
_STATUS_SET = frozenset(RESULT_STATUSES)
_SELECTION_SET = frozenset(SELECTION_SOURCES)
_MAX_PARENT_HOPS = 64
CACHED_TOKENS_METADATA = "cached_input_tokens"
#: ``metadata.pricing`` and its "the table could not price it" value (see aura_otel.figures).
UNPRICED_METADATA = PRICING_KEY
UNPRICED_VALUE = PRICING_UNPRICED


@dataclass(frozen=True, slots=True)
class Quote:
    """A price for one operation's usage."""

    amount: float
    currency: str
    version: str


class Pricer(Protocol):
    """Prices usage at fold time (see :mod:`aura_otel.pricing`). None means unknown: unpriced."""

    def quote(
        self, *, stage: str, provider: str | None, model: str | None, usage: Mapping[str, Any]
    ) -> Quote | None: ...


class FoldedSpan(NamedTuple):
    """A span's unit and where it goes (a tuple: the fold makes one per span)."""

    job_id: str
    span_id: str
    unit: Unit


# -- step 1: one span -> one unit ----------------------------------------------------------------
def _count(value: Any) -> int | None:
    """A non-negative whole number, or None for anything else (NaN, negatives, strings, bools)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_INT else None
    number = finite_number(value)
    if number is not None and number >= 0 and number.is_integer() and number <= MAX_INT:
        return int(number)
    return None


def _amount(value: Any) -> float | None:
    number = finite_number(value)
    return number if number is not None and number >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _lower_text(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


_INF = float("inf")


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


_Convert = Callable[[Any], Any]
#: attribute -> (slot, rank, converter). Aliases share a slot; the lowest rank (the current
#: semantic-convention name) wins, and an invalid value never hides a valid alias.
#: The flag says whether the slot has aliases (only then is a rank worth recording).
_SLOTS: dict[str, tuple[str, int, _Convert, bool]] = {}


def _slot(name: str, keys: Iterable[str], convert: _Convert) -> None:
    keys = tuple(keys)
    for rank, key in enumerate(keys):
        _SLOTS[key] = (name, rank, convert, len(keys) > 1)


# Slots that land in a record are named after the record's field, so a stage span's slots
# become its record with one ordered pick (schema.record_from).
_slot("correlation_id", (c.CORRELATION_ID,), _text)
_slot("project_id", (c.PROJECT_ID,), _text)
_slot("stage", (c.STAGE,), _lower_text)
_slot("provider", c.PROVIDER_KEYS, _text)
_slot("model_id", c.MODEL_KEYS, _text)
_slot("tokens_in", c.INPUT_TOKEN_KEYS, _count)
_slot("tokens_out", c.OUTPUT_TOKEN_KEYS, _count)
_slot(CACHED_TOKENS_METADATA, c.CACHED_INPUT_TOKEN_KEYS, _count)
_slot("cost_estimate", c.COST_KEYS, _amount)
_slot("currency", (c.COST_CURRENCY,), _text)
_slot("pricing_version", (c.PRICING_VERSION,), _text)
_slot("result_status", (c.RESULT_STATUS,), _lower_text)
_slot("message", (c.RESULT_MESSAGE,), _text)
_slot("error_code", (c.ERROR_TYPE,), _text)
_slot("selection_source", (c.SELECTION_SOURCE,), _lower_text)
_slot("fallback_reason", (c.FALLBACK_REASON,), lambda v: v if isinstance(v, str) else None)
_slot("cache_hit", (c.CACHE_HIT,), _flag)
_slot("retries", (c.RETRY_COUNT,), _count)
_slot("scene_index", (c.SCENE_INDEX,), _count)
_slot("characters", (c.USAGE_CHARACTERS,), _count)
_slot("images", (c.USAGE_IMAGES,), _count)
_slot("image_size", (c.USAGE_IMAGE_SIZE,), lambda v: v if isinstance(v, str) else None)
_slot("image_quality", (c.USAGE_IMAGE_QUALITY,), lambda v: v if isinstance(v, str) else None)
_slot("duration_seconds", (c.USAGE_OUTPUT_SECONDS,), _amount)
_USAGE_SLOTS = (
    "characters",
    "images",
    "image_size",
    "image_quality",
    "duration_seconds",
    CACHED_TOKENS_METADATA,
)
_USAGE_SLOT_SET = frozenset(_USAGE_SLOTS)
#: A child unit's short keys for the slots it carries.
_CHILD_KEYS = (
    ("provider", "provider"),
    ("model_id", "model"),
    ("tokens_in", "tin"),
    ("tokens_out", "tout"),
    ("cost_estimate", "cost"),
    ("currency", "cur"),
)

# How the fold treats an attribute key, decided once per distinct key: a slot, metadata
# (plain or JSON-encoded), or nothing. Bounded: a host minting keys per span only costs a clear.
_SKIP, _PLAIN_META, _JSON_META = 0, 1, 2
_KEY_KINDS_MAX = 4096
_KEY_KINDS: BoundedCache[str, tuple[int, str]] = BoundedCache(_KEY_KINDS_MAX)
_META = c.META_PREFIX
_META_JSON = c.META_JSON_PREFIX


def _key_kind(key: str) -> tuple[int, str]:
    kind = _KEY_KINDS.get(key)
    if kind is None:
        if key.startswith(_META):
            kind = (_PLAIN_META, key[len(_META) :])
        elif key.startswith(_META_JSON):
            kind = (_JSON_META, key[len(_META_JSON) :])
        else:
            kind = (_SKIP, "")
        _KEY_KINDS.put(key, kind)
    return kind


#: A span's attribute keys (in order) -> what the fold reads from them. Spans of one kind
#: carry the same keys in the same order, so classifying each key (slot, alias rank, metadata,
#: nothing) is done once per key set, and the pass over a span touches only the keys that
#: matter. Bounded like _KEY_KINDS: a host minting key sets per span only costs a clear.
_Plan = tuple[
    tuple[tuple[str, str, _Convert], ...],  # slots with one key present: (key, slot, convert)
    tuple[
        tuple[str, tuple[str, ...], _Convert], ...
    ],  # aliased slots: (slot, keys by rank, convert)
    tuple[tuple[str, int, str], ...],  # metadata in attribute order: (key, kind, name)
]
_PLANS: dict[tuple[str, ...], _Plan] = {}
_PLANS_MAX = 1024


def _plan(keys: tuple[str, ...]) -> _Plan:
    slots: dict[str, list[tuple[int, str, _Convert]]] = {}
    meta: list[tuple[str, int, str]] = []
    for key in keys:
        spec = _SLOTS.get(key)
        if spec is None:
            kind, name = _key_kind(key)
            if kind != _SKIP:
                meta.append((key, kind, name))
            continue
        name, rank, convert, _ = spec
        slots.setdefault(name, []).append((rank, key, convert))
    single = tuple(
        (entries[0][1], name, entries[0][2]) for name, entries in slots.items() if len(entries) == 1
    )
    aliased = tuple(
        (name, tuple(key for _, key, _ in sorted(entries)), entries[0][2])
        for name, entries in slots.items()
        if len(entries) > 1
    )
    plan = (single, aliased, tuple(meta))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[keys] = plan
    return plan


def _read(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pass over the attributes that matter: the contract's slots, and its metadata.

    Of aliases sharing a slot the lowest rank with a valid value wins, whatever the order the
    attributes were set in (an invalid value never hides a valid alias).
    """
    keys = tuple(attrs)
    plan = _PLANS.get(keys) or _plan(keys)
    single, aliased, meta_plan = plan
    found: dict[str, Any] = {}
    for key, name, convert in single:
        value = attrs[key]
        # The common pairs of converter and exact value type, inline: a Python call per slot
        # was a sixth of the fold. Each gives what its converter gives; the rest calls it.
        cls = value.__class__
        if cls is str:
            if convert is _text:
                if value:
                    found[name] = value
                continue
            if convert is _lower_text:
                if value:
                    found[name] = value.lower()
                continue
        elif cls is int:
            if convert is _count:
                if 0 <= value <= MAX_INT:
                    found[name] = value
                continue
        elif cls is float:
            if convert is _amount:
                if 0 <= value < _INF:  # not NaN, not infinite, not negative
                    found[name] = value
                continue
        elif cls is bool and convert is _flag:
            found[name] = value
            continue
        converted = convert(value)
        if converted is not None:
            found[name] = converted
    for name, alias_keys, convert in aliased:
        for key in alias_keys:
            converted = convert(attrs[key])
            if converted is not None:
                found[name] = converted
                break
    meta: dict[str, Any] = {}
    for key, kind, name in meta_plan:
        value = attrs[key]
        if kind == _PLAIN_META:
            meta[name] = list(value) if isinstance(value, tuple) else value
        elif isinstance(value, str):  # _JSON_META
            try:
                decoded = orjson.loads(value)
            except orjson.JSONDecodeError:
                meta[name] = value  # keep what was sent, undecoded
                continue
            # Deep nesting would make a file readers refuse; only text with many brackets
            # can nest deeply, and counting them is cheap.
            if value.count("[") + value.count("{") > MAX_META_DEPTH:
                decoded = cap_depth(decoded)
            meta[name] = decoded
    return found, meta


def _exception_event(span: Any) -> Mapping[str, Any] | None:
    last = None
    for event in span.events or ():
        if event.name == "exception":
            last = event.attributes or {}
    return last


def _exception_details(span: Any) -> dict[str, str]:
    """The exception event's type, message and stack trace (masked upstream, like every
    attribute): the v1 record keeps only a message, and the drill-down shows the rest."""
    event = _exception_event(span)
    if event is None:
        return {}
    out = {}
    for key, short in (
        ("exception.type", "type"),
        ("exception.message", "message"),
        ("exception.stacktrace", "stack"),
    ):
        value = event.get(key)
        if isinstance(value, str) and value:
            out[short] = value
    return out


def _message(span: Any, found: Mapping[str, Any]) -> str | None:
    message = found.get("message")
    if message:
        return message
    description = span.status.description if span.status is not None else None
    if description:
        return description
    event = _exception_event(span)
    if event is not None:
        text = event.get("exception.message")
        if isinstance(text, str) and text:
            return text
    return None


_ERROR, _UNSET, _OK = StatusCode.ERROR, StatusCode.UNSET, StatusCode.OK


def _is_error(span: Any) -> bool:
    status = span.status
    if status is None:
        return False
    code = status.status_code
    if code is _ERROR:
        return True
    return code is not _UNSET and code is not _OK and code.name == "ERROR"


def _error_code(span: Any, found: Mapping[str, Any], is_error: bool) -> str | None:
    code = found.get("error_code")
    if code:
        return code
    if is_error:
        event = _exception_event(span)
        if event is not None and isinstance(event.get("exception.type"), str):
            return event["exception.type"].rsplit(".", 1)[-1]
    return None


#: A span's attributes as a plain mapping (the fold and the job-id stamping read every one).
plain_attributes = sdk_attributes


#: The latest span clock reading kept (2262-04-11): OpenTelemetry's clock is a signed 64-bit
#: count of nanoseconds, and units must stay JSON integers.
MAX_TIMESTAMP_NS = 2**63 - 1


def _timestamp(value: Any, default: int) -> int:
    """A span's clock reading, kept within what a v1 timestamp can spell.

    The SDK takes any integer a host passes as ``start_time``/``end_time``; one absurd reading
    must cost that span its true time, not the job its file.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not value:
        return default
    return min(max(value, 0), MAX_TIMESTAMP_NS)


def fold_span(span: Any) -> FoldedSpan | None:
    """One finished span as a unit, or None when it carries no job id (not part of any job).

    ``span`` is any object shaped like ``opentelemetry.sdk.trace.ReadableSpan``.
    """
    attrs = plain_attributes(span)
    job_id = attrs.get(c.JOB_ID)
    if not isinstance(job_id, str) or not job_id:
        return None
    found, meta = _read(attrs)
    ctx = span.context
    span_id = f"{ctx.span_id:016x}"
    parent = span.parent
    start = span.start_time
    end = span.end_time
    if start.__class__ is not int or not 0 < start <= MAX_TIMESTAMP_NS:  # the SDK's clock: never
        start = _timestamp(start, 0)
    if end.__class__ is not int or not 0 < end <= MAX_TIMESTAMP_NS:
        end = _timestamp(end, start)
    unit: Unit = {"s": start, "e": end}
    if parent is not None:
        unit["p"] = f"{parent.span_id:016x}"
    if "correlation_id" in found:
        unit["corr"] = found["correlation_id"]
    if "project_id" in found:
        unit["proj"] = found["project_id"]

    if span.name == c.JOB_SPAN_NAME:
        unit["k"] = ROOT
        unit["t"] = f"{ctx.trace_id:032x}"
        budget = _amount(attrs.get(c.BUDGET_AMOUNT))
        if budget is not None:
            unit["b"] = budget  # the legacy report's withinBudget is judged against it
        if _is_error(span):
            unit["err"] = _error_code(span, found, True) or "GENERATION_ERROR"
            message = _message(span, found)
            if message:
                unit["msg"] = message
        return FoldedSpan(job_id, span_id, unit)

    # Most spans carry no usage beyond tokens: one C-level check spares them the comprehension.
    usage = (
        {}
        if found.keys().isdisjoint(_USAGE_SLOT_SET)
        else {name: found[name] for name in _USAGE_SLOTS if name in found}
    )
    if found.get("stage") not in _STAGE_SET:
        unit["n"] = span.name  # the drill-down names the calls folded into a stage
        if (
            "tokens_in" not in found
            and "tokens_out" not in found
            and "cost_estimate" not in found
            and not usage
        ):
            unit["k"] = LINK
            return FoldedSpan(job_id, span_id, unit)
        unit["k"] = CHILD
        for slot, key in _CHILD_KEYS:
            if slot in found:
                unit[key] = found[slot]
        if usage:
            unit["usage"] = usage
        return FoldedSpan(job_id, span_id, unit)

    is_error = _is_error(span)
    if found.get("result_status") not in _STATUS_SET:
        found["result_status"] = STATUS_ERROR if is_error else STATUS_OK
    if "selection_source" in found and found["selection_source"] not in _SELECTION_SET:
        del found["selection_source"]
    if usage:
        meta.update(usage)
        meta.pop(CACHED_TOKENS_METADATA, None)  # written after pricing, from the merged usage
        unit["usage"] = usage
    unit["k"] = STAGE
    response_model = attrs.get(c.GEN_AI_RESPONSE_MODEL)
    if isinstance(response_model, str) and response_model:
        # The record keeps one model (the response's wins); the drill-down shows both.
        unit["rm"] = response_model
        request_model = attrs.get(c.GEN_AI_REQUEST_MODEL)
        if isinstance(request_model, str) and request_model:
            unit["qm"] = request_model
    if is_error:
        failure = _exception_details(span)
        if failure:
            unit["x"] = failure
    # ``found`` becomes the record: its slots are named after the record's fields.
    found["job_id"] = job_id
    found["latency_ms"] = max(0, (end - start) // 1_000_000)
    if "error_code" not in found:  # a slot is never empty: present means it wins
        found["error_code"] = _error_code(span, found, is_error)
    if "message" not in found:
        found["message"] = _message(span, found)
    found["started_at"] = format_timestamp_ns(start)
    found["ended_at"] = format_timestamp_ns(end)
    found["metadata"] = meta or None
    unit["r"] = record_from(found)
    return FoldedSpan(job_id, span_id, unit)


# -- step 2: a job's units -> the collection -----------------------------------------------------
def _stage_ancestor(span_id: str, units: Mapping[str, Unit]) -> str | None:
    """The nearest stage span above ``span_id`` (a child may sit under HTTP or SDK spans)."""
    current = units.get(span_id, {}).get("p")
    for _ in range(_MAX_PARENT_HOPS):
        if current is None:
            return None
        unit = units.get(current)
        if unit is None:
            return None
        kind = unit.get("k")
        if kind == STAGE:
            return current
        if kind == ROOT:
            return None
        current = unit.get("p")
    return None


_PRICED_QUANTITIES = ("characters", "images", "duration_seconds", CACHED_TOKENS_METADATA)
PRICING_ERROR_METADATA = "pricing_error"


def _has_own_usage(rec: Mapping[str, Any], usage: Mapping[str, Any]) -> bool:
    return (
        rec.get("tokens_in") is not None
        or rec.get("tokens_out") is not None
        or any(k in usage for k in _PRICED_QUANTITIES)
    )


def _child_usage(child: Unit) -> dict[str, Any]:
    return {
        **child.get("usage", {}),
        "tokens_in": child.get("tin"),
        "tokens_out": child.get("tout"),
    }


class _CostParts:
    """A record's cost from its parts: explicit amounts win, the rest is quoted, and one part
    that cannot be priced makes the whole cost unknown (a partial sum would read as the price)."""

    def __init__(self, pricer: Pricer | None, stage: str) -> None:
        self.pricer = pricer
        self.stage = stage
        self.amounts: list[float] = []
        self.quote: Quote | None = None
        self.unpriced = 0
        self.skipped = 0  # usage left unestimated because pricing is off (no pricer)
        self.error: str | None = None
        #: The currencies of the amounts: amounts in two currencies have no sum.
        self.currencies: set[str] = set()
        #: The explicit amounts and their currencies (a cache hit still paid for these).
        self.explicit: list[float] = []
        self.explicit_currencies: set[str] = set()
        self.quoted: list[float] = []

    def add_explicit(self, amount: float, currency: str | None = None) -> None:
        code = (
            DEFAULT_CURRENCY
            if in_summary_currency({"currency": currency})
            else str(currency).strip().upper()
        )
        self.amounts.append(amount)
        self.currencies.add(code)
        self.explicit.append(amount)
        self.explicit_currencies.add(code)

    def cache_hit(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        """A cache-hit record whose calls partly reported their own cost: those calls were
        paid for (an explicit cost always wins), the table's price of the rest is the saving.
        None when no call reported a cost (the plain cache-hit rule applies)."""
        if not self.explicit or len(self.explicit_currencies) > 1:
            return None
        metadata = {
            k: v
            for k, v in (rec.get("metadata") or {}).items()
            if k not in (PRICING_KEY, PRICING_ERROR_METADATA)
        }
        metadata[PRICING_KEY] = PRICING_EXPLICIT
        if self.quoted and not self.unpriced and len(self.currencies) == 1:
            saved = sum_money(self.quoted)
            if saved:
                metadata[SAVED_KEY] = saved
        rec["cost_estimate"] = sum_money(self.explicit)
        rec["currency"] = next(iter(self.explicit_currencies))
        rec.pop("pricing_version", None)
        rec["metadata"] = metadata
        return record_from(rec)

    def add_usage(self, provider: str | None, model: str | None, usage: Mapping[str, Any]) -> None:
        if self.pricer is None:
            self.skipped += 1
            return
        quote = None
        try:
            quote = self.pricer.quote(stage=self.stage, provider=provider, model=model, usage=usage)
        except Exception as exc:  # a pricer bug must cost a price, not the job's file
            # The type only: this is written after masking, and a message may hold anything.
            self.error = type(exc).__name__
        if quote is None:
            self.unpriced += 1
        else:
            self.amounts.append(quote.amount)
            self.quoted.append(quote.amount)
            self.currencies.add(quote.currency)
            self.quote = quote

    def apply(self, rec: dict[str, Any]) -> None:
        if len(self.currencies) > 1:  # 0.1 EUR + 0.2 USD: no amount in one currency
            self.unpriced += 1
        if self.unpriced:
            extra = {UNPRICED_METADATA: UNPRICED_VALUE}
            if self.error is not None:
                extra[PRICING_ERROR_METADATA] = self.error
            rec["metadata"] = {**(rec.get("metadata") or {}), **extra}
            rec.pop("pricing_version", None)  # no table produced a cost (the span may say one)
            return
        if self.skipped or not self.amounts:
            return  # pricing is off: only a complete set of explicit costs makes a cost
        rec["cost_estimate"] = sum_money(self.amounts)
        if self.quote is not None:  # the table priced at least part of it
            rec["currency"] = self.quote.currency
            rec["pricing_version"] = self.quote.version
        else:  # every part was explicit: a consumer must not re-price it
            rec["currency"] = next(iter(self.currencies), rec.get("currency"))
            rec["metadata"] = {**(rec.get("metadata") or {}), PRICING_KEY: PRICING_EXPLICIT}


def _price(
    rec: dict[str, Any],
    usage: Mapping[str, Any],
    *,
    own_usage: bool,
    own_model: str | None,
    children: list[Unit],
    pricer: Pricer | None,
) -> _CostParts:
    """Fill a record's cost when its span gave none (see docs/pricing.md, "How a run is priced").

    - A stage with no usage of its own is an envelope: each GenAI call inside it is priced on
      its own provider/model (calls to different models get different prices), or keeps its
      explicit cost.
    - A stage with its own usage is priced as one operation, unless every call inside it has
      an explicit cost (explicit always wins); with no model of its own and calls to several
      models, its usage cannot be split, so it is unpriced.
    """
    parts = _CostParts(pricer, rec["stage"])
    if not own_usage:
        for child in children:
            if "cost" in child:
                parts.add_explicit(child["cost"], child.get("cur"))
            elif _has_own_usage(
                {"tokens_in": child.get("tin"), "tokens_out": child.get("tout")},
                child.get("usage", {}),
            ):
                parts.add_usage(
                    child.get("provider") or rec.get("provider"),
                    child.get("model") or rec.get("model_id"),
                    _child_usage(child),
                )
    elif children and all("cost" in ch for ch in children):
        for child in children:
            parts.add_explicit(child["cost"], child.get("cur"))
    elif own_model is None and len({ch["model"] for ch in children if "model" in ch}) > 1:
        parts.unpriced += 1
    else:
        parts.add_usage(
            rec.get("provider"),
            rec.get("model_id"),
            {**usage, "tokens_in": rec.get("tokens_in"), "tokens_out": rec.get("tokens_out")},
        )
    parts.apply(rec)
    return parts


def _build_record(unit: Unit, children: list[Unit], pricer: Pricer | None) -> dict[str, Any]:
    """A stage's record: its span's record, with what its children and pricing add.

    A stage with no children and nothing to price or merge gets a plain copy of its span's
    record (already in v1 order): no re-ordering, and the caller may change what it gets.
    """
    built = unit["r"]
    unit_usage = unit.get("usage")
    explicit = built.get("cost_estimate") is not None
    if explicit and not children:
        # The span gave its cost: it wins, whatever the table or a cache hit would say.
        return _marked(built, {PRICING_KEY: PRICING_EXPLICIT})
    if (
        not children
        and (not unit_usage or unit_usage.get(CACHED_TOKENS_METADATA) is None)
        and (not _has_own_usage(built, unit_usage or {}))
    ):
        return _cache_hit(dict(built)) if built.get("cache_hit") is True else dict(built)
    rec = dict(built)
    usage = dict(unit_usage or {})
    own_tokens = rec.get("tokens_in") is not None or rec.get("tokens_out") is not None
    own_usage = _has_own_usage(rec, usage)
    own_model = rec.get("model_id")
    if children:
        if not own_tokens:
            tin = [ch["tin"] for ch in children if "tin" in ch]
            tout = [ch["tout"] for ch in children if "tout" in ch]
            if tin:
                rec["tokens_in"] = min(sum(tin), MAX_INT)
            if tout:
                rec["tokens_out"] = min(sum(tout), MAX_INT)
            cached = [
                ch["usage"][CACHED_TOKENS_METADATA]
                for ch in children
                if CACHED_TOKENS_METADATA in ch.get("usage", {})
            ]
            if cached and CACHED_TOKENS_METADATA not in usage:
                usage[CACHED_TOKENS_METADATA] = min(sum(cached), MAX_INT)
        if rec.get("provider") is None:
            rec["provider"] = next((ch["provider"] for ch in children if "provider" in ch), None)
        if rec.get("model_id") is None:
            rec["model_id"] = next((ch["model"] for ch in children if "model" in ch), None)
    parts = None
    if rec.get("cost_estimate") is None and (own_usage or children):
        parts = _price(
            rec, usage, own_usage=own_usage, own_model=own_model, children=children, pricer=pricer
        )
    if usage.get(CACHED_TOKENS_METADATA) is not None:
        rec["metadata"] = {
            **(rec.get("metadata") or {}),
            CACHED_TOKENS_METADATA: usage[CACHED_TOKENS_METADATA],
        }
    if explicit:  # its calls gave their tokens and model; the cost is still the span's own
        return _marked(record_from(rec), {PRICING_KEY: PRICING_EXPLICIT})
    if rec.get("cache_hit") is True:
        paid = parts.cache_hit(rec) if parts is not None else None
        return paid if paid is not None else _cache_hit(rec)
    return record_from(rec)


def _marked(rec: Mapping[str, Any], marks: Mapping[str, Any]) -> dict[str, Any]:
    """``rec`` (a unit's record, already in v1 order) with ``marks`` added to its metadata.

    ``metadata`` is the record's last field, so setting it on a copy keeps v1 order (a new
    key goes last, an existing one keeps its place) without a second ordered pick.
    """
    out = dict(rec)
    out["metadata"] = {**(rec.get("metadata") or {}), **marks}
    return out


def _cache_hit(rec: dict[str, Any]) -> dict[str, Any]:
    """A cache hit paid no provider: it costs 0, and what the table would have charged for
    its usage is recorded as the saving (``metadata.cost_saved``). Costs that were explicit
    (its children's) keep winning."""
    metadata = dict(rec.get("metadata") or {})
    if metadata.get(PRICING_KEY) == PRICING_EXPLICIT:
        return record_from(rec)
    would_have_cost = rec.get("cost_estimate") if metadata.get(PRICING_KEY) is None else None
    metadata.pop("pricing_error", None)
    metadata[PRICING_KEY] = PRICING_CACHE_HIT
    if would_have_cost:
        metadata[SAVED_KEY] = would_have_cost
    rec["cost_estimate"] = 0.0
    rec.pop("pricing_version", None)
    rec["metadata"] = metadata
    return record_from(rec)


def _stable_correlation_id(job_id: str) -> str:
    # Only used when no span of the job carried one: stable across rewrites of the file.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"aura-otel:{job_id}"))


def _time_order(item: tuple[str, Unit]) -> tuple[int, int, str]:
    return (item[1]["s"], item[1]["e"], item[0])


def assemble(
    job_id: str, units: Mapping[str, Unit], *, pricer: Pricer | None = None
) -> dict[str, Any]:
    """The v1 collection dict for one job, from all of its units seen so far.

    A job whose root span has not ended yet gets no ``collection_ended_at`` and no summary: a
    file for a running (or dead) job never claims the job finished.
    """
    roots: list[tuple[str, Unit]] = []
    correlation_id = project_id = None
    stages: list[tuple[str, Unit]] = []
    children: dict[str, list[tuple[str, Unit]]] = {}
    for span_id, unit in units.items():
        kind = unit.get("k")
        if kind == ROOT:
            roots.append((span_id, unit))
        elif kind == STAGE:
            stages.append((span_id, unit))
        elif kind == CHILD:
            owner = _stage_ancestor(span_id, units)
            if owner is not None:
                children.setdefault(owner, []).append((span_id, unit))
    # Everything below reads units in time order, never in arrival order: the same spans must
    # give the same file however batches, receivers or journal reloads interleaved them.
    roots.sort(key=_time_order)
    stages.sort(key=_time_order)
    root = roots[0][1] if roots else None
    for _, unit in roots + stages:
        correlation_id = correlation_id or unit.get("corr")
        project_id = project_id or unit.get("proj")
    correlation_id = correlation_id or _stable_correlation_id(job_id)

    records = []
    for span_id, unit in stages:
        calls = sorted(children.get(span_id, ()), key=_time_order)
        rec = _build_record(unit, [call for _, call in calls], pricer)
        # The job's ids fill a record's gaps; a record with none to fill is kept as it is.
        if "correlation_id" not in rec or ("project_id" not in rec and project_id is not None):
            rec = record_from(
                {
                    **rec,
                    "correlation_id": rec.get("correlation_id") or correlation_id,
                    "project_id": rec.get("project_id") or project_id,
                }
            )
        records.append(rec)

    started = root["s"] if root else min((u["s"] for u in units.values()), default=0)
    if root is not None and "err" in root:
        message = root.get("msg")
        already = any(
            r["result_status"] == STATUS_ERROR and r.get("message") == message for r in records
        )
        if not already:
            code = "VALIDATION_ERROR" if root["err"] == "VALIDATION_ERROR" else "GENERATION_ERROR"
            records.append(
                record_dict(
                    job_id=job_id,
                    correlation_id=correlation_id,
                    project_id=project_id,
                    stage="post",
                    latency_ms=0,
                    result_status=STATUS_ERROR,
                    error_code=code,
                    message=message,
                    started_at=format_timestamp_ns(root["e"]),
                    ended_at=format_timestamp_ns(root["e"]),
                )
            )
    return collection_dict(
        job_id=job_id,
        correlation_id=correlation_id,
        collection_started_at=format_timestamp_ns(started),
        collection_ended_at=format_timestamp_ns(root["e"]) if root else None,
        records=records,
        summary=summarize(records) if root else None,
    )


def _record_key(rec: Mapping[str, Any]) -> tuple[str, str, str, Any]:
    return (
        str(rec.get("stage", "")).lower(),
        str(rec.get("started_at", "")),
        str(rec.get("ended_at", "")),
        rec.get("scene_index"),
    )


#: The type of each field a unit may carry (the fold's own output; see fold_span): exact
#: types, so a bool is not taken for an int. "usage" values are checked one level down.
_UNIT_FIELDS: dict[str, tuple[type, ...]] = {
    "s": (int,),
    "e": (int,),
    "k": (str,),
    "p": (str,),
    "t": (str,),
    "n": (str,),
    "corr": (str,),
    "proj": (str,),
    "err": (str,),
    "msg": (str,),
    "rm": (str,),
    "qm": (str,),
    "model": (str,),
    "provider": (str,),
    "tin": (int,),
    "tout": (int,),
    "cost": (int, float),
    "cur": (str,),
    "b": (int, float),
    "fw": (int,),
    "usage": (dict,),
    "x": (dict,),
    "r": (dict,),
}
_USAGE_TYPES = (int, float, str)


def _usable(unit: Any, records: bool = True) -> bool:
    if not isinstance(unit, dict) or "s" not in unit or "e" not in unit:
        return False
    for key, value in unit.items():
        allowed = _UNIT_FIELDS.get(key)
        if allowed is not None and type(value) not in allowed:
            return False
    usage = unit.get("usage")
    if usage is not None and any(type(v) not in _USAGE_TYPES for v in usage.values()):
        return False
    if unit.get("k") == STAGE:
        record = unit.get("r")
        if record is None:
            return False
        if not records:
            return True
        # As assemble completes it: the job's correlation id when the span had none.
        try:  # JSON mode: its timestamps are ISO strings, as in the file
            Record.model_validate_json(orjson.dumps({"correlation_id": "", **record}))
        except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
            return False
    return True


def usable_units(units: Mapping[str, Unit], *, records: bool = True) -> dict[str, Unit]:
    """The units of a journal that the fold could have made (each field of the type the fold
    gives it; with ``records``, a stage's record a valid v1 record). Journals are files:
    another program or a damaged disk can leave units :func:`assemble` cannot take, and one
    such unit must not cost the job its file. Writers call this only when assembling the
    whole journal failed (it validates every record); views, on every page, check the types
    alone (a record's own values are the file's, and were validated with it)."""
    return {span_id: unit for span_id, unit in units.items() if _usable(unit, records)}


def keep_previous_records(doc: dict[str, Any], previous: bytes | None) -> dict[str, Any]:
    """``doc`` plus the records of the job's current file that ``doc`` lacks.

    Used when the job's journal is damaged (a line lost to a full disk or an edit, or the
    journal deleted): the file on disk then shows stages the journal cannot give back, and a
    file rebuilt from the journal alone would shrink. A record is matched by stage, start,
    end and scene: the same span always gives the same four. A previous file that is not
    valid v1 contributes nothing.
    """
    if not previous:
        return doc
    try:
        old = to_dict(load_collection(previous))
    except Exception:
        return doc
    have = {_record_key(rec) for rec in doc["records"]}
    lost = [rec for rec in old["records"] if _record_key(rec) not in have]
    ended = doc.get("collection_ended_at") or old.get("collection_ended_at")
    if not lost and ended == doc.get("collection_ended_at"):
        return doc
    records = sorted(doc["records"] + lost, key=lambda r: (r["started_at"], r["ended_at"]))
    return collection_dict(
        job_id=doc["job_id"],
        # The old file was written when the journal still held the root span's ids.
        correlation_id=old.get("correlation_id") or doc["correlation_id"],
        collection_started_at=min(doc["collection_started_at"], old["collection_started_at"]),
        collection_ended_at=ended,
        records=records,
        summary=summarize(records) if ended else None,
    )


def stage_of(span_id: str, units: Mapping[str, Unit]) -> str | None:
    """The span id of the stage a child or link span is folded into (None: none)."""
    return _stage_ancestor(span_id, units)


def trace_ids(units: Mapping[str, Unit]) -> list[str]:
    """The trace ids of a job's root spans (for links to a trace backend)."""
    return sorted({u["t"] for u in units.values() if u.get("k") == ROOT and "t" in u})
