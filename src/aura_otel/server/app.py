"""The read-only web app: the v1 and legacy HTTP API, the job list and the Run Details page.

Every route that takes a job id goes through :meth:`JobStore.read`, which validates the id
before it touches a path; routes whose id contains a ``/`` (after URL decoding) land on a
catch-all that answers 400, so no request can name a file outside the jobs folder. Only GET
and HEAD exist: the server never writes a job's files (its one write is the fleet view's
summary cache in the jobs folder, see :mod:`aura_otel.insights.source`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import conventions as c
from .. import figures, legacy
from .._util import BoundedCache
from ..budgets import BudgetRules
from ..errors import (
    AuraOtelError,
    ConfigurationError,
    CorruptTelemetryError,
    InvalidJobIdError,
    StoreUnavailableError,
    TelemetryNotFoundError,
    TelemetryTooLargeError,
)
from ..exporter import was_forwarded
from ..fold import trace_ids, usable_units
from ..insights import JobSource, charts, history_for
from ..insights import fleet as fleet_view
from ..insights.source import job_history, jobs_history
from ..pricing import PriceTable, load_price_table
from ..schema import (
    DEFAULT_CURRENCY,
    SCHEMA_VERSION,
    Collection,
    ResultStatus,
    SelectionSource,
    Stage,
    json_schema,
    to_http,
)
from ..settings import Settings, check_http_url, check_trace_url, parse_seconds
from ..shapes import TelemetrySchema
from ..store import Units
from ..stores import JobFilter, Store, open_store
from . import operation as operation_view
from . import views
from .joblist import DEFAULT_PAGE_SIZE, JobPage
from .openapi import openapi_document
from .problems import NOT_FOUND_GUIDANCE, correlation_id, problem
from .security import ControlCharacterGate, LoopbackHostGate, SecurityHeaders, TokenGate

logger = logging.getLogger("aura_otel.server")

HERE = Path(__file__).parent
REFRESH_SECONDS = 5
ERROR_CODES = ("TIMEOUT", "VALIDATION_ERROR", "GENERATION_ERROR", "LLM_ERROR")
METADATA_KEYS = {
    "brief": ["topic", "audience", "goal"],
    "plan": ["scene_count", "target_duration_seconds"],
    "script": ["script_length", "rag_enabled", "used_fallback"],
    "tts": ["total_characters", "scene_count", "voice_name", "characters", "duration_seconds"],
    "render": ["output_path", "resolution", "fps", "codec"],
    "post": ["final_output"],
}

Endpoint = Callable[[Request], Response]


def resolve_max_file_bytes(value: int | str | None = None) -> int:
    """The size cap from the argument, else ``AURA_OTEL_MAX_FILE_BYTES``, else 32 MiB."""
    if value is None:
        return Settings.from_env(masking=False).max_file_bytes
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigurationError(
            f"max_file_bytes must be a whole number of bytes of at least 1, not {value!r}"
        )
    return number


def resolve_abandoned_after(value: float | str | None = None) -> float:
    """The quiet time from the argument, else ``AURA_OTEL_ABANDONED_AFTER``, else one hour."""
    if value is None:
        return Settings.from_env(masking=False).abandoned_after
    return parse_seconds(value, "abandoned_after")


def too_large_detail(job_id: str, exc: TelemetryTooLargeError) -> str:
    return (
        f"The telemetry file of job {job_id!r} is {exc.size} bytes; this server reads at "
        f"most {exc.limit} (--max-file-bytes / {c.ENV_MAX_FILE_BYTES})."
    )


def _check_jaeger_url(jaeger_url: str | None) -> str | None:
    if not jaeger_url:
        return None
    try:
        return check_http_url(jaeger_url)
    except ValueError:
        raise ConfigurationError(
            f"the Jaeger URL must be an http(s) URL, not {jaeger_url!r}"
        ) from None


def _trace_template(jaeger_url: str | None, trace_url: str | None) -> tuple[str | None, str]:
    """The link template and the backend's name for the button: ``trace_url`` (any backend)
    wins; a Jaeger base URL is the shorthand for Jaeger's ``/trace/{trace_id}`` page."""
    if trace_url:
        try:
            template = check_trace_url(trace_url)
        except ValueError:
            raise ConfigurationError(
                f"the trace URL must be an http(s) URL containing {{trace_id}}, not {trace_url!r}"
            ) from None
        host = urlsplit(template.replace("{trace_id}", "0")).hostname or "the trace backend"
        return template, host
    jaeger = _check_jaeger_url(jaeger_url)
    return (f"{jaeger}/trace/{{trace_id}}" if jaeger else None), "Jaeger"


