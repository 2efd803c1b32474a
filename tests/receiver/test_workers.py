"""``aura-otel collect --workers 2``: two receiver processes on the same ports, one jobs folder.

Jobs whose requests reach different workers still become one complete file each; a clean stop
leaves the marker; a killed supervisor takes its workers with it and the next start loses
nothing that was acknowledged.
"""

from __future__ import annotations

import socket
import time

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from aura_otel import conventions as c
from aura_otel.receiver.cli import STOPPED
from aura_otel.receiver.http import REQUESTS_PER_CONNECTION

from .support import (
    CollectProcess,
    demo_job_spans,
    encode,
    folded_units,
    running_receiver,
    wait_for,
)


def _refused(host_port: tuple[str, int]) -> bool:
    try:
        socket.create_connection(host_port, timeout=5).close()
    except OSError:
        return True
    return False


def test_two_workers_fold_jobs_split_across_them(tmp_path):
    jobs_dir = tmp_path / "jobs"
    receiver = CollectProcess(jobs_dir, "--workers", "2")
    try:
        assert any("2 workers" in line for line in receiver.lines)
        # Each job's stages and root go in separate requests on fresh connections, so the
        # kernel may hand them to either worker.
        for n in range(12):
            spans = demo_job_spans(f"w-{n}")
            for part in (
                [s for s in spans if s.name != c.JOB_SPAN_NAME],
                [s for s in spans if s.name == c.JOB_SPAN_NAME],
            ):
                response = httpx.post(
                    receiver.http_url + "/v1/traces",
                    content=encode(part).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf", "Connection": "close"},
                    timeout=30,
                )
                assert response.status_code == 200
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=receiver.grpc_target, insecure=True, timeout=30)
        assert exporter.export(demo_job_spans("w-grpc")) is SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        assert receiver.stop() == 0  # SIGTERM: every worker writes its files, then exits
    assert not list(jobs_dir.glob(".aura-receiver-wal.*"))
    # Each worker, then the supervisor once all stopped cleanly, says the files are written.
    assert receiver.proc.stderr is not None
    assert receiver.proc.stderr.read().splitlines().count(STOPPED) == 3
    for job_id in [f"w-{n}" for n in range(12)] + ["w-grpc"]:
        doc = orjson.loads((jobs_dir / job_id / "telemetry.json").read_bytes())
        assert doc["summary"]["total_operations"] == 3, job_id


def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path):
    jobs_dir = tmp_path / "jobs"
    first = CollectProcess(jobs_dir, "--workers", "2", "--write-interval", "3600")
    try:
        body = encode(demo_job_spans("k-1")).SerializeToString()
        response = httpx.post(
            first.http_url + "/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        first.kill9()
    host, port = first.http_url.removeprefix("http://").rsplit(":", 1)
    wait_for(lambda: _refused((host, int(port))), "the workers to stop with their supervisor")

    second = CollectProcess(jobs_dir, "--workers", "2")
    try:
        doc = orjson.loads((jobs_dir / "k-1" / "telemetry.json").read_bytes())
        assert doc["summary"]["total_operations"] == 3
    finally:
        assert second.stop() == 0


def _client_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_a_worker_closes_keep_alive_connections_so_that_senders_spread(tmp_path):
    """SO_REUSEPORT hands out connections: a worker without its supervisor's load table (not
    Linux; see test_balance.py for the table) lets a persistent sender reconnect every few
    requests, drawing a worker again; a lone receiver keeps connections as they are."""
    every = REQUESTS_PER_CONNECTION
    for worker in (True, False):
        with running_receiver(tmp_path / f"jobs-{worker}", grpc=None, worker=worker) as receiver:
            closes, ports = [], []
            with httpx.Client(timeout=30) as client:
                for n in range(2 * every + 1):
                    with client.stream(
                        "POST",
                        receiver.url("http") + "/v1/traces",
                        content=encode(demo_job_spans(f"k-{worker}-{n}")).SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"},
                    ) as response:
                        ports.append(_client_port(response))  # before a close ends the stream
                        response.read()
                    assert response.status_code == 200  # the sender reconnects by itself
                    closes.append(response.headers.get("connection") == "close")
        if worker:
            assert [i for i, closed in enumerate(closes) if closed] == [every - 1, 2 * every - 1]
            # one connection per turn: the sender really reconnected
            assert len(set(ports)) == 3
            assert ports[:every] == [ports[0]] * every
        else:
            assert not any(closes)
            assert len(set(ports)) == 1
        for n in range(2 * every + 1):
            assert (tmp_path / f"jobs-{worker}" / f"k-{worker}-{n}" / "telemetry.json").is_file()


def test_a_worker_asks_grpc_clients_to_reconnect_and_calls_go_on(tmp_path, monkeypatch):
    """gRPC's max_connection_age: a GOAWAY the client obeys without failing a call."""
    import grpc

    from aura_otel.receiver import grpc as receiver_grpc

    monkeypatch.setattr(
        receiver_grpc,
        "WORKER_CONNECTION_OPTIONS",
        (("grpc.max_connection_age_ms", 50), ("grpc.max_connection_age_grace_ms", 60_000)),
    )
    states: list[grpc.ChannelConnectivity] = []
    sent = 0
    with running_receiver(tmp_path / "jobs", http=None, worker=True) as receiver:
        with grpc.insecure_channel(receiver.url("grpc")) as channel:
            channel.subscribe(states.append)
            call = channel.unary_unary(
                f"/{receiver_grpc.SERVICE}/Export",
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            deadline = time.monotonic() + 120
            # Calls go on until the channel has connected three times (two reconnects).
            while states.count(grpc.ChannelConnectivity.READY) < 3:
                assert time.monotonic() < deadline, states
                body = encode(demo_job_spans(f"g-{sent}")).SerializeToString()
                answer = call(body, timeout=30, wait_for_ready=True)
                assert answer.partial_success.rejected_spans == 0
                sent += 1
                time.sleep(0.02)
    for n in range(sent):
        assert (tmp_path / "jobs" / f"g-{n}" / "telemetry.json").is_file()


def test_a_worker_that_does_not_stop_is_killed_after_the_bound_and_the_stop_is_not_clean(
    tmp_path,
):
    # A worker stuck past the bound (here one that ignores SIGTERM and never exits on its own,
    # so nothing depends on timing) is killed; the stop then reports it was not clean.
    import subprocess
    import sys

    from aura_otel.receiver.config import ReceiverConfig
    from aura_otel.receiver.workers import Supervisor

    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], text=True)
    supervisor = Supervisor(ReceiverConfig(jobs_dir=str(tmp_path)), 2, stop_timeout=0.5)
    supervisor._procs = [stubborn, polite]
    assert supervisor.stop() is False
    assert stubborn.returncode == -9  # killed
    assert polite.returncode == -15  # stopped by its SIGTERM, as asked
    stubborn.stdout.close()


