"""Cost estimates from a versioned price table shipped as data (``data/prices.json``).

Peers either price nothing or price unknown models at $0; both make cost reports lie. Here a
usage is priced only when the table has an entry for its provider and model, every figure is
an exact decimal, each estimate names the table version that produced it, and anything the
table cannot price comes back as :class:`Unpriced` (with the reason) instead of zero.

The table is plain data so that a price change is a data change: users check a figure with
``aura-otel prices quote`` and correct it with an override file (``configure(prices_file=)``
or ``AURA_OTEL_PRICES_FILE``) merged over the shipped table, validated before the first span.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import conventions as c
from ._util import BoundedCache
from .errors import PricingError
from .fold import CACHED_TOKENS_METADATA, UNPRICED_METADATA, UNPRICED_VALUE, Quote

#: Estimates are rounded once, on the total, half up, to a hundred-millionth of the currency
#: unit: fine enough for a single cheap token call, exact enough to sum without drift.
MONEY_QUANTUM = Decimal("1e-8")
TABLE_FORMAT = 1
WILDCARD = "*"
_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1000)

TOKEN_RATES = ("input_per_1m", "cached_input_per_1m", "output_per_1m")
RATE_FIELDS = (*TOKEN_RATES, "per_1k_characters", "per_image", "per_second")
_ENTRY_FIELDS = (*RATE_FIELDS, "aliases", "patterns", "default_size", "default_quality", "note")
_PROVIDER_FIELDS = ("source", "aliases", "models", "note")
_TABLE_FIELDS = ("format", "version", "as_of", "currency", "note", "providers")
_MAX_LISTED_PROBLEMS = 20
_CACHE_LIMIT = 4096

#: Version suffixes removed one at a time, from the end, to find a dated model's family:
#: ``-2024-08-06`` (OpenAI), ``-20250929`` / ``@20241022`` (Anthropic, Vertex), ``-2411``
#: (Mistral), ``-002`` (Google), ``-latest``, ``-preview``, ``-preview-05-20``, ``-exp``.
VERSION_SUFFIX = re.compile(
    r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|latest|(?:preview|exp)(?:-\d{2}-\d{2})?)$"
)
_SIZE = re.compile(r"^\d+x\d+$")
_PROVIDER_NOISE = re.compile(r"[\s_\-]+")


# -- names ------------------------------------------------------------------------------------
def normalize_provider(name: str) -> str:
    """Provider names in spans vary ("OpenAI", "mistral_ai", "Eleven Labs"): compare them
    without case, spaces, hyphens or underscores."""
    return _PROVIDER_NOISE.sub("", name.strip().lower())


def normalize_model(model: str) -> str:
    return model.strip().lower()


def normalize_size(size: str) -> str:
    """``1024X1024``, ``1024 x 1024``, ``1024*1024`` and ``1024×1024`` are one size."""
    text = re.sub(r"\s+", "", size.strip().lower())
    return text if text == WILDCARD else text.replace("*", "x").replace("×", "x")


def _model_candidates(model: str) -> list[str]:
    """The id as sent, then its last path segment (``openai/gpt-4o``, ``models/gemini-...``)."""
    full = normalize_model(model)
    last = full.rsplit("/", 1)[-1]
    return [full] if last == full or not last else [full, last]


def version_families(model: str) -> Iterator[str]:
    """``gpt-4o-2024-08-06`` -> ``gpt-4o``; each suffix removed in turn, nearest first."""
    current = model
    for _ in range(4):
        stripped = VERSION_SUFFIX.sub("", current)
        if stripped == current or not stripped:
            return
        current = stripped
        yield current


# -- the table --------------------------------------------------------------------------------
ImagePrices = Decimal | dict[str, Decimal | dict[str, Decimal]]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's rates. A rate that is absent means the model is not priced by that unit."""

    id: str
    input_per_1m: Decimal | None = None
    cached_input_per_1m: Decimal | None = None
    output_per_1m: Decimal | None = None
    per_1k_characters: Decimal | None = None
    per_image: ImagePrices | None = None
    per_second: Decimal | None = None
    default_size: str | None = None
    default_quality: str | None = None
    aliases: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    note: str | None = None

    @property
    def prices_tokens(self) -> bool:
        return self.input_per_1m is not None

    def units(self) -> list[str]:
        """What the entry prices, for listings and for 'nothing to price' reasons."""
        out = []
        if self.prices_tokens:
            out.append("tokens")
        for name, label in (
            ("per_1k_characters", "characters"),
            ("per_image", "images"),
            ("per_second", "seconds"),
        ):
            if getattr(self, name) is not None:
                out.append(label)
        return out


