"""Configuration in one place: every variable aura-otel reads, read and checked together.

:class:`Settings` is a frozen snapshot of the environment: every ``AURA_OTEL_*`` variable and
the ``OTEL_*`` variables aura-otel itself interprets. :meth:`Settings.from_env` checks them all
and raises one :class:`~aura_otel.errors.ConfigurationError` that lists every problem, so a
deployment with three typos learns of three, not one per restart. ``configure()``, the CLI
and the server read their defaults from it; explicit arguments still win.

OpenTelemetry's exporters read most of their own settings (headers, timeout, compression);
aura-otel only needs to know whether an endpoint is configured at all (no endpoint: no
forwarding, no waiting) and which protocol to build an exporter for.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from . import conventions as c
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .masking import MaskingRules

logger = logging.getLogger("aura_otel")
EnumCase = Literal["lower", "pascal"]
Signal = Literal["traces", "metrics"]
PROTOCOLS = ("http/protobuf", "grpc")
ENUM_CASES = ("lower", "pascal")
_TRUE = {"1", "true", "yes", "on"}
_T = TypeVar("_T")

DEFAULT_JOBS_DIR = "./jobs"
#: The largest telemetry.json the server parses. Parsing and validating costs several times a
#: file's size in memory and seconds of CPU per 100 MB; real jobs write tens of KiB.
DEFAULT_MAX_FILE_BYTES = 32 << 20
#: A job without an end and quiet this long is shown as abandoned (its process was killed):
#: long enough for the slowest stage (a render) to finish without a span in between.
DEFAULT_ABANDONED_AFTER_SECONDS = 3600.0
DEFAULT_BSP_MAX_QUEUE_SIZE = 2048


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _enum_case(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ENUM_CASES:
        raise ValueError
    return value


def _protocol(raw: str) -> str:
    value = raw.strip()
    if value not in PROTOCOLS:
        raise ValueError
    return value


def _span_limit(raw: str) -> int | None:
    """A span limit as the SDK reads it: a whole number >= 0, or ``unset`` for none."""
    if raw.strip().lower() == "unset":
        return None
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


#: The SDK's span limits: ``TracerProvider()`` (and, for one of them, importing the SDK)
#: raises a bare ValueError from deep inside when one is not a whole number.
SPAN_LIMIT_VARIABLES = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
)
SPAN_LIMIT_RULE = "a span limit must be a whole number >= 0 or 'unset'"


ENUM_CASE_RULE = "enum case must be 'lower' or 'pascal'"
PROTOCOL_RULE = "OTLP protocol must be 'http/protobuf' or 'grpc'"
SECONDS_RULE = "must be a number of seconds >= 0"


def parse_seconds(value: float | str, source: str) -> float:
    """A quiet time or timeout in seconds (>= 0, finite); ConfigurationError naming ``source``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return _seconds(str(value))
    except ValueError:
        raise ConfigurationError(f"{source} {SECONDS_RULE}, not {value!r}") from None


