"""Overload is answered "retry later" (429 + Retry-After, RESOURCE_EXHAUSTED + RetryInfo), and
the real OTLP exporters obey: they wait, retry, and their spans end up in the file.

The receiver admits one request at a time here; a request whose body the test sends in two
halves holds that slot for exactly as long as the test wants, so the overload is deterministic.
"""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from .support import (
    HeldRequest,
    demo_job_spans,
    encode,
    otlp_exporter,
    post_job,
    running_receiver,
    stop_writer,
    telemetry,
    wait_for,
)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_real_exporter_retries_until_the_receiver_has_room(tmp_path, protocol):
    with running_receiver(
        tmp_path / "jobs", max_concurrent_requests=1, retry_after_seconds=1
    ) as receiver:
        held = HeldRequest(receiver, encode(demo_job_spans("held-1")).SerializeToString())
        wait_for(lambda: receiver.counters()["requests_in_flight"] == 1, "the held request")

        exporter = otlp_exporter(receiver, protocol, timeout=60)
        outcome: list[SpanExportResult] = []
        sender = threading.Thread(
            target=lambda: outcome.append(exporter.export(demo_job_spans("retry-1")))
        )
        sender.start()
        refused = "requests_refused_overload"
        wait_for(lambda: receiver.counters()[refused] >= 1, "the exporter to be told to retry")
        assert not outcome  # it has not given up: it waits for the Retry-After / RetryInfo delay

        assert held.release().startswith(b"HTTP/1.1 200")
        sender.join(120)
        assert outcome == [SpanExportResult.SUCCESS]
        exporter.shutdown()
        receiver.flush()
        assert telemetry(tmp_path / "jobs", "retry-1")["summary"]["total_operations"] == 3
        assert telemetry(tmp_path / "jobs", "held-1")["summary"]["total_operations"] == 3
        assert receiver.counters()["requests_refused_overload"] >= 1


def test_the_refusal_itself(tmp_path):
    import httpx

    with running_receiver(
        tmp_path / "jobs", grpc=None, max_concurrent_requests=1, retry_after_seconds=7
    ) as receiver:
        held = HeldRequest(receiver, encode(demo_job_spans("held-2")).SerializeToString())
        wait_for(lambda: receiver.counters()["requests_in_flight"] == 1, "the held request")
        response = httpx.post(
            receiver.url("http") + "/v1/traces",
            content=b"",
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        held.release()


def test_past_half_the_backlog_a_request_waits_for_the_writers_round(tmp_path, monkeypatch):
    """A wait in the receiver instead of a refusal the sender would sleep a second on; the
    writer's next round (it takes the pending units) lets the waiting request go on."""
    from aura_otel.receiver import jobs

    monkeypatch.setattr(jobs, "SOFT_PENDING_BYTES", 1)  # one request's units are past it
    with running_receiver(tmp_path / "jobs", grpc=None, write_interval=3600) as receiver:
        book = receiver.book
        stop_writer(book)  # this test writes, so nothing depends on timing
        book.append_request(_units("soft-1"))
        assert book.pending_bytes() > 1
        assert book.wait_for_room(timeout=0.05) is False  # nobody wrote: it gave up waiting

        released: list[bool] = []
        book._hurry.clear()  # set again by the waiter below just before it waits
        waiter = threading.Thread(target=lambda: released.append(book.wait_for_room(60)))
        waiter.start()
        wait_for(lambda: waiter.is_alive() and book._hurry.is_set(), "the waiting request")
        assert book.write_dirty() == 1  # the round takes the pending units
        waiter.join(60)
        assert released == [True]
        assert (tmp_path / "jobs" / "soft-1" / "telemetry.json").is_file()


def test_a_writer_far_behind_is_answered_retry_later_and_nothing_is_taken(tmp_path, monkeypatch):

    from aura_otel.receiver import admission

    monkeypatch.setattr(admission, "MAX_PENDING_BYTES", 1)
    with running_receiver(
        tmp_path / "jobs", grpc=None, write_interval=3600, retry_after_seconds=3
    ) as receiver:
        stop_writer(receiver.book)
        receiver.book.append_request(_units("hard-1"))  # acknowledged, not yet written
        response = post_job(receiver, "hard-2")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert receiver.counters()["requests_refused_backlog"] == 1
        assert not (tmp_path / "jobs" / "hard-2").exists()
        assert receiver.book.write_dirty() == 1  # the acknowledged job still gets its file
    assert (tmp_path / "jobs" / "hard-1" / "telemetry.json").is_file()


def _units(job_id: str) -> dict:
    from aura_otel.fold import fold_span

    units: dict = {}
    for span in demo_job_spans(job_id):
        item = fold_span(span)
        units.setdefault(item.job_id, {})[item.span_id] = item.unit
    return units