@dataclass(frozen=True, slots=True)
class ProviderPrices:
    name: str
    models: dict[str, ModelPrice]
    aliases: tuple[str, ...] = ()
    source: str | None = None
    note: str | None = None
    _index: dict[str, ModelPrice] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for model in self.models.values():
            for key in (model.id, *model.aliases):
                self._index[normalize_model(key)] = model

    def find_named(self, model: str) -> tuple[ModelPrice, str] | None:
        """By exact id or alias, then by the family of a dated id; never by pattern."""
        candidates = _model_candidates(model)
        for name in candidates:
            entry = self._index.get(name)
            if entry is not None:
                return entry, "exact id" if name == normalize_model(entry.id) else f"alias {name}"
        for name in candidates:
            for family in version_families(name):
                entry = self._index.get(family)
                if entry is not None:
                    return entry, f"version suffix removed ({name} -> {family})"
        return None

    def find(self, model: str | None) -> tuple[ModelPrice, str] | None:
        if model is not None and model.strip():
            found = self.find_named(model)
            if found is not None:
                return found
            candidates = _model_candidates(model)
            for entry in self.models.values():
                for pattern in entry.patterns:
                    if any(pattern.fullmatch(name) for name in candidates):
                        return entry, f"pattern {pattern.pattern}"
        wildcard = self.models.get(WILDCARD)
        if wildcard is not None:
            return wildcard, "any model (*)"
        return None


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One priced quantity: ``quantity`` x ``rate`` / ``per`` = ``amount`` (exact)."""

    label: str
    quantity: Decimal
    rate: Decimal
    per: Decimal
    unit: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Estimate:
    provider: str
    model: str
    match: str
    lines: tuple[PriceLine, ...]
    total: Decimal
    currency: str
    version: str
    notes: tuple[str, ...] = ()

    @property
    def amount(self) -> float:
        """The rounded total as the float whose repr is that decimal (what v1 files hold)."""
        return float(self.total)


@dataclass(frozen=True, slots=True)
class Unpriced:
    """Why a usage has no price. Never a zero: a report must not mistake 'unknown' for 'free'."""

    reason: str


PriceResult = Estimate | Unpriced


class PriceTable:
    """A validated, immutable price table; also the :class:`aura_otel.fold.Pricer` of a run."""

    def __init__(
        self,
        *,
        version: str,
        as_of: str,
        currency: str,
        providers: Mapping[str, ProviderPrices],
        note: str | None = None,
        origins: tuple[str, ...] = (),
    ) -> None:
        self.version = version
        self.as_of = as_of
        self.currency = currency
        self.note = note
        self.origins = origins
        self.providers: dict[str, ProviderPrices] = dict(providers)
        self._by_name: dict[str, ProviderPrices] = {}
        for provider in self.providers.values():
            for name in (provider.name, *provider.aliases):
                key = normalize_provider(name)
                other = self._by_name.get(key)
                if other is not None and other is not provider:
                    raise PricingError(
                        f"provider name {name!r} is used by both {other.name!r} and {provider.name!r}"
                    )
                self._by_name[key] = provider
        # Keys come from spans (model strings): bounded, so memory is too.
        self._cache: BoundedCache[
            tuple[str | None, str | None], tuple[ProviderPrices, ModelPrice, str] | str
        ] = BoundedCache(_CACHE_LIMIT)
        self._quotes: BoundedCache[Any, Quote | None] = BoundedCache(_CACHE_LIMIT)

    def __repr__(self) -> str:
        return f"PriceTable(version={self.version!r}, providers={len(self.providers)})"

    # -- lookup ---------------------------------------------------------------------------------
    def provider(self, name: str) -> ProviderPrices | None:
        return self._by_name.get(normalize_provider(name))

    def find(
        self, provider: str | None, model: str | None
    ) -> tuple[ProviderPrices, ModelPrice, str] | str:
        """The entry for a provider/model and how it matched, or the reason there is none."""
        key = (provider, model)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache.put(key, self._find(provider, model))
        return cached

    def _find(
        self, provider: str | None, model: str | None
    ) -> tuple[ProviderPrices, ModelPrice, str] | str:
        if provider is None or not provider.strip():
            if model is None or not model.strip():
                return "no provider and no model"
            hits = [(p, *found) for p in self.providers.values() if (found := p.find_named(model))]
            if len(hits) == 1:
                inferred, entry, how = hits[0]
                return inferred, entry, f"{how}; provider inferred from the model"
            if not hits:
                return f"no provider, and no provider in the table has model {model!r}"
            names = ", ".join(p.name for p, _, _ in hits)
            return f"no provider, and model {model!r} is in several providers ({names})"
        named = self.provider(provider)
        if named is None:
            return f"provider {provider!r} is not in price table {self.version}"
        match = named.find(model)
        if match is None:
            if model is None or not model.strip():
                return f"no model, and provider {named.name!r} has no price for any model (*)"
            return (
                f"model {model!r} of provider {named.name!r} is not in price table {self.version}"
            )
        return named, *match

    # -- pricing --------------------------------------------------------------------------------
    def price(
        self, provider: str | None, model: str | None, usage: Mapping[str, Any]
    ) -> PriceResult:
        """Price a usage (keys as in :data:`aura_otel.fold.USAGE_METADATA` plus tokens)."""
        found = self.find(provider, model)
        if isinstance(found, str):
            return Unpriced(found)
        prov, entry, how = found
        calc = _Calculation(entry, _Usage.of(usage))
        result = calc.run()
        if isinstance(result, Unpriced):
            return Unpriced(f"{prov.name}/{entry.id}: {result.reason}")
        total = sum((line.amount for line in result), Decimal(0))
        return Estimate(
            provider=prov.name,
            model=entry.id,
            match=how,
            lines=tuple(result),
            total=total.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP),
            currency=self.currency,
            version=self.version,
            notes=tuple(calc.notes),
        )

    def quote(
        self, *, stage: str, provider: str | None, model: str | None, usage: Mapping[str, Any]
    ) -> Quote | None:
        """The :class:`aura_otel.fold.Pricer` entry point: None means unpriced.

        Memoised: a running job's file is reassembled on every write, so the same records are
        quoted again and again; a table never changes, so neither do its quotes.
        """
        try:
            key: Any = (provider, model, tuple(sorted(usage.items())))
            hash(key)
        except TypeError:  # an unhashable value from a custom caller: just price it
            key = None
        if key is not None and key in self._quotes:
            return self._quotes[key]
        result = self.price(provider, model, usage)
        quote = (
            None
            if isinstance(result, Unpriced)
            else Quote(amount=result.amount, currency=result.currency, version=result.version)
        )
        if key is not None:
            self._quotes.put(key, quote)
        return quote

    # -- building -------------------------------------------------------------------------------
    def merged(self, override: _ParsedTable, origin: str, digest: str) -> PriceTable:
        """This table with ``override`` laid over it: a model entry replaces the shipped one of
        the same id whole (no stale rate survives), provider aliases are added, new providers
        and models are added. The version becomes ``<shipped>+<override version or digest>``."""
        if override.currency is not None and override.currency != self.currency:
            raise PricingError(
                f"{origin}: currency {override.currency!r} differs from the shipped table's "
                f"{self.currency!r}; one table prices in one currency"
            )
        providers = dict(self.providers)
        for raw in override.providers:
            base = self.provider(raw.name)  # by any of its names: "OpenAI", "gcp.gemini"
            if base is None:
                providers[raw.name] = ProviderPrices(
                    name=raw.name,
                    models=dict(raw.models),
                    aliases=raw.aliases,
                    source=raw.source or f"override file {origin}",
                    note=raw.note,
                )
                continue
            models = dict(base.models)
            for model_id, entry in raw.models.items():
                _replace_model(models, model_id, entry)
            aliases = tuple(dict.fromkeys((*base.aliases, *raw.aliases)))
            providers[base.name] = ProviderPrices(
                name=base.name,
                models=models,
                aliases=aliases,
                source=raw.source or base.source,
                note=raw.note or base.note,
            )
        try:
            for prov in providers.values():
                _check_model_names(prov.name, prov.models.values())
            return PriceTable(
                version=f"{self.version}+{override.version or digest}",
                as_of=override.as_of or self.as_of,
                currency=self.currency,
                providers=providers,
                note=self.note,
                origins=(*self.origins, origin),
            )
        except PricingError as exc:
            raise PricingError(f"{origin}: {exc}") from None

    def rows(self, provider: str | None = None) -> list[tuple[ProviderPrices, ModelPrice]]:
        """Entries to list, optionally for one provider (any of its names); [] if unknown."""
        if provider is not None:
            prov = self.provider(provider)
            provs = [prov] if prov is not None else []
        else:
            provs = sorted(self.providers.values(), key=lambda p: p.name)
        return [(p, m) for p in provs for m in p.models.values()]


# -- pricing one usage --------------------------------------------------------------------------
def _decimal(value: Any) -> Decimal | None:
    """A non-negative finite quantity, taken at its shortest repr (what the span said)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        return None
    return number if number.is_finite() and number >= 0 else None


