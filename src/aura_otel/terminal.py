"""Run Details in a terminal (Rich): the same figures the web page shows, from the v1 file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .schema import parse_timestamp_ns, success_rate, summarize

_STATUS_ICON = {"ok": ("✓", "green"), "warn": ("⚠", "yellow"), "error": ("✗", "red")}
BAR_WIDTH = 24


def money(value: float | None) -> str:
    return "N/A" if value is None else f"${value:,.4f}"


def is_unpriced(record: Mapping[str, Any]) -> bool:
    """No cost and no explicit zero: the price is unknown, which is not the same as free."""
    return record.get("cost_estimate") is None


def _figures(doc: Mapping[str, Any]) -> Table:
    summary = doc.get("summary") or summarize(doc.get("records", []))
    unpriced = sum(1 for r in doc.get("records", []) if is_unpriced(r))
    cards = [
        ("Total Operations", f"{summary['total_operations']:,}"),
        ("Success Rate", f"{success_rate(summary):.1f}%"),
        (
            "Total Cost",
            money(summary["total_cost"]) + (f" + {unpriced} unpriced" if unpriced else ""),
        ),
        ("Total Latency", f"{summary['total_latency_ms'] / 1000:.1f} s"),
        ("Total Tokens", f"{summary['total_tokens_in'] + summary['total_tokens_out']:,}"),
        ("Cache Hits", f"{summary['cache_hits']:,}"),
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
    for rec in doc.get("records", []):
        status = str(rec.get("result_status", "")).lower()
        icon, colour = _STATUS_ICON.get(status, ("?", "white"))
        stage = str(rec.get("stage", "")).lower()
        if rec.get("scene_index") is not None:
            stage += f" #{rec['scene_index']}"
        tokens = (rec.get("tokens_in") or 0) + (rec.get("tokens_out") or 0)
        cost = "unpriced" if is_unpriced(rec) else money(rec.get("cost_estimate"))
        message = rec.get("message") or ""
        if rec.get("error_code"):
            message = f"[{rec['error_code']}] {message}".strip()
        table.add_row(
            stage,
            Text(icon, style=colour),
            f"{rec.get('latency_ms', 0) / 1000:.2f} s",
            cost,
            rec.get("provider") or "N/A",
            rec.get("model_id") or "N/A",
            f"{tokens:,}" if tokens else "N/A",
            message,
        )
    return table


def _cost_bars(doc: Mapping[str, Any]) -> Table:
    summary = doc.get("summary") or summarize(doc.get("records", []))
    total = summary["total_cost"] or 0.0
    table = Table.grid(padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_column()
    table.add_column(justify="right")
    for stage, cost in sorted(summary["cost_by_stage"].items(), key=lambda kv: -kv[1]):
        share = cost / total if total else 0.0
        filled = round(share * BAR_WIDTH)
        bar = Text("█" * filled, style="cyan") + Text("░" * (BAR_WIDTH - filled), style="dim")
        table.add_row(str(stage), money(cost), bar, f"{share * 100:.0f}%")
    return table


def make_console() -> Console:
    """A console at least 120 columns wide: the stage table is unreadable narrower, and a pipe
    (CI logs, ``| less``) would otherwise get Rich's 80-column default."""
    console = Console()
    if console.width < 120 and not console.is_terminal:
        console = Console(width=120)
    return console


def render(doc: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the Run Details view of a v1 collection dict."""
    console = console or make_console()
    ended = doc.get("collection_ended_at")
    failed = any(str(r.get("result_status", "")).lower() == "error" for r in doc.get("records", []))
    state = "running" if not ended else ("failed" if failed else "finished")
    started_ns = parse_timestamp_ns(doc["collection_started_at"])
    took = f" in {(parse_timestamp_ns(ended) - started_ns) / 1e9:.2f} s" if ended else ""
    header = Text.assemble(
        ("Run Details · ", "bold"),
        (doc["job_id"], "bold cyan"),
        "   ",
        (state.upper(), {"running": "yellow", "failed": "red", "finished": "green"}[state]),
        f"   started {doc['collection_started_at']}{took} · correlation {doc['correlation_id']}",
    )
    failures = [
        r for r in doc.get("records", []) if str(r.get("result_status", "")).lower() != "ok"
    ]
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
                str(r.get("stage")),
                str(r.get("result_status")),
                r.get("error_code") or "",
                r.get("message") or "",
            )
        parts.append(lines)
    console.print(Group(*parts))