def test_workers_that_exit_cleanly_on_sigterm_make_a_clean_stop(tmp_path):
    import subprocess
    import sys

    from aura_otel.receiver.config import ReceiverConfig
    from aura_otel.receiver.workers import Supervisor

    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:  # each has its handler before it is asked to stop
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    supervisor = Supervisor(ReceiverConfig(jobs_dir=str(tmp_path)), 2, stop_timeout=600)
    supervisor._procs = procs
    assert supervisor.stop() is True
    assert [p.returncode for p in procs] == [0, 0]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.close()


def test_a_worker_restart_that_fails_is_retried_and_the_supervisor_goes_on(tmp_path):
    import subprocess
    import sys

    from aura_otel.receiver.config import ReceiverConfig
    from aura_otel.receiver.workers import Supervisor

    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    supervisor = Supervisor(ReceiverConfig(jobs_dir=str(tmp_path)), 1)
    supervisor._procs = [dead]
    attempts: list[int] = []

    def spawn(slot):
        attempts.append(slot)
        if len(attempts) == 1:
            raise OSError(24, "Too many open files")
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])

    supervisor._spawn = spawn  # type: ignore[method-assign]
    supervisor.restart_dead()  # fails: logged, not raised; the slot keeps the dead worker
    assert supervisor._procs == [dead]
    supervisor.restart_dead()  # the next check tries again
    (fresh,) = supervisor._procs
    assert fresh is not dead and fresh.poll() is None and attempts == [0, 0]
    fresh.kill()
    fresh.wait()


def test_a_stop_after_a_replay_that_could_not_write_a_file_writes_it_or_says_so(
    tmp_path, monkeypatch
):
    """A worker died; the supervisor's replay of its log got the spans into the journal but
    not the file (a nearly full disk). A clean stop later must not claim every acknowledged
    span is in its job's file while that file lacks them."""
    import errno
    import os
    import subprocess
    import sys

    from aura_otel.receiver import wal
    from aura_otel.receiver.config import ReceiverConfig
    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats
    from aura_otel.receiver.workers import Supervisor
    from aura_otel.store import JobStore, Journal, journal_line

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    units = folded_units(demo_job_spans("left-1"))
    (jobs / ".aura-receiver-wal.1-deadbeef.0").write_bytes(
        wal.encode({"left-1": journal_line(units)})
    )
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(-9)"])
    dead.wait()
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    fresh: list[subprocess.Popen[str]] = []

    def spawn(slot):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        fresh.append(proc)
        return proc

    supervisor = Supervisor(ReceiverConfig(jobs_dir=str(jobs)), 1, stop_timeout=600)
    supervisor._book = JobBook(JobStore(jobs), ReceiverStats())
    supervisor._procs = [dead]
    supervisor._spawn = spawn  # type: ignore[method-assign]

    def disk_full(journal, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Journal, "write_telemetry", disk_full)
    supervisor.restart_dead()  # the replay: journaled, the file failed
    monkeypatch.undo()  # room again
    assert not (jobs / "left-1" / "telemetry.json").exists()
    assert supervisor.stop() is True  # the workers are gone: the log is replayed again
    for proc in fresh:
        assert proc.stdout is not None
        proc.stdout.close()
    doc = orjson.loads((jobs / "left-1" / "telemetry.json").read_bytes())
    assert doc["summary"]["total_operations"] == 3
    assert not list(jobs.glob(".aura-receiver-wal.*"))
