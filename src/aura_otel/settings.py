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
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from . import conventions as c
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .masking import MaskingRules

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


def parse_seconds(value: float | str, source: str) -> float:
    """A quiet time or timeout in seconds (>= 0, finite); ConfigurationError naming ``source``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return _seconds(str(value))
    except ValueError:
        raise ConfigurationError(
            f"{source} must be a number of seconds >= 0, not {value!r}"
        ) from None


def check_http_url(raw: str) -> str:
    """An http(s) base URL without its trailing slash (the Jaeger UI's)."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError
    return raw.rstrip("/")


class _Reader:
    """Reads variables and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def parsed(self, name: str, parse: Callable[[str], _T], default: _T, expected: str) -> _T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (TypeError, ValueError):
            self.problems.append(f"{name}={raw!r}: expected {expected}")
            return default


@dataclass(frozen=True)
class Settings:
    """What the environment configures; build it with :meth:`from_env`."""

    jobs_dir: str = DEFAULT_JOBS_DIR
    enum_case: str = "lower"
    prices_file: str | None = None
    jaeger_url: str | None = None
    access_token: str | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    abandoned_after: float = DEFAULT_ABANDONED_AFTER_SECONDS
    sdk_disabled: bool = False
    service_name: str | None = None
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    traces_protocol: str = "http/protobuf"
    metrics_protocol: str = "http/protobuf"
    metrics_exporter_none: bool = False
    bsp_max_queue_size: int = DEFAULT_BSP_MAX_QUEUE_SIZE
    masking: MaskingRules | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, masking: bool = True
    ) -> Settings:
        """Read and check every variable; one ConfigurationError lists all the problems.

        ``masking=False`` skips the masking rules (compiling them costs milliseconds; the
        server and the CLI's read-only commands never mask).
        """
        env = os.environ if environ is None else environ
        read = _Reader(env)
        expected_protocol = "'http/protobuf' or 'grpc'"
        generic = read.parsed(
            "OTEL_EXPORTER_OTLP_PROTOCOL", _protocol, "http/protobuf", expected_protocol
        )
        traces_protocol = read.parsed(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", _protocol, generic, expected_protocol
        )
        metrics_protocol = read.parsed(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", _protocol, generic, expected_protocol
        )
        values: dict[str, Any] = {
            "jobs_dir": read.text(c.ENV_JOBS_DIR) or DEFAULT_JOBS_DIR,
            "enum_case": read.parsed(c.ENV_ENUM_CASE, _enum_case, "lower", "'lower' or 'pascal'"),
            "prices_file": read.text(c.ENV_PRICES_FILE),
            "jaeger_url": read.parsed(c.ENV_JAEGER_URL, check_http_url, None, "an http(s) URL"),
            "access_token": read.text(c.ENV_ACCESS_TOKEN),
            "max_file_bytes": read.parsed(
                c.ENV_MAX_FILE_BYTES,
                _positive_int,
                DEFAULT_MAX_FILE_BYTES,
                "a whole number of bytes of at least 1",
            ),
            "abandoned_after": read.parsed(
                c.ENV_ABANDONED_AFTER,
                _seconds,
                DEFAULT_ABANDONED_AFTER_SECONDS,
                "a number of seconds >= 0",
            ),
            "sdk_disabled": (read.text("OTEL_SDK_DISABLED") or "").lower() in _TRUE,
            "service_name": read.text("OTEL_SERVICE_NAME"),
            "traces_endpoint": read.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or read.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "metrics_endpoint": read.text("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            or read.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "traces_protocol": traces_protocol,
            "metrics_protocol": metrics_protocol,
            "metrics_exporter_none": (read.text("OTEL_METRICS_EXPORTER") or "").lower() == "none",
            "bsp_max_queue_size": read.parsed(
                "OTEL_BSP_MAX_QUEUE_SIZE",
                _positive_int,
                DEFAULT_BSP_MAX_QUEUE_SIZE,
                "a positive integer",
            ),
        }
        if masking:
            from .masking import MaskingRules

            try:
                values["masking"] = MaskingRules.from_env(env)
            except ConfigurationError as exc:
                read.problems.append(str(exc))
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


def env_flag(name: str) -> bool:
    """A boolean variable as OpenTelemetry spells them (``true``, ``1``, ``yes``, ``on``)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def otlp_endpoint(signal: Signal) -> str | None:
    """The endpoint the standard variables configure for ``signal``, or None.

    The signal's own variable wins over the generic one; a traces-only endpoint does not turn
    metrics on.
    """
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def otlp_protocol(signal: Signal, override: str | None = None) -> str:
    """``http/protobuf`` (the default) or ``grpc``; anything else is a ConfigurationError."""
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    value = (
        override
        or os.environ.get(variable)
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol must be 'http/protobuf' or 'grpc', not {value!r} "
            f"({variable} / OTEL_EXPORTER_OTLP_PROTOCOL / the protocol argument)"
        )
    return value


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


def otlp_exporter(signal: Signal, endpoint: str | None = None, protocol: str | None = None) -> Any:
    """An OTLP exporter for ``signal``, or None when no endpoint is configured.

    An ``endpoint`` argument is a base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is: for
    http/protobuf the signal's path is added (another signal's path is replaced). Headers,
    timeout and compression come from the standard variables, read by the exporter itself.
    """
    proto = otlp_protocol(signal, protocol)
    if endpoint is None and otlp_endpoint(signal) is None:
        return None
    module, name = _EXPORTERS[(signal, proto)]
    exporter_class = getattr(importlib.import_module(module), name)
    if endpoint is None:
        return exporter_class()
    if proto == "grpc":
        return exporter_class(endpoint=endpoint)
    url = endpoint.rstrip("/")
    for path in _PATHS.values():
        if url.endswith(path):
            url = url[: -len(path)]
    return exporter_class(endpoint=url + _PATHS[signal])
