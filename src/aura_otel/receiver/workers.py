"""``aura-otel collect --workers N``: several receiver processes behind the same ports.

One Python process folds on one core at a time (the GIL), so a receiver that must use the
machine runs several. Each worker is a complete receiver listening on the same addresses with
``SO_REUSEPORT`` (the kernel spreads connections over them) and writing the same jobs folder,
whose journals already merge across processes under their file locks: a job whose requests
reach different workers still becomes one file, rewritten from the union of its journal.

The supervisor owns what must happen once: it recovers the folder before the workers start,
picks the ports when port 0 was asked for, and restarts a worker that died (after replaying the
dead worker's write-ahead log). Workers die with it (``PR_SET_PDEATHSIG``), so a killed supervisor leaves no orphan
holding the ports.

Each worker is a spawned ``aura-otel collect --worker`` process, not a fork: grpcio does not
survive a fork, and a fresh interpreter owes nothing to the supervisor's state.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from .. import conventions as c
from .balance import LoadTable
from .config import ReceiverConfig
from .factory import create_receiver
from .shared import AnyBook

logger = logging.getLogger("aura_otel.receiver")
_PR_SET_PDEATHSIG = 1


SUPERVISOR_PID_ENV = "AURA_OTEL_RECEIVER_SUPERVISOR"
#: How long a stopping worker may take to write its pending files before it is killed (what
#: it acknowledged is in its write-ahead log either way, for the next start to replay).
STOP_TIMEOUT_SECONDS = 60.0


def die_with_supervisor() -> None:
    """In a worker: stop (SIGTERM: files written) when the supervisor dies, even by SIGKILL."""
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux: the worker then outlives a killed supervisor
        return
    if str(os.getppid()) != expected:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_command(
    config: ReceiverConfig, addresses: dict[str, tuple[str, int]], loads: str | None = None
) -> list[str]:
    """The worker's command line (the access token travels in its environment, not in ps);
    ``loads`` is its place in the supervisor's load table (:meth:`.LoadTable.spec`)."""
    cmd = [
        sys.executable,
        "-m",
        "aura_otel.cli",
        "collect",
        "--worker",
        # With a shared store the worker reads its URL from the environment (_spawn).
        *([] if config.store else ["--jobs-dir", config.jobs_dir]),
        "--http",
        _fmt(*addresses["http"]) if "http" in addresses else "off",
        "--grpc",
        _fmt(*addresses["grpc"]) if "grpc" in addresses else "off",
        "--durability",
        config.durability,
        "--quiet-period",
        repr(config.quiet_period),
        "--idle-timeout",
        repr(config.idle_timeout),
        "--write-interval",
        repr(config.write_interval),
        "--store-timeout",
        repr(config.store_timeout),
        "--max-request-bytes",
        str(config.max_request_bytes),
        "--max-decompressed-bytes",
        str(config.max_decompressed_bytes),
        "--max-concurrent-requests",
        str(config.max_concurrent_requests),
        "--receive-timeout",
        repr(config.receive_timeout),
    ]
    if config.forward_endpoint:
        cmd += ["--forward-endpoint", config.forward_endpoint]
    if config.forward_protocol:
        cmd += ["--forward-protocol", config.forward_protocol]
    if config.enum_case:
        cmd += ["--enum-case", config.enum_case]
    if config.prices_file:
        cmd += ["--prices-file", config.prices_file]
    if loads:
        cmd += ["--loads", loads]
    return cmd


@dataclass
class Supervisor:
    config: ReceiverConfig
    workers: int
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _book: AnyBook | None = None
    _stopping: bool = False
    _loads: LoadTable | None = None
    stop_timeout: float = STOP_TIMEOUT_SECONDS

    def start(self) -> None:
        probe = create_receiver(self.config)  # every setting checked, the bind guard included
        probe.ingestor.masking.shutdown()
        self._book = probe.book
        self._book.recover()
        reserved = []
        try:
            for protocol, (host, wanted) in self.config.addresses().items():
                port = wanted
                if wanted == 0:  # hold a free port for the workers (SO_REUSEPORT lets them join)
                    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    sock.bind((host, 0))
                    port = sock.getsockname()[1]
                    reserved.append(sock)
                self.addresses[protocol] = (host, port)
            self._loads = LoadTable.create(self.workers)
            for slot in range(self.workers):
                self._procs.append(self._spawn(slot))
        finally:
            for sock in reserved:
                sock.close()

    def _spawn(self, slot: int) -> subprocess.Popen[str]:
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}
        loads = self._loads
        if self.config.access_token:
            env[c.ENV_ACCESS_TOKEN] = self.config.access_token
        if self.config.store:  # in the environment, like the token: a URL may hold a password
            env[c.ENV_STORE] = self.config.store
        proc = subprocess.Popen(
            worker_command(self.config, self.addresses, loads.spec(slot) if loads else None),
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(loads.fd,) if loads else (),
        )
        assert proc.stdout is not None
        wanted = len(self.addresses)
        seen = 0
        for line in proc.stdout:  # readiness: the worker prints one line per bound server
            if " listening on " in line:
                seen += 1
                if seen == wanted:
                    break
        if seen < wanted:
            proc.wait()
            raise OSError(f"a receiver worker failed to start (exit {proc.returncode})")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain, never block it
        return proc

    def watch(self, stop: threading.Event) -> None:
        """Until ``stop``: restart a worker that died, after rewriting what it may have left."""
        while not stop.wait(1.0):
            self.restart_dead()

    def restart_dead(self) -> None:
        """Restart each worker that died, after replaying its log. A restart that fails (no
        memory, no file descriptors, a full disk for the replay) is logged and tried again at
        the next check: the supervisor itself, and the workers still alive, go on."""
        for i, proc in enumerate(self._procs):
            if proc.poll() is None or self._stopping:
                continue
            logger.error(
                "aura-otel: receiver worker %d exited with %s; restarting it",
                proc.pid,
                proc.returncode,
            )
            try:
                if self._book is not None:
                    self._book.recover()  # the dead worker's log, nobody else's
                self._procs[i] = self._spawn(i)
            except Exception:
                logger.exception("aura-otel: restarting receiver worker %d failed; retrying", i)

    def stop(self) -> bool:
        """Stop every worker (each writes its pending files); True when all stopped cleanly."""
        self._stopping = True
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A blocking wait returns the moment a worker exits (``wait(timeout)`` polls, adding
        # up to 50 ms to every stop); a timer kills whoever is still writing after the bound.
        stuck: list[int] = []

        def kill_stragglers() -> None:
            for proc in self._procs:
                if proc.poll() is None:
                    stuck.append(proc.pid)
                    proc.kill()

        watchdog = threading.Timer(self.stop_timeout, kill_stragglers)
        watchdog.daemon = True
        watchdog.start()
        try:
            codes = [proc.wait() for proc in self._procs]
        finally:
            watchdog.cancel()
        clean = not stuck and all(code == 0 for code in codes)
        book = self._book
        if clean and book is not None and book.dirty_jobs():
            # A replay of a dead worker's log could not write everything (a full disk then):
            # its segments are still there, and no worker is left to hold one, so replaying
            # them now writes those jobs, or the stop says it is not clean.
            try:
                book.recover()
            except Exception:
                logger.exception("aura-otel: the last replay of a dead worker's log failed")
            clean = book.dirty_jobs() == 0
        if self._loads is not None:
            self._loads.close()
            os.close(self._loads.fd)
            self._loads = None
        return clean