def check_http_url(raw: str) -> str:
    """An http(s) base URL without its trailing slash (the Jaeger UI's)."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError
    return raw.rstrip("/")


TRACE_ID_FIELD = "{trace_id}"


def check_trace_url(raw: str) -> str:
    """A trace link template: an http(s) URL naming ``{trace_id}`` exactly where the backend
    wants it (a path for Jaeger and Phoenix, inside a query for Tempo's Explore)."""
    if TRACE_ID_FIELD not in raw:
        raise ValueError
    check_http_url(raw.replace(TRACE_ID_FIELD, "0"))
    return raw


def bsp_max_queue_size(env: Mapping[str, str]) -> int:
    """``OTEL_BSP_MAX_QUEUE_SIZE`` read as the SDK reads it: a bad value is logged and the
    default used, because the SDK's own batch processors accept the same variable that way
    and a deployment that works with the SDK must not fail with aura-otel."""
    raw = env.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip()
    if not raw:
        return DEFAULT_BSP_MAX_QUEUE_SIZE
    try:
        return _positive_int(raw)
    except ValueError:
        logger.warning(
            "aura-otel: OTEL_BSP_MAX_QUEUE_SIZE=%r is not a positive integer; using %d",
            raw,
            DEFAULT_BSP_MAX_QUEUE_SIZE,
        )
        return DEFAULT_BSP_MAX_QUEUE_SIZE


class _Reader:
    """Reads variables and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def flag(self, name: str) -> bool:
        return (self.text(name) or "").lower() in _TRUE

    def parsed(
        self,
        name: str,
        parse: Callable[[str], _T],
        default: _T,
        rule: str,
        shown: Callable[[str], str] = str,
    ) -> _T:
        """``shown`` gives the value as a problem may quote it (a URL without its password:
        the problems reach the host as an exception)."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (TypeError, ValueError):
            self.problems.append(f"{name}={shown(raw)!r}: {rule}")
            return default


@dataclass(frozen=True)
class Settings:
    """Every setting the environment gives aura-otel; build it with :meth:`from_env`.

    Explicit arguments (``configure(...)``, command-line options, ``create_app(...)``) win
    over these; these win over the built-in defaults.
    """

    #: ``AURA_OTEL_JOBS_DIR``: where job folders go.
    jobs_dir: str = DEFAULT_JOBS_DIR
    #: ``AURA_OTEL_STORE``: a ``postgresql://`` URL (the shared store) or a folder; unset, the
    #: jobs folder above.
    store: str | None = None
    #: ``AURA_OTEL_ENUM_CASE``: ``lower`` or ``pascal`` enum spelling in the files.
    enum_case: EnumCase = "lower"
    #: ``AURA_OTEL_PRICES_FILE``: a price override file.
    prices_file: str | None = None
    #: ``AURA_OTEL_JAEGER_URL``: the Jaeger UI the server links traces to.
    jaeger_url: str | None = None
    #: ``AURA_OTEL_TRACE_URL``: a trace link template with ``{trace_id}`` (any backend).
    trace_url: str | None = None
    #: ``AURA_OTEL_ACCESS_TOKEN``: the token the server requires.
    access_token: str | None = None
    #: ``AURA_OTEL_MAX_FILE_BYTES``: the largest telemetry.json the server parses.
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    #: ``AURA_OTEL_ABANDONED_AFTER``: seconds of quiet before a job without an end is abandoned.
    abandoned_after: float = DEFAULT_ABANDONED_AFTER_SECONDS
    #: ``OTEL_SDK_DISABLED``: everything off (nothing else is then read or checked).
    sdk_disabled: bool = False
    #: ``OTEL_SERVICE_NAME``: wins over ``configure(service_name=)``.
    service_name: str | None = None
    #: ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    #: ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``.
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    #: ``OTEL_METRICS_EXPORTER=none``: aura-otel's metrics off.
    metrics_off: bool = False
    #: ``OTEL_BSP_MAX_QUEUE_SIZE``: the OTLP forwarding queue (read leniently, as the SDK does).
    bsp_max_queue_size: int = DEFAULT_BSP_MAX_QUEUE_SIZE
    #: The ``AURA_OTEL_MASK_*`` variables, as :meth:`MaskingRules.from_env` reads them.
    masking: MaskingRules | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        """Every field, the store URL without its password and the token hidden: a host may
        log its settings, and a log line leaves the process."""
        shown = []
        for item in fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name == "store" and value is not None:
                value = _without_password(value)
            elif item.name == "access_token" and value is not None:
                value = "***"
            shown.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, masking: bool = True
    ) -> Settings:
        """Read and check every variable; one ConfigurationError lists all the problems.

        With ``OTEL_SDK_DISABLED`` set nothing else is read: a deployment that switched
        telemetry off must start even with a leftover bad setting. ``masking=False`` skips the
        masking rules (the server and the read-only commands never mask, and the rules cost
        milliseconds to compile).
        """
        env = os.environ if environ is None else environ
        read = _Reader(env)
        if read.flag("OTEL_SDK_DISABLED"):
            return cls(sdk_disabled=True)
        generic = read.parsed(
            "OTEL_EXPORTER_OTLP_PROTOCOL", _protocol, "http/protobuf", PROTOCOL_RULE
        )
        values: dict[str, Any] = {
            "jobs_dir": read.text(c.ENV_JOBS_DIR) or DEFAULT_JOBS_DIR,
            "store": read.parsed(
                c.ENV_STORE,
                _store_url,
                None,
                "must be a postgresql:// URL, a file:// URL or a folder path",
                _without_password,
            ),
            "enum_case": read.parsed(c.ENV_ENUM_CASE, _enum_case, "lower", ENUM_CASE_RULE),
            "prices_file": read.text(c.ENV_PRICES_FILE),
            "jaeger_url": read.parsed(
                c.ENV_JAEGER_URL, check_http_url, None, "the Jaeger URL must be an http(s) URL"
            ),
            "trace_url": read.parsed(
                c.ENV_TRACE_URL,
                check_trace_url,
                None,
                "the trace URL must be an http(s) URL containing {trace_id}",
            ),
            "access_token": read.text(c.ENV_ACCESS_TOKEN),
            "max_file_bytes": read.parsed(
                c.ENV_MAX_FILE_BYTES,
                _positive_int,
                DEFAULT_MAX_FILE_BYTES,
                "must be a whole number of bytes of at least 1",
            ),
            "abandoned_after": read.parsed(
                c.ENV_ABANDONED_AFTER, _seconds, DEFAULT_ABANDONED_AFTER_SECONDS, SECONDS_RULE
            ),
            "service_name": read.text("OTEL_SERVICE_NAME"),
            "traces_endpoint": read.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or read.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "metrics_endpoint": read.text("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            or read.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "traces_protocol": read.parsed(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", _protocol, generic, PROTOCOL_RULE
            ),
            "metrics_protocol": read.parsed(
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", _protocol, generic, PROTOCOL_RULE
            ),
            "metrics_off": (read.text("OTEL_METRICS_EXPORTER") or "").lower() == "none",
            "bsp_max_queue_size": bsp_max_queue_size(env),
        }
        for name in SPAN_LIMIT_VARIABLES:
            read.parsed(name, _span_limit, None, SPAN_LIMIT_RULE)
        # The gRPC exporters read their timeout with a bare float() (http/protobuf falls back
        # to its default instead): check it only where it would raise.
        timeouts = {
            name
            for signal in ("traces", "metrics")
            if values[f"{signal}_protocol"] == "grpc" and values[f"{signal}_endpoint"]
            for name in (
                f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            )
        }
        for name in sorted(timeouts):
            read.parsed(name, float, 0.0, "the OTLP timeout must be a number of seconds")
        if masking:
            from .masking import MaskingRules

            try:
                values["masking"] = MaskingRules.from_env(env)
            except ConfigurationError as exc:
                read.problems.append(f"AURA_OTEL_MASK_*: {exc}")
        if read.problems:
            raise ConfigurationError(
                f"{len(read.problems)} configuration problem(s):\n  " + "\n  ".join(read.problems)
            )
        return cls(**values)

    def masking_rules(self) -> MaskingRules:
        """The masking rules the environment asks for (read now if they were skipped)."""
        if self.masking is not None:
            return self.masking
        from .masking import MaskingRules

        return MaskingRules.from_env()

    def endpoint(self, signal: Signal) -> str | None:
        return self.traces_endpoint if signal == "traces" else self.metrics_endpoint

    def protocol(self, signal: Signal, override: str | None = None) -> str:
        """The protocol for ``signal``: ``override`` (checked) or the environment's."""
        if override is None:
            return self.traces_protocol if signal == "traces" else self.metrics_protocol
        try:
            return _protocol(override)
        except ValueError:
            raise ConfigurationError(
                f"{PROTOCOL_RULE}, not {override!r} (the protocol argument)"
            ) from None


