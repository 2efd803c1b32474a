"""The terminal Run Details view (``aura-otel show``, ``aura-otel demo``), printed by real Rich."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console

from aura_otel.terminal import render


def test_text_from_the_file_is_shown_as_written_never_read_as_markup(examples: Path) -> None:
    """Messages, codes, providers and models are the job's data: a ``[/]`` in one must not
    stop the view (Rich raised MarkupError), nor ``[bold]`` or ``[link=...]`` restyle it."""
    doc = orjson.loads((examples / "reference-job.json").read_bytes())
    texts = {
        "message": "closing tag [/] and [bold]bold[/bold] and [link=http://x.test]here[/link]",
        "provider": "[red]acme",
        "model_id": "[italic]m-1",
        "error_code": "[/oops]",
    }
    doc["records"][0].update(texts, result_status="error")
    console = Console(record=True, width=400, color_system=None)
    render(doc, console)
    shown = console.export_text()
    for text in texts.values():
        assert text in shown, text
