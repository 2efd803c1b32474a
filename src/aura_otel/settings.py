"""The standard OTLP variables, read in one place for traces and metrics alike.

OpenTelemetry's exporters read most of their own settings (headers, timeout, compression);
aura-otel only needs to know whether an endpoint is configured at all (no endpoint: no
forwarding, no waiting) and which protocol to build an exporter for.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

from .errors import ConfigurationError

Signal = Literal["traces", "metrics"]
PROTOCOLS = ("http/protobuf", "grpc")
_TRUE = {"1", "true", "yes", "on"}


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
        override or os.environ.get(variable) or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol must be 'http/protobuf' or 'grpc', not {value!r} "
            f"({variable} / OTEL_EXPORTER_OTLP_PROTOCOL / the protocol argument)"
        )
    return value


_EXPORTERS = {
    ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("metrics", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("metrics", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"
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
