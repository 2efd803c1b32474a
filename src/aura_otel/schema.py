"""RunTelemetry v1: the one definition of the legacy file format in the code.

The pydantic models validate files (strictly: a file is either v1 or it is reported), generate
the JSON Schema, and fix field order. The hot path (fold -> file) never builds models: it
builds plain dicts in the models' field order through :func:`record_dict` and serialises them
with orjson, because a pydantic round trip per span would cost more than the span itself.
"""

from __future__ import annotations

import calendar
import math
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from ._util import BoundedCache
from .errors import CorruptTelemetryError, InvalidJobIdError

SCHEMA_VERSION: Final = "1.0"
DEFAULT_CURRENCY = "USD"
JOB_ID_MAX_LENGTH = 128
MAX_INT = 2**63 - 1  # the legacy C# consumers read counts as long


class Stage(StrEnum):
    BRIEF = "brief"
    PLAN = "plan"
    SCRIPT = "script"
    SSML = "ssml"
    TTS = "tts"
    VISUALS = "visuals"
    RENDER = "render"
    POST = "post"


class ResultStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"


class SelectionSource(StrEnum):
    DEFAULT = "default"
    PINNED = "pinned"
    CLI = "cli"
    FALLBACK = "fallback"


#: Plain-string spellings for the hot paths (a str compare, not an enum attribute lookup).
STATUS_OK: Final = ResultStatus.OK.value
STATUS_WARN: Final = ResultStatus.WARN.value
STATUS_ERROR: Final = ResultStatus.ERROR.value

EnumCase = Literal["lower", "pascal"]
STAGES: tuple[str, ...] = tuple(s.value for s in Stage)
RESULT_STATUSES: tuple[str, ...] = tuple(s.value for s in ResultStatus)
SELECTION_SOURCES: tuple[str, ...] = tuple(s.value for s in SelectionSource)

# -- job ids -------------------------------------------------------------------------------------
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")
#: File systems limit a name to 255 bytes (ext4, XFS, btrfs, tmpfs, APFS); ids are UTF-8 names.
JOB_ID_MAX_BYTES = 255
#: Unicode categories an id may not contain: controls (C0, DEL and C1 such as U+0085), format
#: characters (zero-width, bidi overrides, soft hyphen), surrogates, private use, and the line
#: and paragraph separators. Unassigned code points (Cn) are allowed: Python's Unicode tables
#: may simply be older than the character.
_FORBIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))


def _forbidden_character(job_id: str) -> str | None:
    """The first character of a non-ASCII id that may not appear in a folder name, if any."""
    category = unicodedata.category
    for char in job_id:
        if char >= "\x80" and category(char) in _FORBIDDEN_CATEGORIES:
            return char
    return None


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a safe single path segment, else raise InvalidJobIdError.

    Job ids become folder names, so this is the only gate between a host's string and the
    file system, and it judges an id by what the file system will accept: UTF-8 (a lone
    surrogate cannot be encoded), at most 255 bytes encoded and 128 characters, no
    separators, no ``..``, no control or format characters of any Unicode category, no
    surrounding white space. An id that passes here always gets its folder.
    """
    if not isinstance(job_id, str):
        raise InvalidJobIdError(f"job id must be a string, got {type(job_id).__name__}")
    if not job_id or not job_id.strip():
        raise InvalidJobIdError("job id is empty")
    if len(job_id) > JOB_ID_MAX_LENGTH:
        raise InvalidJobIdError(
            f"job id is {len(job_id)} characters long; the limit is {JOB_ID_MAX_LENGTH}"
        )
    if job_id != job_id.strip():
        raise InvalidJobIdError(f"job id {job_id!r} has leading or trailing white space")
    if job_id in (".", "..") or _UNSAFE_ID.search(job_id):
        raise InvalidJobIdError(
            f"job id {job_id!r} is not a safe single path segment "
            "(no '/', '\\', '..', NUL or control characters)"
        )
    if not job_id.isascii():
        try:
            size = len(job_id.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidJobIdError(
                f"job id {job_id!r} is not valid Unicode text (it holds a lone surrogate, e.g. "
                "from os.fsdecode of a name that is not UTF-8)"
            ) from None
        if size > JOB_ID_MAX_BYTES:
            raise InvalidJobIdError(
                f"job id is {size} bytes long in UTF-8; file names are limited to "
                f"{JOB_ID_MAX_BYTES} bytes"
            )
        char = _forbidden_character(job_id)
        if char is not None:
            raise InvalidJobIdError(
                f"job id {job_id!r} is not a safe single path segment: it contains "
                f"U+{ord(char):04X} ({unicodedata.category(char)}), a control, format or "
                "separator character"
            )
    return job_id


def is_safe_job_id(job_id: object) -> bool:
    try:
        validate_job_id(job_id)
    except InvalidJobIdError:
        return False
    return True


# -- timestamps ----------------------------------------------------------------------------------
def format_timestamp(value: datetime) -> str:
    """ISO 8601, UTC, six fractional digits and a ``Z``: the one spelling v1 writes."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # The year by hand: strftime's %Y gives "999", not "0999", on Linux.
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S.%f}Z"


