"""The fold receiver's settings, checked once at start-up.

Every limit here exists so that a misbehaving or hostile sender costs a clear error answer,
never the receiver's memory or the spans other senders already had acknowledged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from .. import conventions as c
from ..errors import ConfigurationError
from ..masking import MaskingRules

DEFAULT_HTTP = "127.0.0.1:4318"
DEFAULT_GRPC = "127.0.0.1:4317"
#: Largest request body accepted on the wire (compressed or not): the Collector's OTLP/HTTP
#: receiver defaults to 20 MiB; exporters batch 512 spans (well under 1 MiB) by default.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Largest request once decompressed: a gzip bomb is cut off here, before it is ever held.
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
#: Requests decoded, masked and journaled at the same time (both protocols together). Above it
#: the receiver answers "retry later": memory stays bounded by this times the size limit.
DEFAULT_MAX_CONCURRENT_REQUESTS = 8
#: Jobs waiting for their file to be rewritten. A writer this far behind means the disk cannot
#: keep up: new requests are answered "retry later" until it catches up.
DEFAULT_MAX_DIRTY_JOBS = 20_000
#: Open jobs tracked in memory (a few hundred bytes each; their spans live in the journal).
DEFAULT_MAX_OPEN_JOBS = 100_000
DEFAULT_QUIET_PERIOD = 5.0
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_WRITE_INTERVAL = 0.25
DEFAULT_RETRY_AFTER = 1
#: Longest wait for a request's body (HTTP) or message (gRPC) once its headers are in: a
#: sender that stalls (or a connection half-dropped by the network) must not hold a slot of
#: the receiver for as long as it stays open. A 16 MiB body needs ~4.5 Mbit/s to make it.
DEFAULT_RECEIVE_TIMEOUT = 30.0
#: grpcio takes its message size limit as a C int.
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1

Durability = Literal["fsync", "write"]


def parse_address(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:4317`` for IPv6) -> (host, port); port 0 picks a free port."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:4318), not {value!r}")
    return host, int(port_text)


def _positive(name: str, value: float, *, integer: bool = False, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}")
    if not (value >= 0 if zero else value > 0):
        raise ConfigurationError(f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}")


@dataclass
class ReceiverConfig:
    """What ``aura-otel collect`` runs with (each field has a command-line option)."""

    jobs_dir: str = field(default_factory=lambda: os.environ.get(c.ENV_JOBS_DIR) or "./jobs")
    #: A ``postgresql://`` URL: the shared store instead of ``jobs_dir`` (docs/stores.md).
    store: str | None = field(default_factory=lambda: os.environ.get(c.ENV_STORE) or None)
    #: Longest wait for the shared store (a pooled connection, one statement): past it the
    #: request is answered as retryable instead of holding the sender.
    store_timeout: float = 10.0
    #: ``HOST:PORT`` to serve OTLP/HTTP on, None to serve no HTTP.
    http: str | None = DEFAULT_HTTP
    #: ``HOST:PORT`` to serve OTLP/gRPC on, None to serve no gRPC.
    grpc: str | None = DEFAULT_GRPC
    access_token: str | None = None
    masking: MaskingRules | None = None
    enum_case: str | None = None
    prices_file: str | None = None
    pricing: bool = True
    #: Where masked spans go on (an OTLP endpoint), None for nowhere.
    forward_endpoint: str | None = None
    forward_protocol: str | None = None
    #: "fsync": a span is acknowledged once the receiver's write-ahead log is on disk (survives
    #: power loss);
    #: "write": once the kernel has it (survives ``kill -9`` of the receiver, not of the host).
    durability: Durability = "fsync"
    quiet_period: float = DEFAULT_QUIET_PERIOD
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    write_interval: float = DEFAULT_WRITE_INTERVAL
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    max_dirty_jobs: int = DEFAULT_MAX_DIRTY_JOBS
    max_open_jobs: int = DEFAULT_MAX_OPEN_JOBS
    retry_after_seconds: int = DEFAULT_RETRY_AFTER
    receive_timeout: float = DEFAULT_RECEIVE_TIMEOUT
    #: One of several worker processes sharing the ports (SO_REUSEPORT) and the jobs folder:
    #: its supervisor recovers the folder before the workers start, not the worker.
    worker: bool = False

    def check(self) -> None:
        """Raise :class:`ConfigurationError` for every setting that cannot work."""
        if self.http is None and self.grpc is None:
            raise ConfigurationError("nothing to serve: give --http, --grpc or both")
        for name in ("http", "grpc"):
            value = getattr(self, name)
            if value is not None:
                parse_address(value, f"--{name}")
        if self.durability not in ("fsync", "write"):
            raise ConfigurationError(
                f"durability must be 'fsync' or 'write', not {self.durability!r}"
            )
        _positive("store_timeout", self.store_timeout)
        _positive("receive_timeout", self.receive_timeout)
        for name in ("quiet_period", "idle_timeout"):
            _positive(name, getattr(self, name), zero=True)
        _positive("write_interval", self.write_interval, zero=True)
        for name in (
            "max_request_bytes",
            "max_decompressed_bytes",
            "max_concurrent_requests",
            "max_dirty_jobs",
            "max_open_jobs",
            "retry_after_seconds",
        ):
            _positive(name, getattr(self, name), integer=True)
        if self.max_decompressed_bytes < self.max_request_bytes:
            raise ConfigurationError("max_decompressed_bytes must be at least max_request_bytes")
        if self.grpc is not None and self.max_decompressed_bytes > MAX_GRPC_MESSAGE_BYTES:
            raise ConfigurationError(
                f"max_decompressed_bytes must be at most {MAX_GRPC_MESSAGE_BYTES} with gRPC on "
                f"(grpcio's limit), not {self.max_decompressed_bytes}"
            )

    def addresses(self) -> dict[str, tuple[str, int]]:
        found = {}
        if self.http is not None:
            found["http"] = parse_address(self.http, "--http")
        if self.grpc is not None:
            found["grpc"] = parse_address(self.grpc, "--grpc")
        return found
