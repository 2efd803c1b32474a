"""The request path's order: decode, mask and fold under the compute gate, one request at a
time; make durable outside it, so one request's sync overlaps the next one's work."""

from __future__ import annotations

import threading

from aura_otel.receiver import ingest as ingest_module

from .support import demo_job_spans, encode, running_receiver, telemetry


def test_requests_compute_one_at_a_time_and_store_outside_the_gate(tmp_path, monkeypatch):
    seen: list[tuple[str, bool]] = []
    with running_receiver(tmp_path / "jobs", grpc=None) as receiver:
        ingestor = receiver.ingestor
        decode, append = ingest_module.to_spans, receiver.book.append_request

        def watched_decode(*args, **kwargs):
            seen.append(("decode", ingestor._compute.locked()))
            return decode(*args, **kwargs)

        def watched_append(*args, **kwargs):
            seen.append(("append", ingestor._compute.locked()))
            return append(*args, **kwargs)

        monkeypatch.setattr(ingest_module, "to_spans", watched_decode)
        monkeypatch.setattr(receiver.book, "append_request", watched_append)
        spans = demo_job_spans("gate-1")
        outcome = ingestor.ingest(encode(spans))
        assert (outcome.accepted, outcome.rejected) == (len(spans), 0)
    # One thread here: the gate is held exactly while this request decodes, never while it syncs.
    assert seen == [("decode", True), ("append", False)]
    assert telemetry(tmp_path / "jobs", "gate-1")["summary"]["total_operations"] == 3


def test_concurrent_requests_each_get_their_answer_and_their_files(tmp_path):
    jobs = [f"gate-many-{i}" for i in range(8)]
    spans = {job: demo_job_spans(job) for job in jobs}
    requests = {job: encode(spans[job]) for job in jobs}
    answers: dict[str, tuple[int, int]] = {}
    with running_receiver(tmp_path / "jobs", grpc=None) as receiver:

        def send(job: str) -> None:
            outcome = receiver.ingestor.ingest(requests[job])
            answers[job] = (outcome.accepted, outcome.rejected)

        threads = [threading.Thread(target=send, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        receiver.flush()
        counters = receiver.counters()
    assert answers == {job: (len(spans[job]), 0) for job in jobs}
    total = sum(len(job_spans) for job_spans in spans.values())
    assert counters["spans_received"] == counters["spans_accepted"] == total
    for job in jobs:
        assert telemetry(tmp_path / "jobs", job)["summary"]["total_operations"] == 3


def test_a_span_the_fold_fails_on_is_answered_as_rejected_not_accepted(tmp_path, monkeypatch):
    """A fold bug on one span leaves it out of the file: the sender is told so (partial
    success), the job's other spans are written."""
    fold = ingest_module.fold_span
    with running_receiver(tmp_path / "jobs", grpc=None) as receiver:
        spans = demo_job_spans("foldbug-1")
        victim = next(span for span in spans if span.name != "aura.job")

        def broken_on_one(span):
            if span.context.span_id == victim.context.span_id:
                raise RuntimeError("a fold bug")
            return fold(span)

        monkeypatch.setattr(ingest_module, "fold_span", broken_on_one)
        outcome = receiver.ingestor.ingest(encode(spans))
        assert (outcome.accepted, outcome.rejected) == (len(spans) - 1, 1)
        assert "could not be folded" in outcome.message
        assert receiver.counters()["fold_errors"] == 1
        receiver.flush()
    written = telemetry(tmp_path / "jobs", "foldbug-1")
    assert written["job_id"] == "foldbug-1"


def test_job_ids_shaped_like_phone_numbers_keep_their_own_files(tmp_path):
    """The PII rules do not judge ids: two jobs whose ids look like phone numbers stay two."""
    from .support import post_job

    with running_receiver(tmp_path / "jobs", grpc=None) as receiver:
        for job_id in ("job-415-215-0283", "job-415-215-0284"):
            assert post_job(receiver, job_id).status_code == 200
        receiver.flush()
    jobs = tmp_path / "jobs"
    assert sorted(p.name for p in jobs.iterdir() if p.is_dir()) == [
        "job-415-215-0283",
        "job-415-215-0284",
    ]
    assert telemetry(jobs, "job-415-215-0284")["job_id"] == "job-415-215-0284"
