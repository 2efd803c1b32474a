"""Jobs whose spans arrive from several services, in any order, late, or without a root.

The receiver's clock is stepped by the test (quiet period, idle timeout) and files are written
by explicit flushes: nothing here depends on timing.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aura_otel import conventions as c
from aura_otel.fold import fold_span
from aura_otel.receiver import wal
from aura_otel.store import JobStore, journal_line

from .support import (
    ManualClock,
    demo_job_spans,
    encode,
    folded_units,
    record_spans,
    running_receiver,
    telemetry,
    telemetry_bytes,
    wait_for,
)


def send(receiver, spans) -> httpx.Response:
    response = httpx.post(
        receiver.url("http") + "/v1/traces",
        content=encode(spans).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 200
    return response


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def receiver(tmp_path, clock):
    with running_receiver(
        tmp_path / "jobs", grpc=None, clock=clock, quiet_period=5, idle_timeout=60
    ) as r:
        yield r


def in_process_file(tmp_path, spans) -> bytes:
    """What the in-process exporter writes for the same spans (the reference)."""
    from aura_otel import RunTelemetryExporter
    from aura_otel.pricing import load_price_table

    exporter = RunTelemetryExporter(tmp_path / "local", pricer=load_price_table(None))
    exporter.export(spans)
    exporter.force_flush()
    exporter.shutdown()
    return telemetry_bytes(tmp_path / "local", spans[0].attributes[c.JOB_ID])


def test_children_before_the_root(tmp_path, receiver):
    spans = demo_job_spans("ooo-1")
    root = [s for s in spans if s.name == c.JOB_SPAN_NAME]
    children = [s for s in spans if s.name != c.JOB_SPAN_NAME]
    for child in reversed(children):  # one request each, last stage first
        send(receiver, [child])
    receiver.flush()
    early = telemetry(tmp_path / "jobs", "ooo-1")
    assert early.get("collection_ended_at") is None and early.get("summary") is None
    assert len(early["records"]) == 3
    assert receiver.book.is_open("ooo-1")

    send(receiver, root)
    receiver.flush()
    assert not receiver.book.is_open("ooo-1")  # finished at once: root in, nothing missing
    assert receiver.counters()["jobs_finalized"] == 1
    assert telemetry_bytes(tmp_path / "jobs", "ooo-1") == in_process_file(tmp_path, root + children)


def test_a_late_span_reopens_and_rewrites_the_job(tmp_path, receiver):
    spans = demo_job_spans("late-1", stages=("brief", "script", "tts", "render"))
    late = [s for s in spans if s.name == "aura.stage.render"]
    send(receiver, [s for s in spans if s not in late])
    receiver.flush()
    assert not receiver.book.is_open("late-1")
    assert len(telemetry(tmp_path / "jobs", "late-1")["records"]) == 3

    send(receiver, late)
    assert receiver.book.is_open("late-1")
    receiver.flush()
    doc = telemetry(tmp_path / "jobs", "late-1")
    assert [r["stage"] for r in doc["records"]] == ["brief", "script", "tts", "render"]
    assert doc["summary"]["total_operations"] == 4
    counts = receiver.counters()
    assert counts["jobs_reopened"] == 1 and counts["jobs_finalized"] == 2
    assert not receiver.book.is_open("late-1")
    assert telemetry_bytes(tmp_path / "jobs", "late-1") == in_process_file(tmp_path, spans)


def test_a_job_without_root_is_left_unfinished_after_the_idle_timeout(tmp_path, receiver, clock):
    send(receiver, demo_job_spans("noroot-1", root=False))
    receiver.flush()
    clock.advance(59)
    receiver.sweep()
    assert receiver.book.is_open("noroot-1"), receiver.counters()
    clock.advance(1)
    receiver.sweep()
    assert not receiver.book.is_open("noroot-1")
    assert receiver.counters()["jobs_unfinished"] == 1
    doc = telemetry(tmp_path / "jobs", "noroot-1")
    assert doc.get("collection_ended_at") is None and doc.get("summary") is None
    assert len(doc["records"]) == 3


def test_a_missing_parent_holds_the_job_for_the_quiet_period_only(tmp_path, receiver, clock):
    """Root in, but a stage hangs under a span that never arrives (it carries no job id)."""

    def build(tracer):
        with tracer.start_as_current_span(c.JOB_SPAN_NAME, attributes={c.JOB_ID: "quiet-1"}):
            with tracer.start_as_current_span("aura.stage.brief", attributes={c.STAGE: "brief"}):
                pass
            with tracer.start_as_current_span("HTTP POST", attributes={c.JOB_ID: "other"}):
                with tracer.start_as_current_span(
                    "aura.stage.tts", attributes={c.STAGE: "tts", c.JOB_ID: "quiet-1"}
                ):
                    pass

    spans = [s for s in record_spans(build) if s.attributes.get(c.JOB_ID) == "quiet-1"]
    send(receiver, spans)
    receiver.flush()
    assert receiver.book.is_open("quiet-1")  # the tts stage's parent is still missing
    clock.advance(4.9)
    receiver.sweep()
    assert receiver.book.is_open("quiet-1")
    clock.advance(0.1)
    receiver.sweep()
    assert not receiver.book.is_open("quiet-1")
    assert receiver.counters()["jobs_finalized_quiet"] == 1
    assert telemetry(tmp_path / "jobs", "quiet-1")["summary"]["total_operations"] == 2


def test_spans_of_one_job_from_two_services_in_many_requests(tmp_path, receiver):
    """Two services (two resources), interleaved, root in the middle: one file, as in-process."""
    api_spans = demo_job_spans("multi-1", stages=("brief", "plan"))
    worker_spans = record_spans(
        lambda tracer: _continue(tracer, api_spans, ("tts", "render")),
        service_name="render-service",
    )
    order = [worker_spans[0], api_spans[-1], api_spans[0], worker_spans[1], api_spans[1]]
    for span in order:
        send(receiver, [span])
    receiver.flush()
    assert not receiver.book.is_open("multi-1")
    doc = telemetry(tmp_path / "jobs", "multi-1")
    assert [r["stage"] for r in doc["records"]] == ["brief", "plan", "tts", "render"]
    assert telemetry_bytes(tmp_path / "jobs", "multi-1") == in_process_file(tmp_path, order)


def _continue(tracer, api_spans, stages):
    """The second service: its spans are children of the first service's root (remote parent)."""
    from opentelemetry import trace

    root = next(s for s in api_spans if s.name == c.JOB_SPAN_NAME)
    remote = trace.SpanContext(
        root.context.trace_id, root.context.span_id, True, trace.TraceFlags(1)
    )
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    for name in stages:
        with tracer.start_as_current_span(
            f"aura.stage.{name}", context=ctx, attributes={c.JOB_ID: "multi-1", c.STAGE: name}
        ):
            pass