def _server_prices() -> PriceTable | None:
    """The table the drill-down explains rates with (shipped, plus the override file). A bad
    override only costs the explanation: the figures come from the files, priced at fold time."""
    try:
        return load_price_table()
    except ConfigurationError as exc:
        logger.warning("the drill-down shows no rates: %s", exc)
        return None


def _page_number(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None


UNAVAILABLE_DETAIL = (
    "The job store cannot be reached right now; nothing is wrong with the request. Retry shortly."
)
_STATUSES = {str(s) for s in figures.JobStatus}


def _date(request: Request, name: str) -> datetime | None:
    """A ``from``/``to`` bound: an ISO 8601 date or date-time (UTC unless it says otherwise)."""
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name} must be an ISO 8601 date or date-time "
            f"(2026-05-01 or 2026-05-01T12:00:00Z), not {raw!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if name == "to" and _is_date(raw):  # a whole day: up to the end of it
        try:
            moment += timedelta(days=1)
        except OverflowError:  # to=9999-12-31: the end of time
            moment = datetime.max.replace(tzinfo=UTC)
    return moment


def _is_date(raw: str) -> bool:
    """Whether ``raw`` names a day, in any spelling ISO 8601 has for one (2026-05-01,
    20260501, 2026-W18-5), rather than a moment."""
    try:
        date.fromisoformat(raw)
    except ValueError:
        return False
    return True


def job_filter(request: Request) -> JobFilter:
    """The list's filters from the query string; ValueError names what is wrong."""
    status = (request.query_params.get("status") or "").strip().lower() or None
    if status is not None and status not in _STATUSES:
        raise ValueError(f"status must be one of {', '.join(sorted(_STATUSES))}, not {status!r}")
    search = (request.query_params.get("q") or "").strip() or None
    if search is not None and len(search) > 200:
        raise ValueError("q (search by job id) is limited to 200 characters")
    since, until = _date(request, "from"), _date(request, "to")
    if since is not None and until is not None and since >= until:
        raise ValueError("from must be before to")
    return JobFilter(status=status, since=since, until=until, search=search)


