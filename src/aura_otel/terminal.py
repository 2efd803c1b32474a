"""Run Details in a terminal (Rich): the same figures the web page shows, from the v1 file.

Every figure and word comes from :mod:`aura_otel.figures`, as the page's do; this module only
lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from . import figures
from .figures import JobStatus, money
from .schema import ResultStatus

_STATUS_COLOUR: dict[str, str] = {
    ResultStatus.OK: "green",
    ResultStatus.WARN: "yellow",
    ResultStatus.ERROR: "red",
}
_JOB_COLOUR: dict[str, str] = {
    JobStatus.RUNNING: "yellow",
    JobStatus.ABANDONED: "red",
    JobStatus.FAILED: "red",
    JobStatus.WARN: "yellow",
    JobStatus.OK: "green",
}
BAR_WIDTH = 24


def _figures(doc: Mapping[str, Any]) -> Table:
    head = figures.headline(doc)
    unpriced = head["unpriced"]
    total = head["total_cost"]
    if unpriced and total != figures.PRICING_UNPRICED:
        total += f" + {unpriced} unpriced"
    cards = [
        ("Total Operations", figures.count(head["operations"])),
        ("Success Rate", head["success_rate"]),
        ("Total Cost", total),
        ("Elapsed", head["elapsed"]),
        ("Total Latency", head["latency"]),
        ("Total Tokens", figures.count(head["tokens"])),
        ("Cache Hits", figures.count(head["cache_hits"])),
    ]
    grid = Table.grid(padding=(0, 3))
    for _ in cards:
        grid.add_column(justify="center")
    grid.add_row(*(Text(label, style="dim") for label, _ in cards))
    grid.add_row(*(Text(value, style="bold") for _, value in cards))
    return grid


def _stage_table(doc: Mapping[str, Any]) -> Table:
    table = Table(title="Stages", expand=True)
    for name, justify in (
        ("Stage", "left"),
        ("Status", "center"),
        ("Latency", "right"),
        ("Cost", "right"),
        ("Provider", "left"),
        ("Model", "left"),
        ("Tokens", "right"),
        ("Message", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=name not in ("Message", "Model"),
            ratio=3 if name == "Message" else None,
        )
    for rec in figures.records(doc):
        status = figures.record_status(rec)
        icon = figures.STATUS_ICONS.get(status, "?")
        stage = figures.lower(rec.get("stage"))
        if rec.get("scene_index") is not None:
            stage += f" #{rec['scene_index']}"
        message = rec.get("message") or ""
        if rec.get("error_code"):
            message = f"[{rec['error_code']}] {message}".strip()
        # Cells are Text, never markup: every word comes from the job's file, and a `[/]` in a
        # message would stop the view (MarkupError) or a `[link=...]` restyle it.
        table.add_row(
            Text(stage),
            Text(icon, style=_STATUS_COLOUR.get(status, "white")),
            Text(figures.seconds(rec.get("latency_ms") or 0, 2)),
            Text(figures.record_cost(rec)),
            Text(str(rec.get("provider") or figures.NOT_AVAILABLE)),
            Text(str(rec.get("model_id") or figures.NOT_AVAILABLE)),
            Text(figures.count(figures.record_tokens(rec))),
            Text(str(message)),
        )
    return table


def _cost_bars(doc: Mapping[str, Any]) -> Table:
    summary = figures.effective_summary(doc)
    recs = figures.records(doc)
    total = summary["total_cost"] or 0.0
    table = Table.grid(padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_column()
    table.add_column(justify="right")
    for stage, cost in sorted(summary["cost_by_stage"].items(), key=lambda kv: -kv[1]):
        mine = [r for r in recs if figures.lower(r.get("stage")) == stage]
        # A stage whose every operation has an unknown price is "unpriced", never $0.0000.
        all_unpriced = bool(mine) and all(figures.is_unpriced(r) for r in mine)
        share = cost / total if total else 0.0
        filled = round(share * BAR_WIDTH)
        bar = Text("█" * filled, style="cyan") + Text("░" * (BAR_WIDTH - filled), style="dim")
        cost_text = figures.PRICING_UNPRICED if all_unpriced else money(cost)
        table.add_row(Text(str(stage)), Text(cost_text), bar, Text(figures.percent(share * 100)))
    return table


def make_console() -> Console:
    """A console at least 120 columns wide: the stage table is unreadable narrower, and a pipe
    (CI logs, ``| less``) would otherwise get Rich's 80-column default."""
    console = Console()
    if console.width < 120 and not console.is_terminal:
        console = Console(width=120)
    return console


def render(
    doc: Mapping[str, Any],
    console: Console | None = None,
    *,
    now: datetime | None = None,
    abandoned_after: float | None = None,
) -> None:
    """Print the Run Details view of a v1 collection dict.

    A job without an end quiet for ``abandoned_after`` seconds (as of ``now``) is shown as
    abandoned, as the server shows it.
    """
    console = console or make_console()
    ended = doc.get("collection_ended_at")
    state = figures.job_status(doc, now=now, abandoned_after=abandoned_after)
    took = (
        f" in {figures.duration(figures.duration_seconds(doc['collection_started_at'], ended))}"
        if ended
        else ""
    )
    header = Text.assemble(
        ("Run Details · ", "bold"),
        (doc["job_id"], "bold cyan"),
        "   ",
        (figures.JOB_STATUS_LABELS[state].upper(), _JOB_COLOUR.get(state, "white")),
        f"   started {figures.date_time(doc['collection_started_at'])}{took}"
        f" · correlation {doc['correlation_id']}",
    )
    failures = [r for r in figures.records(doc) if figures.record_status(r) != ResultStatus.OK]
    parts: list[Any] = [
        header,
        Text(""),
        _figures(doc),
        Text(""),
        _stage_table(doc),
        Text("Cost by Stage", style="bold"),
        _cost_bars(doc),
    ]
    if failures:
        lines = Table(title="Failures and warnings", expand=True)
        for col in ("Stage", "Status", "Code", "Message"):
            lines.add_column(col, overflow="fold")
        for r in failures:
            lines.add_row(
                Text(str(r.get("stage"))),
                Text(str(r.get("result_status"))),
                Text(str(r.get("error_code") or "")),
                Text(str(r.get("message") or "")),
            )
        parts.append(lines)
    console.print(Group(*parts))
