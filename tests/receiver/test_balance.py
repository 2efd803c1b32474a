"""Workers publish their requests in flight; a busier one hands HTTP connections on.

The table is real shared memory handed to real processes; the decisions are driven by what
the test publishes and by a request the test holds in flight, never by timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest

from aura_otel.receiver import ReceiverConfig
from aura_otel.receiver.balance import LoadTable
from aura_otel.receiver.workers import worker_command

from .support import (
    SRC,
    CollectProcess,
    HeldRequest,
    demo_job_spans,
    encode,
    running_receiver,
    wait_for,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="Linux only")


@pytest.fixture
def table():
    created = LoadTable.create(2)
    assert created is not None
    yield created
    created.close()
    os.close(created.fd)


def test_workers_see_each_others_loads_across_processes():
    table = LoadTable.create(3)
    assert table is not None
    publish = (
        "import sys; from aura_otel.receiver.balance import LoadTable;"
        "LoadTable.parse(sys.argv[1]).publish(5)"
    )
    subprocess.run(
        [sys.executable, "-c", publish, table.spec(1)],
        pass_fds=(table.fd,),
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    )
    assert table.counts() == [0, 5, 0]
    assert not table.busier_than_another()  # the supervisor's view has no slot of its own

    third = LoadTable(table.fd, 3, 2)
    assert not third.busier_than_another()  # 0 in flight: nobody has fewer
    third.publish(1)
    assert third.busier_than_another()  # the first worker has none
    first = LoadTable(table.fd, 3, 0)
    first.publish(2)
    assert not third.busier_than_another()  # 1, against 2 and 5
    assert first.busier_than_another()  # 2, against 1
    assert table.counts() == [2, 5, 1]
    restarted = LoadTable(table.fd, 3, 1)  # a worker restarted in a dead one's place
    assert table.counts() == [2, 0, 1]
    for view in (restarted, first, third, table):
        view.close()
    os.close(table.fd)


def test_a_platform_that_refuses_shared_memory_leaves_workers_balancing_blindly(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "memfd_create", refuse)
    assert LoadTable.create(2) is None  # the supervisor starts its workers without a table


def test_a_table_spec_that_does_not_fit_is_refused(table):
    with pytest.raises(ValueError, match="FD:SLOT:SLOTS"):
        LoadTable.parse("3:x")
    with pytest.raises(ValueError, match="slot 2 is not among 2"):
        LoadTable.parse(table.spec(2))


def _post(client: httpx.Client, receiver, job_id: str) -> tuple[bool, int]:
    """(the answer closed the connection, the client port it came over)."""
    with client.stream(
        "POST",
        receiver.url("http") + "/v1/traces",
        content=encode(demo_job_spans(job_id)).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    ) as response:
        port = int(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        response.read()
    assert response.status_code == 200
    return response.headers.get("connection") == "close", port


def test_a_busier_worker_hands_connections_on_and_a_balanced_one_keeps_them(tmp_path, table):
    other = LoadTable(table.fd, 2, 1)  # the other worker, as the test says it is
    with running_receiver(tmp_path / "jobs", grpc=None, worker=True) as receiver:
        receiver.admission.loads = LoadTable(table.fd, 2, 0)
        with httpx.Client(timeout=30) as client:
            other.publish(3)
            answers = [_post(client, receiver, f"b-{n}") for n in range(12)]
            # Never busier than the other: one keep-alive connection throughout (no turnover
            # every few requests either: the table decides).
            assert [closed for closed, _ in answers] == [False] * 12
            assert len({port for _, port in answers}) == 1

            other.publish(0)
            held = HeldRequest(receiver, encode(demo_job_spans("b-held")).SerializeToString())
            wait_for(lambda: table.counts()[0] == 1, "the held request to be published")
            closed, port = _post(client, receiver, "b-busy")
            assert closed  # one in flight here, none there: the sender is sent to draw again
            again, new_port = _post(client, receiver, "b-after")
            assert new_port != port  # it really reconnected, and the request went through
            assert again  # still busier: the held request is in flight

            answer = held.release()
            assert answer.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in answer.lower()  # it left: none in flight now
            assert _post(client, receiver, "b-even")[0] is False
        assert table.counts()[0] == 0
    for job_id in ["b-held", "b-busy", "b-after", "b-even"] + [f"b-{n}" for n in range(12)]:
        assert (tmp_path / "jobs" / job_id / "telemetry.json").is_file()
    other.close()


def test_a_worker_process_publishes_its_requests_in_flight(tmp_path, table):
    command = worker_command(
        ReceiverConfig(jobs_dir=str(tmp_path / "jobs")), {"http": ("127.0.0.1", 1)}, table.spec(1)
    )
    assert command[-2:] == ["--loads", table.spec(1)]
    worker = CollectProcess(
        tmp_path / "jobs", "--worker", "--loads", table.spec(1), pass_fds=(table.fd,)
    )
    try:
        host, port = worker.http_url.removeprefix("http://").rsplit(":", 1)
        held = HeldRequest(
            SimpleNamespace(addresses={"http": (host, int(port))}),
            encode(demo_job_spans("p-1")).SerializeToString(),
        )
        wait_for(lambda: table.counts() == [0, 1], "the worker to publish the held request")
        assert held.release().startswith(b"HTTP/1.1 200")
        wait_for(lambda: table.counts() == [0, 0], "the worker to publish that it is done")
    finally:
        assert worker.stop() == 0
    assert (tmp_path / "jobs" / "p-1" / "telemetry.json").is_file()


def test_a_worker_refuses_a_table_it_cannot_use(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "aura_otel.cli", "collect", "--worker", "--loads", "nonsense"],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "not a load table FD:SLOT:SLOTS: 'nonsense'" in result.stderr
