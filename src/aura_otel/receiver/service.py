"""The fold receiver: OTLP servers in front of masking, the fold and the jobs folder.

``FoldReceiver`` owns the lifecycle: recover what an unclean stop left, bind the servers (so
``port 0`` gives a real port to print), serve, and on stop refuse new work, write every pending
file and stop forwarding within its bound. Build one with :func:`.factory.create_receiver`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ..forwarding import ForwardingSpanProcessor
from .admission import Admission
from .config import ReceiverConfig
from .ingest import Ingestor
from .shared import AnyBook
from .stats import ReceiverStats

if TYPE_CHECKING:
    import grpc

    from .http import PromptServer

logger = logging.getLogger("aura_otel.receiver")
_START_TIMEOUT = 30.0


class FoldReceiver:
    def __init__(
        self,
        config: ReceiverConfig,
        *,
        book: AnyBook,
        stats: ReceiverStats,
        ingestor: Ingestor,
        forward: ForwardingSpanProcessor | None = None,
    ) -> None:
        self.config = config
        self.book = book
        self.stats_counters = stats
        self.ingestor = ingestor
        self.forward = forward
        self.admission = Admission(book, config.max_concurrent_requests, config.max_dirty_jobs)
        #: Bound addresses, by protocol ("http", "grpc"): known once :meth:`start` returns.
        self.addresses: dict[str, tuple[str, int]] = {}
        self._http: PromptServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._started = False
        self._stopped = False
        self._clean = True

    @property
    def stats(self) -> ReceiverStats:
        return self.stats_counters

    def counters(self) -> dict[str, Any]:
        """Every counter, plus the open and dirty jobs and the requests in flight."""
        counts: dict[str, Any] = self.stats_counters.snapshot()
        counts["jobs_open"] = self.book.open_jobs()
        counts["jobs_dirty"] = self.book.dirty_jobs()
        counts["requests_in_flight"] = self.admission.in_flight
        if self.forward is not None:
            counts["forwarding"] = self.forward.stats()
        return counts

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FoldReceiver:
        """Recover, write recovered jobs, bind and serve. Returns once both servers listen."""
        if self._started:
            return self
        self._started = True
        if not self.config.worker:  # a supervisor recovers for its workers
            self.book.recover()
        self.book.start()
        try:
            addresses = self.config.addresses()
            if "grpc" in addresses:
                self._start_grpc(*addresses["grpc"])
            if "http" in addresses:
                self._start_http(*addresses["http"])
        except BaseException:
            self.stop()
            raise
        return self

    def _start_grpc(self, host: str, port: int) -> None:
        from .grpc import create_grpc_server

        server, bound = create_grpc_server(self, host, port)
        server.start()
        self._grpc = server
        self.addresses["grpc"] = (host, bound)

    def _start_http(self, host: str, port: int) -> None:
        import uvicorn

        from .http import PromptServer, create_http_app

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.worker:  # the supervisor's other workers listen on the same port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        bound = sock.getsockname()[1]
        config = uvicorn.Config(
            create_http_app(self),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
        server = PromptServer(config)
        self._http = server

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        thread = threading.Thread(target=run, name="aura-otel-receiver-http", daemon=True)
        thread.start()
        self._http_thread = thread
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:  # readiness only: a bounded wait, never a test's timing
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the OTLP/HTTP server on {host}:{bound} did not start")
            time.sleep(0.01)
        self.addresses["http"] = (host, bound)

    def flush(self) -> None:
        """Write every job with new spans now (tests and shutdown; the writer does it anyway)."""
        self.book.write_dirty()

    def sweep(self, now: float | None = None) -> None:
        """Apply the quiet-period and idle-timeout rules now (``now`` on the book's clock)."""
        self.book.sweep(now)

    def stop(self) -> bool:
        """Stop taking requests, write every pending file, stop forwarding (bounded). True
        when every acknowledged span is in its job's file; False when some stay in the
        write-ahead log for the next start (a failing disk, a writer that did not finish)."""
        if self._stopped:
            return self._clean
        self._stopped = True
        # The writer's round starts now and runs while the servers wind down; the round after
        # the servers stopped gets the rest.
        self.book.write_soon()
        if self._http is not None:
            self._http.exit_now()
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)
        if self._http_thread is not None:
            self._http_thread.join(timeout=15)
        self._clean = self.book.stop()
        if self.forward is not None:
            self.forward.shutdown()
        self.ingestor.masking.shutdown()
        logger.info("aura-otel: receiver stopped: %s", self.stats_counters.snapshot())
        return self._clean

    def __enter__(self) -> FoldReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, protocol: str = "http") -> str:
        """``http://host:port`` of a bound server (for exporters' endpoints)."""
        host, port = self.addresses[protocol]
        name = f"[{host}]" if ":" in host else host
        return f"http://{name}:{port}" if protocol == "http" else f"{name}:{port}"