def test_memory_returns_to_nothing_after_many_jobs(tmp_path, receiver):
    for batch in range(10):
        spans = []
        for i in range(20):
            spans += demo_job_spans(f"many-{batch}-{i}")
        send(receiver, spans)
    receiver.flush()
    counts = receiver.counters()
    assert counts["jobs_open"] == 0 and counts["jobs_finalized"] == 200


def test_the_log_holds_acknowledged_units_until_their_journal_is_written(tmp_path, receiver):
    """Synced before the answer, let go once the journals are synced: a crash then costs a
    restart the units in flight, never a scan of the folder."""
    jobs = tmp_path / "jobs"
    with receiver.book._write_lock:  # hold the writer: only the log has the job meanwhile
        send(receiver, demo_job_spans("wal-1"))
        (segment,) = jobs.glob(".aura-receiver-wal.*")
        logged = dict(wal.decode(segment.read_bytes()))
        assert list(logged) == ["wal-1"] and len(logged["wal-1"]) == 4
        assert not (jobs / "wal-1").exists()
    receiver.flush()
    assert not segment.exists()  # its units are in the journal now, synced
    (current,) = jobs.glob(".aura-receiver-wal.*")
    assert current.read_bytes() == b""
    assert set(JobStore(jobs).read_journal("wal-1")) == set(logged["wal-1"])
    assert telemetry(jobs, "wal-1")["summary"]["total_operations"] == 3


