"""Job and stage helpers: a pipeline described in a few obvious lines gets correct spans.

``job(...)`` opens the ``aura.job`` root span; ``stage(...)`` opens an ``aura.stage.<stage>``
span under it. Both are context managers (sync and async) and decorators (sync and async
functions). The handles they yield record usage, cost, cache hits, retries and the result.

Context travels the OpenTelemetry way (contextvars + W3C baggage), so it follows asyncio
tasks by itself, thread pools once ``configure()`` has enabled thread propagation (or through
:func:`bind_context`), and other processes through :func:`inject_context` /
:func:`continue_job`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import math
import uuid
from collections.abc import (
    AsyncGenerator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any, Self, TypeVar

import orjson
from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import budgets
from . import conventions as c
from .errors import InvalidJobIdError, JobValidationError
from .fold import plain_attributes
from .masking.logs import current_masker
from .schema import STAGES, ResultStatus, SelectionSource, Stage, validate_job_id
from .values import representable

logger = logging.getLogger("aura_otel")

F = TypeVar("F", bound=Callable[..., Any])
AttributeValue = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)

_TRACER_NAME = "aura_otel"
_JOB_KEY = context.create_key("aura_otel.job")
_STAGE_KEY = context.create_key("aura_otel.stage")
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_LLM_STAGES = frozenset({Stage.BRIEF, Stage.PLAN, Stage.SCRIPT})


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    if provider is None:
        return trace.get_tracer(_TRACER_NAME)
    return provider.get_tracer(_TRACER_NAME)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


def _is_amount(value: Any) -> bool:
    """A finite, non-negative number (money: a cost, an estimate, a budget)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


