"""Reading price tables: the shipped one, and a user's override file (JSON or TOML).

Every problem in a file is collected and reported at once, at start-up: a wrong price
silently applied to every run is worse than a refusal to start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .. import conventions as c
from ..errors import PricingError
from .model import (
    _ENTRY_FIELDS,
    _MAX_LISTED_PROBLEMS,
    _PROVIDER_FIELDS,
    _SIZE,
    _TABLE_FIELDS,
    RATE_FIELDS,
    TABLE_FORMAT,
    TOKEN_RATES,
    WILDCARD,
    ImagePrices,
    ModelPrice,
    ProviderPrices,
    _check_model_names,
    normalize_provider,
    normalize_size,
)
from .table import PriceTable


# -- parsing and validation ---------------------------------------------------------------------
@dataclass
class _ParsedProvider:
    name: str
    models: dict[str, ModelPrice]
    aliases: tuple[str, ...]
    source: str | None
    note: str | None


@dataclass
class _ParsedTable:
    version: str | None
    as_of: str | None
    currency: str | None
    note: str | None
    providers: list[_ParsedProvider]


class _Problems:
    """Collects every problem of a file so one start-up error lists them all."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.items: list[str] = []

    def add(self, path: str, problem: str) -> None:
        self.items.append(f"{path}: {problem}" if path else problem)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_LISTED_PROBLEMS]
        more = len(self.items) - len(shown)
        text = "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        raise PricingError(f"invalid price file {self.origin}:\n  {text}")


def _shown(value: Any) -> str:
    """A value of the file as a problem quotes it, masked: the problems reach the host (an
    exception from ``configure()``) and stderr, and a key pasted into the wrong field must not
    leave with them."""
    from ..masking.logs import mask_line  # here: masking needs much that needs pricing

    return mask_line(repr(value))


def _rate(value: Any, path: str, problems: _Problems) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        problems.add(path, f"a price must be a number, got {type(value).__name__} {_shown(value)}")
        return None
    number = (
        value
        if isinstance(value, Decimal)
        else Decimal(repr(value) if isinstance(value, float) else value)
    )
    if not number.is_finite() or not math.isfinite(float(number)):
        # 1e400 is a finite decimal, but no cost made from it can be written as a number.
        problems.add(path, f"a price must be a finite number, got {value}")
        return None
    if number < 0:
        problems.add(path, f"negative price {value}: prices must be >= 0")
        return None
    return number


def _strings(value: Any, path: str, problems: _Problems) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(path, "must be a list of non-empty strings")
        return ()
    return tuple(v.strip() for v in value)


