"""The receiver's counters: every refusal, rejection and failure is counted, none is silent."""

from __future__ import annotations

from .._util import Counters

NAMES = (
    "requests",
    "requests_refused_overload",  # too many requests at once: 429 / RESOURCE_EXHAUSTED
    "requests_refused_backlog",  # the file writer is behind or the disk failed: 503 / UNAVAILABLE
    "requests_malformed",  # 400 / INVALID_ARGUMENT
    "requests_too_large",  # 413 / RESOURCE_EXHAUSTED from the message size limit
    "requests_unsupported",  # 415
    "requests_unauthorized",  # 401 / UNAUTHENTICATED
    "requests_stalled",  # no whole body / message within the receive timeout: 503 / CANCELLED
    "spans_received",
    "spans_accepted",  # durable in a journal (or without a job, forwarded only)
    "spans_rejected",  # answered as rejected in a partial success
    "spans_without_job",
    "spans_folded",
    "fold_errors",
    "journal_errors",
    "files_written",
    "write_errors",
    "jobs_opened",
    "jobs_reopened",  # spans of a job whose journal already existed (late spans, restarts)
    "jobs_finalized",  # root present and nothing missing below it
    "jobs_finalized_quiet",  # root present, a parent still missing, quiet period over
    "jobs_unfinished",  # no root within the idle timeout: left as an unfinished file
    "jobs_evicted",  # more open jobs than allowed: the longest idle one was released early
    "jobs_recovered",  # replayed at start-up from a crashed receiver's write-ahead log
    "jobs_damaged",  # a journal that lost units its file shows: the file keeps those records
    "values_replaced",  # a value JSON cannot hold, or a long string in a huge file, replaced
    "units_unusable",  # journal units no fold makes (another program, a damaged disk): left out
)


class ReceiverStats(Counters):
    """The receiver's counters (the shared thread-safe shape, its own names)."""

    _names = NAMES