_EXPORTERS = {
    ("traces", "grpc"): (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "OTLPSpanExporter",
    ),
    ("traces", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "OTLPSpanExporter",
    ),
    ("metrics", "grpc"): (
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        "OTLPMetricExporter",
    ),
    ("metrics", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "OTLPMetricExporter",
    ),
}
_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}


def otlp_exporter(
    signal: Signal,
    endpoint: str | None = None,
    protocol: str | None = None,
    settings: Settings | None = None,
) -> Any:
    """An OTLP exporter for ``signal``, or None when no endpoint is configured.

    An ``endpoint`` argument is a base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is: for
    http/protobuf the signal's path is added (another signal's path is replaced). Headers,
    timeout and compression come from the standard variables, read by the exporter itself.
    """
    settings = settings if settings is not None else Settings.from_env(masking=False)
    proto = settings.protocol(signal, protocol)
    if endpoint is None and settings.endpoint(signal) is None:
        return None
    module, name = _EXPORTERS[(signal, proto)]
    exporter_class = getattr(importlib.import_module(module), name)
    if endpoint is None:
        given: dict[str, str] = {}
    elif proto == "grpc":
        given = {"endpoint": endpoint}
    else:
        url = endpoint.rstrip("/")
        for path in _PATHS.values():
            if url.endswith(path):
                url = url[: -len(path)]
        given = {"endpoint": url + _PATHS[signal]}
    try:
        return exporter_class(**given)
    except ValueError as exc:  # e.g. an endpoint the gRPC exporter cannot parse
        where = endpoint if endpoint is not None else settings.endpoint(signal)
        raise ConfigurationError(
            f"the OTLP {signal} exporter ({proto}) refused its settings (endpoint {where!r}): {exc}"
        ) from None


def _without_password(value: str) -> str:
    from .stores import redact_url  # here: the stores import much that imports settings

    return redact_url(value)


def _store_url(value: str) -> str | None:
    """A store target as ``AURA_OTEL_STORE`` may give it; other URL schemes are refused."""
    text = value.strip()
    if not text:
        return None
    if "://" in text and text.split("://", 1)[0].lower() not in ("postgresql", "postgres", "file"):
        raise ValueError(text)
    return text
