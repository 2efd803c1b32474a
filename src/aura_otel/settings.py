"""The standard OTLP variables, read in one place for traces and metrics alike.

OpenTelemetry's exporters read most of their own settings (headers, timeout, compression);
aura-otel only needs to know whether an endpoint is configured at all (no endpoint: no
forwarding, no waiting) and which protocol to build an exporter for.
"""

from __future__ import annotations

import os
from typing import Literal

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