@dataclass(frozen=True, slots=True)
class _Usage:
    tokens_in: Decimal | None
    tokens_out: Decimal | None
    cached: Decimal | None
    characters: Decimal | None
    images: Decimal | None
    image_size: str | None
    image_quality: str | None
    seconds: Decimal | None

    @classmethod
    def of(cls, usage: Mapping[str, Any]) -> _Usage:
        size = usage.get("image_size")
        quality = usage.get("image_quality")
        return cls(
            tokens_in=_decimal(usage.get("tokens_in")),
            tokens_out=_decimal(usage.get("tokens_out")),
            cached=_decimal(usage.get(CACHED_TOKENS_METADATA)),
            characters=_decimal(usage.get("characters")),
            images=_decimal(usage.get("images")),
            image_size=normalize_size(size) if isinstance(size, str) and size.strip() else None,
            image_quality=quality.strip().lower()
            if isinstance(quality, str) and quality.strip()
            else None,
            seconds=_decimal(usage.get("duration_seconds")),
        )

    def kinds(self) -> list[str]:
        out = []
        if self.tokens_in is not None or self.tokens_out is not None or self.cached is not None:
            out.append("tokens")
        for name, label in (
            ("characters", "characters"),
            ("images", "images"),
            ("seconds", "seconds"),
        ):
            if getattr(self, name) is not None:
                out.append(label)
        return out