def format_timestamp_http(value: datetime) -> str:
    """The spelling every HTTP answer uses: UTC, ``Z``, a fraction only when non-zero.

    It is System.Text.Json's (``2026-11-20T10:00:00Z``, ``...:00.1Z``), the one the legacy
    consumers' golden files hold, so ``/api/telemetry/{id}`` and the RunCostReport spell the
    same instant alike. The file keeps six digits (:func:`format_timestamp`).
    """
    value = _to_utc(value)
    text = f"{value.year:04d}-{value:%m-%dT%H:%M:%S}"  # %Y is not zero-padded on Linux
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


#: Spans of a job share their seconds; small: a long-lived cache would pin memory.
_SECOND_PREFIXES: BoundedCache[int, str] = BoundedCache(64)


def format_timestamp_ns(epoch_ns: int) -> str:
    """Format nanoseconds since the epoch (OpenTelemetry's clock) without building a datetime.

    Spans of a job share their seconds, so the formatted second is cached (a small, bounded
    cache: the fold formats two timestamps per span).
    """
    if epoch_ns.__class__ is not int:
        epoch_ns = int(epoch_ns)
    seconds, micros = divmod(epoch_ns // 1000, 1_000_000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        prefix = _SECOND_PREFIXES.put(
            seconds, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
        )
    # Six digits by slicing a seventh off: cheaper than a format spec, twice per span.
    return prefix + str(micros + 1_000_000)[1:] + "Z"


def parse_timestamp_ns(text: str) -> int:
    """Inverse of :func:`format_timestamp_ns` for any ISO 8601 string (naive means UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return calendar.timegm(value.utctimetuple()) * 1_000_000_000 + value.microsecond * 1000


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, 9999 west of it: a validation error, not a crash
        raise ValueError("the date-time is out of range once converted to UTC") from None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _lower_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {(k.lower() if isinstance(k, str) else k): v for k, v in value.items()}
    return value


# -- money ---------------------------------------------------------------------------------------
def sum_money(values: Iterable[float | int | None]) -> float:
    """Sum amounts as decimals so 0.1 + 0.2 is written 0.3, not 0.30000000000000004.

    Each float is taken at its shortest repr (what the file says), summed exactly, and turned
    back into the float whose repr is that exact decimal. A lone amount needs no arithmetic:
    the float of its own repr is itself (``+ 0.0`` gives -0.0 the sign the decimal sum gives).
    """
    present = [value for value in values if value is not None]
    if len(present) == 1:
        return float(present[0]) + 0.0
    total = Decimal(0)
    for value in present:
        total += Decimal(repr(float(value)))
    result = float(total)
    # Absurd amounts (each finite, their sum not) saturate instead of writing an invalid file.
    return result if math.isfinite(result) else sys.float_info.max


def in_summary_currency(record: Mapping[str, Any]) -> bool:
    """Whether a record's cost is in the summary's currency (USD; absent means USD).

    The summary states one currency, and an amount in another cannot be added to dollars
    without a rate (0.1 EUR + 0.2 USD is not 0.3 USD), so totals leave such a cost out; the
    record keeps it, with its currency.
    """
    currency = record.get("currency")
    return (
        currency is None
        or currency == DEFAULT_CURRENCY
        or (isinstance(currency, str) and currency.strip().upper() == DEFAULT_CURRENCY)
    )


Timestamp = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
JobId = Annotated[str, AfterValidator(validate_job_id)]
StageField = Annotated[Stage, BeforeValidator(_lower)]
StatusField = Annotated[ResultStatus, BeforeValidator(_lower)]
SelectionField = Annotated[SelectionSource, BeforeValidator(_lower)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Record(_Model):
    """One stage operation."""

    version: Literal["1.0"] = SCHEMA_VERSION
    job_id: JobId
    correlation_id: str
    project_id: str | None = None
    stage: StageField
    scene_index: Count | None = None
    model_id: str | None = None
    provider: str | None = None
    selection_source: SelectionField | None = None
    fallback_reason: str | None = None
    tokens_in: Count | None = None
    tokens_out: Count | None = None
    cache_hit: bool | None = None
    retries: Count = 0
    latency_ms: Count
    cost_estimate: Money | None = None
    currency: str = DEFAULT_CURRENCY
    pricing_version: str | None = None
    result_status: StatusField
    error_code: str | None = None
    message: str | None = None
    started_at: Timestamp
    ended_at: Timestamp
    metadata: dict[str, Any] | None = None


class Summary(_Model):
    """Totals over a job's records; a view never recomputes what this states."""

    total_operations: Count
    successful_operations: Count
    failed_operations: Count
    total_cost: Money
    currency: str = DEFAULT_CURRENCY
    total_latency_ms: Count
    total_tokens_in: Count
    total_tokens_out: Count
    cache_hits: Count
    total_retries: Count
    cost_by_stage: Annotated[dict[Stage, Money], BeforeValidator(_lower_keys)]
    operations_by_provider: dict[str, Count]


