"""``aura-otel collect``: the fold receiver as a command.

It prints one line per bound server (``OTLP/HTTP listening on http://127.0.0.1:4318`` ...) once
it accepts requests, so ``--http 127.0.0.1:0`` can be used by scripts and tests, and stops
cleanly (every pending file written) on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import conventions as c
from ..errors import ConfigurationError
from ..masking.logs import mask_line
from . import config as defaults


def _address(value: str) -> str | None:
    return None if value.strip().lower() in ("", "none", "off") else value


def add_collect_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    collect = sub.add_parser(
        "collect",
        help="receive OTLP traces from any service and fold them into v1 files",
        description="Receive OTLP traces (HTTP and gRPC) from services in any language, mask "
        "them, fold them into one RunTelemetry v1 file per job. See docs/receiver.md.",
    )
    collect.add_argument("--jobs-dir", help=f"default ${c.ENV_JOBS_DIR} or ./jobs")
    collect.add_argument(
        "--store",
        metavar="URL",
        help="postgresql://user@host/db: the shared store, for several "
        f"receivers and servers (${c.ENV_STORE}; docs/stores.md) "
        "[the jobs folder]",
    )
    collect.add_argument(
        "--store-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for the shared store before a request is answered "
        "as retryable (503 / UNAVAILABLE) [10]",
    )
    collect.add_argument(
        "--http",
        default=defaults.DEFAULT_HTTP,
        type=_address,
        metavar="HOST:PORT",
        help=f"OTLP/HTTP address (port 0: any free port; 'off': none) [{defaults.DEFAULT_HTTP}]",
    )
    collect.add_argument(
        "--grpc",
        default=defaults.DEFAULT_GRPC,
        type=_address,
        metavar="HOST:PORT",
        help=f"OTLP/gRPC address (port 0: any free port; 'off': none) [{defaults.DEFAULT_GRPC}]",
    )
    collect.add_argument(
        "--access-token",
        help=f"required as 'Authorization: Bearer ...' (${c.ENV_ACCESS_TOKEN}); "
        "mandatory on a non-loopback address",
    )
    collect.add_argument(
        "--forward-endpoint",
        metavar="URL",
        help="send the masked spans on to this OTLP endpoint (never blocks)",
    )
    collect.add_argument("--forward-protocol", choices=("http/protobuf", "grpc"))
    collect.add_argument(
        "--durability",
        choices=("fsync", "write"),
        default="fsync",
        help="acknowledge once the write-ahead log is fsynced (default) or written",
    )
    collect.add_argument(
        "--quiet-period",
        type=float,
        default=defaults.DEFAULT_QUIET_PERIOD,
        metavar="SECONDS",
        help="finish a job with its root but a missing parent after this long "
        f"without news [{defaults.DEFAULT_QUIET_PERIOD:g}]",
    )
    collect.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="leave a job without root as unfinished after this long "
        f"[{defaults.DEFAULT_IDLE_TIMEOUT:g}]",
    )
    collect.add_argument(
        "--write-interval",
        type=float,
        default=defaults.DEFAULT_WRITE_INTERVAL,
        metavar="SECONDS",
        help="coalesce a job's file rewrites over this long (spans are durable "
        f"in the journal before that) [{defaults.DEFAULT_WRITE_INTERVAL:g}]",
    )
    collect.add_argument(
        "--max-request-bytes", type=int, default=defaults.DEFAULT_MAX_REQUEST_BYTES, metavar="N"
    )
    collect.add_argument(
        "--max-decompressed-bytes",
        type=int,
        default=defaults.DEFAULT_MAX_DECOMPRESSED_BYTES,
        metavar="N",
    )
    collect.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=defaults.DEFAULT_MAX_CONCURRENT_REQUESTS,
        metavar="N",
    )
    collect.add_argument(
        "--receive-timeout",
        type=float,
        default=defaults.DEFAULT_RECEIVE_TIMEOUT,
        metavar="SECONDS",
        help="longest wait for a request's body or message once its headers are in "
        f"(a stalled sender gets 503 / CANCELLED, both retryable) [{defaults.DEFAULT_RECEIVE_TIMEOUT:g}]",
    )
    collect.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="receiver processes sharing the ports and the jobs folder (one "
        "Python process folds on one core) [1]",
    )
    collect.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    collect.add_argument("--loads", help=argparse.SUPPRESS)  # FD:SLOT:SLOTS, from a supervisor
    collect.add_argument("--enum-case", choices=("lower", "pascal"))
    collect.add_argument("--prices-file", help=f"price overrides (${c.ENV_PRICES_FILE})")
    collect.set_defaults(func=func)


#: The serving process's cycle-collector thresholds (Python's default: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Collect cycles less often in the process that serves, once everything is started.

    A received span makes about a hundred short-lived objects, nearly all freed by reference
    counting the moment its request is done; at Python's default a collection ran every few
    spans, and each full one walked every object of the start-up (modules, compiled masking
    rules, servers). Those are frozen out of the collector's sight, and collections come ~30x
    less often: a tenth or more of the receiver's CPU a span in the benchmark, memory flat.
    Only the command does this: a program that embeds a receiver keeps its own settings.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: Printed (stderr) once every acknowledged span is in its job's file and the service stops.
STOPPED = "aura-otel collect: stopped; every acknowledged span is in its job's file"
#: Printed (stderr, exit status 1) instead when some acknowledged spans could not be written:
#: they stay in the write-ahead log, and the next start in this jobs folder writes them.
UNCLEAN = (
    "aura-otel collect: stopped; some acknowledged spans are not in their files yet: they stay "
    "in the write-ahead log, and the next start writes them"
)


def run_collect(args: argparse.Namespace) -> int:
    from .config import ReceiverConfig
    from .factory import create_receiver

    config = ReceiverConfig(
        jobs_dir=args.jobs_dir or os.environ.get(c.ENV_JOBS_DIR) or "./jobs",
        # As for serve: --store, then --jobs-dir, then $AURA_OTEL_STORE, then the folder's
        # variable; an explicit folder is never overridden by the environment.
        store=args.store or (None if args.jobs_dir else os.environ.get(c.ENV_STORE) or None),
        store_timeout=args.store_timeout,
        http=args.http,
        grpc=args.grpc,
        access_token=args.access_token or os.environ.get(c.ENV_ACCESS_TOKEN),
        forward_endpoint=args.forward_endpoint,
        forward_protocol=args.forward_protocol,
        durability=args.durability,
        quiet_period=args.quiet_period,
        idle_timeout=args.idle_timeout,
        write_interval=args.write_interval,
        max_request_bytes=args.max_request_bytes,
        max_decompressed_bytes=args.max_decompressed_bytes,
        max_concurrent_requests=args.max_concurrent_requests,
        receive_timeout=args.receive_timeout,
        enum_case=args.enum_case,
        prices_file=args.prices_file or os.environ.get(c.ENV_PRICES_FILE),
        worker=args.worker,
    )
    if args.workers < 1:
        print("aura-otel: error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.worker:
        return _run_supervisor(config, args.workers)
    if args.worker:
        from .workers import die_with_supervisor

        die_with_supervisor()
    try:
        receiver = create_receiver(config)
        if args.loads:
            from .balance import LoadTable

            receiver.admission.loads = LoadTable.parse(args.loads)
    except (ConfigurationError, ValueError, OSError) as exc:
        print(f"aura-otel: error: {mask_line(str(exc))}", file=sys.stderr)
        return 2
    clean = False
    with _stop_on_signals() as stop:
        try:
            try:
                receiver.start()
                tune_gc()
            except OSError as exc:
                print(f"aura-otel: error: cannot listen: {mask_line(str(exc))}", file=sys.stderr)
                return 2
            store = receiver.book.store
            where = (
                getattr(store, "description", None) or f"jobs folder {getattr(store, 'root', '')}"
            )
            print(f"aura-otel collect: {where}", flush=True)
            if "http" in receiver.addresses:
                print(f"OTLP/HTTP listening on {receiver.url('http')}/v1/traces", flush=True)
            if "grpc" in receiver.addresses:
                print(f"OTLP/gRPC listening on {receiver.url('grpc')}", flush=True)
            while not stop.wait(1.0):
                pass
        finally:
            clean = receiver.stop()
    print(STOPPED if clean else UNCLEAN, file=sys.stderr, flush=True)
    code = 0 if clean else 1
    if config.worker:
        # Everything is written and synced (or left in the log, said above): a worker skips
        # the interpreter's teardown (grpcio's and every module's), which would only delay its
        # supervisor's stop by a fraction of a second per worker.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGTERM and SIGINT set, for the duration: the service stops in its own time
    (every acknowledged span written) instead of dying in the middle of a write."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_supervisor(config: Any, workers: int) -> int:
    from .workers import Supervisor

    supervisor = Supervisor(config, workers)
    with _stop_on_signals() as stop:
        try:
            try:
                supervisor.start()
            except OSError as exc:
                print(f"aura-otel: error: cannot listen: {mask_line(str(exc))}", file=sys.stderr)
                supervisor.stop()
                return 2
            print(
                f"aura-otel collect: jobs folder {Path(config.jobs_dir).resolve()}, {workers} workers",
                flush=True,
            )
            for protocol, label in (("http", "OTLP/HTTP"), ("grpc", "OTLP/gRPC")):
                if protocol in supervisor.addresses:
                    host, port = supervisor.addresses[protocol]
                    name = f"[{host}]" if ":" in host else host
                    where = (
                        f"http://{name}:{port}/v1/traces"
                        if protocol == "http"
                        else f"{name}:{port}"
                    )
                    print(f"{label} listening on {where}", flush=True)
            supervisor.watch(stop)
        finally:
            clean = supervisor.stop()
    print(STOPPED if clean else UNCLEAN, file=sys.stderr, flush=True)
    return 0 if clean else 1