def test_a_dead_receivers_log_is_replayed_before_listening(tmp_path):
    """A segment nobody holds (its receiver was killed) goes into the journals and files at
    the next start; a torn last line (never acknowledged) is skipped, not fatal."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    spans = demo_job_spans("replay-1")
    units = folded_units(spans)
    first, rest = dict(list(units.items())[:2]), dict(list(units.items())[2:])
    dead = jobs / ".aura-receiver-wal.1-deadbeef.0"
    dead.write_bytes(
        wal.encode({"replay-1": journal_line(first)})
        + wal.encode({"replay-1": journal_line(rest)})
        + b'{"v": 1, "jo'
    )
    with running_receiver(jobs, grpc=None) as receiver:
        assert not dead.exists()
        assert receiver.counters()["jobs_recovered"] == 1
        assert telemetry_bytes(jobs, "replay-1") == in_process_file(tmp_path, spans)


def test_a_failed_write_keeps_the_log_until_a_later_round_succeeds(tmp_path, receiver, monkeypatch):
    """Fault injection in the writer (an I/O error on the journal): the acknowledged units
    stay in the log and in memory, the job stays dirty, and the next round writes them."""
    import errno

    jobs = tmp_path / "jobs"
    real = receiver.book._write

    def failing(*args):
        raise OSError(errno.EIO, "Input/output error")

    with receiver.book._write_lock:
        send(receiver, demo_job_spans("retry-w-1"))
        monkeypatch.setattr(receiver.book, "_write", failing)
    receiver.flush()
    with receiver.book._write_lock:  # no round (of the writer thread either) while we look
        assert receiver.counters()["write_errors"] >= 1
        assert receiver.book.dirty_jobs() == 1
        logged = [s for s in jobs.glob(".aura-receiver-wal.*") if s.read_bytes()]
        assert len(logged) == 1 and "retry-w-1" in dict(wal.decode(logged[0].read_bytes()))
        monkeypatch.setattr(receiver.book, "_write", real)
    receiver.flush()
    assert not logged[0].exists()
    assert telemetry(jobs, "retry-w-1")["summary"]["total_operations"] == 3
    assert receiver.book.dirty_jobs() == 0


def test_write_soon_starts_the_writers_round_without_its_pause(tmp_path):
    """A stop asks for the files at once (they are written while the servers wind down),
    even with a write interval that would otherwise hold them for an hour."""
    jobs = tmp_path / "jobs"
    with running_receiver(jobs, grpc=None, write_interval=3600) as receiver:
        send(receiver, demo_job_spans("soon-1"))
        receiver.book.write_soon()
        wait_for((jobs / "soon-1" / "telemetry.json").is_file, "the writer's round")
        assert telemetry(jobs, "soon-1")["summary"]["total_operations"] == 3


# -- faults in the writer: nothing acknowledged leaves the log before it is in a synced journal
def _logged_jobs(jobs) -> dict[str, set[str]]:
    """Job id -> span ids, over every log segment on disk."""
    out: dict[str, set[str]] = {}
    for segment in jobs.glob(".aura-receiver-wal.*"):
        for job_id, units in wal.decode(segment.read_bytes()):
            out.setdefault(job_id, set()).update(units)
    return out


def test_a_round_that_fails_as_a_whole_puts_back_what_it_took(tmp_path, receiver, monkeypatch):
    import errno

    jobs = tmp_path / "jobs"
    book = receiver.book
    real = book.store.root_fd

    def no_descriptors():
        raise OSError(errno.EMFILE, "Too many open files")

    with book._write_lock:
        send(receiver, demo_job_spans("whole-1"))
        monkeypatch.setattr(book.store, "root_fd", no_descriptors)
    receiver.flush()  # counted, not raised: the writer goes on
    with book._write_lock:
        assert receiver.counters()["write_errors"] >= 1
        assert book.dirty_jobs() == 1 and book.pending_bytes() > 0
        assert len(_logged_jobs(jobs)["whole-1"]) == 4  # still in the log
        monkeypatch.setattr(book.store, "root_fd", real)
        send(receiver, demo_job_spans("whole-2"))
    receiver.flush()
    assert telemetry(jobs, "whole-1")["summary"]["total_operations"] == 3
    assert telemetry(jobs, "whole-2")["summary"]["total_operations"] == 3
    assert _logged_jobs(jobs) == {}  # journaled and synced, then let go


def test_a_log_rotation_that_fails_takes_nothing(tmp_path, receiver, monkeypatch):
    import errno

    jobs = tmp_path / "jobs"
    book = receiver.book

    def no_descriptors():
        raise OSError(errno.EMFILE, "Too many open files")

    with book._write_lock:
        send(receiver, demo_job_spans("rotate-1"))
        monkeypatch.setattr(book._wal, "rotate", no_descriptors)
    with pytest.raises(OSError):
        book.write_dirty()  # raised: the writer thread's guard counts it and goes on
    with book._write_lock:
        assert book.dirty_jobs() == 1 and book.pending_bytes() > 0
        assert not (jobs / "rotate-1").exists()
        monkeypatch.undo()
    receiver.flush()
    assert telemetry(jobs, "rotate-1")["summary"]["total_operations"] == 3
    assert _logged_jobs(jobs) == {}


def test_after_a_failed_sync_the_log_is_kept_for_the_next_start(tmp_path, monkeypatch):
    """A failed sync may have lost the journals' pages, and a later sync would not say so:
    the segments behind them stay (later rounds still let go of their own), the stop says it
    is not clean, and the next start replays them."""
    import errno

    jobs = tmp_path / "jobs"
    calls: list[int] = []
    real = wal.sync_file_system

    def once_failing(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    with running_receiver(jobs, grpc=None) as receiver:
        with receiver.book._write_lock:
            send(receiver, demo_job_spans("sync-1"))
            monkeypatch.setattr(wal, "sync_file_system", once_failing)
        receiver.flush()  # journals written, their sync failed
        with receiver.book._write_lock:
            send(receiver, demo_job_spans("sync-2"))
        receiver.flush()  # this round syncs and lets go of its own segment only
        with receiver.book._write_lock:
            assert len(calls) == 2
            assert set(_logged_jobs(jobs)) == {"sync-1"}
        assert receiver.stop() is False
        monkeypatch.undo()
    assert set(_logged_jobs(jobs)) == {"sync-1"}
    with running_receiver(jobs, grpc=None) as again:
        assert again.counters()["jobs_recovered"] == 1
        assert again.stop() is True
    assert _logged_jobs(jobs) == {}
    assert telemetry(jobs, "sync-1")["summary"]["total_operations"] == 3
    assert telemetry(jobs, "sync-2")["summary"]["total_operations"] == 3


def test_a_replay_whose_sync_fails_keeps_the_dead_receivers_log(tmp_path, monkeypatch):
    import errno

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    units = folded_units(demo_job_spans("replay-sync-1"))
    dead = jobs / ".aura-receiver-wal.1-deadbeef.0"
    dead.write_bytes(wal.encode({"replay-sync-1": journal_line(units)}))

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal, "sync_file_system", failing)
    with running_receiver(jobs, grpc=None) as receiver:
        assert dead.exists()  # replayed into journals that may not be on disk: kept
        monkeypatch.undo()
        receiver.stop()
    with running_receiver(jobs, grpc=None):
        assert not dead.exists()
    assert telemetry(jobs, "replay-sync-1")["summary"]["total_operations"] == 3


def test_a_job_whose_file_fails_after_its_journal_is_not_journaled_twice(
    tmp_path, receiver, monkeypatch
):
    jobs = tmp_path / "jobs"
    book = receiver.book
    real = book._render
    fail = [True]

    def render(*args, **kwargs):
        if fail[0]:
            raise ValueError("a rendering bug")
        return real(*args, **kwargs)

    with book._write_lock:
        send(receiver, demo_job_spans("twice-1"))
        monkeypatch.setattr(book, "_render", render)
    receiver.flush()
    receiver.flush()
    journal = jobs / "twice-1" / ".aura-units.jsonl"
    with book._write_lock:
        assert book.dirty_jobs() == 1
        assert len(journal.read_bytes().splitlines()) == 1  # appended once, not each round
        fail[0] = False
    receiver.flush()
    assert telemetry(jobs, "twice-1")["summary"]["total_operations"] == 3
    assert _logged_jobs(jobs) == {}


def test_a_stop_whose_last_round_cannot_start_is_unclean_not_an_exception(tmp_path, monkeypatch):
    import errno

    jobs = tmp_path / "jobs"
    with running_receiver(jobs, grpc=None) as receiver:
        with receiver.book._write_lock:
            send(receiver, demo_job_spans("norotate-1"))

            def no_descriptors():
                raise OSError(errno.EMFILE, "Too many open files")

            monkeypatch.setattr(receiver.book._wal, "rotate", no_descriptors)
        assert receiver.stop() is False
        assert receiver.stop() is False  # asked again: the same answer
    monkeypatch.undo()
    assert set(_logged_jobs(jobs)) == {"norotate-1"}
    with running_receiver(jobs, grpc=None):
        pass
    assert telemetry(jobs, "norotate-1")["summary"]["total_operations"] == 3


def test_one_job_that_keeps_failing_does_not_pin_the_log(tmp_path, receiver, monkeypatch):
    """Its lines move to the current segment each round, so older segments still go; its
    units are written once it can be."""
    import errno

    jobs = tmp_path / "jobs"
    book = receiver.book
    real = book._write

    def failing_for_poison(job_id, *args):
        if job_id == "poison-1":
            raise OSError(errno.EIO, "Input/output error")
        return real(job_id, *args)

    with book._write_lock:
        send(receiver, demo_job_spans("poison-1"))
        monkeypatch.setattr(book, "_write", failing_for_poison)
    for i in range(6):
        with book._write_lock:
            send(receiver, demo_job_spans(f"healthy-{i}"))
        receiver.flush()
        with book._write_lock:
            segments = list(jobs.glob(".aura-receiver-wal.*"))
            assert len(segments) == 1  # the current one: older ones were let go
            assert _logged_jobs(jobs) == {"poison-1": _logged_jobs(jobs)["poison-1"]}
            assert len(_logged_jobs(jobs)["poison-1"]) == 4
            assert telemetry(jobs, f"healthy-{i}")["summary"]["total_operations"] == 3
    with book._write_lock:
        monkeypatch.setattr(book, "_write", real)
    receiver.flush()
    assert telemetry(jobs, "poison-1")["summary"]["total_operations"] == 3
    assert _logged_jobs(jobs) == {}


def test_a_stop_that_cannot_write_everything_says_so_and_the_next_start_does(tmp_path):
    import errno

    jobs = tmp_path / "jobs"
    with running_receiver(jobs, grpc=None) as receiver:
        book = receiver.book
        real = book._write

        def failing(*args):
            raise OSError(errno.EIO, "Input/output error")

        with book._write_lock:
            send(receiver, demo_job_spans("unclean-1"))
            book._write = failing
        assert receiver.stop() is False
        assert len(_logged_jobs(jobs)["unclean-1"]) == 4  # left for the next start
        book._write = real
    with running_receiver(jobs, grpc=None) as again:
        assert again.counters()["jobs_recovered"] == 1
        assert telemetry(jobs, "unclean-1")["summary"]["total_operations"] == 3
        assert again.stop() is True
    assert _logged_jobs(jobs) == {}


def test_a_request_after_the_books_last_round_is_refused_not_held(tmp_path, receiver):
    jobs = tmp_path / "jobs"
    assert receiver.book.stop() is True
    response = httpx.post(
        receiver.url("http") + "/v1/traces",
        content=encode(demo_job_spans("late-1")).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert not (jobs / "late-1").exists() and _logged_jobs(jobs) == {}


def test_a_log_closed_before_a_line_was_synced_never_says_it_was(tmp_path, monkeypatch):
    import errno
    import os

    log = wal.WriteAheadLog(str(tmp_path), True)
    segment, end = log.append(b"line\n")

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    log.close(remove=False)  # its sync failed: the segment stays, for the next start
    monkeypatch.undo()
    with pytest.raises(OSError):
        log.sync(segment, end)  # a request waiting on it answers "retry later"
    assert (tmp_path / segment.path.rsplit("/", 1)[1]).read_bytes() == b"line\n"


def test_a_log_closed_after_a_sync_lets_its_waiters_answer(tmp_path):
    log = wal.WriteAheadLog(str(tmp_path), True)
    segment, end = log.append(b"line\n")
    log.close(remove=False)
    log.sync(segment, end)  # synced by the close: no error, nothing to do
    assert segment.synced == end


def test_a_job_whose_journal_was_lost_keeps_its_records_when_a_late_span_comes(tmp_path, receiver):
    jobs = tmp_path / "jobs"
    send(receiver, demo_job_spans("lost-1"))
    receiver.flush()
    before = telemetry(jobs, "lost-1")["records"]
    assert len(before) == 3
    (jobs / "lost-1" / ".aura-units.jsonl").unlink()  # a clean-up tool, a disk repair...
    send(receiver, demo_job_spans("lost-1", stages=("render",), root=False))
    receiver.flush()
    after = telemetry(jobs, "lost-1")["records"]
    assert all(rec in after for rec in before)
    assert "render" in {rec["stage"] for rec in after}
    assert receiver.counters()["jobs_damaged"] == 1


def test_a_new_log_segment_is_never_up_for_recovery_before_it_is_locked(tmp_path, monkeypatch):
    """The supervisor's recovery (after another worker died) takes every segment it can lock:
    run at the moment a segment is being created, it must find nothing to take."""
    import fcntl
    import os

    taken: list[list] = []
    real_flock = fcntl.flock

    def recovery_in_the_gap(fd, operation):
        if operation == fcntl.LOCK_EX:  # the creating receiver is about to lock it
            found = wal.orphans(str(tmp_path), wal.WAL_PREFIX)
            taken.append([path for path, _ in found])
            for _, other in found:
                os.close(other)
        return real_flock(fd, operation)

    monkeypatch.setattr(wal.fcntl, "flock", recovery_in_the_gap)
    log = wal.WriteAheadLog(str(tmp_path), True)
    log.rotate()  # an empty segment is kept, so append one line to make a second
    log.append(b"x\n")
    log.rotate()
    monkeypatch.undo()
    assert taken == [[], []]  # two segments created, neither exposed unlocked
    assert len(list(tmp_path.glob(wal.WAL_PREFIX + "*"))) == 2
    assert not list(tmp_path.glob(wal.STAGING_PREFIX + "*"))
    log.close(remove=False)


def test_a_segment_left_half_created_is_removed_at_start(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    stale = jobs / f"{wal.STAGING_PREFIX}1-deadbeef.0"
    stale.write_bytes(b"")
    with running_receiver(jobs, grpc=None):
        assert not stale.exists()


def test_a_journal_unit_no_fold_makes_costs_the_job_only_that_unit(tmp_path, receiver):
    """A line another program wrote (valid JSON, a unit without its clock readings, a record
    with a field of the wrong type): the job is still written, from the units that are
    usable, and those units count as damage (the file keeps what it showed)."""
    jobs = tmp_path / "jobs"
    (jobs / "planted-1").mkdir(parents=True)
    (jobs / "planted-1" / ".aura-units.jsonl").write_bytes(
        b'{"v":1,"units":[["00000000000000aa",{"k":"root"}],'
        b'["00000000000000bb",{"k":"stage","s":1,"e":2,"r":{"tokens_in":"many"}}]]}\n'
    )
    send(receiver, demo_job_spans("planted-1"))
    receiver.flush()
    assert telemetry(jobs, "planted-1")["summary"]["total_operations"] == 3
    assert receiver.counters()["units_unusable"] >= 1
    assert receiver.book.dirty_jobs() == 0 and receiver.counters()["write_errors"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_requests_with_failing_writes_and_syncs_lose_nothing(
    tmp_path, monkeypatch, seed
):
    """Eight request threads, a writer rounding every millisecond, and I/O errors injected
    into job writes (15%) and syncs (20%). Whatever the interleaving: no segment is let go
    while a unit in it is neither in its journal nor in the synced current segment, and after
    the stop and a replay every acknowledged unit is in its journal."""
    import errno
    import os
    import random
    import threading

    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats

    chance = random.Random(seed)
    faults = threading.Lock()

    def fails(probability: float) -> bool:
        with faults:
            return chance.random() < probability

    store = JobStore(tmp_path / "jobs")
    book = JobBook(store, ReceiverStats(), write_interval=0.001, quiet_period=60, idle_timeout=60)
    early: list[tuple[str, int]] = []
    real_retire = wal.WriteAheadLog.retire

    def checked_retire(log, segments):
        current = log._current
        carried: dict[str, set[str]] = {}
        for job_id, units in wal.decode(os.pread(current.fd, current.synced, 0)):
            carried.setdefault(job_id, set()).update(units)
        for segment in segments:
            for job_id, units in wal.decode(wal.read_all(segment.fd)):
                journaled = set(store.read_journal(job_id)) | carried.get(job_id, set())
                if set(units) - journaled:
                    early.append((job_id, len(set(units) - journaled)))
        return real_retire(log, segments)

    real_write, real_sync = book._write, wal.sync_file_system

    def flaky_write(*args):
        if fails(0.15):
            raise OSError(errno.EIO, "Input/output error")
        return real_write(*args)

    def flaky_sync(fd):
        if fails(0.2):
            raise OSError(errno.EIO, "Input/output error")
        return real_sync(fd)

    monkeypatch.setattr(wal.WriteAheadLog, "retire", checked_retire)
    monkeypatch.setattr(book, "_write", flaky_write)
    monkeypatch.setattr(wal, "sync_file_system", flaky_sync)
    book.start()
    acknowledged: dict[str, set[str]] = {}
    lock = threading.Lock()

    def client(thread: int) -> None:
        for n in range(200):
            job_id = f"stress-{(thread * 7 + n) % 20}"
            span_id = f"{thread:04x}{n:012x}"
            try:
                book.append_request({job_id: {span_id: {"s": 1, "e": 2, "p": "f" * 16}}})
            except OSError:
                continue  # answered "retry later": not acknowledged
            with lock:
                acknowledged.setdefault(job_id, set()).add(span_id)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    book.stop()
    monkeypatch.undo()
    assert early == []
    replay = JobBook(store, ReceiverStats())
    replay.recover()
    assert replay.stop() is True
    for job_id, span_ids in acknowledged.items():
        assert span_ids <= set(store.read_journal(job_id)), job_id
    assert sum(map(len, acknowledged.values())) > 0


def test_a_folder_in_place_of_the_file_is_given_up_after_the_spans_are_journaled(
    tmp_path, receiver
):
    """The file can never be replaced (a folder took its name): the job's new spans are
    still journaled, the job is not retried round after round, and the error is counted."""
    jobs = tmp_path / "jobs"
    send(receiver, demo_job_spans("taken-1"))
    receiver.flush()
    (jobs / "taken-1" / "telemetry.json").unlink()
    (jobs / "taken-1" / "telemetry.json").mkdir()
    late = demo_job_spans("taken-1", stages=("render",), root=False)
    send(receiver, late)
    receiver.flush()
    with receiver.book._write_lock:
        assert receiver.book.dirty_jobs() == 0
        assert receiver.counters()["journal_errors"] >= 1
        journaled = set(JobStore(jobs).read_journal("taken-1"))
        assert {f"{span.context.span_id:016x}" for span in late} <= journaled


def test_a_file_that_failed_after_its_journal_is_rewritten_after_a_kill(tmp_path, monkeypatch):
    """A nearly full disk takes a job's small journal append but not its whole file: the
    round's sync lets the log go, yet the file lacks acknowledged spans. Killed then (kill -9),
    the next start must still rewrite that file."""
    import errno
    import os

    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats
    from aura_otel.store import Journal

    from .support import stop_writer

    jobs = tmp_path / "jobs"
    store = JobStore(jobs)
    units = folded_units(demo_job_spans("behind-1"))
    first, late = dict(list(units.items())[:2]), dict(list(units.items())[2:])
    book = JobBook(store, ReceiverStats(), quiet_period=60, idle_timeout=60)
    book.start()
    stop_writer(book)  # the test writes the rounds itself
    book.append_request({"behind-1": first})
    book.write_dirty()

    def disk_full(journal, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Journal, "write_telemetry", disk_full)
    book.append_request({"behind-1": dict(late)})  # answered 200: in the synced log
    book.write_dirty()
    book.write_dirty()  # the file is retried, and fails again
    assert set(late) <= set(store.read_journal("behind-1"))
    # kill -9: the process's descriptors (and the locks on its segments) go, nothing else
    for segment in {book._wal._current, *book._retiring}:
        os.close(segment.fd)
    monkeypatch.undo()  # the disk has room again
    again = JobBook(store, ReceiverStats())
    again.recover()
    assert again.stop() is True
    doc = telemetry(jobs, "behind-1")
    assert [r["stage"] for r in doc["records"]] == ["brief", "script", "tts"]
    assert doc["collection_ended_at"] is not None  # the root, acknowledged late, is in
    assert not list(jobs.glob(".aura-receiver-wal.*"))


@pytest.mark.parametrize("plant", ["link", "fifo"])
def test_a_journal_that_is_not_a_file_refuses_the_spans_instead_of_losing_them(
    tmp_path, receiver, plant
):
    """The job's folder is a folder but its journal's name is taken by a link or a FIFO: no
    writer will ever journal the job, so its spans are refused in the answer (partial
    success), never acknowledged and then dropped by the writer."""
    import os

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    jobs = tmp_path / "jobs"
    (jobs / "planted-2").mkdir(parents=True)
    journal = jobs / "planted-2" / ".aura-units.jsonl"
    if plant == "link":
        journal.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(journal)
    spans = demo_job_spans("planted-2")
    response = send(receiver, spans)
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == len(spans)
    receiver.flush()
    assert not (tmp_path / "elsewhere").exists()


def test_a_second_replay_of_a_job_still_open_from_the_first_is_written(tmp_path):
    """The supervisor of ``--workers N`` keeps one book and replays each dead worker's log
    into it: a job the first replay left open (no root yet) is in it again, with more units,
    when a second worker dies. Those units go into the journal before the log goes."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    units = folded_units(demo_job_spans("twice-dead-1"))
    first, rest = dict(list(units.items())[:2]), dict(list(units.items())[2:])

    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats

    supervisor = JobBook(JobStore(jobs), ReceiverStats())
    dead = jobs / ".aura-receiver-wal.1-deadbeef.0"
    dead.write_bytes(wal.encode({"twice-dead-1": journal_line(first)}))
    assert supervisor.recover() == 1
    assert supervisor.is_open("twice-dead-1")  # its root has not arrived yet
    dead = jobs / ".aura-receiver-wal.2-deadbeef.0"
    dead.write_bytes(wal.encode({"twice-dead-1": journal_line(rest)}))
    assert supervisor.recover() == 1
    assert not dead.exists()
    assert set(JobStore(jobs).read_journal("twice-dead-1")) == set(units)
    assert telemetry(jobs, "twice-dead-1")["collection_ended_at"] is not None