class _Calculation:
    """Prices every quantity of a usage that the entry has a rate for; quantities it has no
    rate for are noted (a TTS engine priced per character ignores the audio's duration)."""

    def __init__(self, entry: ModelPrice, usage: _Usage) -> None:
        self.entry = entry
        self.usage = usage
        self.notes: list[str] = []
        self.lines: list[PriceLine] = []

    def _line(self, label: str, quantity: Decimal, rate: Decimal, per: Decimal, unit: str) -> None:
        self.lines.append(PriceLine(label, quantity, rate, per, unit, quantity * rate / per))

    def run(self) -> list[PriceLine] | Unpriced:
        entry, usage = self.entry, self.usage
        if not usage.kinds():
            return Unpriced("the usage has no quantity to price")
        if entry.prices_tokens:
            self._tokens()
        if entry.per_1k_characters is not None and usage.characters is not None:
            self._line(
                "characters", usage.characters, entry.per_1k_characters, _THOUSAND, "1k characters"
            )
        if entry.per_image is not None and usage.images is not None:
            problem = self._images()
            if problem is not None:
                return Unpriced(problem)
        if entry.per_second is not None and usage.seconds is not None:
            self._line("output seconds", usage.seconds, entry.per_second, Decimal(1), "second")
        if not self.lines:
            return Unpriced(
                f"it prices {', '.join(entry.units())} but the usage has {', '.join(usage.kinds())}"
            )
        ignored = [k for k in usage.kinds() if k not in entry.units()]
        if ignored:
            self.notes.append(f"not priced by this entry: {', '.join(ignored)}")
        return self.lines

    def _tokens(self) -> None:
        entry, usage = self.entry, self.usage
        assert entry.input_per_1m is not None and entry.output_per_1m is not None
        tokens_in, cached = usage.tokens_in, usage.cached
        if cached is not None and cached > 0:
            if tokens_in is None:
                uncached = None
            elif cached > tokens_in:
                # Not a subset, so the source reported cache reads apart from input tokens
                # (Anthropic's API does): price both as reported rather than lose some.
                uncached = tokens_in
                self.notes.append("cached tokens exceed input tokens: taken as reported apart")
            else:
                uncached = tokens_in - cached  # cached tokens are a subset: never count twice
            cached_rate = entry.cached_input_per_1m
            if cached_rate is None:
                cached_rate = entry.input_per_1m
                self.notes.append(
                    "no cached-input price published: cached tokens at the input rate"
                )
            if uncached is not None:
                self._line(
                    "input tokens (uncached)", uncached, entry.input_per_1m, _MILLION, "1M tokens"
                )
            self._line("cached input tokens", cached, cached_rate, _MILLION, "1M tokens")
        elif tokens_in is not None:
            self._line("input tokens", tokens_in, entry.input_per_1m, _MILLION, "1M tokens")
        if usage.tokens_out is not None:
            self._line(
                "output tokens", usage.tokens_out, entry.output_per_1m, _MILLION, "1M tokens"
            )

    def _images(self) -> str | None:
        entry, usage = self.entry, self.usage
        assert usage.images is not None
        prices = entry.per_image
        if isinstance(prices, Decimal):
            self._line("images", usage.images, prices, Decimal(1), "image")
            return None
        assert isinstance(prices, dict)
        size = usage.image_size or entry.default_size
        if size is None:
            return f"image size unknown and no default size (priced sizes: {', '.join(prices)})"
        by_size = prices.get(size, prices.get(WILDCARD))
        if by_size is None:
            return f"no price for size {size} (priced sizes: {', '.join(prices)})"
        label = f"images {size}"
        if isinstance(by_size, dict):
            quality = usage.image_quality or entry.default_quality
            if quality is None:
                return f"image quality unknown and no default quality (qualities: {', '.join(by_size)})"
            rate = by_size.get(quality, by_size.get(WILDCARD))
            if rate is None:
                return f"no price for quality {quality} at size {size} (qualities: {', '.join(by_size)})"
            label += f" {quality}"
        else:
            rate = by_size
        if usage.image_size is None or (isinstance(by_size, dict) and usage.image_quality is None):
            self.notes.append(
                "image size/quality not given: the model's documented default was used"
            )
        self._line(label, usage.images, rate, Decimal(1), "image")
        return None


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


