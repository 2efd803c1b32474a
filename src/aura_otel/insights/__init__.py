"""The fleet view: cost, latency, reliability and anomalies across every job of a period.

It reads jobs only through :class:`JobSource` (:class:`FolderJobSource` for the local jobs
folder), so another store plugs in by implementing ``iter_collections`` (and, to stay fast at
scale, ``iter_summaries``).
"""

from __future__ import annotations

from .anomalies import Anomaly, job_anomalies, provider_error_jumps, stage_latency_trends
from .fleet import Filters, Fleet, Table, compute, parse_filters
from .source import (
    FolderJobSource,
    JobSource,
    JobSummary,
    Op,
    history_for,
    iter_summaries,
    latest_start,
    summarize_doc,
    summary_from_row,
    summary_row,
)

__all__ = [
    "Anomaly",
    "Filters",
    "Fleet",
    "FolderJobSource",
    "JobSource",
    "JobSummary",
    "Op",
    "Table",
    "compute",
    "history_for",
    "iter_summaries",
    "job_anomalies",
    "latest_start",
    "parse_filters",
    "provider_error_jumps",
    "stage_latency_trends",
    "summarize_doc",
    "summary_from_row",
    "summary_row",
]