def test_a_job_folder_the_receiver_may_not_write_refuses_the_spans_instead_of_losing_them(
    tmp_path,
):
    """An in-process exporter running as another user made the job's folder: the receiver
    (the real command) cannot create the journal in it, so it refuses the job's spans in its
    answer instead of acknowledging them and then dropping them."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    from .support import SRC

    prefix: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:  # root may write anywhere: the receiver runs as nobody instead
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run the receiver as another user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import aura_otel"],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            capture_output=True,
            timeout=120,
            check=False,
        )
        if probe.returncode != 0:  # a checkout in a folder only root may enter (mktemp -d)
            pytest.skip("this interpreter or checkout cannot be run as another user here")
        base = Path(tempfile.mkdtemp())  # tmp_path's parents are closed to other users
    try:
        jobs = base / "jobs"
        (jobs / "theirs-1").mkdir(parents=True)
        if prefix:
            os.chown(base, 65534, 65534)
            os.chown(jobs, 65534, 65534)  # the jobs folder is the receiver's, the job's is not
        else:
            (jobs / "theirs-1").chmod(0o555)
        proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "aura_otel.cli",
                "collect",
                "--jobs-dir",
                str(jobs),
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "off",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        try:
            url = ""
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("OTLP/HTTP listening on "):
                    url = line.split(" on ", 1)[1].strip()
                    break
            assert url, "aura-otel collect did not start"
            spans = demo_job_spans("theirs-1")
            response = httpx.post(
                url,
                content=encode(spans).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
                timeout=30,
            )
        finally:
            proc.terminate()
            proc.wait(60)
        assert response.status_code == 200
        partial = ExportTraceServiceResponse.FromString(response.content).partial_success
        assert partial.rejected_spans == len(spans)
        assert proc.returncode == 0
    finally:
        (jobs / "theirs-1").chmod(0o755)
        if base is not tmp_path:
            shutil.rmtree(base)


def test_a_start_replays_more_dead_segments_than_it_may_open_files(tmp_path):
    """A disk that failed for long leaves thousands of segments; a service's descriptor limit
    is often 1024. The start replays them all, a batch at a time, instead of failing."""
    import os
    import resource

    from aura_otel.receiver import jobs as jobs_module
    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    item = fold_span(demo_job_spans("many-0")[0])
    count = 2 * jobs_module.RECOVERY_BATCH + 10
    for n in range(count):
        (jobs / f".aura-receiver-wal.{n + 10}-deadbeef.0").write_bytes(
            wal.encode({f"many-{n}": journal_line({item.span_id: item.unit})})
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = len(os.listdir("/proc/self/fd")) + jobs_module.RECOVERY_BATCH + 64
    book = JobBook(JobStore(jobs), ReceiverStats())
    resource.setrlimit(resource.RLIMIT_NOFILE, (room, hard))
    try:
        assert book.recover() == count
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not list(jobs.glob(".aura-receiver-wal.*"))
    assert all((jobs / f"many-{n}" / "telemetry.json").is_file() for n in range(count))


def test_rounds_whose_sync_fails_hold_no_descriptor_each(tmp_path, monkeypatch):
    """A disk whose syncs fail for minutes: each round's segments stay for a replay, but
    this process lets go of them, instead of running out of descriptors (and then failing
    every round and request, even once the disk is back)."""
    import errno
    import os

    from aura_otel.receiver.jobs import JobBook
    from aura_otel.receiver.stats import ReceiverStats

    from .support import stop_writer

    jobs = tmp_path / "jobs"
    store = JobStore(jobs)
    book = JobBook(store, ReceiverStats(), quiet_period=60, idle_timeout=60)
    book.start()
    stop_writer(book)

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal, "sync_file_system", failing)
    acknowledged = set()
    for n in range(60):
        span_id = f"{n:016x}"
        book.append_request({"eio-1": {span_id: {"s": 1, "e": 2, "p": "f" * 16}}})
        acknowledged.add(span_id)
        book.write_dirty()
        if n == 9:
            held = len(os.listdir("/proc/self/fd"))
    assert len(os.listdir("/proc/self/fd")) < held + 10  # 50 rounds later
    monkeypatch.undo()
    assert book.stop() is False  # the failed syncs: kept for the next start
    assert len(list(jobs.glob(".aura-receiver-wal.*"))) >= 50
    again = JobBook(store, ReceiverStats())
    again.recover()
    assert again.stop() is True
    assert acknowledged <= set(store.read_journal("eio-1"))
    assert not list(jobs.glob(".aura-receiver-wal.*"))
