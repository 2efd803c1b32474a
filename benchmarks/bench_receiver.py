"""Fold receiver: spans per second from OTLP requests to v1 files, request latency, memory.

The receiver is the real ``aura-otel collect`` in its own process (as deployed); this process
only sends pre-encoded OTLP requests (real SDK spans of jobs of a root and 8 stages, 15
attributes and one event each, as the other benchmarks use), from a few concurrent clients, as
a fleet of services would. The clock runs from the first request until, after SIGTERM,
the receiver says that every acknowledged span is in its job's file (printed once the files
are written and synced, before the process exits): so the rate counts spans that are in v1
files, not merely acknowledged. Acknowledged means synced to the receiver's write-ahead log
(``--durability fsync``, the default) unless stated.

Memory per open job: RSS of the receiver before and after it holds many jobs that never get a
root (so none is finished and released), divided by their number. Flat memory: RSS along a
stream of finished jobs.

The peer: Arize Phoenix (when ``.venv-phoenix`` or ``$AURA_OTEL_PHOENIX_PYTHON`` has it) gets
the same requests from the same clients; its clock stops when its GraphQL API counts every
span stored. The ratio is printed per protocol.

Goal: 20k spans/s on the 2-core development machine, and ahead of Phoenix.

    python benchmarks/bench_receiver.py [--spans 60000] [--clients 4] [--durability both]
        [--workers 1,2] [--peer-spans 5040] [--open-jobs 20000] [--flat-jobs 100000]

By default one worker and one a core (``--workers 1,2`` here): the goal is for the machine,
which a single Python process cannot use.
"""

from __future__ import annotations

import argparse
import atexit
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _common import SPANS_PER_JOB, bare_span_seconds, fs_floor, run_jobs
from aura_otel import JobContextProcessor
from aura_otel.receiver.cli import STOPPED

ROOT = Path(__file__).resolve().parents[1]
JOBS_PER_REQUEST = 56  # 504 spans: about what an exporter's default batch (512) holds
GOAL = 20_000
#: Jobs the disk's yardstick creates before each run (a few ms on tmpfs).
FLOOR_JOBS = 300
#: "Retry later" answers the clients obeyed (a writer behind applies back-pressure).
RETRIES: list[object] = []


def _run_id() -> str:
    """Letters only: a long digit run in job ids (a nanosecond clock) looks like a card or
    phone number to masking, and would put every span on masking's slow path."""
    import random

    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))