def _text(value: Any, path: str, problems: _Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(path, "must be a non-empty string")
        return None
    return value.strip()


def _unknown(
    keys: Iterable[str], known: tuple[str, ...], path: str, what: str, problems: _Problems
) -> None:
    for key in keys:
        if key not in known:
            prefix = f"{path}.{key}" if path else key
            problems.add(prefix, f"unknown {what} {key!r} (known: {', '.join(known)})")


def _image_prices(value: Any, path: str, problems: _Problems) -> ImagePrices | None:
    if not isinstance(value, Mapping):
        return _rate(value, path, problems)
    if not value:
        problems.add(path, "needs at least one size")
        return None
    sizes: dict[str, Decimal | dict[str, Decimal]] = {}
    for raw_size, by_size in value.items():
        size = normalize_size(str(raw_size))
        spath = f"{path}.{raw_size}"
        if size != WILDCARD and not _SIZE.match(size):
            problems.add(spath, f"size {_shown(raw_size)} must look like 1024x1024 (or be '*')")
            continue
        if isinstance(by_size, Mapping):
            qualities: dict[str, Decimal] = {}
            for raw_quality, price in by_size.items():
                rate = _rate(price, f"{spath}.{raw_quality}", problems)
                if rate is not None:
                    qualities[str(raw_quality).strip().lower()] = rate
            if not by_size:
                problems.add(spath, "needs at least one quality")
            sizes[size] = qualities
        else:
            rate = _rate(by_size, spath, problems)
            if rate is not None:
                sizes[size] = rate
    return sizes


def _patterns(value: Any, path: str, problems: _Problems) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for i, text in enumerate(_strings(value, path, problems)):
        try:
            compiled.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            problems.add(f"{path}[{i}]", f"not a valid regular expression ({exc})")
    return tuple(compiled)


def _parse_model(model_id: str, raw: Any, path: str, problems: _Problems) -> ModelPrice | None:
    if not isinstance(raw, Mapping):
        problems.add(path, "a model entry must be an object of rates")
        return None
    _unknown(raw, _ENTRY_FIELDS, path, "unit or field", problems)
    rates: dict[str, Any] = {}
    for name in RATE_FIELDS:
        if name in raw:
            parse = _image_prices if name == "per_image" else _rate
            rates[name] = parse(raw[name], f"{path}.{name}", problems)
    if not any(name in raw for name in RATE_FIELDS):
        problems.add(path, f"no price: give at least one of {', '.join(RATE_FIELDS)}")
    given = [name for name in TOKEN_RATES if name in raw]
    if given and not {"input_per_1m", "output_per_1m"} <= set(given):
        problems.add(path, "token prices need both input_per_1m and output_per_1m")
    default_size = _text(raw.get("default_size"), f"{path}.default_size", problems)
    default_quality = _text(raw.get("default_quality"), f"{path}.default_quality", problems)
    images = rates.get("per_image")
    if default_size is not None:
        default_size = normalize_size(default_size)
        if not isinstance(images, dict) or default_size not in images:
            problems.add(
                f"{path}.default_size",
                f"{_shown(default_size)} is not one of the sizes in per_image",
            )
    if default_quality is not None:
        default_quality = default_quality.lower()
        qualities = (
            {q for v in images.values() if isinstance(v, dict) for q in v}
            if isinstance(images, dict)
            else set()
        )
        if default_quality not in qualities:
            problems.add(
                f"{path}.default_quality",
                f"{_shown(default_quality)} is not a quality in per_image",
            )
    return ModelPrice(
        id=model_id,
        **rates,
        default_size=default_size,
        default_quality=default_quality,
        aliases=_strings(raw["aliases"], f"{path}.aliases", problems) if "aliases" in raw else (),
        patterns=_patterns(raw["patterns"], f"{path}.patterns", problems)
        if "patterns" in raw
        else (),
        note=_text(raw.get("note"), f"{path}.note", problems),
    )


def _parse_table(doc: Any, problems: _Problems, *, shipped: bool) -> _ParsedTable:
    if not isinstance(doc, Mapping):
        problems.add("", "the top level must be an object")
        problems.raise_if_any()
    _unknown(doc, _TABLE_FIELDS, "", "field", problems)
    if "format" in doc and doc["format"] != TABLE_FORMAT:
        problems.add(
            "format",
            f"unsupported format {_shown(doc['format'])} (this version reads {TABLE_FORMAT})",
        )
    version = _text(doc.get("version"), "version", problems)
    as_of = _text(doc.get("as_of"), "as_of", problems)
    if as_of is not None:
        try:
            date.fromisoformat(as_of)
        except ValueError:
            problems.add("as_of", f"{_shown(as_of)} is not a date (YYYY-MM-DD)")
    currency = _text(doc.get("currency"), "currency", problems)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.add("currency", f"{_shown(currency)} is not an ISO 4217 code such as USD")
    if shipped:
        for name, value in (("version", version), ("as_of", as_of), ("currency", currency)):
            if value is None:
                problems.add(name, "required in the shipped table")
    raw_providers = doc.get("providers", {})
    providers: list[_ParsedProvider] = []
    if not isinstance(raw_providers, Mapping):
        problems.add("providers", "must be an object: provider name -> {models: ...}")
        raw_providers = {}
    for name, raw in raw_providers.items():
        path = f"providers.{name}"
        if not normalize_provider(str(name)):
            problems.add("providers", "a provider name is empty")
            continue
        if not isinstance(raw, Mapping):
            problems.add(
                path,
                "a provider must be an object with 'models' (and optional 'aliases', 'source')",
            )
            continue
        _unknown(raw, _PROVIDER_FIELDS, path, "field", problems)
        raw_models = raw.get("models", {})
        if not isinstance(raw_models, Mapping):
            problems.add(f"{path}.models", "must be an object: model id -> rates")
            raw_models = {}
        models: dict[str, ModelPrice] = {}
        for model_id, entry in raw_models.items():
            if not str(model_id).strip():
                problems.add(f"{path}.models", "a model id is empty")
                continue
            parsed = _parse_model(
                str(model_id).strip(), entry, f"{path}.models.{model_id}", problems
            )
            if parsed is not None:
                models[parsed.id] = parsed
        try:
            _check_model_names(name, models.values())
        except PricingError as exc:
            problems.add(path, str(exc))
        providers.append(
            _ParsedProvider(
                name=str(name).strip(),
                models=models,
                aliases=_strings(raw["aliases"], f"{path}.aliases", problems)
                if "aliases" in raw
                else (),
                source=_text(raw.get("source"), f"{path}.source", problems),
                note=_text(raw.get("note"), f"{path}.note", problems),
            )
        )
    note = _text(doc.get("note"), "note", problems)
    problems.raise_if_any()
    return _ParsedTable(version, as_of, currency, note, providers)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a price")


def _decode(data: bytes, origin: str, toml: bool) -> Any:
    try:
        if toml:
            return tomllib.loads(data.decode("utf-8"), parse_float=Decimal)
        return json.loads(
            data,
            parse_float=Decimal,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise PricingError(
            f"price file {origin} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise PricingError(f"price file {origin} is not valid TOML: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PricingError(f"price file {origin} is not valid: {exc}") from None


def _build(parsed: _ParsedTable, origin: str) -> PriceTable:
    providers = {
        p.name: ProviderPrices(
            name=p.name, models=p.models, aliases=p.aliases, source=p.source, note=p.note
        )
        for p in parsed.providers
    }
    try:
        return PriceTable(
            version=parsed.version or "",
            as_of=parsed.as_of or "",
            currency=parsed.currency or "",
            providers=providers,
            note=parsed.note,
            origins=(origin,),
        )
    except PricingError as exc:
        raise PricingError(f"{origin}: {exc}") from None


@lru_cache(maxsize=1)
def shipped_price_table() -> PriceTable:
    """The table packaged with aura-otel (parsed once per process)."""
    source = resources.files("aura_otel").joinpath("data", "prices.json")
    origin = "aura_otel/data/prices.json"
    problems = _Problems(origin)
    parsed = _parse_table(_decode(source.read_bytes(), origin, toml=False), problems, shipped=True)
    return _build(parsed, origin)


def _read_regular(file: Path, origin: str) -> bytes:
    """The file's bytes, opened without blocking: a FIFO nobody writes to would hold the
    caller (an application's configure(), the receiver's start) for good, and a device such as
    /dev/zero would never end."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):
            raise PricingError(f"price file {origin} is not a regular file; not read")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def read_override(path: str | os.PathLike[str]) -> tuple[_ParsedTable, str, str]:
    """Parse and validate an override file: (table, origin for messages, content digest)."""
    file = Path(path)
    origin = str(file)
    try:
        data = _read_regular(file, origin)
    except FileNotFoundError:
        raise PricingError(f"price file {origin} does not exist") from None
    except IsADirectoryError:
        raise PricingError(f"price file {origin} is a directory, not a JSON or TOML file") from None
    except OSError as exc:
        raise PricingError(f"price file {origin} cannot be read: {exc.strerror or exc}") from None
    doc = _decode(data, origin, toml=file.suffix.lower() == ".toml")
    parsed = _parse_table(doc, _Problems(origin), shipped=False)
    return parsed, origin, "override-" + hashlib.sha256(data).hexdigest()[:8]


def load_price_table(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> PriceTable:
    """The shipped table, with the user's override file merged over it when there is one.

    ``path`` wins; else ``AURA_OTEL_PRICES_FILE``; else the shipped table alone. Raises
    :class:`~aura_otel.errors.PricingError` (a ``ConfigurationError``) naming the file and
    every problem in it, so a bad price never reaches a v1 file.
    """
    env = os.environ if environ is None else environ
    if path is None or str(path) == "":
        path = (env.get(c.ENV_PRICES_FILE) or "").strip() or None
    table = shipped_price_table()
    if path is None:
        return table
    parsed, origin, digest = read_override(path)
    return table.merged(parsed, origin, digest)