def metadata_attributes(metadata: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Metadata as span attributes: scalars and flat lists as ``aura.meta.<key>``, anything
    nested as JSON under ``aura.meta_json.<key>`` (OpenTelemetry attributes cannot nest)."""
    attrs: dict[str, AttributeValue] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        key = str(key)
        if _is_scalar(value):
            attrs[c.META_PREFIX + key] = value
        elif (
            isinstance(value, (list, tuple))
            and value
            and all(_is_scalar(v) for v in value)
            and len({type(v) for v in value}) == 1
        ):
            attrs[c.META_PREFIX + key] = list(value)
        else:
            attrs[c.META_JSON_PREFIX + key] = _json_text(value)
    return attrs


def _json_text(value: Any) -> str:
    """``value`` as JSON; what orjson refuses (keys that are not strings, integers beyond 64
    bits, lone surrogates, deep nesting) is made representable rather than raised into the
    stage the metadata describes."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return orjson.dumps(representable(value), default=str).decode()


# -- handles -------------------------------------------------------------------------------------
class _SpanHandle:
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def set_metadata(self, **metadata: Any) -> None:
        """Attach metadata that lands in the record's ``metadata`` (nested values allowed)."""
        self.span.set_attributes(metadata_attributes(metadata))

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"


class JobHandle(_SpanHandle):
    """The running job: its ids, and the way to mark an input-validation failure."""

    __slots__ = ("_failed", "budget", "correlation_id", "job_id", "project_id", "tracer_provider")

    def __init__(
        self,
        span: Span,
        job_id: str,
        correlation_id: str,
        project_id: str | None,
        tracer_provider: TracerProvider | None,
    ) -> None:
        super().__init__(span)
        self.job_id = job_id
        self.correlation_id = correlation_id
        self.project_id = project_id
        self.tracer_provider = tracer_provider
        self._failed = False
        self.budget: float | None = None

    def fail_validation(self, message: str) -> None:
        """Record the job as failed input validation (``VALIDATION_ERROR``) without raising."""
        self._mark_failed("VALIDATION_ERROR", message)

    def fail(self, message: str, error_code: str = "GENERATION_ERROR") -> None:
        """Record the job as failed without raising (e.g. a handled, fatal condition)."""
        self._mark_failed(error_code, message)

    def _mark_failed(self, code: str, message: str) -> None:
        self._failed = True
        self.span.set_attribute(c.ERROR_TYPE, code)
        self.span.set_status(Status(StatusCode.ERROR, message))


#: Classes (anywhere in an exception's MRO) that mean "the provider did not answer in time",
#: matched by name so no HTTP client has to be imported: the builtin ``TimeoutError`` (which
#: ``asyncio.TimeoutError``, ``socket.timeout`` and ``concurrent.futures.TimeoutError`` are),
#: ``httpx.TimeoutException``, ``requests.Timeout``, ``urllib3``'s ``TimeoutError``,
#: ``openai``/``anthropic``'s ``APITimeoutError`` and ``google.api_core``'s ``DeadlineExceeded``.
TIMEOUT_CLASS_NAMES = frozenset(
    {"TimeoutError", "Timeout", "TimeoutException", "APITimeoutError", "DeadlineExceeded"}
)
TIMEOUT_CODE = "TIMEOUT"


def error_code_for(exc: BaseException) -> str:
    """The ``error_code`` a failed stage records for ``exc``.

    An ``error_code`` attribute on the exception wins; timeouts become ``TIMEOUT``, the code
    the studio's legacy consumers know; anything else is the exception's class name.
    """
    code = getattr(exc, "error_code", None)
    if isinstance(code, str) and code:
        return code
    if isinstance(exc, TimeoutError) or any(
        cls.__name__ in TIMEOUT_CLASS_NAMES for cls in type(exc).__mro__
    ):
        return TIMEOUT_CODE
    return type(exc).__name__


class StageHandle(_SpanHandle):
    """One stage operation. Every setter is cheap and never raises into the pipeline."""

    __slots__ = ("_cost", "_error_code", "_result_set", "_retries", "stage")

    def __init__(self, span: Span, stage: Stage) -> None:
        super().__init__(span)
        self.stage = stage
        self._cost: float | None = None
        self._retries = 0
        self._result_set = False
        self._error_code: str | None = None

    @property
    def retries(self) -> int:
        return self._retries

    def add_retry(self) -> int:
        """Count one more attempt after the first; returns the new count."""
        self._retries += 1
        self.span.set_attribute(c.RETRY_COUNT, self._retries)
        return self._retries

    def set_response_model(self, model: str) -> None:
        """The model that actually answered (e.g. a dated id); the record prefers it."""
        self.span.set_attribute(c.GEN_AI_RESPONSE_MODEL, model)

    def record_usage(
        self,
        *,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        cached_input_tokens: int | None = None,
        characters: int | None = None,
        images: int | None = None,
        image_size: str | None = None,
        image_quality: str | None = None,
        output_seconds: float | None = None,
    ) -> None:
        """Usage of this operation. Cached input tokens are a subset of ``tokens_in``."""
        pairs: tuple[tuple[str, Any], ...] = (
            (c.GEN_AI_USAGE_INPUT_TOKENS, tokens_in),
            (c.GEN_AI_USAGE_OUTPUT_TOKENS, tokens_out),
            (c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cached_input_tokens),
            (c.USAGE_CHARACTERS, characters),
            (c.USAGE_IMAGES, images),
            (c.USAGE_IMAGE_SIZE, image_size),
            (c.USAGE_IMAGE_QUALITY, image_quality),
            (c.USAGE_OUTPUT_SECONDS, output_seconds),
        )
        self.span.set_attributes({k: v for k, v in pairs if v is not None})

    def set_cost(self, amount: float, currency: str = "USD") -> None:
        """An explicit cost (it always wins over the price table, and over the estimate a
        budget was charged with).

        An amount that is not a finite non-negative number (None, NaN, a negative figure) is
        logged and left out, so the estimate stands: charged to a budget, a NaN would make
        every later hard check false, a negative cost would hand money back."""
        if not _is_amount(amount):
            logger.warning(
                "aura-otel: set_cost(%r) is not an amount; the stage keeps its estimate", amount
            )
            return
        self._cost = float(amount)
        self.span.set_attributes(
            {c.COST_AMOUNT: self._cost, c.COST_CURRENCY: currency, c.COST_SOURCE: "explicit"}
        )

    def set_cache_hit(self, hit: bool = True) -> None:
        self.span.set_attribute(c.CACHE_HIT, bool(hit))

    def set_result(
        self,
        status: ResultStatus | str,
        message: str | None = None,
        *,
        error_code: str | None = None,
    ) -> None:
        """The operation's outcome: ``ok``, ``warn`` (degraded but usable) or ``error``; any
        other status is logged and the call left out (a setter never raises into the stage)."""
        try:
            status = ResultStatus(str(status).lower())
        except ValueError:
            logger.warning(
                "aura-otel: set_result(%r) is not ok, warn or error; the result is unchanged",
                status,
            )
            return
        self._result_set = True
        attrs: dict[str, AttributeValue] = {c.RESULT_STATUS: status.value}
        if message is not None:
            attrs[c.RESULT_MESSAGE] = message
        if error_code is not None:
            self._error_code = error_code
            attrs[c.ERROR_TYPE] = error_code
        self.span.set_attributes(attrs)
        if status is ResultStatus.ERROR:
            self.span.set_status(Status(StatusCode.ERROR, message))

    def warn(self, message: str) -> None:
        self.set_result(ResultStatus.WARN, message)

    def set_error_code(self, code: str) -> None:
        """The code to record if the stage fails (e.g. ``TIMEOUT``), instead of the class name."""
        self._error_code = code

    def _record_exception(self, exc: BaseException) -> None:
        code = self._error_code or error_code_for(exc)
        message = str(exc) or type(exc).__name__
        self.span.record_exception(exc, escaped=True)
        self.span.set_attributes(
            {
                c.RESULT_STATUS: ResultStatus.ERROR.value,
                c.ERROR_TYPE: code,
                c.RESULT_MESSAGE: message,
            }
        )
        self.span.set_status(Status(StatusCode.ERROR, message))


# -- the two context managers -------------------------------------------------------------------
@contextlib.contextmanager
def _current(ctx: Context) -> Iterator[None]:
    """``ctx`` current for the block (a generator's body, between two of its items)."""
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def _relay(item: Any) -> Generator[Any, Any, tuple[Any, BaseException | None]]:
    """Hand ``item`` to the consumer; (what it sent back, what it threw in for the body)."""
    try:
        return (yield item), None
    except GeneratorExit:
        raise
    except BaseException as exc:
        return None, exc


class _Scope:
    """Shared plumbing: sync/async context manager and decorator over one span."""

    _token: object | None = None
    _span: Span | None = None
    handle: Any = None

    def _open(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self, exc: BaseException | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fresh(self) -> Self:
        """A copy with no live state: one scope object per call of a decorated function."""
        clone = copy.copy(self)
        clone._token = None
        clone._span = None
        clone.handle = None
        return clone

    def __enter__(self) -> Any:
        return self._open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._close(exc)

    async def __aenter__(self) -> Any:
        return self._open()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._close(exc)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: each call runs in a fresh scope (safe under concurrency). A
        generator's scope lasts while it is iterated, and is current only while its body
        runs (see :meth:`_generator`)."""
        if inspect.isgeneratorfunction(fn):
            return self._generator(fn)  # type: ignore[return-value]
        if inspect.isasyncgenfunction(fn):
            return self._async_generator(fn)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _paused(self) -> Context:
        """Open the scope, then let its caller's context be current again: returns the
        scope's context, for a generator to make current each time its body runs."""
        self._open()
        ctx = context.get_current()
        self._detach()
        return ctx

    def _generator(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        """A decorated generator: its span starts with the first item asked for and ends when
        it is exhausted, fails (recorded as for a ``with`` block) or is closed early (not a
        failure). Between items the consumer runs in its own context: what it does there is
        not part of this stage or job."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            scope = self._fresh()
            gen = fn(*args, **kwargs)
            ctx = scope._paused()
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    with _current(ctx):
                        item = gen.send(sent) if thrown is None else gen.throw(thrown)
                    sent, thrown = yield from _relay(item)
            except StopIteration as stop:
                scope._close(None)
                return stop.value
            except GeneratorExit:
                with _current(ctx):
                    gen.close()
                scope._close(None)
                raise
            except BaseException as exc:
                scope._close(exc)
                raise

        return wrapper

    def _async_generator(
        self, fn: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        """:meth:`_generator` for ``async def`` generators."""

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            scope = self._fresh()
            agen = fn(*args, **kwargs)
            ctx = scope._paused()
            sent: Any = None
            thrown: BaseException | None = None
            try:
                while True:
                    with _current(ctx):
                        item = await (agen.asend(sent) if thrown is None else agen.athrow(thrown))
                    thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:  # thrown in by the consumer: the body's
                        thrown = exc
            except StopAsyncIteration:
                scope._close(None)
            except GeneratorExit:
                with _current(ctx):
                    await agen.aclose()
                scope._close(None)
                raise
            except BaseException as exc:
                scope._close(exc)
                raise

        return wrapper

    def _attach(self, ctx: Context) -> None:
        self._token = context.attach(ctx)

    def _detach(self) -> None:
        if self._token is not None:
            try:
                context.detach(self._token)  # type: ignore[arg-type]
            except Exception:  # a detach in another task/thread must not break the host
                logger.debug("aura-otel: context detach failed", exc_info=True)
            self._token = None


class job(_Scope):
    """Open a job: the ``aura.job`` root span, and the job's ids in context and baggage.

    ``correlation_id`` is generated (UUID4) when absent. An exception escaping the job marks it
    failed (``VALIDATION_ERROR`` for :class:`JobValidationError`, else ``GENERATION_ERROR``)
    and propagates unchanged.
    """

    def __init__(
        self,
        job_id: str,
        *,
        correlation_id: str | None = None,
        project_id: str | None = None,
        tracer_provider: TracerProvider | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: float | None = None,
    ) -> None:
        if budget is not None and not _is_amount(budget):
            raise ValueError(f"budget must be a non-negative amount, not {budget!r}")
        self.job_id = job_id
        self.correlation_id = correlation_id
        self.project_id = project_id
        self.tracer_provider = tracer_provider
        self.metadata = metadata
        self.budget = None if budget is None else float(budget)
        self.handle: JobHandle | None = None

    def _open(self) -> JobHandle:
        try:
            validate_job_id(self.job_id)
        except InvalidJobIdError as exc:
            # The job still runs; the exporter will refuse to write it. Say so once, clearly.
            logger.error("aura-otel: %s; this job's telemetry will not be written", exc)
        # Not str(): "None" or "12" would pass as ids, and every job whose id is missing would
        # share one file. A job id that is no string is treated as an empty one: no file.
        job_id = self.job_id if isinstance(self.job_id, str) else ""
        correlation_id = self.correlation_id or str(uuid.uuid4())
        attrs: dict[str, AttributeValue] = {
            c.JOB_ID: job_id,
            c.CORRELATION_ID: correlation_id,
        }
        if self.project_id:
            attrs[c.PROJECT_ID] = self.project_id
        if self.budget is not None:
            attrs[c.BUDGET_AMOUNT] = self.budget
        if self.metadata:
            attrs.update(metadata_attributes(self.metadata))
        ctx = context.get_current()
        masker = current_masker()
        for key in (c.JOB_ID, c.CORRELATION_ID, c.PROJECT_ID):
            # An id that holds a secret is replaced (or left out) in the span; the baggage
            # header goes with every outgoing request, so it stays in the process too.
            if key in attrs and masker.is_identifier(attrs[key]):
                ctx = baggage.set_baggage(key, attrs[key], ctx)
        span = _tracer(self.tracer_provider).start_span(
            c.JOB_SPAN_NAME, context=ctx, attributes=attrs
        )
        handle = JobHandle(span, job_id, correlation_id, self.project_id, self.tracer_provider)
        handle.budget = self.budget
        ctx = trace.set_span_in_context(span, ctx)
        self._attach(context.set_value(_JOB_KEY, handle, ctx))
        self._span, self.handle = span, handle
        return handle

    def _close(self, exc: BaseException | None) -> None:
        span, handle = self._span, self.handle
        try:
            if span is not None and exc is not None and handle is not None and not handle._failed:
                code = (
                    "VALIDATION_ERROR"
                    if isinstance(exc, JobValidationError)
                    else type(exc).__name__
                )
                span.record_exception(exc, escaped=True)
                span.set_attribute(c.ERROR_TYPE, code)
                span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
        finally:
            self._detach()
            if span is not None:
                span.end()
            if handle is not None:
                budgets.active().release(handle.job_id)


class stage(_Scope):
    """Open one stage operation: an ``aura.stage.<stage>`` span under the current job.

    An exception escaping the stage (``KeyboardInterrupt`` and task cancellation included)
    is recorded as ``error`` with ``error_code`` = the code given through
    ``set_error_code``/``error_code=``, else the exception's ``error_code`` attribute, else its
    class name; then it propagates unchanged.
    """

    def __init__(
        self,
        name: Stage | str,
        *,
        provider: str | None = None,
        model: str | None = None,
        operation: str | None = None,
        scene_index: int | None = None,
        selection_source: SelectionSource | str | None = None,
        fallback_reason: str | None = None,
        error_code: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tracer_provider: TracerProvider | None = None,
        estimated_cost: float | None = None,
    ) -> None:
        text = str(name.value if isinstance(name, Stage) else name).lower()
        if estimated_cost is not None and not _is_amount(estimated_cost):
            raise ValueError(
                f"estimated_cost must be a non-negative amount, not {estimated_cost!r}"
            )
        self.estimated_cost = None if estimated_cost is None else float(estimated_cost)
        if text not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
        self.stage = Stage(text)
        self.provider = provider
        self.model = model
        self.operation = operation
        self.scene_index = scene_index
        self.selection_source = (
            SelectionSource(str(selection_source).lower()) if selection_source is not None else None
        )
        self.fallback_reason = fallback_reason
        self.error_code = error_code
        self.metadata = metadata
        self.tracer_provider = tracer_provider
        self.handle: StageHandle | None = None

    def _attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {c.STAGE: self.stage.value}
        operation = self.operation or ("chat" if self.stage in _LLM_STAGES and self.model else None)
        optional: tuple[tuple[str, Any], ...] = (
            (c.GEN_AI_PROVIDER_NAME, self.provider),
            (c.GEN_AI_REQUEST_MODEL, self.model),
            (c.GEN_AI_OPERATION_NAME, operation),
            (c.SCENE_INDEX, self.scene_index),
            (c.SELECTION_SOURCE, self.selection_source.value if self.selection_source else None),
            (c.FALLBACK_REASON, self.fallback_reason),
        )
        attrs.update({k: v for k, v in optional if v is not None})
        if self.metadata:
            attrs.update(metadata_attributes(self.metadata))
        return attrs

    def _open(self) -> StageHandle:
        provider = self.tracer_provider
        job_handle = current_job()
        if provider is None and job_handle is not None:
            provider = job_handle.tracer_provider
        self._job = job_handle
        self._reserved = 0.0
        if self.estimated_cost is not None and job_handle is not None:
            # Before the span starts: a refused stage leaves no record, only the exception.
            # A started stage holds its estimate until it ends (see Budgets.check).
            budgets.active().check(
                job_handle.job_id,
                job_handle.project_id,
                job_handle.budget,
                self.provider,
                self.estimated_cost,
                reserve=True,
            )
            self._reserved = self.estimated_cost
        span = _tracer(provider).start_span(
            c.STAGE_SPAN_PREFIX + self.stage.value, attributes=self._attributes()
        )
        handle = StageHandle(span, self.stage)
        if self.error_code:
            handle.set_error_code(self.error_code)
        ctx = trace.set_span_in_context(span)
        self._attach(context.set_value(_STAGE_KEY, handle, ctx))
        self._span, self.handle = span, handle
        return handle

    def _close(self, exc: BaseException | None) -> None:
        try:
            if exc is not None and self.handle is not None:
                self.handle._record_exception(exc)
            self._charge(exc)
        finally:
            self._detach()
            if self._span is not None:
                self._span.end()

    def _charge(self, exc: BaseException | None) -> None:
        """Charge the stage's cost (explicit, else its estimate) to the budgets; a soft
        threshold it crosses makes the record a ``warn`` with the reason (an error stays an
        error), a log line and a metric."""
        job_handle, handle = getattr(self, "_job", None), self.handle
        if job_handle is None or handle is None:
            return
        amount = handle._cost if handle._cost is not None else self.estimated_cost
        reserved = getattr(self, "_reserved", 0.0)
        if not amount and not reserved:
            return
        try:
            crossed = budgets.active().charge(
                job_handle.job_id,
                job_handle.project_id,
                job_handle.budget,
                self.provider,
                amount or 0.0,
                reserved=reserved,
            )
        except Exception:  # the ledger never breaks a stage
            logger.debug("aura-otel: charging a budget failed", exc_info=True)
            return
        ledger = budgets.active()
        for message in crossed:
            logger.warning("aura-otel: job %s: %s", job_handle.job_id, message)
            ledger.count_warning(message.split()[1])
        if crossed and exc is None and not handle._result_set:
            handle.warn("; ".join(crossed))


def current_job() -> JobHandle | None:
    """The job whose context is current (None outside a job or in a continued remote job)."""
    value = context.get_value(_JOB_KEY)
    return value if isinstance(value, JobHandle) else None


def current_stage() -> StageHandle | None:
    """The stage whose context is current: lets a decorated function reach its handle."""
    value = context.get_value(_STAGE_KEY)
    return value if isinstance(value, StageHandle) else None


# -- stamping ------------------------------------------------------------------------------------
def _stamp_directly(span: Any, stamps: Mapping[str, str]) -> bool:
    """Put new string attributes straight into a just-started SDK span's attribute dict.

    ``Span.set_attributes`` runs the SDK's value cleaning per key (several Python calls each);
    on the application's thread, for every span, that was the larger part of stamping. What it
    would do here is known: the keys are absent, the values are strings. So when the span's
    ``BoundedAttributes`` has room and no value needs cutting, the dict is updated under the
    attributes' own lock, with the same outcome; anything else (a full span, a length limit
    that bites, an unknown attributes type) takes the SDK's own path. False means not done.
    """
    try:  # plain attribute reads: a missing one means an unknown shape, the SDK's own path
        attributes = span._attributes
        inner = attributes._dict
        lock = attributes._lock
        immutable = attributes._immutable
        maxlen = attributes.maxlen
        max_value_len = attributes.max_value_len
        ended = span._end_time
    except AttributeError:
        return False
    if type(inner) is not dict or lock is None or immutable:
        return False
    if maxlen is not None and len(inner) + len(stamps) > maxlen:
        return False
    if max_value_len is not None and any(len(v) > max_value_len for v in stamps.values()):
        return False
    if ended is not None:  # only a live span is stamped this way
        return False
    with lock:
        inner.update(stamps)
    return True


class JobContextProcessor(SpanProcessor):
    """Stamps ``aura.job.id`` (and correlation/project ids) on every span started in a job.

    Third-party spans (an HTTP client, an LLM SDK) nested under a stage know nothing about
    jobs; the ids come from the parent span when it is local, else from W3C baggage (a job
    continued from another process). Runs at start, so the ids are there whatever the span
    sets later.
    """

    _KEYS = (c.JOB_ID, c.CORRELATION_ID, c.PROJECT_ID)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            # Plain dict reads: this runs on the application thread for every span.
            own = plain_attributes(span)
            if c.JOB_ID in own:
                return
            parent = trace.get_current_span(parent_context)
            source: Mapping[str, Any] = plain_attributes(parent)
            if c.JOB_ID not in source:
                source = baggage.get_all(parent_context)
                if c.JOB_ID not in source:
                    return
            stamps = {}
            for key in self._KEYS:  # a loop, not a comprehension: no frame per span
                if key in source and key not in own:
                    value = source[key]
                    stamps[key] = value if value.__class__ is str else str(value)
            if not _stamp_directly(span, stamps):
                span.set_attributes(stamps)
        except Exception:  # never break span creation
            logger.debug("aura-otel: stamping a span failed", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# -- crossing processes --------------------------------------------------------------------------
def inject_context(carrier: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Write W3C ``traceparent`` and ``baggage`` (with the job id) into headers or a message."""
    carrier = {} if carrier is None else carrier
    _PROPAGATOR.inject(carrier)
    return carrier


def _extract(carrier: Any) -> Context:
    """The context a carrier holds; a carrier that holds none usable leaves the current one.

    Message clients (Kafka, AMQP) give header values as bytes, which are decoded; a value of
    any other type is skipped. A missing or malformed carrier is logged, never raised: the
    worker's own code runs either way, in the current context.
    """
    try:
        lowered: dict[str, str] = {}
        for key, value in carrier.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                lowered[str(key).lower()] = value
        return _PROPAGATOR.extract(lowered)
    except Exception:
        logger.warning(
            "aura-otel: continue_job() got no usable context (%s); the work runs in the current one",
            type(carrier).__name__,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        return context.get_current()


class continue_job(_Scope):
    """Continue a job started in another process: its spans join the same trace and job file.

    The one line a worker needs: ``with aura_otel.continue_job(headers):`` around the work.
    """

    def __init__(self, carrier: Mapping[str, str]) -> None:
        self.carrier = carrier

    def _open(self) -> str | None:
        ctx = _extract(self.carrier)
        self._attach(ctx)
        job_id = baggage.get_baggage(c.JOB_ID, ctx)
        return str(job_id) if job_id is not None else None

    def _close(self, exc: BaseException | None) -> None:
        self._detach()


def bind_context(fn: F) -> F:
    """Run ``fn`` later (another thread, a callback) in the context current now."""
    captured = context.get_current()

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        token = context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            context.detach(token)

    return bound  # type: ignore[return-value]