class TelemetryApp:
    """Holds the app's configuration and answers its routes (one instance per app)."""

    def __init__(
        self,
        jobs_dir: str | Path | Store | None,
        jaeger_url: str | None,
        max_file_bytes: int | None = None,
        abandoned_after: float | None = None,
        trace_url: str | None = None,
    ) -> None:
        self.store = open_store(jobs_dir, max_file_bytes=resolve_max_file_bytes(max_file_bytes))
        self.abandoned_after = abandoned_after
        self.index = self.store.lister(abandoned_after=abandoned_after)
        self.trace_template, self.trace_backend = _trace_template(jaeger_url, trace_url)
        self.prices = _server_prices()
        self.budget_rules = BudgetRules.from_env()
        #: The fleet view's jobs, through the store interface (folder or PostgreSQL).
        self.source: JobSource = self.store.job_source()
        self._verdicts: tuple[int | None, dict[str, list[Any]]] = (None, {})
        self._verdict_lock = threading.Lock()
        #: Fleet figures by (source generation, filters): valid while no job changes.
        self._fleets: BoundedCache[tuple[Any, Any], fleet_view.Fleet] = BoundedCache(16)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._openapi = openapi_document()

    # -- shared ----------------------------------------------------------------------------------
    def read(self, job_id: str) -> Collection:
        """The job's collection.

        The store opens the file relative to the jobs folder without following links and
        without blocking (a link reads as absent, a FIFO or device as unreadable) and refuses
        a file over the size cap before reading it. Routes are plain functions, which
        Starlette runs in its thread pool: parsing never holds up the event loop.
        """
        return self.store.read(job_id)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("refresh_seconds", None)
        html = self.templates.get_template(template).render(fmt=views, **context)
        return HTMLResponse(html, status_code=status)

    def error_page(
        self, request: Request, status: int, heading: str, message: str, hint: str = ""
    ) -> HTMLResponse:
        return self.render(
            "error.html",
            status,
            heading=heading,
            message=message,
            hint=hint,
            correlation_id=correlation_id(request),
        )

    # -- API -------------------------------------------------------------------------------------
    def api(self, build: Callable[[Request, str], Any]) -> Endpoint:
        """Wrap a job endpoint: read the id, map aura-otel errors to problem objects."""

        @functools.wraps(build)
        def endpoint(request: Request) -> Response:
            job_id = request.path_params.get("job_id", "")
            try:
                return JSONResponse(build(request, job_id))
            except InvalidJobIdError as exc:
                return problem(request, 400, f"Invalid job id: {exc}")
            except TelemetryNotFoundError:
                return problem(
                    request,
                    404,
                    f"No telemetry was found for job {job_id!r}.",
                    guidance=NOT_FOUND_GUIDANCE,
                )
            except IndexError:
                return problem(
                    request,
                    404,
                    f"Job {job_id!r} has no operation with that "
                    "number (operations are numbered from 0 in file order).",
                )
            except TelemetryTooLargeError as exc:
                logger.warning("job %r: %s [correlation %s]", job_id, exc, correlation_id(request))
                return problem(request, 422, too_large_detail(job_id, exc))
            except StoreUnavailableError as exc:
                return self.unavailable(request, exc)
            except CorruptTelemetryError as exc:
                logger.warning(
                    "job %r: unreadable telemetry (%s) [correlation %s]",
                    job_id,
                    exc,
                    correlation_id(request),
                )
                return problem(
                    request,
                    500,
                    f"The telemetry file of job {job_id!r} is corrupt "
                    "or incomplete and cannot be read as RunTelemetry v1.",
                )
            except Exception:
                return self.unexpected(request)

        return endpoint

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """Wrap a page or list endpoint: whatever it did not expect (a value in some file no
        check foresaw) is answered like the API's, inside the middleware (security headers
        included), never as a bare "Internal Server Error"."""

        @functools.wraps(endpoint)
        def guard(request: Request) -> Response:
            try:
                return endpoint(request)
            except Exception:
                return self.unexpected(request)

        return guard

    def unexpected(self, request: Request) -> Response:
        """The answer to an unexpected error (called in its ``except``): logged with its
        traceback and correlation id; a problem object for the API, an error page otherwise."""
        logger.exception(
            "unexpected error for %s [correlation %s]", request.url.path, correlation_id(request)
        )
        if request.url.path.startswith("/api/"):
            return problem(
                request,
                500,
                "An unexpected error occurred. Quote the correlation id when reporting it.",
            )
        return self.error_page(
            request,
            500,
            "Something went wrong",
            "This page could not be shown because of an unexpected error.",
            "Quote the correlation id below when reporting it.",
        )

    def telemetry(self, request: Request, job_id: str) -> dict[str, Any]:
        return to_http(self.read(job_id))

    def diagnostics(self, request: Request, job_id: str) -> dict[str, Any]:
        return legacy.diagnostics_summary(self.read(job_id))

    def run_summary(self, request: Request, job_id: str) -> dict[str, Any]:
        collection = self.read(job_id)
        units = self.units(job_id)
        budget = next(
            (float(u["b"]) for u in units.values() if u.get("k") == "root" and "b" in u),
            self.budget_rules.job.total.hard,
        )
        limits = {
            name: limit.hard
            for name, limit in self.budget_rules.job.providers.items()
            if limit.hard is not None
        }
        return legacy.run_cost_report(collection, budget=budget, provider_limits=limits)

    def schema(self, request: Request) -> Response:
        return JSONResponse(
            TelemetrySchema(
                version=SCHEMA_VERSION,
                stages=list(Stage),
                resultStatuses=list(ResultStatus),
                selectionSources=list(SelectionSource),
                errorCodes=list(ERROR_CODES),
                defaultCurrency=DEFAULT_CURRENCY,
                metadataKeys=METADATA_KEYS,
                jsonSchema=json_schema(),
            ).model_dump(mode="json")
        )

    def unavailable(self, request: Request, exc: Exception) -> Response:
        """503 with a problem object: the store is down or slow, the sender should retry."""
        logger.warning(
            "%s: the store is unavailable (%s) [correlation %s]",
            request.url.path,
            exc,
            correlation_id(request),
        )
        response = problem(request, 503, UNAVAILABLE_DETAIL, title="Service Unavailable")
        response.headers["Retry-After"] = "5"
        return response

    def jobs_api(self, request: Request) -> Response:
        try:
            page = self.index.page(
                _page_number(request, "page", 1),
                _page_number(request, "pageSize", DEFAULT_PAGE_SIZE),
                job_filter(request),
            )
        except ValueError as exc:
            return problem(request, 400, str(exc))
        except StoreUnavailableError as exc:
            return self.unavailable(request, exc)
        return JSONResponse(self.flagged(page).to_json())

    def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)

    # -- pages -----------------------------------------------------------------------------------
    def jobs_page(self, request: Request) -> Response:
        try:
            filters = job_filter(request)
            page = self.index.page(_page_number(request, "page", 1), DEFAULT_PAGE_SIZE, filters)
        except ValueError as exc:
            return self.error_page(request, 400, "Invalid request", str(exc))
        except StoreUnavailableError as exc:
            logger.warning("/jobs: the store is unavailable (%s)", exc)
            response = self.error_page(
                request, 503, "Jobs are unavailable right now", UNAVAILABLE_DETAIL
            )
            response.headers["Retry-After"] = "5"
            return response
        page = self.flagged(page)
        running = any(figures.is_live(item["status"]) for item in page.items)
        query = {key: request.query_params.get(key, "") for key in ("status", "from", "to", "q")}
        keep = urlencode({k: v for k, v in query.items() if v})
        return self.render(
            "jobs.html",
            page=page,
            labels=views.JOB_STATUS_LABELS,
            refresh_seconds=REFRESH_SECONDS if running else None,
            query=query,
            keep=("&" + keep) if keep else "",
            filtered=not filters.empty,
        )

    def run_page(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        collection = self.read_for_page(request, job_id)
        if isinstance(collection, Response):
            return collection
        units = self.units(job_id)
        details = views.run_details(
            collection,
            sort=request.query_params.get("sort"),
            direction=request.query_params.get("dir", "asc"),
            traces=self.traces(job_id, units),
            trace_backend=self.trace_backend,
            abandoned_after=self.abandoned_after,
        )
        doc = figures.as_dict(collection)
        index = operation_view.SpanIndex(units)
        operations = [
            operation_view.operation(doc, units, n, self.prices, index)
            for n in range(len(doc.get("records") or []))
        ]
        return self.render(
            "run_details.html",
            run=details,
            rendered_at=views.now_text(),
            refresh_seconds=REFRESH_SECONDS if details.running else None,
            operations=operations,
            job_url=views.job_url(job_id),
            anomalies=self.job_anomalies(job_id),
        )

    def operation_page(self, request: Request) -> Response:
        """One operation on a page of its own: the drill-down without JavaScript (the Run
        Details page's script shows the same page's panel in place)."""
        job_id = request.path_params["job_id"]
        collection = self.read_for_page(request, job_id)
        if isinstance(collection, Response):
            return collection
        try:
            op = operation_view.operation(
                figures.as_dict(collection),
                self.units(job_id),
                int(request.path_params["position"]),
                self.prices,
            )
        except IndexError:
            return self.error_page(
                request,
                404,
                "Operation not found",
                f"Job “{job_id}” has no operation with that number.",
            )
        return self.render("operation.html", op=op, job_url=views.job_url(job_id))

    # -- fleet view ------------------------------------------------------------------------------
    def fleet(self, request: Request) -> fleet_view.Fleet:
        """The fleet figures for the request's period and filters (ValueError: bad query)."""

        def key(filters: fleet_view.Filters) -> tuple[Any, fleet_view.Filters]:
            return (getattr(self.source, "generation", None), filters)

        filters, history = history_for(
            self.source,
            lambda latest: fleet_view.parse_filters(
                request.query_params,
                _moment(latest),
            ),
            lambda filters: key(filters)[0] is not None and key(filters) in self._fleets,
        )
        generation = key(filters)[0]
        now = datetime.now(UTC)
        known = self._fleets.get(key(filters)) if generation is not None else None
        if known is not None and (known.expires is None or now.timestamp() < known.expires):
            # Same history, same query: the same figures (a dashboard that reloads, the CSV
            # and JSON downloads of the page just drawn) without reading the period again,
            # until a job they call running has been quiet long enough to be abandoned.
            return known
        if history is None:  # forgotten since (the memo is bounded), or expired: read it now
            history = list(self.source.history(filters.start, filters.end))  # type: ignore[attr-defined]
        result = fleet_view.compute(
            self.source,
            filters,
            history=history,
            verdicts=self.verdicts(),
            now=now,
            abandoned_after=self.abandoned_after,
        )
        if generation is not None:
            with self._verdict_lock:
                self._fleets.put((generation, filters), result)
        return result

    def verdicts(self) -> dict[str, list[Any]] | None:
        """Anomaly verdicts memoised for the source's current generation (None: a source
        that cannot tell when its history changed is judged afresh)."""
        generation = getattr(self.source, "generation", None)
        if generation is None:
            return None
        with self._verdict_lock:
            if self._verdicts[0] != generation:
                self._verdicts = (generation, {})
            return self._verdicts[1]

    def insights_page(self, request: Request) -> Response:
        try:
            result = self.fleet(request)
        except ValueError as exc:
            return self.error_page(request, 400, "Invalid request", str(exc))
        query = urlencode(result.filters.query())
        return self.render(
            "insights.html",
            fleet=result,
            charts=charts,
            query=query,
            filter_names=fleet_view.FILTER_NAMES,
        )

    def insights_api(self, request: Request) -> Response:
        try:
            return JSONResponse(self.fleet(request).to_json())
        except ValueError as exc:
            return problem(request, 400, str(exc))

    def insights_metrics(self, request: Request) -> Response:
        """The fleet's anomaly counts (and totals) in the Prometheus text format, for the
        same query as ``/api/insights``: a scraper alerts on them like on any other metric."""
        try:
            result = self.fleet(request)
        except ValueError as exc:
            return problem(request, 400, str(exc))
        return Response(
            fleet_view.prometheus_text(result),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def insights_download(self, request: Request) -> Response:
        """One chart's numbers as CSV or JSON (an attachment, named after chart and period)."""
        chart, fmt = request.path_params["chart"], request.path_params["fmt"]
        try:
            result = self.fleet(request)
        except ValueError as exc:
            return problem(request, 400, str(exc))
        table = result.tables.get(chart)
        if table is None or fmt not in ("csv", "json"):
            return problem(
                request,
                404,
                f"There is no chart {chart!r} as {fmt!r}.",
                guidance="Charts: " + ", ".join(result.tables) + "; formats: csv, json.",
            )
        name = f"{chart}_{result.filters.since}_{result.filters.until}.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            return Response(table.to_csv(), media_type="text/csv; charset=utf-8", headers=headers)
        return JSONResponse(table.to_json(), headers=headers)

    def flagged(self, page: JobPage) -> JobPage:
        """The page with each job's anomalies (the fleet view's verdicts, memoised with them).

        The list must never fail for them: when the history cannot be read, the page is shown
        unflagged and the reason logged.
        """
        from ..insights import job_anomalies

        ids = [item["jobId"] for item in page.items]
        try:
            found = job_anomalies(jobs_history(self.source, ids), ids, verdicts=self.verdicts())
        except (AuraOtelError, OSError) as exc:
            logger.warning("job list: anomalies not judged: %s", exc)
            found = []
        flags: dict[str, list[dict[str, Any]]] = {}
        for anomaly in found:
            flags.setdefault(anomaly.job_id or "", []).append(
                {
                    "kind": anomaly.kind,
                    "stage": anomaly.stage,
                    "provider": anomaly.provider,
                    "explanation": anomaly.explanation,
                }
            )
        items = [{**item, "anomalies": flags.get(item["jobId"], [])} for item in page.items]
        return JobPage(items=items, page=page.page, page_size=page.page_size, total=page.total)

    def job_anomalies(self, job_id: str) -> list[Any]:
        """This job's anomalies against its comparable history (the fleet view's method)."""
        from ..insights import job_anomalies

        return job_anomalies(job_history(self.source, job_id), [job_id], verdicts=self.verdicts())

    def read_for_page(self, request: Request, job_id: str) -> Collection | Response:
        """The job's collection, or the error page that explains why there is none."""
        try:
            return self.read(job_id)
        except StoreUnavailableError as exc:
            logger.warning("job %r: the store is unavailable (%s)", job_id, exc)
            response = self.error_page(
                request, 503, "Job unavailable right now", UNAVAILABLE_DETAIL
            )
            response.headers["Retry-After"] = "5"
            return response
        except InvalidJobIdError as exc:
            return self.error_page(request, 400, "Not a valid job id", str(exc))
        except TelemetryNotFoundError:
            return self.error_page(
                request,
                404,
                "Job not found",
                f"There is no telemetry for a job called “{job_id}”.",
                "Check the id, or pick the job from the list. A job appears once its first "
                "stage has ended.",
            )
        except TelemetryTooLargeError as exc:
            logger.warning("job %r: %s", job_id, exc)
            return self.error_page(
                request, 422, "Telemetry too large to show", too_large_detail(job_id, exc)
            )
        except CorruptTelemetryError as exc:
            logger.warning("job %r: unreadable telemetry (%s)", job_id, exc)
            return self.error_page(
                request,
                500,
                "Telemetry cannot be read",
                f"The telemetry file of job “{job_id}” is corrupt or incomplete.",
                "It may still be being written by an old tool, or have been edited by hand.",
            )

    def units(self, job_id: str) -> Units:
        """The job's units that the fold could have made: a journal is a file, and a line
        another program wrote (a trace id that is a number, a record that is a list) must cost
        the page that unit, never the page."""
        return usable_units(self.store.read_units(job_id), records=False)

    def traces(self, job_id: str, units: Units | None = None) -> list[tuple[str, str | None]]:
        """The job's trace ids, each with its link: only when a template is configured and the
        job's spans were forwarded (a backend that never got the trace shows an empty page)."""
        if units is None:
            units = self.units(job_id)
        ids = [t for t in trace_ids(units) if t.isalnum()]
        linked = self.trace_template is not None and was_forwarded(units)
        return [
            (
                t,
                self.trace_template.replace("{trace_id}", quote(t))
                if linked and self.trace_template
                else None,
            )
            for t in ids
        ]

    def operation(self, job_id: str, position: int) -> operation_view.Operation:
        return operation_view.operation(
            figures.as_dict(self.read(job_id)), self.units(job_id), position, self.prices
        )

    def operation_api(self, request: Request, job_id: str) -> dict[str, Any]:
        # An IndexError (no such operation) becomes a 404 problem in ``api``.
        return self.operation(job_id, int(request.path_params["position"])).to_json()

    def bad_job_path(self, request: Request) -> Response:
        """Anything under /jobs/ that is not ``<id>/telemetry``: a bare id goes to its page."""
        rest = request.path_params["rest"]
        if rest and "/" not in rest:
            return RedirectResponse(views.job_url(rest), status_code=307)
        return self.error_page(
            request, 400, "Not a valid job id", "A job id is a single path segment (no '/')."
        )

    # -- fallbacks -------------------------------------------------------------------------------
    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if request.url.path.startswith("/api/"):
            if status == 404:
                return problem(
                    request,
                    404,
                    f"There is no endpoint at {request.url.path}.",
                    title="Not Found",
                    guidance="GET /api/openapi.json lists the endpoints.",
                )
            if status == 405:
                return problem(
                    request, 405, "This server is read-only: only GET and HEAD are allowed."
                )
            return problem(request, status, "The request could not be handled.")
        if status == 405:
            return self.error_page(request, 405, "Not allowed", "This server is read-only.")
        return self.error_page(
            request,
            404 if status == 404 else status,
            "Page not found",
            "There is nothing at this address.",
        )


def _moment(epoch: float | None) -> datetime | None:
    """When the newest job started, as a datetime: a start in the last second of year 9999
    (a hand-made file) rounds past what datetime holds, and is then its last moment."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, ValueError, OSError):
        return datetime.max.replace(tzinfo=UTC)


def create_app(
    jobs_dir: str | Path | Store | None = None,
    *,
    jaeger_url: str | None = None,
    trace_url: str | None = None,
    access_token: str | None = None,
    max_file_bytes: int | None = None,
    abandoned_after: float | None = None,
) -> Starlette:
    """The ASGI app serving ``jobs_dir`` (read-only): a jobs folder, a ``postgresql://`` URL or
    a :class:`~aura_otel.stores.Store` (default ``$AURA_OTEL_STORE``, else the jobs folder of
    ``$AURA_OTEL_JOBS_DIR``).

    Without ``access_token`` it answers only requests addressed to a loopback host name (it
    must be bound to loopback; see :func:`aura_otel.server.run`); with one, every request must
    present the token. ``max_file_bytes`` (default ``$AURA_OTEL_MAX_FILE_BYTES``, else
    32 MiB) is the largest telemetry file it parses; a larger one gets a 422 problem.
    ``abandoned_after`` (seconds, default ``$AURA_OTEL_ABANDONED_AFTER``, else one hour) is
    how long a job without an end may stay quiet before the views call it abandoned.
    """
    if access_token is not None and not access_token.strip():
        raise ConfigurationError("the access token is empty; give a real secret or none at all")
    if jobs_dir is None:
        settings = Settings.from_env(masking=False)
        jobs_dir = settings.store or settings.jobs_dir
    app = TelemetryApp(
        jobs_dir, jaeger_url, max_file_bytes, resolve_abandoned_after(abandoned_after), trace_url
    )
    get = ["GET"]
    routes = [
        Route("/", lambda request: RedirectResponse("/jobs", status_code=307), methods=get),
        Route("/api/telemetry/schema", app.guarded(app.schema), methods=get),
        Route("/api/telemetry/{job_id}/diagnostics", app.api(app.diagnostics), methods=get),
        Route(
            "/api/telemetry/{job_id}/ops/{position:int}", app.api(app.operation_api), methods=get
        ),
        Route("/api/telemetry/{job_id}", app.api(app.telemetry), methods=get),
        # Ids that are empty or contain '/' after decoding: answered 400 by the id validator.
        Route("/api/telemetry/{job_id:path}", app.api(app.telemetry), methods=get),
        Route(
            "/api/cost-tracking/run-summary/{job_id:path}", app.api(app.run_summary), methods=get
        ),
        Route("/api/jobs", app.guarded(app.jobs_api), methods=get),
        Route("/api/insights", app.guarded(app.insights_api), methods=get),
        Route("/api/insights/metrics", app.guarded(app.insights_metrics), methods=get),
        Route("/api/insights/{chart}.{fmt}", app.guarded(app.insights_download), methods=get),
        Route("/insights", app.guarded(app.insights_page), methods=get),
        Route("/api/openapi.json", app.guarded(app.openapi), methods=get),
        Route("/openapi.json", app.guarded(app.openapi), methods=get),
        Route("/jobs", app.guarded(app.jobs_page), methods=get),
        Route("/jobs/{job_id}/telemetry", app.guarded(app.run_page), methods=get),
        Route(
            "/jobs/{job_id}/telemetry/ops/{position:int}",
            app.guarded(app.operation_page),
            methods=get,
        ),
        Route("/jobs/{rest:path}", app.guarded(app.bad_job_path), methods=get),
        Route(
            "/favicon.ico",
            lambda request: RedirectResponse("/static/favicon.svg", 301),
            methods=get,
        ),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if access_token:
        middleware.append(Middleware(TokenGate, token=access_token))
    else:
        middleware.append(Middleware(LoopbackHostGate))
    middleware.append(Middleware(ControlCharacterGate))
    starlette = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: app.http_error, 405: app.http_error},
    )
    starlette.state.store_description = app.store.description
    starlette.state.store = app.store
    return starlette
