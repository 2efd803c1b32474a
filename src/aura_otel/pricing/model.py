"""The price table's vocabulary: names, units and the entries a table is made of.

Shared by the lookup (:mod:`.table`), the calculation (:mod:`.usage`) and the file parser
(:mod:`.files`), none of which needs the others to describe a price.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from ..errors import PricingError

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