def make_requests(n_spans: int, prefix: str, *, roots: bool = True) -> list[bytes]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(JobContextProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run_jobs(provider, max(1, n_spans // SPANS_PER_JOB), prefix=prefix)
    spans = list(memory.get_finished_spans())
    if not roots:
        spans = [s for s in spans if s.name != "aura.job"]
    per = JOBS_PER_REQUEST * (SPANS_PER_JOB if roots else SPANS_PER_JOB - 1)
    return [encode_spans(spans[i : i + per]).SerializeToString() for i in range(0, len(spans), per)]


class Receiver:
    def __init__(self, jobs_dir: str, durability: str, workers: int = 1) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aura_otel.cli",
                "collect",
                "--jobs-dir",
                jobs_dir,
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--durability",
                durability,
                "--max-concurrent-requests",
                "16",
                "--workers",
                str(workers),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        #: When the receiver said every acknowledged span is in its file (the clock's end).
        self.stopped_at: float | None = None
        threading.Thread(target=self._watch_stderr, daemon=True).start()
        self.http = self.grpc = ""
        assert self.proc.stdout is not None
        while not (self.http and self.grpc):
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("the receiver did not start")
            if line.startswith("OTLP/HTTP listening on "):
                self.http = line.split(" on ", 1)[1].strip()
            elif line.startswith("OTLP/gRPC listening on "):
                self.grpc = line.split(" on ", 1)[1].strip()

    def _watch_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip() == STOPPED:
                self.stopped_at = time.perf_counter()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the receiver and its workers so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return total

    def stop(self) -> float:
        """Stop (every file written); returns the CPU seconds the receiver tree used in all."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def send_all(receiver: Receiver, protocol: str, bodies: list[bytes], clients: int) -> list[float]:
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        if protocol == "http":
            # The standard library's client: the lightest Python sender, as the gRPC one is
            # grpcio's C core. The senders stand for services on other hosts; here they share
            # the receiver's two cores, so the harness should take as little of them as it
            # can (httpx took ~6 us a span, ~4x the gRPC sender). It reconnects by itself
            # when an answer says ``Connection: close`` (a worker turning connections over).
            import http.client
            from urllib.parse import urlsplit

            url = urlsplit(receiver.http)
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=120)
            try:
                while True:
                    try:
                        body = work.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.perf_counter()
                    while True:  # "retry later" is obeyed, as OTLP exporters do
                        connection.request(
                            "POST",
                            url.path,
                            body=body,
                            headers={"Content-Type": "application/x-protobuf"},
                        )
                        response = connection.getresponse()
                        response.read()
                        if response.status not in (429, 503):
                            break
                        RETRIES.append(response.status)
                        time.sleep(float(response.getheader("retry-after") or "1"))
                    elapsed = time.perf_counter() - t0
                    if response.status != 200:
                        failures.append(str(response.status))
                    with lock:
                        latencies.append(elapsed)
            finally:
                connection.close()
        else:
            import grpc

            # Each client is its own service with its own connection: gRPC shares one
            # connection between a process's channels unless told not to.
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(receiver.grpc, options=options) as channel:
                call = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    request_serializer=None,
                    response_deserializer=None,
                )
                while True:
                    try:
                        body = work.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.perf_counter()
                    while True:
                        try:
                            call(body, timeout=120)
                            break
                        except grpc.RpcError as exc:
                            retryable = (
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                grpc.StatusCode.UNAVAILABLE,
                            )
                            if exc.code() not in retryable:  # type: ignore[attr-defined]
                                raise
                            RETRIES.append(exc.code())  # type: ignore[attr-defined]
                            time.sleep(1)
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {failures[:5]}")
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def throughput(
    protocol: str,
    n_spans: int,
    clients: int,
    durability: str,
    workers: int,
    bodies: list[bytes] | None = None,
    folder: str | None = None,
) -> tuple[float, float]:
    """(spans/s into v1 files, spans/s acknowledged); jobs in a temporary folder in ``folder``."""
    bodies = bodies or make_requests(n_spans, f"bench-{protocol}-{_run_id()}")
    spans = n_spans // SPANS_PER_JOB * SPANS_PER_JOB
    RETRIES.clear()
    # Jobs folders are deleted when the benchmark ends, not between runs: on ext4 (with
    # ``discard``) creating files right after deleting thousands costs the next run several
    # times the kernel time, which is the harness's doing, not the receiver's.
    tmp = tempfile.mkdtemp(dir=folder, prefix="aura-bench-receiver-")
    atexit.register(shutil.rmtree, tmp, True)
    # The machine's speed just before the run: the shared VM's cores run the same code up to
    # twice as fast at one moment as at another, and every rate here moves with them.
    bare = bare_span_seconds(300, 3)
    # The disk's speed just before the run, the same way: a job's folder, journal and file by
    # bare system calls (left in place until the benchmark ends, like the jobs folders).
    floor_dir = tempfile.mkdtemp(dir=folder, prefix="aura-bench-floor-")
    atexit.register(shutil.rmtree, floor_dir, True)
    floor = fs_floor(Path(floor_dir) / "jobs", FLOOR_JOBS, remove=False) / FLOOR_JOBS
    receiver = Receiver(tmp, durability, workers)
    idle_cpu = receiver.cpu_seconds()  # start-up, not counted
    t0 = time.perf_counter()
    latencies = send_all(receiver, protocol, bodies, clients)
    acked = time.perf_counter() - t0
    cpu = receiver.stop() - idle_cpu  # writes every pending file before it exits
    # The clock stops when the receiver says every file is written (its exit comes after).
    total = (receiver.stopped_at or time.perf_counter()) - t0
    files = sum(1 for _ in Path(tmp).glob("*/telemetry.json"))
    assert files == spans // SPANS_PER_JOB, (files, spans // SPANS_PER_JOB)
    rate = spans / total
    print(
        f"{protocol:4s} {durability:5s} {workers} worker{'s' if workers > 1 else ' '}: {spans} spans in {len(bodies)} requests, {clients} clients: "
        f"{'' if folder is None else f'[{folder}] '}{rate:,.0f} spans/s into v1 files ({spans / acked:,.0f}/s acknowledged); "
        f"request latency p50 {pct(latencies, 0.5) * 1000:.0f} ms, p99 {pct(latencies, 0.99) * 1000:.0f} ms; "
        f"receiver CPU {cpu / spans * 1e6:.0f} us/span = {cpu / spans / bare:.2f} bare SDK spans "
        f"({spans / cpu:,.0f} spans per CPU-second) "
        f"({len(bodies[0]) // 1024} KiB, {JOBS_PER_REQUEST * SPANS_PER_JOB} spans each; "
        f"{len(RETRIES)} retry-later answers obeyed; just before, a bare SDK span took "
        f"{bare * 1e6:.0f} us and a job's folder, journal and file by bare system calls "
        f"{floor * 1e6:.0f} us)  [goal {GOAL:,}/s: {'met' if rate >= GOAL else 'NOT met'}]"
    )
    return rate, spans / acked


# -- the peer: Arize Phoenix, same payloads, same clients ------------------------------------------
#: Run by Phoenix's own python: its gRPC receiver on loopback only, then Phoenix.
PHOENIX_LAUNCHER = """
import sys
from grpc.aio import _server

def _loopback(original):
    def bind(self, address, *args):
        return original(self, "127.0.0.1:" + address.rpartition(":")[2], *args)
    return bind

_server.Server.add_insecure_port = _loopback(_server.Server.add_insecure_port)
from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
sys.exit(main())
"""


def phoenix_python() -> str | None:
    for candidate in (
        os.environ.get("AURA_OTEL_PHOENIX_PYTHON"),
        str(ROOT / ".venv-phoenix" / "bin" / "python"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class Phoenix:
    """Arize Phoenix on 127.0.0.1 (its own virtualenv), stopped by :meth:`stop`."""

    def __init__(self, python: str, workdir: str) -> None:
        import socket

        ports = []
        for _ in range(2):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{ports[0]}"
        self.http = self.base + "/v1/traces"
        self.grpc = f"127.0.0.1:{ports[1]}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": workdir,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(ports[0]),
            "PHOENIX_GRPC_PORT": str(ports[1]),
            "PHOENIX_WORKING_DIR": workdir,
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        self.proc = subprocess.Popen(
            [python, "-c", PHOENIX_LAUNCHER],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("Phoenix did not start")
            time.sleep(0.5)

    def spans(self) -> int:
        import httpx

        query = "{ projects { edges { node { recordCount } } } }"
        body = httpx.post(self.base + "/graphql", json={"query": query}, timeout=60).json()
        return sum(e["node"]["recordCount"] for e in body["data"]["projects"]["edges"])

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def phoenix_throughput(
    phoenix: Phoenix, protocol: str, bodies: list[bytes], spans: int, clients: int
) -> tuple[float, float]:
    """(spans/s stored and queryable, spans/s acknowledged)."""
    before = phoenix.spans()
    t0 = time.perf_counter()
    latencies = send_all(phoenix, protocol, bodies, clients)  # type: ignore[arg-type]
    acked = time.perf_counter() - t0
    deadline = time.monotonic() + 900
    while phoenix.spans() < before + spans:  # stored and queryable, as v1 files are readable
        if time.monotonic() > deadline:
            raise SystemExit("Phoenix did not store every span within 15 minutes")
        time.sleep(0.25)
    total = time.perf_counter() - t0
    rate = spans / total
    print(
        f"{protocol:4s} Phoenix : {spans} spans: {rate:,.0f} spans/s stored and queryable "
        f"({spans / acked:,.0f}/s acknowledged); request latency p50 "
        f"{pct(latencies, 0.5) * 1000:.0f} ms, p99 {pct(latencies, 0.99) * 1000:.0f} ms"
    )
    return rate, spans / acked


def memory_per_open_job(n_jobs: int) -> None:
    bodies = make_requests(n_jobs * SPANS_PER_JOB, f"open-{_run_id()}", roots=False)
    warm, rest = bodies[:5], bodies[5:]
    if not rest:  # five requests warm the receiver up: fewer jobs leave nothing to measure
        print(f"memory per open job: skipped (--open-jobs {n_jobs} fits in the warm-up)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        receiver = Receiver(tmp, "write")
        send_all(receiver, "http", warm, 1)
        before = receiver.rss_mb()
        send_all(receiver, "http", rest, 2)
        after = receiver.rss_mb()
        receiver.stop()
    jobs = len(rest) * JOBS_PER_REQUEST
    print(
        f"memory: {jobs} open jobs (no root yet) held in {after - before:+.1f} MB of RSS: "
        f"~{(after - before) * 1024 * 1024 / jobs:.0f} bytes per open job (spans live in the journals)"
    )


def memory_flat(n_jobs: int, parts: int = 10) -> None:
    """RSS of the receiver along a stream of finished jobs: it must not grow with their number.

    The spans of a tenth are made once; each tenth sends them under its own job ids (the
    prefix swapped in the encoded requests: same length, so the protobuf stays valid), so the
    stream costs the sender little time and memory."""
    samples = []
    run = _run_id()
    first = f"flat-{run}-p00".encode()
    template = make_requests(n_jobs // parts * SPANS_PER_JOB, first.decode())
    with tempfile.TemporaryDirectory() as tmp:
        receiver = Receiver(tmp, "write")
        for part in range(parts):
            prefix = f"flat-{run}-p{part:02d}".encode()
            assert len(prefix) == len(first), "a prefix of another length would break the protobuf"
            send_all(receiver, "http", [body.replace(first, prefix) for body in template], 2)
            samples.append(receiver.rss_mb())
        receiver.stop()
        written = sum(1 for _ in Path(tmp).glob("*/telemetry.json"))
    print(
        f"memory over {written} finished jobs (files written), RSS after each tenth: "
        + ", ".join(f"{m:.0f}" for m in samples)
        + " MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--durability", choices=("fsync", "write", "both"), default="both")
    parser.add_argument("--open-jobs", type=int, default=20_000)
    parser.add_argument("--flat-jobs", type=int, default=100_000)
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--workers",
        default=",".join(str(n) for n in sorted({1, cores})),
        help="receiver processes to try, e.g. 1,2 [1 and one a core]",
    )
    parser.add_argument(
        "--dir",
        action="append",
        default=None,
        help="where the jobs folders go (repeatable; default the temporary folder, e.g. "
        "/tmp on disk; /dev/shm takes the disk out)",
    )
    parser.add_argument(
        "--peer-spans",
        type=int,
        default=5_040,
        help="spans sent to both for the Phoenix ratio (Phoenix stores ~100/s)",
    )
    args = parser.parse_args()
    print(f"bench_receiver: {os.cpu_count()} CPUs; the receiver and this sender share them")
    modes = ("fsync", "write") if args.durability == "both" else (args.durability,)
    for folder in args.dir or [None]:
        for workers in (int(w) for w in args.workers.split(",")):
            for durability in modes:
                for protocol in ("http", "grpc"):
                    throughput(
                        protocol, args.spans, args.clients, durability, workers, None, folder
                    )
    python = phoenix_python()
    if args.peer_spans < SPANS_PER_JOB:
        print("Phoenix: skipped (--peer-spans below one job)")
    elif python is None:
        print("Phoenix: not installed (.venv-phoenix or AURA_OTEL_PHOENIX_PYTHON): no peer ratio")
    else:
        with tempfile.TemporaryDirectory() as workdir:
            phoenix = Phoenix(python, workdir)
            try:
                for protocol in ("http", "grpc"):
                    bodies = make_requests(args.peer_spans, f"peer-{protocol}-{_run_id()}")
                    spans = args.peer_spans // SPANS_PER_JOB * SPANS_PER_JOB
                    ours = throughput(protocol, args.peer_spans, args.clients, "fsync", 1, bodies)
                    theirs = phoenix_throughput(phoenix, protocol, bodies, spans, args.clients)
                    print(
                        f"{protocol:4s} ratio aura-otel collect / Phoenix (same payloads, clients "
                        f"and run): stored {ours[0] / theirs[0]:.2f}x, acknowledged "
                        f"{ours[1] / theirs[1]:.2f}x (Phoenix acknowledges before storing; "
                        "aura-otel after its write-ahead log is synced)"
                    )
            finally:
                phoenix.stop()
    if args.open_jobs:
        memory_per_open_job(args.open_jobs)
    if args.flat_jobs:
        memory_flat(args.flat_jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
