"""``aura-otel prices``: read the price table and check a figure by hand.

A cost report is only trusted when a user can reproduce one of its numbers; this command
shows every rate the table holds (after the user's override) and prices a usage line by line.
Exit codes: 0 done, 1 the usage (or provider filter) is not in the table, 2 bad input or a bad
price file.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from . import conventions as c
from ._util import number_argument
from .errors import PricingError
from .pricing import (
    MONEY_QUANTUM,
    Estimate,
    ModelPrice,
    PriceTable,
    describe_rates,
    format_decimal,
    format_money,
    load_price_table,
)

EXIT_OK, EXIT_UNPRICED, EXIT_USAGE = 0, 1, 2


_count = number_argument(int, "a whole number", 0, None, "is negative")
_seconds = number_argument(
    float, "a number", 0.0, sys.float_info.max, "is not a finite number >= 0"
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    file_help = (
        f"override price file (JSON or TOML) merged over the shipped table; "
        f"default: ${c.ENV_PRICES_FILE}"
    )
    parser = subparsers.add_parser(
        "prices",
        help="list the price table, or price a usage (prices quote ...)",
        description="List the price table aura-otel estimates costs with (after your override "
        "file), or price one usage with `prices quote`.",
    )
    parser.add_argument("--provider", help="list only this provider (any of its names)")
    parser.add_argument("--file", metavar="OVERRIDE", help=file_help)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_list)
    commands = parser.add_subparsers(dest="prices_command", metavar="{quote}")
    quote = commands.add_parser(
        "quote",
        help="price one usage and show how",
        description="Price one usage from the table and print the amount and its breakdown.",
    )
    suppress = argparse.SUPPRESS  # so values given before `quote` are not reset
    quote.add_argument(
        "--provider", default=suppress, help="provider as spans name it, e.g. openai"
    )
    quote.add_argument("--model", default=suppress, help="model id, e.g. gpt-4o-2024-08-06")
    quote.add_argument("--file", metavar="OVERRIDE", default=suppress, help=file_help)
    quote.add_argument(
        "--json", action="store_true", default=suppress, help="machine-readable output"
    )
    quote.add_argument("--tokens-in", type=_count, help="input tokens (cached ones included)")
    quote.add_argument("--tokens-out", type=_count, help="output tokens")
    quote.add_argument("--cached", type=_count, help="cached input tokens (part of --tokens-in)")
    quote.add_argument("--characters", type=_count, help="characters synthesised (TTS)")
    quote.add_argument("--images", type=_count, help="images generated")
    quote.add_argument("--size", help="image size, e.g. 1024x1024")
    quote.add_argument("--quality", help="image quality, e.g. standard, hd, low, medium, high")
    quote.add_argument("--seconds", type=_seconds, help="seconds of audio or video produced")
    quote.set_defaults(func=run_quote)


def _load(args: argparse.Namespace) -> PriceTable | None:
    try:
        return load_price_table(getattr(args, "file", None))
    except PricingError as exc:
        print(f"aura-otel prices: {exc}", file=sys.stderr)
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=_json_default))


def _entry_json(entry: ModelPrice) -> dict[str, Any]:
    rates = {
        name: getattr(entry, name)
        for name in (
            "input_per_1m",
            "cached_input_per_1m",
            "output_per_1m",
            "per_1k_characters",
            "per_image",
            "per_second",
        )
        if getattr(entry, name) is not None
    }
    out: dict[str, Any] = {"model": entry.id, "rates": rates}
    if entry.aliases:
        out["aliases"] = list(entry.aliases)
    if entry.patterns:
        out["patterns"] = [p.pattern for p in entry.patterns]
    for name in ("default_size", "default_quality", "note"):
        if getattr(entry, name) is not None:
            out[name] = getattr(entry, name)
    return out


def run_list(args: argparse.Namespace) -> int:
    table = _load(args)
    if table is None:
        return EXIT_USAGE
    rows = table.rows(args.provider)
    if args.provider is not None and not rows:
        known = ", ".join(sorted(table.providers))
        print(
            f"aura-otel prices: provider {args.provider!r} is not in price table "
            f"{table.version} (providers: {known})",
            file=sys.stderr,
        )
        return EXIT_UNPRICED
    if args.json:
        providers: dict[str, Any] = {}
        for prov, entry in rows:
            item = providers.setdefault(
                prov.name, {"aliases": list(prov.aliases), "source": prov.source, "models": []}
            )
            item["models"].append(_entry_json(entry))
        _print_json(
            {
                "version": table.version,
                "as_of": table.as_of,
                "currency": table.currency,
                "files": list(table.origins),
                "providers": providers,
            }
        )
        return EXIT_OK
    console = Console(file=sys.stdout)
    view = Table(
        title=f"Price table {table.version} (as of {table.as_of}, {table.currency})",
        caption="from: " + ", ".join(table.origins),
    )
    for column in ("provider", "model", "prices", "also matches", "note"):
        view.add_column(column, overflow="fold")
    for prov, entry in rows:
        names = [*entry.aliases, *(f"/{p.pattern}/" for p in entry.patterns)]
        view.add_row(
            prov.name,
            entry.id,
            "\n".join(describe_rates(entry)),
            "\n".join(names),
            entry.note or "",
        )
    console.print(view)
    if args.provider is not None:
        prov = rows[0][0]
        console.print(
            f"{prov.name}: also named {', '.join(prov.aliases) or '(no aliases)'}; "
            f"source: {prov.source or 'not stated'}",
            soft_wrap=True,
        )
    return EXIT_OK


def _usage(args: argparse.Namespace) -> dict[str, Any]:
    usage = {
        "tokens_in": args.tokens_in,
        "tokens_out": args.tokens_out,
        "cached_input_tokens": args.cached,
        "characters": args.characters,
        "images": args.images,
        "image_size": args.size,
        "image_quality": args.quality,
        "duration_seconds": args.seconds,
    }
    return {k: v for k, v in usage.items() if v is not None}


def _money(value: Decimal) -> str:
    return "$" + format_money(value)


def _print_estimate(result: Estimate) -> None:
    print(f"{result.provider} / {result.model}  (matched by {result.match})")
    width = max(len(line.label) for line in result.lines)
    for line in result.lines:
        print(
            f"  {line.label:<{width}}  {format_decimal(line.quantity)} x "
            f"{_money(line.rate)} per {line.unit}  = {_money(line.amount)}"
        )
    for note in result.notes:
        print(f"  note: {note}")
    print(
        f"  {'total':<{width}}  {_money(result.total)} {result.currency}"
        f"  (price table {result.version}; rounded half up to {format_decimal(MONEY_QUANTUM)})"
    )


def run_quote(args: argparse.Namespace) -> int:
    usage = _usage(args)
    if not any(
        k in usage
        for k in (
            "tokens_in",
            "tokens_out",
            "cached_input_tokens",
            "characters",
            "images",
            "duration_seconds",
        )
    ):
        print(
            "aura-otel prices quote: give a usage: --tokens-in/--tokens-out/--cached, "
            "--characters, --images (with --size/--quality) or --seconds",
            file=sys.stderr,
        )
        return EXIT_USAGE
    table = _load(args)
    if table is None:
        return EXIT_USAGE
    provider, model = getattr(args, "provider", None), getattr(args, "model", None)
    result = table.price(provider, model, usage)
    as_json = getattr(args, "json", False)
    if isinstance(result, Estimate):
        if as_json:
            _print_json(
                {
                    "priced": True,
                    "provider": result.provider,
                    "model": result.model,
                    "match": result.match,
                    "amount": result.amount,
                    "currency": result.currency,
                    "pricing_version": result.version,
                    "notes": list(result.notes),
                    "lines": [
                        {
                            "label": ln.label,
                            "quantity": ln.quantity,
                            "rate": ln.rate,
                            "per": f"{ln.unit}",
                            "amount": ln.amount,
                        }
                        for ln in result.lines
                    ],
                }
            )
        else:
            _print_estimate(result)
        return EXIT_OK
    if as_json:
        _print_json({"priced": False, "reason": result.reason, "pricing_version": table.version})
    else:
        print(f"unpriced: {result.reason}")
        print(
            "  (aura-otel leaves such costs absent, never $0; add the model with an override "
            f"file: --file or ${c.ENV_PRICES_FILE})"
        )
    return EXIT_UNPRICED