def _rate(value: Any, path: str, problems: _Problems) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        problems.add(path, f"a price must be a number, got {type(value).__name__} {value!r}")
        return None
    number = (
        value
        if isinstance(value, Decimal)
        else Decimal(repr(value) if isinstance(value, float) else value)
    )
    if not number.is_finite():
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
            problems.add(spath, f"size {raw_size!r} must look like 1024x1024 (or be '*')")
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
                f"{path}.default_size", f"{default_size!r} is not one of the sizes in per_image"
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
                f"{path}.default_quality", f"{default_quality!r} is not a quality in per_image"
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


def _replace_model(models: dict[str, ModelPrice], model_id: str, entry: ModelPrice) -> None:
    """Put ``entry`` in place of the model named ``model_id`` (by id, or by alias: the old
    entry then loses that alias and keeps its other names)."""
    key = normalize_model(model_id)
    for old_id, old in list(models.items()):
        if normalize_model(old_id) == key:
            del models[old_id]
        elif key in (normalize_model(a) for a in old.aliases):
            kept = tuple(a for a in old.aliases if normalize_model(a) != key)
            models[old_id] = dataclasses.replace(old, aliases=kept)
    models[model_id] = entry


def _check_model_names(provider: str, models: Iterable[ModelPrice]) -> None:
    seen: dict[str, str] = {}
    for model in models:
        for name in (model.id, *model.aliases):
            key = normalize_model(name)
            if seen.get(key, model.id) != model.id:
                raise PricingError(
                    f"provider {provider!r}: model name {name!r} is used by both "
                    f"{seen[key]!r} and {model.id!r}"
                )
            seen[key] = model.id