class Collection(_Model):
    """One job's file."""

    version: Literal["1.0"] = SCHEMA_VERSION
    job_id: JobId
    correlation_id: str
    collection_started_at: Timestamp
    collection_ended_at: Timestamp | None = None
    records: list[Record]
    summary: Summary | None = None


RECORD_FIELDS: tuple[str, ...] = tuple(Record.model_fields)
COLLECTION_FIELDS: tuple[str, ...] = tuple(Collection.model_fields)
_RECORD_ENUM_FIELDS = ("stage", "result_status", "selection_source")


#: (field, default) in v1 order: the defaults a record gets when a field is absent, taken
#: from the model (``version``, ``retries``, ``currency``) so the two cannot disagree.
_RECORD_SLOTS: tuple[tuple[str, Any], ...] = tuple(
    (name, None if info.is_required() else info.default)
    for name, info in Record.model_fields.items()
)


def record_dict(**fields: Any) -> dict[str, Any]:
    """A record as a plain dict in v1 field order, absent fields left out, defaults filled."""
    return record_from(fields)


def record_from_slots(fields: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`record_from` as a loop over the slots: the reference the unrolled one is
    checked against (``tests/test_schema.py``)."""
    get = fields.get
    return {
        name: value for name, default in _RECORD_SLOTS if (value := get(name, default)) is not None
    }


def _unrolled_record_from() -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """:func:`record_from_slots` unrolled into one function, one statement per field.

    The fold picks every stage record (and assemble most of them again) through this: the loop
    unpacks a slot tuple and runs the comprehension's machinery for 25 fields per record, which
    the unrolled body does not, at a third less time. Generated from ``_RECORD_SLOTS`` (as
    ``dataclasses`` generates ``__init__``), so it cannot drift from the model.
    """
    lines = ["def record_from(fields):", "    get = fields.get", "    out = {}"]
    scope: dict[str, Any] = {}
    for index, (name, default) in enumerate(_RECORD_SLOTS):
        if default is None:
            lines.append(f"    value = get({name!r})")
        else:
            scope[f"_default{index}"] = default
            lines.append(f"    value = get({name!r}, _default{index})")
        lines.append(f"    if value is not None: out[{name!r}] = value")
    lines.append("    return out")
    exec("\n".join(lines), scope)
    function: Callable[[Mapping[str, Any]], dict[str, Any]] = scope["record_from"]
    function.__doc__ = (
        ":func:`record_dict` of a mapping already at hand (the fold's hot path: no keyword "
        "copy). Keys that are not v1 record fields are ignored, so a caller may pass its "
        "working dict."
    )
    function.__module__ = __name__
    return function


record_from = _unrolled_record_from()


def collection_dict(**fields: Any) -> dict[str, Any]:
    """A collection as a plain dict in v1 field order, absent fields left out."""
    fields.setdefault("version", SCHEMA_VERSION)
    return {name: value for name in COLLECTION_FIELDS if (value := fields.get(name)) is not None}


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The v1 summary of record dicts (lowercase or PascalCase enums alike)."""
    total = ok = failed = latency = tokens_in = tokens_out = hits = retries = 0
    costs: list[Any] = []
    stage_costs: dict[str, list[Any]] = {}
    providers: dict[str, int] = {}
    for rec in records:
        get = rec.get
        total += 1
        status = get("result_status", "")
        status = (status if status.__class__ is str else str(status)).lower()
        if status == STATUS_OK:
            ok += 1
        elif status == STATUS_ERROR:
            failed += 1
        latency += get("latency_ms") or 0
        tokens_in += get("tokens_in") or 0
        tokens_out += get("tokens_out") or 0
        if get("cache_hit") is True:
            hits += 1
        retries += get("retries") or 0
        cost = get("cost_estimate")
        if cost is not None and not in_summary_currency(rec):
            cost = None  # not dollars: it cannot be added to a dollar total
        costs.append(cost)
        stage = get("stage", "")
        stage = (stage if stage.__class__ is str else str(stage)).lower()
        if stage in stage_costs:
            stage_costs[stage].append(cost)
        else:
            stage_costs[stage] = [cost]
        provider = get("provider")
        if provider is not None:
            providers[provider] = providers.get(provider, 0) + 1
    return {
        "total_operations": total,
        "successful_operations": ok,
        "failed_operations": failed,
        "total_cost": sum_money(costs),
        "currency": DEFAULT_CURRENCY,
        # Totals saturate at the largest count v1 allows rather than overflow the file.
        "total_latency_ms": min(latency, MAX_INT),
        "total_tokens_in": min(tokens_in, MAX_INT),
        "total_tokens_out": min(tokens_out, MAX_INT),
        "cache_hits": hits,
        "total_retries": min(retries, MAX_INT),
        "cost_by_stage": {stage: sum_money(values) for stage, values in stage_costs.items()},
        "operations_by_provider": providers,
    }


def success_rate(summary: Mapping[str, Any]) -> float:
    """successful / total * 100, 0 with no operations (never stored, always derived)."""
    total = summary.get("total_operations") or 0
    return (summary.get("successful_operations") or 0) / total * 100 if total else 0.0


# -- (de)serialisation ---------------------------------------------------------------------------
def _pascal(value: str) -> str:
    return value[:1].upper() + value[1:]


def apply_enum_case(doc: dict[str, Any], enum_case: EnumCase) -> dict[str, Any]:
    """Spell the records' enum values in ``enum_case`` (summary keys stay lowercase, as the old
    writer left them)."""
    if enum_case == "lower":
        return doc
    if enum_case != "pascal":
        raise ValueError(f"enum_case must be 'lower' or 'pascal', not {enum_case!r}")
    records = []
    for rec in doc.get("records", ()):
        rec = dict(rec)
        for name in _RECORD_ENUM_FIELDS:
            if isinstance(rec.get(name), str):
                rec[name] = _pascal(rec[name])
        records.append(rec)
    return {**doc, "records": records}


def dumps(doc: Mapping[str, Any], *, enum_case: EnumCase = "lower", indent: bool = True) -> bytes:
    """Serialise a collection dict as the v1 file: UTF-8, indented, enums in ``enum_case``."""
    out = apply_enum_case(dict(doc), enum_case)
    option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE if indent else 0
    return orjson.dumps(out, option=option | orjson.OPT_NON_STR_KEYS)


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_errors(data: bytes | str) -> list[tuple[str, str]]:
    """Every way ``data`` breaks v1, as (JSON path, message) pairs; empty when it is valid."""
    try:
        Collection.model_validate_json(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            problems.append((_json_path(loc), err["msg"]))
        return problems
    return []


def load_collection(data: bytes | str, job_id: str | None = None) -> Collection:
    """Parse and validate a v1 file (either enum spelling); CorruptTelemetryError otherwise.

    ``job_id``: the job the file was found under. A file that names another job (copied or
    planted from elsewhere) is not this job's, and every view must say so alike."""
    try:
        collection = Collection.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise CorruptTelemetryError(
            f"not a valid RunTelemetry v1 document: {exc.error_count()} problem(s), first at "
            f"{_json_path(tuple(first['loc']))}: {first['msg']}"
        ) from None
    if job_id is not None and collection.job_id != job_id:
        raise CorruptTelemetryError(
            f"the document is job {collection.job_id!r}'s, not {job_id!r}'s (its job_id does "
            "not match where it is stored)"
        )
    return collection


def to_dict(collection: Collection) -> dict[str, Any]:
    """A validated collection as the file's dict: absent optional fields left out, lowercase.

    Only record- and collection-level ``None`` means absent; a ``null`` inside metadata is data.
    """
    doc = collection.model_dump(mode="json")
    doc["records"] = [{k: v for k, v in rec.items() if v is not None} for rec in doc["records"]]
    return {k: v for k, v in doc.items() if v is not None}


def to_http(collection: Collection) -> dict[str, Any]:
    """The HTTP shape: every optional field present, absent ones as explicit ``null``, and
    date-times in :func:`format_timestamp_http`'s spelling."""
    doc = collection.model_dump(mode="json")
    doc["collection_started_at"] = format_timestamp_http(collection.collection_started_at)
    if collection.collection_ended_at is not None:
        doc["collection_ended_at"] = format_timestamp_http(collection.collection_ended_at)
    for out, rec in zip(doc["records"], collection.records, strict=True):
        out["started_at"] = format_timestamp_http(rec.started_at)
        out["ended_at"] = format_timestamp_http(rec.ended_at)
    return doc


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the v1 collection, generated from the models."""
    schema = Collection.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "RunTelemetry v1"
    return schema


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for NaN, infinities, bools and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float (OpenTelemetry accepts any int)
        return None
    return number if math.isfinite(number) else None
