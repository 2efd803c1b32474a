"""Server-rendered SVG charts: no chart library, no script, nothing fetched from elsewhere.

A chart is drawn from the same :class:`~.fleet.Table` its CSV and JSON downloads carry.
Every label is escaped (names come from spans); every bar carries a ``<title>`` with its exact
figure, so a hover or a screen reader gets the number the bar only suggests.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from .fleet import Table

WIDTH = 560
ROW = 22
LABEL = 150
VALUE = 90


def _fmt(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.4f}"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "%":
        return f"{value * 100:.1f}%"
    return f"{value:,}"


def _svg(height: int, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _empty(table: Table) -> Markup:
    return _svg(
        40,
        f"{table.title}: no data",
        ['<text x="8" y="24" class="empty">No data for this period and these filters.</text>'],
    )


def bars(table: Table, label_col: int = 0, value_col: int = 1, unit: str | None = None) -> Markup:
    """Horizontal bars, largest first as the table orders them."""
    unit = table.unit if unit is None else unit
    rows = [r for r in table.rows if isinstance(r[value_col], int | float)]
    if not rows:
        return _empty(table)
    top = max(float(r[value_col]) for r in rows) or 1.0
    span = WIDTH - LABEL - VALUE
    body = []
    for i, row in enumerate(rows):
        y = 6 + i * ROW
        value = float(row[value_col])
        w = max(value / top * span, 1.0 if value else 0.0)
        name = escape(str(row[label_col]) or "(none)")
        text = _fmt(value, unit)
        body.append(
            f'<g class="row"><title>{name}: {escape(text)}</title>'
            f'<text x="{LABEL - 6}" y="{y + 14}" text-anchor="end">{name}</text>'
            f'<rect class="bar" x="{LABEL}" y="{y + 3}" width="{w:.2f}" height="{ROW - 6}"></rect>'
            f'<text x="{LABEL + w + 4:.2f}" y="{y + 14}">{escape(text)}</text></g>'
        )
    return _svg(12 + len(rows) * ROW, table.title, body)


def pairs(
    table: Table,
    first: int,
    second: int,
    unit: str | None = None,
    names: tuple[str, str] = ("p50", "p95"),
) -> Markup:
    """Two bars per row (p50 and p95, or error and retry rate), on one scale."""
    unit = table.unit if unit is None else unit
    if not table.rows:
        return _empty(table)
    top = max(max(float(r[first]), float(r[second])) for r in table.rows) or 1.0
    span = WIDTH - LABEL - VALUE
    height = 2 * ROW - 8
    body = [
        f'<g class="legend"><rect class="bar" x="{LABEL}" y="4" width="10" height="10"></rect>'
        f'<text x="{LABEL + 14}" y="13">{names[0]}</text>'
        f'<rect class="bar-p95" x="{LABEL + 70}" y="4" width="10" height="10"></rect>'
        f'<text x="{LABEL + 84}" y="13">{names[1]}</text></g>'
    ]
    for i, row in enumerate(table.rows):
        y = 22 + i * height
        name = escape(str(row[0]) or "(none)")
        body.append(f'<text x="{LABEL - 6}" y="{y + 16}" text-anchor="end">{name}</text>')
        for j, (col, cls) in enumerate(((first, "bar"), (second, "bar-p95"))):
            value = float(row[col])
            w = max(value / top * span, 1.0 if value else 0.0)
            yy = y + 2 + j * (ROW - 8)
            text = _fmt(value, unit)
            body.append(
                f"<g><title>{name} {names[j]}: {escape(text)}</title>"
                f'<rect class="{cls}" x="{LABEL}" y="{yy}" width="{w:.2f}" height="{ROW - 10}"></rect>'
                f'<text x="{LABEL + w + 4:.2f}" y="{yy + 11}">{escape(text)}</text></g>'
            )
    return _svg(28 + len(table.rows) * height, table.title, body)


def columns(table: Table) -> Markup:
    """Vertical columns over days, with the axis labelled every few days."""
    rows = table.rows
    if not rows or not any(r[1] for r in rows):
        return _empty(table)
    height, left, bottom, top_pad = 220, 70, 30, 12
    top = max(float(r[1]) for r in rows) or 1.0
    plot_w = WIDTH - left - 10
    step = plot_w / len(rows)
    plot_h = height - bottom - top_pad
    body = [
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{WIDTH - 10}" y2="{height - bottom}"></line>'
    ]
    for frac in (0.5, 1.0):
        y = height - bottom - frac * plot_h
        body.append(
            f'<line class="gridline" x1="{left}" y1="{y:.1f}" x2="{WIDTH - 10}" y2="{y:.1f}"></line>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(top * frac, "$"))}</text>'
        )
    every = max(1, len(rows) // 6)
    for i, row in enumerate(rows):
        value = float(row[1])
        h = value / top * plot_h
        x = left + i * step
        text = f"{row[0]}: {_fmt(value, '$')} over {row[2]} job{'s' if row[2] != 1 else ''}"
        body.append(
            f'<g><title>{escape(text)}</title><rect class="bar" x="{x + 1:.2f}" '
            f'y="{height - bottom - h:.2f}" width="{max(step - 2, 1):.2f}" height="{h:.2f}"></rect></g>'
        )
        if i % every == 0:
            body.append(
                f'<text x="{x + step / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(str(row[0])[5:])}</text>'
            )
    return _svg(height, table.title, body)


def render(table: Table) -> Markup:
    """The chart for a table, by the kind of figure it holds."""
    kind: Any = table.kind
    if table.key == "cost_per_day":
        return columns(table)
    if table.key.startswith("latency_by_"):
        return pairs(table, 2, 3, "s")
    if table.key == "provider_reliability":
        return pairs(table, 3, 5, "%", ("error rate", "retry rate"))
    if table.key == "slowest_jobs":
        return bars(table, 0, 3, "s")
    if table.key == "expensive_jobs":
        return bars(table, 0, 2, "$")
    if kind == "bar":
        return bars(table)
    return Markup("")