def _parse_table(doc: Any, problems: _Problems, *, shipped: bool) -> _ParsedTable:
    if not isinstance(doc, Mapping):
        problems.add("", "the top level must be an object")
        problems.raise_if_any()
    _unknown(doc, _TABLE_FIELDS, "", "field", problems)
    if "format" in doc and doc["format"] != TABLE_FORMAT:
        problems.add(
            "format", f"unsupported format {doc['format']!r} (this version reads {TABLE_FORMAT})"
        )
    version = _text(doc.get("version"), "version", problems)
    as_of = _text(doc.get("as_of"), "as_of", problems)
    if as_of is not None:
        try:
            date.fromisoformat(as_of)
        except ValueError:
            problems.add("as_of", f"{as_of!r} is not a date (YYYY-MM-DD)")
    currency = _text(doc.get("currency"), "currency", problems)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.add("currency", f"{currency!r} is not an ISO 4217 code such as USD")
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


def read_override(path: str | os.PathLike[str]) -> tuple[_ParsedTable, str, str]:
    """Parse and validate an override file: (table, origin for messages, content digest)."""
    file = Path(path)
    origin = str(file)
    try:
        data = file.read_bytes()
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


# -- views --------------------------------------------------------------------------------------
def format_decimal(value: Decimal) -> str:
    """Plain notation, no trailing zeros: 0.00025, 2.5, 10."""
    return format(value.normalize(), "f")


def format_money(value: Decimal) -> str:
    """At least two decimals, never fewer digits than the exact value: 2.50, 0.00025, 10.00."""
    if value == value.quantize(Decimal("0.01")):
        return format(value.quantize(Decimal("0.01")), "f")
    return format_decimal(value)


def describe_rates(entry: ModelPrice) -> list[str]:
    """Human lines for an entry's rates, for listings."""
    out = []
    if entry.prices_tokens:
        assert entry.input_per_1m is not None and entry.output_per_1m is not None
        cached = (
            format_money(entry.cached_input_per_1m)
            if entry.cached_input_per_1m is not None
            else "= input"
        )
        out.append(
            f"in {format_money(entry.input_per_1m)} / cached {cached} / "
            f"out {format_money(entry.output_per_1m)} per 1M tokens"
        )
    if entry.per_1k_characters is not None:
        out.append(f"{format_money(entry.per_1k_characters)} per 1k characters")
    if isinstance(entry.per_image, Decimal):
        out.append(f"{format_money(entry.per_image)} per image")
    elif isinstance(entry.per_image, dict):
        for size, by_size in entry.per_image.items():
            if isinstance(by_size, dict):
                qualities = ", ".join(f"{q} {format_money(r)}" for q, r in by_size.items())
                out.append(f"{size}: {qualities} per image")
            else:
                out.append(f"{size}: {format_money(by_size)} per image")
    if entry.per_second is not None:
        out.append(f"{format_money(entry.per_second)} per second of output")
    return out


def is_unpriced(record: Mapping[str, Any]) -> bool:
    """A record the table could not price (its cost is unknown, not zero)."""
    metadata = record.get("metadata")
    return isinstance(metadata, Mapping) and metadata.get(UNPRICED_METADATA) == UNPRICED_VALUE


def count_unpriced(records: Iterable[Mapping[str, Any]]) -> int:
    """How many operations of a run have no price: views show this count, never $0."""
    return sum(1 for rec in records if is_unpriced(rec))


def add_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``aura-otel prices`` (list the table, quote a usage)."""
    from .pricing_cli import register

    register(subparsers)
